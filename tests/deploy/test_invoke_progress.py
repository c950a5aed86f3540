"""deploy.invoke_progress - ./botmesh invoke --wait shows the job's progress.

A real broker (no Redis), a real worker and gateway, and a bot of our own
that reports PROGRESS 25, 50 and 75 on fd 3, each held until the test has
seen `invoke --wait` print it: each value is printed once, in order, on
stderr ("job ID running: progress N%"), while stdout holds only the final
record (completed).  The bot waits for the test, not the test for a time,
so no value can be missed by the 0.2 s polling.  Before, --wait printed
nothing between the gateway's answer and the final record.
"""
import json
import os
import re
import select
import subprocess
import sys
import time

import harness
from harness import check, log, wait_until

import deploylib as d

# Each value is held until the file step-N exists (written by the test).
BOT = """import os, sys, time
sys.stdin.read()
steps = sys.argv[1]
for p in (25, 50, 75):
    os.write(3, b"PROGRESS %d\\n" % p)
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(steps, "step-%d" % p)):
        if time.monotonic() > deadline:
            sys.stderr.write("the test never saw progress %d\\n" % p)
            sys.exit(1)
        time.sleep(0.05)
print('{"ok": true}')
"""


def test():
    d.require(binaries=("botmesh-broker", "botmesh-worker", "botmesh-gateway"), tools=("curl", "jq"))
    work = harness.tempdir("invoke-progress-")
    bot = os.path.join(work, "progbot.py")
    with open(bot, "w") as f:
        f.write(BOT)
    steps = os.path.join(work, "steps")
    os.mkdir(steps)
    envfile = os.path.join(work, "env")
    open(envfile, "w").close()
    with harness.Stack("invoke-progress") as s:
        s.broker(redis=False)
        s.worker("--type", "prog", env={"BOT_PROG_CMD": "%s %s %s" % (sys.executable, bot, steps)})
        s.wait_workers(1, "prog")
        gw = s.spawn("gateway", [s.bin("botmesh-gateway")], {
            "API_GATEWAY_PORT": "0", "GATEWAY_LISTEN": "127.0.0.1", "BROKER_ENDPOINT": s.endpoint,
            "REDIS_URL": "none"})
        base = "http://127.0.0.1:%d" % gw.listening("http")
        wait_until(lambda: harness.http("GET", base + "/health")[0] == 200, 15, "gateway /health")

        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("BOTMESH_", "API_", "REDIS_", "BROKER_"))}
        env.update({"BOTMESH_API_URL": base, "BOTMESH_ENV_FILE": envfile,
                    "BOTMESH_VAR_DIR": os.path.join(work, "var"), "BOTMESH_NO_BUILD": "1"})
        proc = subprocess.Popen([os.path.join(d.ROOT, "botmesh"), "invoke", "prog", "{}", "--wait",
                                 "--timeout", "30"], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = []
        try:
            deadline = time.monotonic() + 60
            for want in (25, 50, 75):
                # Read stderr until this value's line (or the command ends).
                while not any(re.search(r"running: progress %d%%$" % want, l) for l in lines):
                    left = deadline - time.monotonic()
                    check(left > 0 and proc.poll() is None,
                          "invoke --wait prints progress %d%% on stderr while the job runs" % want, lines)
                    ready, _, _ = select.select([proc.stderr], [], [], left)
                    if ready:
                        line = proc.stderr.readline()
                        if not line:
                            check(False, "invoke --wait prints progress %d%% on stderr while the job "
                                  "runs (it ended first, exit %s)" % (want, proc.wait(10)), lines)
                        log("stderr:", line.rstrip())
                        lines.append(line.rstrip("\n"))
                open(os.path.join(steps, "step-%d" % want), "w").close()
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        lines += err.splitlines()
        log("stderr after:", err)
        job = json.loads(lines[0]).get("jobId")
        check(job, "the first stderr line is the gateway's answer, with the jobId", lines)
        progress = [l for l in lines if "progress" in l]
        shown = [int(re.search(r"progress (\d+)%$", l).group(1)) for l in progress]
        check(shown in ([25, 50, 75], [0, 25, 50, 75]),
              "each progress value printed once, in order (0 first when polled before the bot's first)",
              progress)
        check(all(l.startswith("botmesh: invoke: job %s running: progress " % job) for l in progress),
              "each progress line names the job", progress)
        check(proc.returncode == 0, "invoke --wait exits 0 for the completed job", proc.returncode, out, err)
        rec = json.loads(out)
        check(rec.get("state") == "completed" and rec.get("result") == {"ok": True},
              "stdout holds the completed record only", out)


if __name__ == "__main__":
    harness.main(test)

"""forkserver.py --pool: each job's environment, as the job's subprocesses
see it (the C environment: what os.system and subprocess pass on) and as
the bot sees it (os.environ), driven directly over its pipes with the
frames a worker writes (a real process, real pipes, a real env(1)).

- a job's variables (its frame's "env") reach its subprocesses, a value
  that is not ASCII as its UTF-8 bytes, and one that replaces a variable
  of the process (BOT_MODE) replaces it for that job only;
- after the job, the process's environment is as it was, whatever the job
  did to it: a variable it added (LEAK), one of the process's it changed
  (BOT_WORKER) or removed (BOT_TYPE), one of its own it removed (GONE),
  changed (BOT_JOB_ID) or left alone (JOB_ONLY): the next job's
  subprocesses and os.environ see the process's variables and that job's
  own, nothing of the job before;
- a job that leaves the environment alone leaves it as it was too.
"""
import json
import os
import select
import shutil
import subprocess
import tempfile
import time

import harness
from harness import check, log

SERVER = os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py")
NAMES = ["BOT_JOB_ID", "BOT_TYPE", "BOT_WORKER", "BOT_MODE", "JOB_ONLY", "GONE", "LEAK"]

# The bot: the variables as its subprocess (env(1), which prints the
# environment it was started with: the bot's C environment) and os.environ
# see them ("-" for one not set); as its payload asks, it then changes
# os.environ.
BOT = """
import json, os, subprocess, sys

NAMES = %r


def main():
    payload = json.loads(sys.stdin.read())
    lines = subprocess.run(["/usr/bin/env"], stdout=subprocess.PIPE, check=True).stdout
    child = dict(line.split("=", 1) for line in lines.decode("utf-8").splitlines() if "=" in line)
    seen = {n: child.get(n, "-") for n in NAMES}
    own = {n: os.environ.get(n, "-") for n in NAMES}
    if payload.get("meddle"):
        os.environ["LEAK"] = "from job 1"
        os.environ["BOT_WORKER"] = "changed by job 1"
        del os.environ["BOT_TYPE"]
        del os.environ["GONE"]
        os.environ["BOT_JOB_ID"] = "changed by job 1"
    print(json.dumps({"subprocess": seen, "environ": own}))
""" % (NAMES,)

READ_TIMEOUT_S = 30


def read_line(proc, what):
    """One line from the pool process's stdout, within READ_TIMEOUT_S."""
    fd = proc.stdout.fileno()
    data = b""
    deadline = time.monotonic() + READ_TIMEOUT_S
    while not data.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise harness.TestFailure("FAILED: forkserver.py --pool wrote no %s within %d s (so far: %r)"
                                      % (what, READ_TIMEOUT_S, data))
        chunk = os.read(fd, 65536)
        if not chunk:
            raise harness.TestFailure("FAILED: forkserver.py --pool exited (status %s) before its %s "
                                      "(so far: %r)" % (proc.wait(), what, data))
        data += chunk
    return json.loads(data)


def run_job(proc, job_id, env, payload):
    frame = {"job": job_id, "env": dict(env, BOT_JOB_ID=job_id), "payload": payload}
    proc.stdin.write(json.dumps(frame, separators=(",", ":")).encode("utf-8") + b"\n")
    proc.stdin.flush()
    answer = read_line(proc, "answer to job %s" % job_id)
    check(answer.get("exit") == 0 and answer.get("job") == job_id,
          "job %s ran and was answered" % job_id, answer)
    return json.loads(answer["output"])


def main():
    tmp = tempfile.mkdtemp(prefix="botmesh-pool-env-")
    try:
        bot = os.path.join(tmp, "envbot.py")
        with open(bot, "w") as f:
            f.write(BOT)
        env = {k: v for k, v in os.environ.items() if k not in NAMES}
        env.update({"BOT_TYPE": "python", "BOT_WORKER": "w1", "BOT_MODE": "pool",
                    "LANG": "C.UTF-8"})
        proc = subprocess.Popen(["/usr/bin/python3", SERVER, "--pool", bot], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, env=env, cwd=tmp)
        try:
            check(read_line(proc, "its ready line").get("ready") is True, "the pool process is ready")
            base = {"BOT_JOB_ID": "-", "BOT_TYPE": "python", "BOT_WORKER": "w1", "BOT_MODE": "pool",
                    "JOB_ONLY": "-", "GONE": "-", "LEAK": "-"}

            first = run_job(proc, "job-1", {"JOB_ONLY": "caf\u00e9 \u00fcber", "GONE": "1",
                                            "BOT_MODE": "job's own"}, {"meddle": True})
            log("job 1 saw", first)
            want = dict(base, BOT_JOB_ID="job-1", JOB_ONLY="caf\u00e9 \u00fcber", GONE="1",
                        BOT_MODE="job's own")
            check(first["subprocess"] == want,
                  "job 1's subprocess sees the job's variables, a non-ASCII one as UTF-8, "
                  "BOT_MODE replaced", first["subprocess"], want)
            check(first["environ"] == want, "job 1's os.environ holds the same", first["environ"])

            second = run_job(proc, "job-2", {}, {})
            log("job 2 saw", second)
            want = dict(base, BOT_JOB_ID="job-2")
            check(second["subprocess"] == want,
                  "job 2's subprocess sees the process's variables and job 2's own: nothing job 1 "
                  "added, changed or removed (LEAK, BOT_WORKER, BOT_TYPE, BOT_JOB_ID), nor its own (JOB_ONLY, "
                  "GONE, BOT_MODE)",
                  second["subprocess"], want)
            check(second["environ"] == want, "job 2's os.environ holds the same", second["environ"])

            third = run_job(proc, "job-3", {"JOB_ONLY": "three"}, {})
            want = dict(base, BOT_JOB_ID="job-3", JOB_ONLY="three")
            check(third["subprocess"] == want and third["environ"] == want,
                  "job 3 (after a job that left the environment alone) sees its own", third, want)
        finally:
            proc.stdin.close()
            code = proc.wait(timeout=READ_TIMEOUT_S)
        check(code == 0, "the pool process exits 0 at the end of its input", code)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    harness.main(main)

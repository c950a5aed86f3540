"""What a new bot author gets wrong with warm bots, end to end with the real
broker (no Redis) and a real worker: each mistake ends in a clear error,
never in a job that waits for its timeout.

- a pool process that never writes its ready line (a spawn-mode bot run
  with MODE=pool, waiting for end of file on stdin) is killed at
  BOT_<TYPE>_READY_TIMEOUT_MS: its jobs fail with bot_init_failed naming
  the deadline and the variable, with the bot's stderr tail; a WARN line
  says so; restarts back off and count as init failures;
- a pooled bot that answers with a line that is not a JSON object (a
  missing brace, pretty-printed JSON over several lines) fails its job at
  once with bad_output quoting the line, and its process is replaced;
- a second answer frame for one job kills the process with a WARN naming
  "an answer frame while it runs no job"; the job itself completed;
- progress lines that are not PROGRESS 0-100 on fd 3 (spawn and pool):
  one WARN per job, with its job id and the first bad line;
- BOT_<TYPE>_PRELOAD naming a module that does not exist: bot_init_failed
  naming the variable and the module;
- a pool bot that runs out of memory while loading, under its
  BOT_<TYPE>_MEMORY_MB (Python's MemoryError, or its cgroup's OOM kill):
  its jobs fail as resource_limit naming the variable and its value, the
  one that waited for the process and one submitted while restarts back
  off; it still counts as an init failure;
- a fork or pool bot whose main() returns its result instead of printing
  it: the returned value is the result;
- a relative path in BOT_<TYPE>_CMD is read from the worker's working
  directory at start, so a sandboxed (bwrap, started in /tmp) fork server
  finds it.
"""
import os
import shutil
import time

import harness
from harness import check, log, wait_until
import wlib

ROOT = harness.ROOT
PY = "/usr/bin/python3"

STUCK = """#!/bin/sh
echo "stuck: reading the payload until end of file" >&2
cat > /dev/null
echo '{"ok": true}'
"""

BADLINE = """import json, os, sys
PROGRESS = os.fdopen(3, "w", buffering=1)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    payload = json.loads(line).get("payload") or {}
    if payload.get("badProgress"):
        PROGRESS.write(payload["badProgress"] + "\\n")
    answer = {"result": {"pid": os.getpid()}}
    how = payload.get("how")
    if how == "brace":
        sys.stdout.write('{"result": {"pid": %d}\\n' % os.getpid())
    elif how == "pretty":
        sys.stdout.write(json.dumps(answer, indent=2) + "\\n")
    elif how == "twice":
        sys.stdout.write(json.dumps(answer) + "\\n" + json.dumps(answer) + "\\n")
    else:
        sys.stdout.write(json.dumps(answer) + "\\n")
    sys.stdout.flush()
"""

PROG = """#!/bin/sh
echo 'PROGRESS 150' >&3
echo 'progress 40' >&3
echo 'PROGRESS 30%' >&3
echo 'PROGRESS 50' >&3
cat > /dev/null
echo '{"done": true}'
"""

HUNGRY = """import json, sys
BALLAST = b"\\x01" * (400 << 20)      # a model too big for the memory limit
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    print(json.dumps({"result": {}}), flush=True)
"""

RETURNS = """import json, os, sys
def main():
    payload = json.load(sys.stdin)
    return {"returned": True, "n": payload.get("n"), "pid": os.getpid()}
"""


def write(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def warn_lines(w, *words):
    return [line for line in w.output().splitlines()
            if "WARN" in line and all(word in line for word in words)]


def main():
    bots = harness.tempdir("warm-mistakes-")
    os.chmod(bots, 0o755)       # a sandboxed bot runs as nobody when we are root
    stuck = write(bots, "stuck.sh", STUCK)
    badline = write(bots, "badline.py", BADLINE)
    prog = write(bots, "prog.sh", PROG)
    returns = write(bots, "returns.py", RETURNS)
    hungry = write(bots, "hungry.py", HUNGRY)
    # The worker starts in a tree laid out as the repository's root:
    # BOT_REL_CMD names the fork server by a path relative to it, as
    # docs/bots.md's example does.  A copy everyone may read, not the
    # checkout itself: the sandboxed bot runs as nobody, who cannot reach a
    # checkout under a private directory (a CI clone in mktemp -d's 0700).
    # Beside the bots' directory, not in it: a sandboxed bot's directory
    # that holds the worker's working directory stops the worker.
    tree = harness.tempdir("warm-mistakes-tree-")
    shutil.copytree(os.path.join(ROOT, "workers", "bots", "python"),
                    os.path.join(tree, "workers", "bots", "python"))
    for path, dirs, files in os.walk(tree):
        os.chmod(path, 0o755)
        for name in files:
            os.chmod(os.path.join(path, name), 0o644)
    os.chdir(tree)
    with harness.Stack("worker-e2e-warm-mistakes") as s:
        s.broker(redis=False)
        env = {"BOT_STUCK_CMD": "/bin/sh %s" % stuck, "BOT_STUCK_MODE": "pool",
               "BOT_STUCK_MAX_PROCS": "1", "BOT_STUCK_READY_TIMEOUT_MS": "1500",
               "BOT_BADLINE_CMD": "%s %s" % (PY, badline), "BOT_BADLINE_MODE": "pool",
               "BOT_BADLINE_MAX_PROCS": "1",
               "BOT_PROG_CMD": "/bin/sh %s" % prog,
               "BOT_HEAVY_CMD": "%s workers/bots/python/forkserver.py %s" % (PY, returns),
               "BOT_HEAVY_MODE": "fork", "BOT_HEAVY_MAX_PROCS": "1",
               "BOT_HEAVY_PRELOAD": "json,no_such_module_for_the_test",
               "BOT_REL_CMD": "%s workers/bots/python/forkserver.py %s" % (PY, returns),
               "BOT_REL_MODE": "fork", "BOT_REL_MAX_PROCS": "1", "BOT_REL_SANDBOX": "bwrap",
               "BOT_RETPOOL_CMD": "%s ./workers/bots/python/forkserver.py --pool %s" % (PY, returns),
               "BOT_RETPOOL_MODE": "pool", "BOT_RETPOOL_MAX_PROCS": "1",
               "BOT_HUNGRY_CMD": "%s %s" % (PY, hungry), "BOT_HUNGRY_MODE": "pool",
               "BOT_HUNGRY_MAX_PROCS": "1", "BOT_HUNGRY_MIN_PROCS": "0", "BOT_HUNGRY_MEMORY_MB": "100",
               "BOT_KILL_GRACE_MS": "500", "WORKER_METRICS_PORT": "-1"}
        w = s.worker("--type", "stuck,badline,prog,heavy,rel,retpool,hungry", "--concurrency", "7",
                     env=env)
        port = w.listening("metrics")
        s.wait_workers(1)
        c = s.client()

        # 1. Never ready: killed at the deadline, an init failure.
        started = time.monotonic()
        rec = wlib.run_job(c, "stuck", {}, attempts=1, timeoutMs=60000, timeout=15)
        took = time.monotonic() - started
        err = rec.get("error") or {}
        log("stuck: %.1f s, %r" % (took, err))
        check(rec["state"] == "failed" and err.get("code") == "bot_init_failed",
              "a pool process that never gets ready -> bot_init_failed", rec)
        check("BOT_STUCK_READY_TIMEOUT_MS=1500" in err.get("message", ""),
              "the message names the deadline and its variable", err)
        check("stuck: reading the payload until end of file" in err.get("message", ""),
              "the message holds the bot's stderr tail", err)
        check(took < 10, "it fails within seconds, not at the job's timeout (60 s)", took)
        check(warn_lines(w, "stuck", "not ready after 1500 ms", "killed"),
              "a WARN line says the process was not ready and was killed")
        wait_until(lambda: wlib.metric(port, "bot_init_failures_total", bot_type="stuck") >= 2,
                   15, "bot_init_failures_total{bot_type=stuck} >= 2: restarts, each killed")

        # 2. Answers that are not one JSON object per line.
        first = wlib.run_job(c, "badline", {})
        check(first["state"] == "completed", "a well-framed pooled answer completes", first)
        for how, quoted in (("brace", "'{\"result\": {\"pid\": %d}'" % first["result"]["pid"]),
                            ("pretty", "'{'")):
            started = time.monotonic()
            rec = wlib.run_job(c, "badline", {"how": how}, attempts=1, timeoutMs=60000, timeout=15)
            took = time.monotonic() - started
            err = rec.get("error") or {}
            check(rec["state"] == "failed" and err.get("code") == "bad_output",
                  "%s: a line that is not a JSON object -> bad_output" % how, rec)
            check("not a JSON object" in err.get("message", "") and quoted in err.get("message", ""),
                  "%s: the message says so and quotes the line's first bytes %s" % (how, quoted), err)
            check(took < 10, "%s: at once, not at the job's timeout" % how, took)
            after = wlib.run_job(c, "badline", {})
            check(after["state"] == "completed" and after["result"]["pid"] != first["result"]["pid"],
                  "%s: the process was replaced; the next job completes on a new one" % how, after)
            first = after
        check(warn_lines(w, "badline", "a line that is not a JSON object (", "while it runs a job: killed"),
              "a WARN line for the killed process")

        # 8. A second answer frame for one job.
        rec = wlib.run_job(c, "badline", {"how": "twice"})
        check(rec["state"] == "completed", "the job its first answer ended completed", rec)
        wait_until(lambda: warn_lines(w, "badline", "an answer frame while it runs no job: killed"),
                   10, "a WARN 'an answer frame while it runs no job: killed'")
        check(not warn_lines(w, "a job frame while"), "not worded 'a job frame'")

        # 6. Bad progress lines: one WARN per job, with its job id.
        for bot_type, payload in (("prog", {}), ("prog", {}),
                                  ("badline", {"badProgress": "PROGRESS -5"}),
                                  ("badline", {"badProgress": "PROGRESS -5"})):
            job = c.submit(bot_type, payload)
            rec = c.wait(job, timeout=15)
            check(rec["state"] == "completed", "%s: bad progress lines never fail a job" % bot_type, rec)
            bad = "PROGRESS 150" if bot_type == "prog" else "PROGRESS -5"
            lines = warn_lines(w, "job=%s" % job, "progress line")
            check(len(lines) == 1 and "'%s'" % bad in lines[0],
                  "%s: one WARN for the job, with its id and its first bad line %r" % (bot_type, bad),
                  lines)

        # 5. A preload that cannot be imported.
        rec = wlib.run_job(c, "heavy", {}, attempts=1, timeout=15)
        err = rec.get("error") or {}
        check(rec["state"] == "failed" and err.get("code") == "bot_init_failed"
              and "BOT_HEAVY_PRELOAD" in err.get("message", "")
              and "no_such_module_for_the_test" in err.get("message", ""),
              "a bad BOT_<TYPE>_PRELOAD -> bot_init_failed naming the variable and the module", err)

        # 6. Out of memory while loading, under BOT_HUNGRY_MEMORY_MB.
        for when in ("waiting for the process", "waiting for the next start"):
            rec = wlib.run_job(c, "hungry", {}, attempts=1, timeout=30)
            err = rec.get("error") or {}
            log("hungry (%s): %r" % (when, err))
            check(rec["state"] == "failed" and err.get("code") == "resource_limit",
                  "a bot out of memory at start -> resource_limit, not bot_init_failed (%s)" % when, rec)
            check("BOT_HUNGRY_MEMORY_MB=100" in err.get("message", "")
                  and "ran out of memory while loading" in err.get("message", ""),
                  "the message names the variable and its value", err)
        wait_until(lambda: wlib.metric(port, "bot_init_failures_total", bot_type="hungry") >= 1,
                   15, "bot_init_failures_total{bot_type=hungry} >= 1: it still counts as an init failure")

        # 7 and 3. main() returns its result; a relative path in the command.
        for bot_type in ("rel", "retpool"):
            rec = wlib.run_job(c, bot_type, {"n": 7})
            check(rec["state"] == "completed" and rec["result"].get("returned") is True
                  and rec["result"].get("n") == 7,
                  "%s: main()'s returned value is the result when it printed nothing" % bot_type, rec)
        check("'workers/bots/python/forkserver.py' read as %s/workers/bots/python/forkserver.py"
              % tree in w.output(), "the relative path of BOT_REL_CMD is logged as read, absolute")
        c.close()
        check(w.alive(), "worker still running")


if __name__ == "__main__":
    harness.main(main)

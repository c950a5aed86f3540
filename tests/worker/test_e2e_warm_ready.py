"""What a warm process writes on stderr before its ready line is its
start-up output, never the stderr of the first job it runs.

A real broker (no Redis), a real worker and a pool bot written by hand
(READYBOT below), run as pool processes and as a fork server (the worker's
side of both is the same: the bot answers each job itself; its ready line
carries its BOT_MODE, as a fork server's must).  Each job
starts a process of its own (BOT_<TYPE>_MIN_PROCS=0: the job waits for it;
BOT_<TYPE>_MAX_JOBS=1: retired after it), which writes a line on stderr
while it loads, then its ready line; the job writes a line of its own on
stderr and answers {"exit": 3} without an "error", so the job's message is
the tail of its stderr.  That tail must hold the job's line and never the
line of start-up.

- "stopped" types: the bot stops the worker (SIGSTOP to its parent, and
  waits until every thread of it is stopped) before it writes the two
  lines, and lets it go on after (SIGCONT).  The worker then finds both
  pipes readable in one poll, as a worker too slow to read stderr between
  the two writes does (seen under TSan in CI): stdout's handler runs first,
  takes the ready line and hands the waiting job over before the stderr
  handler runs.  Deterministic: on the old worker every job of these types
  had the start-up line in its message ("readybot: a line written while
  loading ... readybot: the job's own line");
- "natural" types: the same bot without the stop, the race as it comes
  (the old worker lost it now and then on an idle machine).
"""
import os

import harness
from harness import check, log
import wlib

PY = "/usr/bin/python3"
STARTUP = "readybot: a line written while loading"
OWN = "readybot: the job's own line"

READYBOT = """import json, os, signal, sys, time
worker = os.getppid()


def all_stopped(pid):
    # Every thread of the worker in the stopped state (T).
    tasks = os.listdir("/proc/%d/task" % pid)
    for tid in tasks:
        with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
            if f.read().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
                return False
    return bool(tasks)


stop = sys.argv[1:] == ["stop"]
if stop:
    with open("/proc/%d/comm" % worker) as f:
        comm = f.read().strip()
    if not comm.startswith("botmesh-worker"):
        sys.exit("readybot: my parent is %r, not the worker" % comm)
    os.kill(worker, signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while not all_stopped(worker):          # a bounded wait for the state
        if time.monotonic() > deadline:
            os.kill(worker, signal.SIGCONT)
            sys.exit("readybot: the worker did not stop within 10 s")
        time.sleep(0.001)
os.write(2, b"readybot: a line written while loading\\n")
# As a fork server says it is one: {"ready": true, "mode": "fork"}.
os.write(1, json.dumps({"ready": True, "mode": os.environ["BOT_MODE"]}).encode() + b"\\n")
if stop:
    os.kill(worker, signal.SIGCONT)
for line in sys.stdin:
    json.loads(line)
    os.write(2, b"readybot: the job's own line\\n")
    os.write(1, b'{"exit": 3}\\n')
"""

#  (type, mode, stopped, jobs)
TYPES = (("rps", "pool", True, 3), ("rfs", "fork", True, 3),
         ("rpn", "pool", False, 10), ("rfn", "fork", False, 10))


def main():
    bots = harness.tempdir("warm-ready-")
    bot = os.path.join(bots, "readybot.py")
    with open(bot, "w") as f:
        f.write(READYBOT)
    with harness.Stack("worker-e2e-warm-ready") as s:
        s.broker(redis=False)
        env = {"BOT_KILL_GRACE_MS": "500"}
        for bot_type, mode, stopped, _ in TYPES:
            kind = bot_type.upper()
            env.update({"BOT_%s_CMD" % kind: "%s %s%s" % (PY, bot, " stop" if stopped else ""), "BOT_%s_MODE" % kind: mode,
                        "BOT_%s_MIN_PROCS" % kind: "0", "BOT_%s_MAX_PROCS" % kind: "1",
                        "BOT_%s_MAX_JOBS" % kind: "1"})
        w = s.worker("--type", ",".join(t[0] for t in TYPES), "--concurrency", "1", env=env)
        s.wait_workers(1)
        c = s.client()
        mixed = {}
        for bot_type, mode, stopped, jobs in TYPES:
            how = "the worker stopped between the two writes" if stopped else "as it comes"
            log("=== %s mode, %s (%s)" % (mode, how, bot_type))
            mixed[bot_type] = []
            for n in range(jobs):
                rec = wlib.run_job(c, bot_type, {"n": n}, attempts=1)
                err = rec.get("error") or {}
                message = err.get("message", "")
                check(rec["state"] == "failed" and err.get("code") == "bot_failed"
                      and OWN in message,
                      "%s: job %d of %d fails with its own stderr line as its message"
                      % (bot_type, n + 1, jobs), rec)
                if STARTUP in message:
                    mixed[bot_type].append(message)
            log("%s: %d of %d jobs had the start-up line in their message"
                % (bot_type, len(mixed[bot_type]), jobs))
        for bot_type, mode, stopped, _ in TYPES:
            check(not mixed[bot_type], "%s (%s mode, %s): the line written before the ready line "
                  "is in no job's message" % (bot_type, mode, "stopped" if stopped else "natural"),
                  mixed[bot_type][:2])
        check("killed" not in w.output(), "no bot process was killed", w.output()[-2000:])
        check(w.alive(), "worker still running")
        c.close()


if __name__ == "__main__":
    harness.main(main)

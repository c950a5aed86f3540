"""How the worker reads a warm process's answer frames, end to end with the
real broker (no Redis), a real worker and real bot processes: each job gets
its own answer, and a process that breaks the framing fails the job it runs
once, with a clear error, and is replaced.

- a pool bot that writes two answer frames in one write while the next job
  waits for its process: the first ends the job it ran, the second kills
  the process (WARN "an answer frame while it runs no job: killed"); the
  waiting job runs on a new process and completes with its own answer,
  never with the second answer of the job before;
- an answer line longer than twice BOT_OUTPUT_MAX_BYTES plus 64 KiB (pool
  mode, and a fork server passing on its child's output): the job fails
  once with bad_output "the bot wrote more than N bytes on stdout", not
  as a lost attempt (worker_lost); the process is killed and replaced, and
  counted in bot_recycles_total{reason="output"}, not "killed";
- a pool process that exits with status 0 while it runs a job, without an
  answer: the job fails with bad_output saying it exited with status 0
  (not "status 1");
- a pool bot that answers a job, then once more in a later write, naming
  the job ("job": ID), while the next job runs on the process: the second
  answer is not taken for the next job (before: that job completed with
  the first job's second answer); the process is killed (WARN "an answer
  for job X while it runs job Y: killed") and the next job runs on the
  process that replaces it, on the same dispatch, with its own answer.
"""
import os
import sys

import harness
from harness import check, log, wait_until
import wlib

ROOT = harness.ROOT
PY = "/usr/bin/python3"
WARMBOT = os.path.join(ROOT, "tests/worker/bots/warmbot.py")
SERVER = os.path.join(ROOT, "workers/bots/python/forkserver.py")
CAP = 100000

# A pool bot of the protocol, written by hand.  Payload:
#   gate   a FIFO: block until the test writes to it
#   how    "twice": two answers in one write; "huge": a result of `bytes`
#          bytes on one line; "exit0": exit with status 0 unanswered;
#          "late": an answer naming its job, and once the FIFO `after`
#          is written to, a second one; else one answer
FRAMER = """import json, os, sys
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    frame = json.loads(line)
    payload = frame.get("payload") or {}
    if payload.get("gate"):
        with open(payload["gate"]) as gate:
            gate.read()
    how = payload.get("how")
    answer = {"for": frame["job"], "pid": os.getpid()}
    if how == "twice":
        one = json.dumps({"result": dict(answer, n=1)})
        two = json.dumps({"result": dict(answer, n=2)})
        os.write(1, (one + "\\n" + two + "\\n").encode())
    elif how == "huge":
        sys.stdout.write(json.dumps({"result": {"blob": "x" * payload["bytes"]}}) + "\\n")
        sys.stdout.flush()
    elif how == "exit0":
        sys.exit(0)
    elif how == "late":
        print(json.dumps({"result": dict(answer, n=1), "job": frame["job"]}), flush=True)
        with open(payload["after"]) as gate:
            gate.read()
        print(json.dumps({"result": dict(answer, n=2), "job": frame["job"]}), flush=True)
    else:
        print(json.dumps({"result": answer}), flush=True)
"""


def warn_lines(w, *words):
    return [line for line in w.output().splitlines()
            if "WARN" in line and all(word in line for word in words)]


def queued(w, job):
    return [line for line in w.output().splitlines()
            if "job=%s" % job in line
            and ("given to the frame pool" in line or "waits for a process of the frame pool" in line)]


def recycles(port, bot_type, reason):
    return wlib.metric(port, "bot_recycles_total", bot_type=bot_type, reason=reason)


def main():
    names = sys.argv[1:] or list(SCENARIOS)     # one or more may be named
    check(all(name in SCENARIOS for name in names), "scenarios among %s" % list(SCENARIOS), names)
    bots = harness.tempdir("warm-framing-")
    framer = os.path.join(bots, "framer.py")
    with open(framer, "w") as f:
        f.write(FRAMER)
    gate = os.path.join(bots, "gate")
    os.mkfifo(gate)
    with harness.Stack("worker-e2e-warm-framing") as s:
        s.broker(redis=False)
        env = {"BOT_FRAME_CMD": "%s %s" % (PY, framer), "BOT_FRAME_MODE": "pool",
               "BOT_FRAME_MIN_PROCS": "1", "BOT_FRAME_MAX_PROCS": "1",
               "BOT_FKBIG_CMD": "%s %s %s" % (PY, SERVER, WARMBOT), "BOT_FKBIG_MODE": "fork",
               "BOT_FKBIG_MIN_PROCS": "1", "BOT_FKBIG_MAX_PROCS": "1",
               "BOT_OUTPUT_MAX_BYTES": str(CAP), "BOT_KILL_GRACE_MS": "500",
               "WORKER_METRICS_PORT": "-1", "LOG_LEVEL": "debug"}
        w = s.worker("--type", "frame,fkbig", "--concurrency", "4", env=env)
        port = w.listening("metrics")
        s.wait_workers(1)
        wait_until(lambda: [l for l in w.output().splitlines()
                            if "frame pool process pid=" in l and l.endswith(" ready")],
                   15, "the frame pool process to be ready")
        c = s.client()
        for name in names:
            SCENARIOS[name](w, c, port, gate)
        c.close()
        check(w.alive(), "worker still running")
        log("ok")


def twice(w, c, port, gate):
    """Two answers in one write while the next job waits for the only
    process: the second answer is not the next job's."""
    first = c.submit("frame", {"how": "twice", "gate": gate})
    wait_until(lambda: queued(w, first), 10, "the first job to reach the pool")
    second = c.submit("frame", {})
    wait_until(lambda: queued(w, second), 10, "the second job to wait for the pool's only process")
    with open(gate, "w") as g:      # the bot answers twice, in one write
        g.write("go")
    one, two = c.wait(first, timeout=15), c.wait(second, timeout=15)
    log("first: %r" % one.get("result"))
    log("second: %r %r" % (two.get("result"), two.get("error")))
    check(one["state"] == "completed" and one["result"].get("for") == first
          and one["result"].get("n") == 1,
          "the first job completed with its first answer (n=1)", one)
    check(two["state"] == "completed" and two["result"].get("for") == second,
          "the waiting job completed with its own answer, not the first job's second", two)
    check(two["result"].get("pid") != one["result"].get("pid"),
          "it ran on a new process (the one that answered twice was killed)", one, two)
    check(warn_lines(w, "frame process pid=%d" % one["result"]["pid"],
                     "an answer frame while it runs no job: killed"),
          "a WARN 'an answer frame while it runs no job: killed' for the old process")
    wait_until(lambda: recycles(port, "frame", "killed") >= 1, 10,
               "bot_recycles_total{bot_type=frame,reason=killed} to count it")


def overlong(w, c, port, gate):
    """An answer line past twice the cap plus 64 KiB: bad_output, once."""
    killed = recycles(port, "frame", "killed")
    for bot_type, payload in (("frame", {"how": "huge", "bytes": 4 * CAP}),
                              ("fkbig", {"bigBytes": 4 * CAP})):
        before = wlib.run_job(c, bot_type, {})
        check(before["state"] == "completed", "%s: a job completes" % bot_type, before)
        rec = wlib.run_job(c, bot_type, payload, timeout=30)
        err = rec.get("error") or {}
        log("%s huge: attempts=%s %r" % (bot_type, rec.get("attempts"), err))
        check(rec["state"] == "failed" and err.get("code") == "bad_output"
              and "more than %d bytes on stdout" % CAP in err.get("message", ""),
              "%s: a line over twice the cap fails with bad_output, not worker_lost" % bot_type, rec)
        check(rec.get("attempts") == 1, "%s: it ran once" % bot_type, rec)
        check(warn_lines(w, "%s process" % bot_type, "a frame longer than the output cap", "killed"),
              "%s: a WARN says the process wrote a frame past the cap and was killed" % bot_type)
        wait_until(lambda: recycles(port, bot_type, "output") >= 1, 10,
                   "bot_recycles_total{bot_type=%s,reason=output} to count it" % bot_type)
        after = wlib.run_job(c, bot_type, {})
        check(after["state"] == "completed", "%s: the next job completes" % bot_type, after)
    check(recycles(port, "frame", "killed") == killed,
          "the frame process past the cap is not counted as killed", killed)


def exit0(w, c, port, gate):
    """Exit 0 in the middle of a job: said as it happened."""
    rec = wlib.run_job(c, "frame", {"how": "exit0"})
    err = rec.get("error") or {}
    log("exit0: %r" % err)
    check(rec["state"] == "failed" and err.get("code") == "bad_output"
          and "exited with status 0" in err.get("message", "")
          and "status 1" not in err.get("message", ""),
          "a pool process that exits 0 unanswered: bad_output saying status 0", rec)
    after = wlib.run_job(c, "frame", {})
    check(after["state"] == "completed", "the next job completes on a new process", after)


def late(w, c, port, gate):
    """A second answer written later, naming its job, while the next job
    runs on the process: not that job's answer."""
    killed = recycles(port, "frame", "killed")
    first = c.submit("frame", {"how": "late", "after": gate})
    one = c.wait(first, timeout=15)
    check(one["state"] == "completed" and one["result"].get("for") == first
          and one["result"].get("n") == 1, "the first job completed with its first answer (n=1)", one)
    second = c.submit("frame", {})
    wait_until(lambda: queued(w, second), 10, "the second job to reach the pool's only process, idle")
    with open(gate, "w") as g:      # the first job's second answer, naming it
        g.write("go")
    two = c.wait(second, timeout=15)
    log("second: %r %r" % (two.get("result"), two.get("error")))
    check(two["state"] == "completed" and two["result"].get("for") == second,
          "the second job completed with its own answer, not the first job's second", two)
    check(two["result"].get("pid") != one["result"].get("pid"),
          "it ran on a new process (the one that answered the first job again was killed)", one, two)
    check(two.get("attempts") == 1, "on the same dispatch: not a lost attempt", two)
    check(warn_lines(w, "frame process pid=%d" % one["result"]["pid"],
                     "an answer for job %s while it runs job %s: killed" % (first, second)),
          "a WARN 'an answer for job <first> while it runs job <second>: killed'")
    check([l for l in w.output().splitlines() if "job=%s" % second in l
           and "the job goes to the process that replaces it" in l],
          "the second job's log says it goes to the process that replaces the killed one")
    wait_until(lambda: recycles(port, "frame", "killed") >= killed + 1, 10,
               "bot_recycles_total{bot_type=frame,reason=killed} to count it")


SCENARIOS = {"twice": twice, "overlong": overlong, "exit0": exit0, "late": late}

if __name__ == "__main__":
    harness.main(main)

"""WORKER_PREFETCH: a worker whose types all run warm takes that many jobs
past what its processes run at once; they wait in the worker, and a
process that ends a job starts the next at once.  One scenario a run:

  timeout  one pool process, WORKER_PREFETCH=1: the broker gives the worker
           credit 2; job A (2.5 s), then job B (timeoutMs 1000, no work).
           B is dispatched to the worker while A runs (prefetched), and
           completes: its timeout runs from when the process takes it, on
           the worker and at the broker (PROGRESS {started: true}), and its
           record's startedAt is not before A's 2.5 s run ended.
  cancel   CANCEL of the waiting B while A runs: B ends cancelled, A
           completes, and the pool process was not replaced (a later job
           runs on A's pid).
  sigterm  SIGTERM of the worker while B waits: B goes back to the broker
           at once (queued while A still runs in the grace period), A
           completes, and B runs once, on a second worker, without an
           attempt counted for the release.
  restart  the broker restarts while B waits, its recovery held back (Redis
           refuses HGETALL) until the worker has connected again: the
           worker's READY lists A and B and says again that B waits, before
           the recovery brings them back.  Once it does, both are adopted,
           and B, still waiting behind A, completes: the broker keeps its
           word that B waits (no timeout until it begins).  Before, the
           waiting was answered NACK not_owner and lost: the adoption armed
           B's 1000 ms timeout and the broker failed B with timeout while A
           still ran.
  lost     the worker is killed (SIGKILL) while A runs and B waits: both
           are queued again and complete on a second worker, A on its
           second attempt (its run was lost), B on its first: the dispatch
           on which it waited and never began is not counted (a job of
           maxAttempts 1 is not failed worker_lost without ever running).
           Before, B's attempts were 2.
  afterlog a pool bot that writes a line on stderr 20 ms after its answer
           (then sleeps 50 ms before it reads on): A, then B prefetched
           behind it, handed to the process at A's answer.  B's log is B's
           own lines, not A's after-answer line.
  diesafter a pool bot that answers A, then (20 ms later, before it reads
           B's frame, already in its stdin) writes "boom: ..." on stderr
           and exits 1: B fails, and its error message is that line.
  credit   BOT_ONE_MAX_PROCS=1, WORKER_PREFETCH=2 and no --concurrency (10):
           credit 3, one INFO line that says so and the cap of 10, no WARN
           that a job past the process "stays queued at the broker".
  waiting  while B waits (announced to the broker): B's record has no
           startedAt, and STATS count it prefetched (1) within running (2);
           B cancelled while it waits ends without a startedAt.
  bad      WORKER_PREFETCH=abc, WORKER_PREFETCH=1001 and --prefetch -1: the
           worker exits 2 and the message names the variable or the flag.

A real broker (no Redis), real workers and a pool bot written by hand that
sleeps the payload's "ms" and appends each job id it runs to a file.

Before, the worker ignored WORKER_PREFETCH: its credit stayed 1, so B stayed
queued at the broker while A ran (timeout, cancel, sigterm failed at "B is
dispatched to the worker while A runs"), and a bad value was not refused
(the worker started and ran: bad failed at "exits 2").  Before, B's log
began with A's after-answer line (afterlog failed at "B's log is its own"),
B's error of the bot that died before it read B's frame had no "boom"
(diesafter failed at "B's error message is the bot's last words"); the
worker with WORKER_PREFETCH=2 said both the WARN and credit 3 (credit
failed at "no WARN"), and the cancel of the waiting B was logged as
"stopping the bot" and "failed in N ms" (cancel failed at "the worker logs
B dropped before it started").  Before, a waiting B's record had the
startedAt of its dispatch, kept when it was cancelled, and STATS had no
prefetched (waiting failed at "no startedAt while it waits").
"""
import os
import signal
import subprocess
import sys

import harness
from harness import CANCEL, check, log, wait_until
import wlib

SLEEPBOT = """import json, os, sys, time
sys.stdout.write('{"ready": true}\\n')
sys.stdout.flush()
for line in sys.stdin:
    frame = json.loads(line)
    with open(sys.argv[1], "a") as ran:
        ran.write(frame["job"] + "\\n")
    time.sleep(frame["payload"].get("ms", 0) / 1000.0)
    sys.stdout.write(json.dumps({"result": {"pid": os.getpid(),
                                            "deadline": frame["env"]["BOT_DEADLINE"]},
                                 "job": frame["job"]}) + "\\n")
    sys.stdout.flush()
"""


#  Its lines on stderr: "own <job>" before the answer, "after <job>" 20 ms
#  after it (the worker has handed it the next job by then); it reads the
#  next frame 50 ms later.  If the job's payload says "die", it writes
#  "boom: ..." instead and exits 1, before it reads the next frame.
AFTERBOT = """import json, sys, time
sys.stdout.write('{"ready": true}\\n')
sys.stdout.flush()
for line in sys.stdin:
    frame = json.loads(line)
    with open(sys.argv[1], "a") as ran:
        ran.write(frame["job"] + "\\n")
    sys.stderr.write("own %s\\n" % frame["job"])
    sys.stderr.flush()
    time.sleep(frame["payload"].get("ms", 0) / 1000.0)
    sys.stdout.write(json.dumps({"result": {}, "job": frame["job"]}) + "\\n")
    sys.stdout.flush()
    time.sleep(0.02)
    if frame["payload"].get("die"):
        sys.stderr.write("boom: cleanup after %s failed\\n" % frame["job"])
        sys.stderr.flush()
        sys.exit(1)
    sys.stderr.write("after %s\\n" % frame["job"])
    sys.stderr.flush()
    time.sleep(0.05)
"""


def bot_env(tmp, source=SLEEPBOT):
    bot = os.path.join(tmp, "sleepbot.py")
    with open(bot, "w") as f:
        f.write(source)
    ran = os.path.join(tmp, "ran.txt")
    return {"BOT_ONE_CMD": "%s %s %s" % (wlib.PY, bot, ran), "BOT_ONE_MODE": "pool",
            "BOT_ONE_MIN_PROCS": "1", "BOT_ONE_MAX_PROCS": "1"}, ran


def ran_ids(ran):
    try:
        with open(ran) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def start(s, tmp, name="worker-prefetch", *args, env_extra=None, source=SLEEPBOT,
          concurrency=("--concurrency", "1")):
    env, ran = bot_env(tmp, source)
    env["WORKER_PREFETCH"] = "1"
    env.update(env_extra or {})
    w = s.worker("--type", "one", *concurrency, "--name", name, *args, name=name, env=env)
    s.wait_workers(1, "one")
    wait_until(lambda: "one pool process pid=" in w.output() and " ready" in w.output(), 10,
               "the pool process to be ready")
    return w, ran


def prefetched(c, ran, first, a_ms=2500, a_payload=None):
    """A (2.5 s, or a_ms) runs, then B waits in the worker: returns (A, B)."""
    workers = [x for x in c.stats()["workers"] if "one" in x["types"]]
    check(len(workers) == 1 and workers[0]["credit"] == 2,
          "the broker gives the worker credit 2 (1 process + WORKER_PREFETCH=1)", workers)
    a = c.submit("one", dict(a_payload or {}, ms=a_ms), attempts=1, timeoutMs=a_ms + 10000)
    wait_until(lambda: a in ran_ids(ran), 10, "A to run on the pool process")
    b = c.submit("one", {"ms": 0}, attempts=1, timeoutMs=1000)
    rec = wait_until(lambda: (lambda r: r if r["state"] == "running" else None)(c.status(b)),
                     2.0, "B to be dispatched to the worker while A runs (prefetched)")
    check(c.status(a)["state"] == "running", "A still runs when B is dispatched", c.status(a))
    check(rec.get("worker") == first, "B is dispatched to the worker of A", rec)
    return a, b


def scenario_timeout(s, c, tmp):
    w, ran = start(s, tmp)
    a, b = prefetched(c, ran, "worker-prefetch")
    rec_b = c.wait(b, timeout=15)
    rec_a = c.wait(a, timeout=15)
    check(rec_a["state"] == "completed", "A completes", rec_a)
    check(rec_b["state"] == "completed",
          "B completes: its 1000 ms timeout runs from when the process takes it, not from its "
          "dispatch while A ran 2.5 s", rec_b, w.output()[-2000:])
    #  Not against A's finishedAt: that is the broker's clock when A's DONE
    #  came, B's startedAt may be the worker's (a DONE that came before the
    #  broker took B's start), a few ms earlier on a loaded machine.
    check(rec_b["startedAt"] >= rec_a["startedAt"] + 2500,
          "B's startedAt (%d) is not before A's 2.5 s run ended (A began at %d)"
          % (rec_b["startedAt"], rec_a["startedAt"]), rec_a, rec_b)
    check(int(rec_b["result"]["deadline"]) >= rec_a["finishedAt"] + 1000 - 50,
          "B's BOT_DEADLINE counts from when it began (>= A's end + 1000 ms)", rec_b, rec_a)
    check(ran_ids(ran) == [a, b], "the bot ran A then B, once each", ran_ids(ran))
    check("began on a one process after waiting" in w.output(),
          "the worker logs that B began after waiting", w.output()[-2000:])


def scenario_cancel(s, c, tmp):
    w, ran = start(s, tmp)
    a, b = prefetched(c, ran, "worker-prefetch")
    cmd, reply = c.request(CANCEL, {"jobId": b})
    rec_b = c.wait(b, timeout=5)
    check(rec_b["state"] == "cancelled", "the waiting B ends cancelled", rec_b)
    check(c.status(a)["state"] == "running", "A still runs after B's cancel", c.status(a))
    rec_a = c.wait(a, timeout=15)
    check(rec_a["state"] == "completed", "A completes", rec_a)
    later = c.submit("one", {"ms": 0}, attempts=1)
    rec = c.wait(later, timeout=15)
    check(rec["state"] == "completed" and rec["result"]["pid"] == rec_a["result"]["pid"],
          "a later job runs on A's process: the cancel of the waiting B killed no process",
          rec, rec_a)
    check(b not in ran_ids(ran), "the bot never ran B", ran_ids(ran))
    lines = [l for l in w.output().splitlines() if "job=" + b in l]
    check(any("dropped before it started" in l for l in lines)
          and not any("stopping the bot" in l or "failed in" in l for l in lines),
          "the worker logs B dropped before it started, not a bot stopped or failed", lines)


def scenario_waiting(s, c, tmp):
    w, ran = start(s, tmp, env_extra={"LOG_LEVEL": "debug"})
    a, b = prefetched(c, ran, "worker-prefetch", a_ms=10000)
    wait_until(lambda: "waits in this worker for a one process" in w.output(), 2.0,
               "the worker to say B waits")
    rec = wait_until(lambda: (lambda r: r if "startedAt" not in r else None)(c.status(b)), 2.0,
                     "B's record to have no startedAt while it waits")
    check(rec["state"] == "running", "B counts running while it waits", rec)
    check("startedAt" in c.status(a), "A, which runs, has its startedAt", c.status(a))
    one = c.stats()["types"]["one"]
    check(one.get("prefetched") == 1 and one.get("running") == 2,
          "STATS: prefetched 1 within running 2", one)
    c.request(CANCEL, {"jobId": b})
    rec_b = c.wait(b, timeout=5)
    check(rec_b["state"] == "cancelled" and "startedAt" not in rec_b,
          "B, cancelled while it waited, never started: no startedAt", rec_b)
    one = wait_until(lambda: (lambda t: t if t.get("prefetched") == 0 else None)(
        c.stats()["types"]["one"]), 2.0, "STATS prefetched 0 once B is cancelled")
    c.request(CANCEL, {"jobId": a})
    c.wait(a, timeout=15)


def scenario_afterlog(s, c, tmp):
    w, ran = start(s, tmp, source=AFTERBOT)
    a, b = prefetched(c, ran, "worker-prefetch", a_ms=500)
    rec_a = c.wait(a, timeout=15)
    rec_b = c.wait(b, timeout=15)
    check(rec_a["state"] == "completed" and rec_b["state"] == "completed", "A and B complete",
          rec_a, rec_b)
    #  A's after-answer line may be A's (read with its answer) or nobody's.
    check((rec_b.get("log") or "").split("\n")[0] == "own " + b
          and "after " + a not in rec_b.get("log"),
          "B's log is its own, not A's after-answer line (%r)" % rec_b.get("log"), rec_b)
    check((rec_a.get("log") or "").split("\n")[0] == "own " + a, "A's log begins with its line",
          rec_a)


def scenario_diesafter(s, c, tmp):
    w, ran = start(s, tmp, source=AFTERBOT)
    a, b = prefetched(c, ran, "worker-prefetch", a_ms=500, a_payload={"die": True})
    rec_a = c.wait(a, timeout=15)
    rec_b = c.wait(b, timeout=15)
    check(rec_a["state"] == "completed", "A completes", rec_a)
    check((rec_a.get("log") or "").split("\n")[0] == "own " + a, "A's log begins with its line",
          rec_a)
    check(b not in ran_ids(ran), "B never ran: the bot died before it read B's frame", ran_ids(ran))
    check(rec_b["state"] == "failed", "B fails (attempts 1)", rec_b)
    message = (rec_b.get("error") or {}).get("message") or ""
    check("boom: cleanup after " + a + " failed" in message,
          "B's error message is the bot's last words, which say why it died (%r)" % message, rec_b)
    check("own " + a not in (rec_b.get("log") or ""), "B's log has none of A's lines", rec_b)
    line = wait_until(lambda: next((l for l in w.output().splitlines()
                                    if "job=%s failed in" % b in l), None), 10,
                      "the worker's log line of B's failure")
    check("bytes of the bot's stderr, in the job's error]" in line and "boom" not in w.output(),
          "it counts the bot's last words, never shows them (a bot's stderr may be secret)", line)


def scenario_credit(s, c, tmp):
    w, ran = start(s, tmp, env_extra={"WORKER_PREFETCH": "2"}, concurrency=())
    workers = [x for x in c.stats()["workers"] if "one" in x["types"]]
    check(len(workers) == 1 and workers[0]["credit"] == 3,
          "the broker gives the worker credit 3 (1 process + WORKER_PREFETCH=2)", workers)
    out = w.output()
    warns = [l for l in out.splitlines() if " WARN " in l and "credit" in l]
    check(not warns, "no WARN that a job past the process stays queued at the broker", warns)
    infos = [l for l in out.splitlines() if " INFO " in l and "credit 3:" in l]
    check(len(infos) == 1 and "credit of 10" in infos[0] and "WORKER_PREFETCH=2" in infos[0],
          "one INFO line says credit 3, the cap of the credit of 10 and WORKER_PREFETCH=2", infos,
          out[-2000:])


def scenario_sigterm(s, c, tmp):
    w, ran = start(s, tmp, "worker-prefetch", "--grace-ms", "20000")
    a, b = prefetched(c, ran, "worker-prefetch")
    w.signal(signal.SIGTERM)
    rec = wait_until(lambda: (lambda r: r if r["state"] == "queued" else None)(c.status(b)),
                     2.0, "B to go back to the broker's queue at SIGTERM")
    check(c.status(a)["state"] == "running", "A still runs (grace period) when B is back", rec)
    check("released back to the broker" in w.output(), "the worker logs B's release",
          w.output()[-2000:])
    rec_a = c.wait(a, timeout=15)
    check(rec_a["state"] == "completed", "A completes within the grace period", rec_a)
    wait_until(lambda: not w.alive(), 15, "the first worker to exit")
    env, _ = bot_env(tmp)
    s.worker("--type", "one", "--concurrency", "1", "--name", "worker-second", name="worker-second",
             env=env)
    rec_b = c.wait(b, timeout=15)
    check(rec_b["state"] == "completed" and rec_b.get("worker") == "worker-second",
          "B completes on the second worker", rec_b)
    check(rec_b["attempts"] == 1, "the release counted no attempt", rec_b)
    check(ran_ids(ran).count(b) == 1, "B ran once", ran_ids(ran))


def scenario_restart(s, c, tmp):
    hb = {"HEARTBEAT_INTERVAL_MS": "250"}
    w, ran = start(s, tmp, "worker-prefetch", env_extra=dict(hb, LOG_LEVEL="debug"))
    a, b = prefetched(c, ran, "worker-prefetch", a_ms=10000)
    wait_until(lambda: "waits in this worker for a one process" in w.output(), 2.0,
               "the worker to say B waits")
    [p for p in s.procs if p.name == "broker"][0].stop()
    check(s.redis_cli("ACL", "SETUSER", "default", "-hgetall") == "OK"
          and s.redis_cli("ACL", "LOG", "RESET") == "OK", "Redis refuses HGETALL (NOPERM)")
    b2 = s.broker(name="broker2", env=hb, wait_recovered=False)     # its recovery cannot end yet
    wait_until(lambda: "runs 2 job(s) not recovered yet" in b2.output(), 5,
               "the worker to list A and B running to the recovering broker")
    check(s.redis_cli("ACL", "SETUSER", "default", "+hgetall") == "OK", "HGETALL allowed again")
    c2 = s.client()
    wait_until(lambda: c2.request(harness.PING)[1].get("recovering") is False, 10,
               "the recovery to end")
    wait_until(lambda: ("job=%s adopted" % b) in b2.output(), 5, "B to be adopted")
    check(c2.status(a)["state"] == "running", "A still runs after the adoption", c2.status(a))
    rec_b = c2.wait(b, timeout=20)
    check(rec_b["state"] == "completed",
          "B, adopted while it waited behind A, completes: its timeout runs from when the "
          "process takes it", rec_b, b2.output()[-2000:])
    rec_a = c2.wait(a, timeout=20)
    check(rec_a["state"] == "completed", "A completes", rec_a)
    check(ran_ids(ran) == [a, b], "the bot ran A then B, once each", ran_ids(ran))
    c2.close()


def scenario_lost(s, c, tmp):
    hb = {"HEARTBEAT_INTERVAL_MS": "250", "LOG_LEVEL": "debug"}
    w, ran = start(s, tmp, "worker-prefetch", env_extra=hb)
    a, b = prefetched(c, ran, "worker-prefetch", a_ms=3000)
    wait_until(lambda: "waits in this worker for a one process" in w.output(), 2.0,
               "the worker to say B waits")
    w.signal(signal.SIGKILL)
    for job, what in ((a, "A"), (b, "B")):
        wait_until(lambda: c.status(job)["state"] == "queued", 10,
                   "%s to be queued again once the killed worker is declared lost" % what)
    env, _ = bot_env(tmp)
    s.worker("--type", "one", "--concurrency", "1", "--name", "worker-second", name="worker-second",
             env=env)
    rec_a = c.wait(a, timeout=20)
    rec_b = c.wait(b, timeout=20)
    check(rec_a["state"] == "completed" and rec_a["attempts"] == 2,
          "A completes on its second dispatch: its run lost with the worker counted", rec_a)
    check(rec_b["state"] == "completed" and rec_b.get("worker") == "worker-second",
          "B completes on the second worker", rec_b)
    check(rec_b["attempts"] == 1,
          "B's dispatch to the killed worker, where it waited and never began, is not counted",
          rec_b)
    check(ran_ids(ran).count(b) == 1, "B ran once", ran_ids(ran))


def scenario_bad(s, c, tmp):
    worker = s.bin("botmesh-worker")
    cases = [({"WORKER_PREFETCH": "abc"}, [], "WORKER_PREFETCH"),
             ({"WORKER_PREFETCH": "1001"}, [], "WORKER_PREFETCH"),
             ({}, ["--prefetch", "-1"], "--prefetch")]
    for extra, args, named in cases:
        env = dict(os.environ, BROKER_ENDPOINT=s.endpoint, BOT_ONE_CMD="/bin/true",
                   BOT_ONE_MODE="pool", **extra)
        try:
            p = subprocess.run([worker, "--type", "one"] + args, env=env, capture_output=True,
                               text=True, timeout=10)
        except subprocess.TimeoutExpired:
            check(False, "the worker with %r %r exits 2 (it ran on instead)" % (extra, args))
        out = p.stdout + p.stderr
        log("%r %r -> %d: %s" % (extra, args, p.returncode, out.strip()[-300:]))
        check(p.returncode == 2, "the worker with %r %r exits 2" % (extra, args), p.returncode, out)
        check(named in out, "its message names %s" % named, out)


def main():
    scenario = sys.argv[1]
    tmp = harness.tempdir("prefetch-")
    with harness.Stack("worker-e2e-prefetch-" + scenario) as s:
        if scenario == "restart":
            s.redis()
            s.broker(env={"HEARTBEAT_INTERVAL_MS": "250"})
        elif scenario == "lost":
            s.broker(redis=False, env={"HEARTBEAT_INTERVAL_MS": "250"})
        else:
            s.broker(redis=False)
        c = s.client()
        globals()["scenario_" + scenario](s, c, tmp)
        c.close()


if __name__ == "__main__":
    harness.main(main)

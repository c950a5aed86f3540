"""Retries of failed runs and delayed jobs, against a real broker and Redis.

A fake worker (fakeworker.py) fails runs on command, so that every wait the
broker makes between two runs is measured from the worker's side: a run
never comes back before its backoff, and not much after it.  Then delayed
SUBMITs (delayMs, runAt) and their bounds, and a delayed job across a kill
-9 of the broker.
"""
import time
import harness as h
from fakeworker import FakeWorker

#  How late a run may come after its due time on a loaded 2-core machine.
#  The broker's own target is 50 ms; the test leaves room for the host.
LATE_MS = 400


def fail(w, job, code="bot_failed", message="boom", exit_code=None):
    error = {"code": code, "message": message}
    if exit_code is not None:
        error["exitCode"] = exit_code
    w.done(job["jobId"], ok=False, error=error)


def next_job(w, timeout=10):
    job = w.recv_job(timeout)
    h.check(job is not None, "the worker receives a JOB within %d s" % timeout)
    return job, time.monotonic()


def test_backoff(s, c, w):
    # Exponential from 300 ms: waits of 300 ms then 600 ms; three runs.
    jid = c.submit("python", {"n": 1}, attempts=3, backoff={"type": "exponential", "delayMs": 300})
    job, t1 = next_job(w)
    h.check(job["jobId"] == jid and job["attempt"] == 1, "run 1 dispatched", job)
    fail(w, job, message="first")
    h.wait_until(lambda: c.status(jid)["state"] == "delayed", 5, "the job to be delayed after run 1")
    rec = c.status(jid)
    h.check(len(rec["attemptErrors"]) == 1 and rec["attemptErrors"][0]["message"] == "first"
            and rec["attemptErrors"][0]["attempt"] == 1, "run 1's error recorded", rec)
    h.check(rec["runAt"] >= rec["createdAt"], "a delayed record shows its due time", rec)
    job, t2 = next_job(w)
    gap = (t2 - t1) * 1000
    h.log("exponential: run 2 came %.0f ms after run 1 was dispatched" % gap)
    h.check(gap >= 300 and gap <= 300 + LATE_MS, "run 2 after its 300 ms backoff", gap)
    fail(w, job, message="second")
    job, t3 = next_job(w)
    gap = (t3 - t2) * 1000
    h.log("exponential: run 3 came %.0f ms after run 2" % gap)
    h.check(gap >= 600 and gap <= 600 + LATE_MS, "run 3 after its 600 ms backoff (doubled)", gap)
    h.check(job["attempt"] == 3, "the JOB says run 3", job)
    fail(w, job, message="third")
    rec = c.wait(jid)
    h.check(rec["state"] == "failed" and rec["error"]["message"] == "third", "failed after 3 runs", rec)
    h.check([e["message"] for e in rec["attemptErrors"]] == ["first", "second", "third"],
            "attemptErrors lists every run's error, in order", rec["attemptErrors"])
    h.check(w.recv(0.5) is None, "no fourth run")

    # Fixed: the same wait each time; success on run 2 ends it completed.
    jid = c.submit("python", {"n": 2}, attempts=5, backoff={"type": "fixed", "delayMs": 250})
    job, t1 = next_job(w)
    fail(w, job)
    job, t2 = next_job(w)
    gap = (t2 - t1) * 1000
    h.check(gap >= 250 and gap <= 250 + LATE_MS, "fixed backoff of 250 ms", gap)
    w.done(job["jobId"], result={"ok": 1})
    rec = c.wait(jid)
    h.check(rec["state"] == "completed" and rec["attempts"] == 2 and len(rec["attemptErrors"]) == 1,
            "completed on run 2, run 1's error kept", rec)
    h.check("error" not in rec, "a completed job has no error", rec)


def test_permanent(s, c, w):
    # Exit status 78 and error code permanent_failure: no retry.
    for how in ({"exit_code": 78}, {"code": "permanent_failure"}):
        jid = c.submit("python", {}, attempts=5, backoff={"type": "fixed", "delayMs": 0})
        job, _ = next_job(w)
        fail(w, job, **how)
        rec = c.wait(jid)
        h.check(rec["state"] == "failed" and rec["attempts"] == 1 and len(rec["attemptErrors"]) == 1,
                "a permanent failure (%r) is not retried" % how, rec)
    h.check(w.recv(0.3) is None, "no run after a permanent failure")


def test_type_defaults(s, c, wn):
    # RETRY_NODE_ATTEMPTS=2, RETRY_NODE_BACKOFF_MS=100 (see the broker's env).
    jid = c.submit("node", {})
    job, t1 = next_job(wn)
    fail(wn, job)
    job, t2 = next_job(wn)
    h.check((t2 - t1) * 1000 >= 100, "the type's backoff of 100 ms", t2 - t1)
    fail(wn, job)
    rec = c.wait(jid)
    h.check(rec["state"] == "failed" and rec["attempts"] == 2 and rec["runAttempts"] == 2,
            "the type's 2 runs", rec)
    stats = c.stats()["types"]["node"]
    h.check(stats["retries"] == 1, "STATS counts the retry", stats)


def test_delayed(s, c, w):
    # delayMs: delayed, never dispatched before its time.
    t0 = time.time()
    jid = c.submit("python", {"d": 1}, delayMs=700)
    rec = c.status(jid)
    h.check(rec["state"] == "delayed", "a delayed SUBMIT is delayed", rec)
    h.check(c.stats()["types"]["python"]["delayed"] >= 1, "STATS shows it delayed")
    job, _ = next_job(w)
    now = time.time()
    late = (now - rec["runAt"] / 1000.0) * 1000
    h.log("delayMs 700: dispatched %.0f ms after submission, %.0f ms after its runAt"
          % ((now - t0) * 1000, late))
    h.check(job["jobId"] == jid and now * 1000 >= rec["runAt"], "never before its due time")
    h.check(late <= LATE_MS, "dispatched soon after its due time", late)
    w.done(jid, result=1)
    c.wait(jid)

    # runAt: ms since the epoch.
    run_at = int(time.time() * 1000) + 500
    jid = c.submit("python", {"d": 2}, runAt=run_at)
    job, _ = next_job(w)
    h.check(time.time() * 1000 >= run_at, "runAt honoured")
    w.done(jid, result=1)

    # Bounds: a runAt long past, both options, a delay above a year.
    for body, field in (({"runAt": int(time.time() * 1000) - 3600000}, "runAt"),
                        ({"runAt": 1, "delayMs": 1}, "runAt"),
                        ({"delayMs": 366 * 86400000}, "delayMs"),
                        ({"backoff": {"type": "linear", "delayMs": 5}}, "backoff"),
                        ({"attempts": 0}, "attempts")):
        cmd, r = c.try_submit("python", {}, **body)
        h.check(cmd == h.REJECTED and r["code"] == "bad_request" and field in r["message"],
                "REJECTED bad_request naming %s for %r" % (field, body), r)

    # CANCEL of a delayed job: it never runs.
    jid = c.submit("python", {}, delayMs=300)
    cmd, r = c.request(h.CANCEL, {"jobId": jid})
    h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "a delayed job can be cancelled", r)
    h.check(w.recv(0.6) is None, "a cancelled delayed job is not dispatched")


def test_python_client(s, w):
    """The Python client passes attempts, backoff, delay_ms and run_at."""
    import os
    import sys
    sys.path.insert(0, os.path.join(h.ROOT, "clients", "python"))
    import botmesh
    pc = botmesh.Client(s.endpoint, timeout=5)
    try:
        jid = pc.submit("python", {"py": 1}, attempts=4, backoff={"type": "fixed", "delayMs": 50},
                        delay_ms=200)
        rec = pc.status(jid)
        h.check(rec["state"] == "delayed" and rec["runAttempts"] == 4
                and rec["backoff"]["type"] == "fixed" and rec["backoff"]["delayMs"] == 50,
                "python client: delay_ms, attempts and backoff reach the broker", rec)
        job, _ = next_job(w)
        h.check(job["jobId"] == jid, "the delayed job runs")
        w.done(jid, result=1)
        run_at = int(time.time() * 1000) + 100
        jid = pc.submit("python", {"py": 2}, run_at=run_at)
        h.check(pc.status(jid)["state"] in ("delayed", "queued", "running"), "python client: run_at")
        job, _ = next_job(w)
        h.check(time.time() * 1000 >= run_at, "run_at honoured")
        w.done(jid, result=1)
    finally:
        pc.close()


def test_restart(s, c, env):
    # A delayed job and a job waiting out its backoff survive kill -9.
    w = FakeWorker(s.endpoint, "fw-r", ["python"], 1)
    # Only this worker: a JOB must not go to one of the earlier, closed ones.
    h.wait_until(lambda: [x["name"] for x in c.stats()["workers"]] == ["fw-r"], 5,
                 "fw-r to be the only worker registered")
    delayed = c.submit("python", {"r": 1}, delayMs=1500)
    retried = c.submit("python", {"r": 2}, attempts=2, backoff={"type": "fixed", "delayMs": 1500})
    job, _ = next_job(w)
    fail(w, job, message="before the crash")
    h.wait_until(lambda: c.status(retried)["state"] == "delayed", 5, "the retry to wait")
    due = {jid: c.status(jid)["runAt"] for jid in (delayed, retried)}
    w.close()
    broker = [p for p in s.procs if p.name == "broker"][-1]
    broker.kill()
    s.broker(env=env)
    c2 = s.client()
    for jid in due:
        rec = c2.status(jid)
        h.check(rec and rec["state"] == "delayed" and rec["runAt"] == due[jid],
                "job %s is still delayed, due at the same time, after kill -9" % jid, rec)
    h.check(c2.status(retried)["attemptErrors"][0]["message"] == "before the crash",
            "its attempt error survived")
    w = FakeWorker(s.endpoint, "fw-r2", ["python"], 2)
    got = {}
    for _ in range(2):
        job, _ = next_job(w, timeout=10)
        got[job["jobId"]] = time.time() * 1000
        w.done(job["jobId"], result=1)
    for jid in due:
        h.check(jid in got and got[jid] >= due[jid], "job %s ran, not before its due time" % jid, got)
    h.check(c2.wait(retried)["state"] == "completed", "the retried job completed on run 2")
    w.close()
    c2.close()


def test():
    env = {"RETRY_NODE_ATTEMPTS": "2", "RETRY_NODE_BACKOFF_MS": "100", "HEARTBEAT_LIVENESS": "20"}
    with h.Stack("retries") as s:
        s.redis()
        s.broker(env=env)
        c = s.client()
        w = FakeWorker(s.endpoint, "fw-py", ["python"], 1)
        wn = FakeWorker(s.endpoint, "fw-node", ["node"], 1)
        h.wait_until(lambda: len(c.stats()["workers"]) == 2, 5, "both workers to register")
        test_backoff(s, c, w)
        test_permanent(s, c, w)
        test_type_defaults(s, c, wn)
        test_delayed(s, c, w)
        test_python_client(s, w)
        # Leave as a worker does (DISCONNECT), not by silence: with a liveness
        # of 20 heartbeats the broker would count them for 20 s more.
        for fw in (w, wn):
            fw.send(h.DISCONNECT, {})
            fw.close()
        test_restart(s, c, env)


if __name__ == "__main__":
    h.main(test)

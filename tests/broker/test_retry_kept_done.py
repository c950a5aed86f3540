"""A failed DONE a worker keeps and sends again after a reconnect is not
taken for the job's run after a RETRY, though that run has the same attempt
number (a RETRY numbers the runs from 1 again): the broker knows it by its
worker, attempt and run times, those of the failed DONE it took before.

- w1 runs J (attempts=1) and fails it (DONE attempt 1, with its times); RETRY;
  w1 gets J again as attempt 1, reconnects listing J in READY running, then
  sends the old failed DONE again: J still runs, and w1's DONE ok completes
  it with no attemptErrors.
- The same, but w1 reconnects (credit 0) before it reads the retried run's
  JOB: its READY does not list J, which is queued again as lost with w1, and
  the old failed DONE is not taken as that lost run's outcome either (NACK
  not_owner); with credit again w1 runs J, which completes.
- Across a broker restart (SIGKILL) after the RETRY: the job's record keeps
  which failed DONE was taken, and the old one, sent again to the next
  broker, is answered NACK not_owner too.

Real redis and broker; a fake python worker.
"""
import time
import harness as h
from fakeworker import FakeWorker
from test_answers_durable import crash, QUEUE_CMD as QUEUE


def failed_done(jid):
    t = int(time.time() * 1000)
    return {"jobId": jid, "ok": False, "attempt": 1, "startedAt": t - 20, "finishedAt": t,
            "error": {"code": "bot_failed", "message": "the run before the RETRY"}}


def fail_and_retry(c, w1, jid):
    """w1 fails jid's run; RETRY; returns the failed DONE w1 keeps."""
    job = w1.recv_job()
    h.check(job and job["jobId"] == jid and job["attempt"] == 1, "JOB attempt 1", job)
    old = failed_done(jid)
    w1.send(h.DONE, old)
    h.wait_until(lambda: c.status(jid)["state"] == "failed", 5, "the job to fail")
    cmd, r = c.request(h.RETRY, {"jobId": jid})
    h.check(cmd == h.ACCEPTED, "RETRY accepted", r)
    return old


def reconnect(s, w1, running, credit=1):
    w1.close()
    w1 = FakeWorker(s.endpoint, "w1", ["python"], 1, ready=False)
    w1.send(h.READY, {"name": "w1", "types": ["python"], "credit": credit, "running": running})
    return w1


def not_taken(c, w1, jid, old, state, what):
    """w1 sends the old failed DONE again: NACK not_owner, and the job is
    still in state with no bot_failed counted."""
    w1.send(h.DONE, old)
    msg = w1.recv(timeout=2)
    h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "not_owner",
            "%s: the old failed DONE is answered NACK not_owner" % what, msg)
    rec = c.status(jid)
    h.check(rec["state"] == state and not [e for e in rec.get("attemptErrors") or []
                                           if e["code"] == "bot_failed"],
            "%s: the job is %s, no bot_failed counted" % (what, state), rec)


def completes(c, w1, jid, attempt):
    t = int(time.time() * 1000)
    w1.send(h.DONE, {"jobId": jid, "ok": True, "attempt": attempt, "result": {"run": "after the RETRY"},
                     "startedAt": t - 10, "finishedAt": t})
    rec = c.wait(jid)
    h.check(rec["state"] == "completed" and rec["result"] == {"run": "after the RETRY"}
            and not [e for e in rec.get("attemptErrors") or [] if e["code"] == "bot_failed"],
            "the run after the RETRY completes it; no bot_failed in attemptErrors", rec)


def test():
    with h.Stack("retry-kept-done") as s:
        s.redis()
        s.broker(env={"HEARTBEAT_LIVENESS": "20"})
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1)
        s.wait_workers(1, "python")

        jid = c.submit("python", {"n": 1}, attempts=1)
        old = fail_and_retry(c, w1, jid)
        job = w1.recv_job()
        h.check(job and job["jobId"] == jid and job["attempt"] == 1, "the retried run: JOB attempt 1", job)
        w1 = reconnect(s, w1, [jid])
        not_taken(c, w1, jid, old, "running", "w1 runs the retried run")
        completes(c, w1, jid, 1)

        jid = c.submit("python", {"n": 2}, attempts=1)
        old = fail_and_retry(c, w1, jid)
        h.wait_until(lambda: c.status(jid)["state"] == "running", 5, "the retried run to be dispatched")
        # The retried run's JOB unread, lost with the socket; credit 0, so
        # that the job waits for its lost run's DONE.
        w1 = reconnect(s, w1, [], credit=0)
        not_taken(c, w1, jid, old, "queued", "the retried run lost with w1's socket")
        w1.ready(1)
        job = w1.recv_job()
        h.check(job and job["jobId"] == jid, "the job runs again on w1 (the old failed DONE not taken)", job)
        completes(c, w1, jid, job["attempt"])

        # Across a broker restart: the record keeps which failed DONE was
        # taken.  Python paused, so that the retried job waits queued until
        # w1 is back.
        jid = c.submit("python", {"n": 3}, attempts=1)
        cmd, r = c.request(QUEUE, {"botType": "python", "action": "pause"})
        h.check(cmd == h.REPLY and r.get("paused") is True, "python paused", r)
        old = fail_and_retry(c, w1, jid)
        w1.close()
        c = crash(s)
        w1 = reconnect(s, w1, [], credit=1)
        cmd, r = c.request(QUEUE, {"botType": "python", "action": "resume"})
        h.check(cmd == h.REPLY and r.get("paused") is False, "python resumed", r)
        job = w1.recv_job()
        h.check(job and job["jobId"] == jid and job["attempt"] == 1, "the retried job runs on w1, attempt 1", job)
        not_taken(c, w1, jid, old, "running", "after a broker restart")
        completes(c, w1, jid, job["attempt"])


if __name__ == "__main__":
    h.main(test)

"""A READY listing a job that only Redis might hold (protocol.md section 5,
READY's running) holds the worker's slot while its record is read; when
Redis cannot answer that read, the job is answered CANCEL unknown and the
slot is free: a job waiting for it is dispatched at once, not at the
worker's next event.

- Redis stopped (SIGSTOP: connected, answering nothing), with
  REDIS_TIMEOUT_MS=1000 and job K queued (no worker yet): w1 (credit 1)
  READYs running [X] (never submitted).  Its slot waits for Redis; once the
  broker drops the silent connection (REDIS_TIMEOUT_MS), w1 gets CANCEL
  unknown for X, then K, with Redis still stopped.
- Redis answering the read with an error (NOPERM: the broker's user may not
  HGETALL; BUSY or LOADING answer the same way), job K2 queued behind w1's
  K: w2 (credit 1) READYs running [Y]; it gets CANCEL unknown for Y, then K2.

Real redis and broker; fake python workers, which heartbeat but send
nothing else.  Before, the slot was freed and nothing dispatched: K and K2
stayed queued until the worker's next READY or DONE.
"""
import signal
import time

import harness as h
from fakeworker import FakeWorker

ENV = {"REDIS_TIMEOUT_MS": "1000", "HEARTBEAT_INTERVAL_MS": "250", "HEARTBEAT_LIVENESS": "40"}


def cancel_then_job(w, listed, job_id, within):
    """w gets CANCEL unknown for listed, then JOB job_id, within s."""
    deadline = time.monotonic() + within
    msg = w.recv(timeout=within)
    h.check(msg is not None and msg[0] == h.WCANCEL and msg[1] == {"jobId": listed, "reason": "unknown"},
            "%s: CANCEL unknown for %s (Redis could not say)" % (w.name, listed), msg)
    msg = w.recv(timeout=max(0.1, deadline - time.monotonic()))
    h.check(msg is not None and msg[0] == h.JOB and msg[1]["jobId"] == job_id,
            "%s: the freed slot takes the queued job %s at once" % (w.name, job_id), msg)


def test():
    with h.Stack("lookup-unanswered") as s:
        redis = s.redis()
        s.broker(env=ENV)
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1].get("recovering") is False, 10, "the recovery to end")
        k = c.submit("python", {"n": 1})
        h.check(c.status(k)["state"] == "queued", "K waits for a worker")

        x = "000000000000-0000-00000041"            # never submitted
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1, ready=False)
        redis.signal(signal.SIGSTOP)
        h.log("redis stopped (SIGSTOP)")
        try:
            w1.send(h.READY, {"name": "w1", "types": ["python"], "credit": 1, "running": [x]})
            cancel_then_job(w1, x, k, 10)
        finally:
            redis.signal(signal.SIGCONT)
        h.log("redis continued (SIGCONT)")
        h.wait_until(lambda: c.request(h.PING)[1].get("redis") is True, 15, "the broker to reach Redis again")

        k2 = c.submit("python", {"n": 2})
        h.check(c.status(k2)["state"] == "queued", "K2 waits: w1's slot runs K")
        h.check(s.redis_cli("ACL", "SETUSER", "default", "-hgetall") == "OK",
                "Redis refuses HGETALL to the broker (NOPERM)")
        y = "000000000000-0000-00000042"
        w2 = FakeWorker(s.endpoint, "w2", ["python"], 1, ready=False)
        w2.send(h.READY, {"name": "w2", "types": ["python"], "credit": 1, "running": [y]})
        cancel_then_job(w2, y, k2, 5)
        h.check(s.redis_cli("ACL", "SETUSER", "default", "+hgetall") == "OK", "HGETALL allowed again")
        w1.done(k, result={"ok": 1})
        w2.done(k2, result={"ok": 2})
        for j in (k, k2):
            h.check(c.wait(j)["state"] == "completed", "job %s completed" % j)


if __name__ == "__main__":
    h.main(test)

"""A failed run is counted once across broker restarts: the job waits queued
for its retry (its record names the worker that ran it), the broker restarts
(SIGTERM) twice, and each time the worker reconnects and sends that failed
run's DONE again (protocol.md section 5).  The record says the run was
counted, so the restarted broker answers NACK not_owner and keeps one
attemptErrors entry; the retry then runs and completes the job.

Real redis and broker; a fake python worker whose every frame the test sends.
"""
import harness as h
from fakeworker import FakeWorker


def test():
    with h.Stack("failed-done-restart") as s:
        s.redis()
        b = s.broker()
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1)
        s.wait_workers(1, "python")
        jid = c.submit("python", {"n": 1}, attempts=3, backoff={"type": "fixed", "delayMs": 100})
        job = w1.recv_job()
        h.check(job and job["jobId"] == jid and job["attempt"] == 1, "w1 runs attempt 1", job)
        failed = {"jobId": jid, "ok": False, "attempt": 1, "error": {"code": "bot_failed", "message": "run 1"}}
        w1.send(h.DONE, failed)
        w1.ready(0)                     # no credit: the retry waits in its queue
        h.wait_until(lambda: (h.job_record(s.redis_port, jid) or {}).get("state") == "queued", 5,
                     "Redis to have the job queued for its retry")
        for restart in (1, 2):
            b.stop()                    # SIGTERM
            b = s.broker()
            c = s.client()
            w1.close()
            w1 = FakeWorker(s.endpoint, "w1", ["python"], 0)    # sends its recent DONE again
            w1.send(h.DONE, failed)
            msg = w1.recv(timeout=3)
            rec = c.status(jid)
            h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "not_owner",
                    "restart %d: the counted failure's DONE sent again is answered NACK not_owner"
                    % restart, msg)
            h.check(rec["state"] == "queued" and len(rec.get("attemptErrors") or []) == 1,
                    "restart %d: the job still queued with one attemptErrors entry" % restart, rec)
        w1.ready(1)
        job = w1.recv_job()
        h.check(job and job["jobId"] == jid and job["attempt"] == 2, "the retry runs (attempt 2)", job)
        w1.send(h.DONE, {"jobId": jid, "ok": True, "attempt": 2, "result": {"ok": 1}})
        rec = h.wait_until(lambda: (lambda r: r if r["state"] == "completed" else None)(c.status(jid)),
                           5, "the job to complete on its retry")
        h.check(len(rec.get("attemptErrors") or []) == 1, "one failure counted in all", rec)


if __name__ == "__main__":
    h.main(test)

"""A failed run is counted once: a worker that reconnects (new socket, same
name) sends its recent DONEs again (protocol.md section 5), and the DONE of
a run that failed, already counted and waiting out its backoff, is not
taken again (NACK not_owner): the job keeps its retry and completes.

Real redis and broker; a fake python worker whose every frame the test
sends.
"""
import harness as h
from fakeworker import FakeWorker


def test():
    with h.Stack("resent-failed-done") as s:
        s.redis()
        s.broker()
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1)
        s.wait_workers(1, "python")
        jid = c.submit("python", {"n": 1}, attempts=2, backoff={"type": "fixed", "delayMs": 300})
        job = w1.recv_job()
        h.check(job and job["jobId"] == jid and job["attempt"] == 1, "w1 runs attempt 1", job)
        w1.send(h.DONE, {"jobId": jid, "ok": False, "attempt": 1,
                         "error": {"code": "bot_failed", "message": "run 1 failed"}})
        w1.ready(0)             # no credit: the retry waits in its queue
        rec = h.wait_until(lambda: (lambda r: r if r["state"] == "queued" else None)(c.status(jid)),
                           5, "the job to be queued again after its 300 ms backoff")
        h.check(rec["attempts"] == 1 and len(rec["attemptErrors"]) == 1,
                "run 1's failure counted once", rec)

        # w1 reconnects and sends its recent DONE again.
        w1.close()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 0)
        w1.send(h.DONE, {"jobId": jid, "ok": False, "attempt": 1,
                         "error": {"code": "bot_failed", "message": "run 1 failed"}})
        msg = w1.recv()
        h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "not_owner",
                "the failed run's DONE sent again is answered NACK not_owner", msg)
        rec = c.status(jid)
        h.check(rec["state"] == "queued" and rec["attempts"] == 1
                and [e["attempt"] for e in rec["attemptErrors"]] == [1],
                "the job still waits for its second run, one failure counted", rec)

        w1.ready(1)
        job = w1.recv_job()
        h.check(job and job["jobId"] == jid and job["attempt"] == 2, "w1 runs attempt 2", job)
        w1.done(jid, result={"run": 2})
        rec = c.wait(jid, 10)
        h.check(rec["state"] == "completed" and rec["result"] == {"run": 2} and rec["attempts"] == 2,
                "the job completes on its second run", rec)
        w1.close()


if __name__ == "__main__":
    h.main(test)

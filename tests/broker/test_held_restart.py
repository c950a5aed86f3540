"""A job recovered as running is held for its worker across a second restart:
the broker restarts (SIGTERM) while the job runs on w1, which is cut off; the
next broker holds the job for w1, and restarts again within that hold.  The
record says the job is held, so the third broker holds it again: another
worker gets no JOB within the hold, and w1's READY listing the job takes it
back (one run; usage 1 against MAX_NODE_BOTS=1).

Real redis and broker; fake node workers whose every frame the test sends.
"""
import harness as h
from fakeworker import FakeWorker

#  The hold lasts 2 x 250 ms x 4 = 2 s after each recovery.
ENV = {"HEARTBEAT_INTERVAL_MS": "250", "HEARTBEAT_LIVENESS": "4", "BROKER_SAVE_RUNNING_MS": "0",
       "MAX_NODE_BOTS": "1"}


def test():
    with h.Stack("held-restart") as s:
        s.redis()
        b = s.broker(env=ENV)
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["node"], 1)
        s.wait_workers(1)
        jid = c.submit("node", {"n": 1}, attempts=1)
        job = w1.recv_job()
        h.check(job and job["jobId"] == jid and job["attempt"] == 1, "w1 runs the job (attempt 1)", job)
        h.wait_until(lambda: (h.job_record(s.redis_port, jid) or {}).get("state") == "running", 5,
                     "Redis to have the job running")
        w1.close()                      # cut off; its bot runs on
        b.stop()
        b = s.broker(env=ENV)           # recovered as running: held for w1
        h.wait_until(lambda: (h.job_record(s.redis_port, jid) or {}).get("state") == "queued", 5,
                     "Redis to have the held job queued")
        b.stop()                        # a second restart within the hold
        b = s.broker(env=ENV)
        c = s.client()
        w2 = FakeWorker(s.endpoint, "w2", ["node"], 1)
        got = w2.recv(timeout=1.0)      # well within the 2 s hold
        h.check(got is None, "the job is still held for w1 after the second restart: w2 gets no JOB",
                got)
        w1 = FakeWorker(s.endpoint, "w1", ["node"], 1, ready=False)
        w1.send(h.READY, {"name": "w1", "types": ["node"], "credit": 1, "running": [jid]})
        rec = h.wait_until(lambda: (lambda r: r if r["state"] == "running" else None)(c.status(jid)),
                           5, "w1's report of the job to be adopted")
        h.check(rec["attempts"] == 1, "adopted as its first attempt", rec)
        h.check(c.stats()["types"]["node"]["usage"] == 1, "node usage 1 (MAX_NODE_BOTS=1)", c.stats())
        w1.send(h.DONE, {"jobId": jid, "ok": True, "attempt": 1, "result": {"ok": 1}})
        h.wait_until(lambda: c.status(jid)["state"] == "completed", 5, "the job to complete on w1")
        h.check(w2.recv(timeout=0.3) is None, "w2 never got the job", None)


if __name__ == "__main__":
    h.main(test)

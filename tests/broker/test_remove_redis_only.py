"""REMOVE and PROMOTE reach a finished job only Redis holds: a job completes,
the broker restarts (SIGTERM), and the new broker holds the job in Redis alone
(STATUS answers it from there).  PROMOTE answers conflict (it is not delayed,
protocol.md), REMOVE answers removed: true and deletes the record; after it
STATUS and a second REMOVE answer not_found, as REMOVE of an id never
submitted does.

Real redis and broker; a fake python worker.
"""
import harness as h
from fakeworker import FakeWorker

REMOVE, PROMOTE = 0x0C, 0x0D


def test():
    with h.Stack("remove-redis-only") as s:
        s.redis()
        b = s.broker()
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1)
        s.wait_workers(1, "python")
        jid = c.submit("python", {"n": 1})
        job = w1.recv_job()
        h.check(job and job["jobId"] == jid, "w1 runs the job", job)
        w1.done(jid, result={"ok": 1})
        h.check(c.wait(jid, 10)["state"] == "completed", "the job completed")
        b.stop()
        s.broker()
        c = s.client()
        h.check(c.status(jid)["state"] == "completed", "STATUS answers it after the restart (from Redis)")
        cmd, r = c.request(PROMOTE, {"jobId": jid})
        h.check(cmd == h.REJECTED and r.get("code") == "conflict" and r.get("req") is not None,
                "PROMOTE of the finished job: conflict (not delayed), with its req", (cmd, r))
        cmd, r = c.request(REMOVE, {"jobId": jid})
        h.check(cmd == h.REPLY and r.get("removed") is True and r.get("jobId") == jid
                and r.get("req") is not None, "REMOVE of the finished job: removed, with its req", (cmd, r))
        h.wait_until(lambda: h.job_record(s.redis_port, jid) is None, 5, "its Redis record to be deleted")
        cmd, r = c.request(h.STATUS, {"jobId": jid})
        h.check(cmd == h.REJECTED and r.get("code") == "not_found", "STATUS after REMOVE: not_found", (cmd, r))
        cmd, r = c.request(REMOVE, {"jobId": jid})
        h.check(cmd == h.REJECTED and r.get("code") == "not_found", "a second REMOVE: not_found", (cmd, r))
        cmd, r = c.request(REMOVE, {"jobId": jid[:-1] + ("2" if jid[-1] != "2" else "3")})
        h.check(cmd == h.REJECTED and r.get("code") == "not_found", "REMOVE of an unknown id: not_found", (cmd, r))


if __name__ == "__main__":
    h.main(test)

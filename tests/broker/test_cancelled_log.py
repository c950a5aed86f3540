"""A cancelled job keeps the log its stopped run's DONE brings.

The broker ends the job cancelled when the CANCEL comes and tells the
worker to stop the run; the worker's DONE for that run comes later, with
the tail of what the bot wrote on stderr.  That tail is the cancelled
job's log: in STATUS, in the Redis record, and after a broker restart.
A DONE whose job was removed meanwhile (clean cancelled) writes nothing:
no record comes back in Redis.

Real redis-server and broker; a fake worker whose every frame the test
sends.  (Before: the DONE only freed the slot; the log stayed null.)
"""
import harness as h
from fakeworker import FakeWorker

QUEUE = 0x0B
P = "botmesh:{bm}:"
LOG = "job starting\nlog: cancel me"


def cancel(c, w, jid):
    cmd, r = c.request(h.CANCEL, {"jobId": jid})
    h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "the running job is cancelled",
            cmd, r)
    msg = w.recv()
    h.check(msg and msg[0] == h.WCANCEL and msg[1]["jobId"] == jid
            and msg[1]["reason"] == "cancelled", "the worker is told to stop it", msg)
    return r["job"]


def stopped_done(w, jid):
    w.send(h.DONE, {"jobId": jid, "ok": False, "attempt": 1, "log": LOG,
                    "error": {"code": "cancelled", "message": "stopped by the broker (cancelled)"}})
    msg = w.recv()
    h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "not_owner",
            "the DONE of a stopped run frees its slot, answered NACK not_owner as before", msg)


def test():
    with h.Stack("cancelled-log") as s:
        s.redis()
        broker = s.broker()
        c = s.client()
        w = FakeWorker(s.endpoint, "w1", ["python"], 1)
        s.wait_workers(1, "python")

        a = c.submit("python", {"sleepMs": 10000})
        h.check(w.recv_job()["jobId"] == a, "w1 runs a")
        before = cancel(c, w, a)
        stopped_done(w, a)
        rec = h.wait_until(lambda: (lambda r: r if r.get("log") else None)(c.status(a)), 10,
                           "the cancelled job's record to show the log of its stopped run")
        h.check(rec["log"] == LOG and rec["state"] == "cancelled"
                and rec["finishedAt"] == before["finishedAt"] and rec["attempts"] == 1,
                "a stays cancelled as it was, with its run's log", rec, before)
        h.wait_until(lambda: (h.job_record(s.redis_port, a) or {}).get("log") == LOG, 10,
                     "Redis's record of a to hold the log")
        h.check(h.job_record(s.redis_port, a)["state"] == "cancelled", "Redis: a is cancelled")
        # The slot is free again: the next job goes to w1.
        b = c.submit("python", {"n": 2})
        h.check(w.recv_job()["jobId"] == b, "the stopped run's slot is free: w1 runs b")
        w.done(b, {"ok": 1})
        c.wait(b)

        c.close()
        broker.stop()
        broker = s.broker(name="broker-2")
        c = s.client()
        rec = h.wait_until(lambda: c.status(a), 10, "STATUS of a after the restart")
        h.check(rec["state"] == "cancelled" and rec.get("log") == LOG,
                "after a restart a is cancelled with its log (read back from Redis)", rec)

        # A DONE for a cancelled run whose job is gone by then: not taken.
        w.close()
        w = FakeWorker(s.endpoint, "w1", ["python"], 1)
        s.wait_workers(1, "python")
        d = c.submit("python", {"sleepMs": 10000})
        h.check(w.recv_job()["jobId"] == d, "w1 runs d")
        cancel(c, w, d)
        h.wait_until(lambda: s.redis_cli("HGET", P + "job:" + d, "state") == "cancelled", 10,
                     "Redis to record d cancelled")
        cmd, r = c.request(QUEUE, {"botType": "python", "action": "clean", "state": "cancelled"})
        h.check(cmd == h.REPLY and r["removed"] >= 1, "clean cancelled removes d", cmd, r)
        h.wait_until(lambda: s.redis_cli("EXISTS", P + "job:" + d) == "0", 10,
                     "d's record to leave Redis")
        stopped_done(w, d)
        # The DONE freed the slot: the next job reaches w1.
        e = c.submit("python", {"n": 3})
        h.check(w.recv_job()["jobId"] == e, "d's DONE freed the slot: w1 runs e")
        w.done(e, {"ok": 1})
        c.wait(e)
        h.check(s.redis_cli("EXISTS", P + "job:" + d) == "0",
                "the late DONE wrote no record of the removed job d")
        h.check(c.status(d) is None, "STATUS of d: not found")
        c.close()
        w.close()


if __name__ == "__main__":
    h.main(test)

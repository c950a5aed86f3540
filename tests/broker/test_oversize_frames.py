"""A body over MAX_FRAME_BYTES is answered with its req or its jobId.

A real redis-server and a real broker (MAX_FRAME_BYTES=65536); a fake
worker the test drives.  Each oversize body puts its big value first and
its small fields after it, so the broker must step over the big one.

1. A worker's DONE of 100,000 bytes: NACK bad_frame with the DONE's jobId
   and a message naming the size and MAX_FRAME_BYTES; the job fails at
   once, bad_output, its message naming the size and the limit (its
   timeout is a minute away); the worker's credit comes back (a next job
   reaches it).  The same DONE sent again (a reconnecting worker) fails
   nothing more.
2. A worker's PROGRESS of 100,000 bytes: NACK bad_frame with its jobId.
3. A client's SUBMIT of 100,000 bytes: REJECTED bad_frame with its req,
   naming the size and MAX_FRAME_BYTES; a SUBMIT_MANY too, its message
   saying a SUBMIT_MANY must fit as a whole; a SUBMIT whose req is not an
   integer: REJECTED without req.
"""
import time
import harness as h
from fakeworker import FakeWorker

SUBMIT_MANY = 0x0A
LIMIT = 65536
BIG = "x" * 100000


def test():
    with h.Stack("oversize_frames") as s:
        s.redis()
        broker = s.broker(env={"MAX_FRAME_BYTES": str(LIMIT), "MAX_PAYLOAD_BYTES": "32768"})
        c = s.client()
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        s.wait_workers(1, "python")

        # 1. An oversize DONE.
        job = c.submit("python", {"n": 1}, timeoutMs=60000)
        got = w.recv_job(10)
        h.check(got and got["jobId"] == job, "the worker runs the job", got)
        body = {"result": BIG, "ok": True, "jobId": job, "attempt": got.get("attempt", 1)}
        size = len(h.pack(body))
        started = time.monotonic()
        w.send(h.DONE, body)
        msg = w.recv(10)
        h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "bad_frame"
                and msg[1].get("jobId") == job,
                "the oversize DONE is answered NACK bad_frame with its jobId", msg)
        h.check(str(size) in msg[1]["message"] and "MAX_FRAME_BYTES (%d)" % LIMIT in msg[1]["message"],
                "the NACK names the size and the limit", msg)
        rec = c.wait(job, timeout=10)
        h.check(rec["state"] == "failed" and rec.get("error", {}).get("code") == "bad_output",
                "the job fails bad_output", rec)
        h.check(time.monotonic() - started < 10, "at once, not at its timeout")
        text = rec["error"].get("message", "")
        h.check(str(size) in text and "MAX_FRAME_BYTES (%d)" % LIMIT in text,
                "its message names the size and the limit", rec)
        h.check(("job=%s" % job) in broker.output() and "bad_frame" in broker.output(),
                "the broker's WARN line names the job")
        job2 = c.submit("python", {"n": 2}, timeoutMs=60000)
        got2 = w.recv_job(10)
        h.check(got2 and got2["jobId"] == job2, "the DONE freed the worker's credit", got2)
        w.send(h.DONE, body)          # sent again: not taken twice
        msg = w.recv(10)
        h.check(msg and msg[0] == h.NACK and msg[1].get("jobId") == job,
                "the same DONE again: NACK with its jobId", msg)
        msg = w.recv(10)
        h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "not_owner",
                "and, the job ended, its DONE is not taken again", msg)
        h.check(c.status(job)["state"] == "failed", "the job stays failed", c.status(job))

        # 2. An oversize PROGRESS.
        w.send(h.PROGRESS, {"webhook": BIG, "jobId": job2, "progress": 5})
        msg = w.recv(10)
        h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "bad_frame"
                and msg[1].get("jobId") == job2,
                "an oversize PROGRESS is answered NACK bad_frame with its jobId", msg)
        w.done(job2, result={"ok": 1})
        h.check(c.wait(job2)["state"] == "completed", "the next job completes")

        # 3. Oversize client requests.
        cmd, r = c.request(h.SUBMIT, {"payload": BIG, "botType": "python"})
        h.check(cmd == h.REJECTED and r.get("code") == "bad_frame" and r.get("req") == c.req,
                "an oversize SUBMIT is REJECTED bad_frame with its req", cmd, r)
        size = len(h.pack({"payload": BIG, "botType": "python", "req": c.req}))
        h.check(str(size) in r["message"] and "MAX_FRAME_BYTES (%d)" % LIMIT in r["message"],
                "its message names the size and the limit", r)
        jobs = [{"botType": "python", "payload": "y" * 20000} for _ in range(5)]
        cmd, r = c.request(SUBMIT_MANY, {"jobs": jobs})
        h.check(cmd == h.REJECTED and r.get("code") == "bad_frame" and r.get("req") == c.req
                and "SUBMIT_MANY must fit" in r["message"],
                "an oversize SUBMIT_MANY is REJECTED with its req, saying it must fit whole", cmd, r)
        c.send(h.SUBMIT, {"payload": BIG, "botType": "python", "req": "one"})
        cmd, r = c.recv(10)
        h.check(cmd == h.REJECTED and r.get("code") == "bad_frame" and "req" not in r,
                "a req that is not an integer is not echoed", cmd, r)
        w.close()
        c.close()


if __name__ == "__main__":
    h.main(test)

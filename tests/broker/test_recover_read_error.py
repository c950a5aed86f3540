"""The recovery of the unfinished jobs reads each job's record again when
Redis answers the read with an error (here NOPERM: the broker's user may
not HGETALL; BUSY, LOADING or WRONGTYPE answer the same way), up to 5
rounds over about 8 s, the recovery under way (nothing dispatched) until
then.  Before, such a job was skipped without a word: it stayed queued in
Redis (STATUS answered it from there) and never ran until the next
recovery.

- Job J queued (no worker), the broker stopped; Redis refuses HGETALL and
  the next broker starts: its read of J is refused (Redis's ACL LOG counts
  it), PING says it is still recovering, and one WARN line says the reads
  are sent again.  HGETALL allowed again: the recovery ends and J runs on
  the worker that connects.
- Job K queued, refused for good: after the rounds the recovery ends with
  an ERROR line naming K; K stays in the unfinished set, and the next
  broker (HGETALL allowed) recovers it and runs it.

Real redis and broker; a fake python worker.
"""
import harness as h
from fakeworker import FakeWorker
from test_readback_error import refused_reads


def restart_refused(s, b, name):
    b.stop()
    h.check(s.redis_cli("ACL", "SETUSER", "default", "-hgetall") == "OK"
            and s.redis_cli("ACL", "LOG", "RESET") == "OK", "Redis refuses HGETALL (NOPERM)")
    b = s.broker(name=name, wait_recovered=False)      # its recovery cannot end yet
    h.wait_until(lambda: refused_reads(s) >= 1, 10, "Redis to refuse the recovery's read")
    return b, s.client()


def test():
    with h.Stack("recover-read-error") as s:
        s.redis()
        b = s.broker()
        c = s.client()
        j = c.submit("python", {"n": 1})
        h.check(c.status(j)["state"] == "queued", "J queued (no worker)")
        c.close()

        b, c = restart_refused(s, b, "broker2")
        h.check(c.request(h.PING)[1].get("recovering") is True,
                "still recovering while the read is refused", c.request(h.PING))
        h.check(s.redis_cli("ACL", "SETUSER", "default", "+hgetall") == "OK", "HGETALL allowed again")
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        job = w.recv_job(timeout=15)
        h.check(job is not None and job["jobId"] == j, "J recovered and run", job)
        out = b.output()
        h.check("recovery: redis answered 1 job record reads with an error (NOPERM" in out,
                "one WARN line for the refused read, naming the error", out[-1500:])
        w.done(j, result={"ok": 1})
        h.check(c.wait(j)["state"] == "completed", "J completed")
        w.close()

        k = c.submit("python", {"n": 2})
        c.close()
        b, c = restart_refused(s, b, "broker3")
        h.wait_until(lambda: ("job=%s not recovered: redis answered" % k) in b.output(), 20,
                     "the recovery to give K up with an ERROR line")
        h.wait_until(lambda: c.request(h.PING)[1].get("recovering") is False, 5, "the recovery to end")
        h.check(s.redis_cli("SISMEMBER", "botmesh:{bm}:unfinished", k) == "1",
                "K stays in the unfinished set")
        h.check(s.redis_cli("ACL", "SETUSER", "default", "+hgetall") == "OK", "HGETALL allowed again")
        c.close()
        b.stop()
        s.broker(name="broker4")
        c = s.client()
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        job = w.recv_job(timeout=15)
        h.check(job is not None and job["jobId"] == k, "the next recovery runs K", job)


if __name__ == "__main__":
    h.main(test)

"""A duplicate SUBMIT whose job only Redis holds reads the job's record;
when Redis answers that read with an error (here NOPERM: the broker's user
may not HGETALL; BUSY, LOADING or MASTERDOWN answer the same way), Redis has
not said the job is gone: the SUBMIT is refused store_unavailable, the key
still names the job (in the index and in the Redis hash), a STATUS of the
job is store_unavailable too (not not_found), and once Redis answers again
the same SUBMIT is a duplicate of that job.

A real redis-server and broker (KEEP_FINISHED_JOBS=1, so that a finished
job leaves the broker's memory and only Redis holds it); a fake worker the
test drives.  Before, the error reply was taken for "no record": the key was
dropped (HDEL) and the SUBMIT made a second job; the STATUS said not_found.
"""
import harness as h
from fakeworker import FakeWorker
from test_idem_restart import IDEM, connected


def complete(c, w, job_id):
    job = w.recv_job(10)
    h.check(job and job["jobId"] == job_id, "the worker runs job %s" % job_id, job)
    w.done(job_id, result={"ok": 1})
    h.check(c.wait(job_id)["state"] == "completed", "job %s completed" % job_id)


def key_job(s, key):
    value = s.redis_cli("HGET", IDEM, key)
    return value.split()[0] if value else ""


def test():
    with h.Stack("idem_read_error") as s:
        s.redis()
        s.broker(env={"KEEP_FINISHED_JOBS": "1"})
        c = connected(s)
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)

        # A keyed job that completed, then pushed out of the broker's memory
        # by the next job to end: only Redis holds it.
        first = c.submit("python", {"n": 1}, idempotencyKey="k-err")
        complete(c, w, first)
        other = c.submit("python", {"n": 2})
        complete(c, w, other)
        h.check(key_job(s, "k-err") == first, "Redis maps k-err to its job")

        # Redis answers the record's read with an error.
        h.check(s.redis_cli("ACL", "SETUSER", "default", "-hgetall") == "OK",
                "HGETALL refused to the broker's user")
        cmd, r = c.try_submit("python", {"n": 1}, idempotencyKey="k-err")
        h.check(cmd == h.REJECTED and r.get("code") == "store_unavailable",
                "a duplicate whose record Redis would not read: refused store_unavailable, "
                "not a new job", cmd, r)
        h.check(key_job(s, "k-err") == first, "the key still names the job in Redis",
                s.redis_cli("HGET", IDEM, "k-err"))
        # STATUS of that job (a GET /job/{id}, a ?wait poll): Redis could not
        # say, so no not_found (a 404 for a job that exists).
        cmd, r = c.request(h.STATUS, {"jobId": first})
        h.check(cmd == h.REJECTED and r.get("code") == "store_unavailable",
                "STATUS of a job whose record Redis would not read: store_unavailable, "
                "not not_found", cmd, r)

        # Redis reads again: the same SUBMIT is a duplicate of the job.
        h.check(s.redis_cli("ACL", "SETUSER", "default", "+hgetall") == "OK",
                "HGETALL allowed again")
        cmd, r = c.try_submit("python", {"n": 1}, idempotencyKey="k-err")
        h.check(cmd == h.ACCEPTED and r["duplicate"] is True and r["jobId"] == first
                and r.get("state") == "completed",
                "once Redis answers, the key is a duplicate of its completed job", cmd, r)
        w.close()


if __name__ == "__main__":
    h.main(test)

"""QUEUE retry: a bot type's failed (or cancelled) jobs run again in bulk,
as RETRY runs each (BullMQ's queue.retryJobs), the oldest end first, up to
limit a request; the answer says how many and whether more are left.  It
reaches the jobs only Redis holds (ended before a restart, or pushed out
of memory) through the type's finished set.

A real redis-server and broker; a fake worker fails each job's first run
and completes a retried one.  KEEP_FINISHED_JOBS=2.
- 5 python jobs fail; the broker is restarted (SIGTERM): 3 of them are
  only in Redis.  retry limit 3: retried 3, more true; the 3 oldest are
  dispatched again from attempt 1 and complete; STATS totals.retried
  counts them; the INFO log line names the client and the count.
- after a cut, 1 more fails; retry olderThanMs (the cut): the 2 left from
  before the cut, not the newer one; more false.
- state cancelled: a cancelled job, only in Redis after a restart, runs
  again.
- an id in the set without a record is not retried and leaves the set;
- a bad state or limit is bad_request naming it; the webhook type is
  refused (bad_request); a type without failed jobs answers retried 0.
"""
import time
import harness as h
from fakeworker import FakeWorker

QUEUE = 0x0B


def retry(c, body):
    cmd, r = c.request(QUEUE, dict(body, action="retry"))
    h.check(cmd == h.REPLY, "QUEUE retry %r answered REPLY" % (body,), cmd, r)
    return r


def fail_one(c, w):
    jid = c.submit("python", {}, attempts=1)
    job = w.recv_job(5)
    h.check(job and job["jobId"] == jid, "the worker got job %s" % jid, job)
    w.done(jid, ok=False)
    h.check(c.wait(jid)["state"] == "failed", "job %s failed" % jid)
    return jid


def run_again(c, w, ids):
    """The worker gets exactly these jobs again (any order), attempt 1,
    completes each; each ends completed."""
    got = []
    for _ in ids:
        job = w.recv_job(5)
        h.check(job is not None, "a retried job is dispatched", got, ids)
        h.check(job["attempt"] == 1, "a retried job runs from attempt 1", job)
        got.append(job["jobId"])
        w.done(job["jobId"], result={"again": True})
    h.check(sorted(got) == sorted(ids), "the retried jobs are the ones expected", got, ids)
    h.check(w.recv(0.3) is None, "no other job is dispatched")
    for jid in ids:
        rec = c.wait(jid)
        h.check(rec["state"] == "completed" and rec["attempts"] == 1,
                "retried job %s completed in one run" % jid, rec)


def test():
    env = {"KEEP_FINISHED_JOBS": "2", "HEARTBEAT_LIVENESS": "20"}
    with h.Stack("queue-retry") as s:
        s.redis()
        broker = s.broker(env=env)
        c = s.client()
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        h.wait_until(lambda: len(c.stats()["workers"]) == 1, 5, "the worker to register")

        failed = [fail_one(c, w) for _ in range(5)]
        w.close()
        broker.stop()
        broker = s.broker(env=env)
        c = s.client()
        w = FakeWorker(s.endpoint, "fw2", ["python"], 1)
        h.wait_until(lambda: len(c.stats()["workers"]) == 1, 5, "the worker to register again")
        before = c.stats()["totals"]["retried"]

        r = retry(c, {"botType": "python", "limit": 3})
        h.check(r["botType"] == "python" and r["retried"] == 3 and r["more"] is True,
                "retry limit 3 of 5 failed jobs: retried 3, more left", r)
        run_again(c, w, failed[:3])
        h.check(c.stats()["totals"]["retried"] == before + 3, "totals.retried counts the 3")
        h.check(h.wait_until(lambda: "QUEUE retry failed from client" in open(broker.logpath).read()
                             and "retried 3 failed jobs (more left)" in open(broker.logpath).read(),
                             5, "the INFO line naming who asked and how many"), "logged")

        # olderThanMs: only the jobs that failed before the cut.
        cut = c.status(failed[-1])["finishedAt"]
        h.wait_until(lambda: time.time() * 1000 > cut + 300, 2, "the clock to pass the cut by 300 ms")
        newer = fail_one(c, w)
        r = retry(c, {"botType": "python", "olderThanMs": int(time.time() * 1000) - cut - 150})
        h.check(r["retried"] == 2 and r["more"] is False,
                "retry olderThanMs: the 2 failed before the cut, none left", r)
        run_again(c, w, failed[3:])
        h.check(c.status(newer)["state"] == "failed", "the job that failed after the cut stays failed")
        r = retry(c, {"botType": "python", "state": "failed"})
        h.check(r["retried"] == 1 and r["more"] is False, "then retry takes the newer one", r)
        run_again(c, w, [newer])
        h.check(retry(c, {"botType": "python"})["retried"] == 0, "nothing failed is left: retried 0")

        # Cancelled jobs, across a restart (only Redis holds them then).
        w.close()
        gone = c.submit("python", {})
        cmd, r = c.request(h.CANCEL, {"jobId": gone})
        h.check(cmd == h.REPLY, "the queued job is cancelled", cmd, r)
        w = FakeWorker(s.endpoint, "fw2b", ["python"], 1)
        for _ in range(2):                  # push it out of the read-back
            jid = c.submit("python", {})
            w.done(w.recv_job(5)["jobId"], result=1)
            c.wait(jid)
        w.close()
        broker.stop()
        s.broker(env=env)
        c = s.client()
        w = FakeWorker(s.endpoint, "fw3", ["python"], 1)
        h.wait_until(lambda: len(c.stats()["workers"]) == 1, 5, "the worker to register again")
        h.check(retry(c, {"botType": "python"})["retried"] == 0, "retry (failed) leaves cancelled jobs")
        r = retry(c, {"botType": "python", "state": "cancelled"})
        h.check(r["retried"] == 1 and r["more"] is False, "retry cancelled runs the cancelled job again",
                r)
        run_again(c, w, [gone])

        # An id in the failed set whose record is gone: not retried, out
        # of the set (a client asking again while more ends).
        ghost = "01a0000000aa-0000-00000009"
        s.redis_cli("ZADD", "botmesh:{bm}:finished:failed:python", str(int(time.time() * 1000) - 1000), ghost)
        r = retry(c, {"botType": "python"})
        h.check(r["retried"] == 0 and r["more"] is False, "an id without a record is not retried", r)
        h.check(s.redis_cli("ZSCORE", "botmesh:{bm}:finished:failed:python", ghost) == "",
                "the id without a record left the failed set")

        # Refusals, each naming its field.
        for body, field in (({"state": "completed"}, "state"), ({"state": 7}, "state"),
                            ({"limit": 0}, "limit"), ({"limit": 1001}, "limit"),
                            ({"olderThanMs": -1}, "olderThanMs")):
            cmd, r = c.request(QUEUE, dict(body, botType="python", action="retry"))
            h.check(cmd == h.REJECTED and r["code"] == "bad_request" and field in r["message"],
                    "QUEUE retry %r is bad_request naming %s" % (body, field), cmd, r)
        cmd, r = c.request(QUEUE, {"botType": "webhook", "action": "retry"})
        h.check(cmd == h.REJECTED and r["code"] == "bad_request" and "webhook" in r["message"],
                "QUEUE retry of the webhook type is refused", cmd, r)
        w.close()


if __name__ == "__main__":
    h.main(test)

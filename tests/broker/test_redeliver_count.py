"""A job's outcome is counted once a run: a REDELIVER rewrites the job's
terminal record (with its new delivery count), and the confirmation of that
write releases the delivery without counting the job's completion again,
whether the job was still in memory or read back from Redis.  A RETRY of a
failed job starts a new run, whose completion counts once more, the failure
staying counted once.  Retention by count (KEEP_COMPLETED_PYTHON=3) counts
each completion once too: a redelivered job takes one place among the kept.

Real redis, broker (KEEP_FINISHED_JOBS=2, KEEP_COMPLETED_PYTHON=3), webhook manager and mock webhook
receiver; a fake python worker completes or fails each run on command.
Counts: STATS types.python (what GET /stats shows) and the broker's
bot_executions_total{bot_type="python",status=...} on its /metrics.
"""
import harness as h
from fakeworker import FakeWorker

KEEP = 2
KEEP_COMPLETED = 3


def test():
    with h.Stack("redeliver-count") as s:
        s.redis()
        broker = s.broker(env={"KEEP_FINISHED_JOBS": str(KEEP), "HEARTBEAT_LIVENESS": "20",
                               "KEEP_COMPLETED_PYTHON": str(KEEP_COMPLETED)})
        mock = s.webhooks()
        c = s.client()
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        s.wait_workers(1, "python")
        hook = mock + "/hook"

        def executions(status):
            return h.executions(broker.metrics_port, "python", status)

        def check_counts(completed, failed, when):
            t = c.stats()["types"]["python"]
            h.check(t["completed"] == completed and t["failed"] == failed,
                    "%s: STATS python completed %d, failed %d" % (when, completed, failed), t)
            got = (executions("completed"), executions("failed"))
            h.check(got == (completed, failed),
                    "%s: bot_executions_total python completed %d, failed %d"
                    % (when, completed, failed), got)

        def run(jid, ok):
            job = w.recv_job(10)
            h.check(job and job["jobId"] == jid, "the fake worker is given %s" % jid, job)
            if ok:
                w.done(jid, result={"done": True})
            else:
                w.done(jid, ok=False, error={"code": "bot_failed", "message": "run failed"})
            rec = c.wait(jid)
            h.check(rec["state"] == ("completed" if ok else "failed"),
                    "%s %s" % (jid, "completed" if ok else "failed"), rec)

        def delivered(jid, count):
            h.wait_until(lambda: len(h.mock_deliveries(mock, jid)) == count, 20,
                         "the mock to receive delivery %d of %s" % (count, jid))
            h.wait_until(lambda: c.status(jid).get("webhook", {}).get("state") == "delivered",
                         20, "STATUS of %s: webhook delivered" % jid)

        def redeliver(jid):
            cmd, r = c.request(h.REDELIVER, {"jobId": jid})
            h.check(cmd == h.ACCEPTED and r["jobId"] == jid, "REDELIVER of %s accepted" % jid, r)

        # X completes with a webhook: counted once.
        x = c.submit("python", {"job": "X"}, webhookUrl=hook)
        run(x, ok=True)
        delivered(x, 1)
        check_counts(1, 0, "X completed")

        # REDELIVER of X while the broker holds it.  The delivery leaves only
        # once the record's rewrite is confirmed, which is where counting was.
        redeliver(x)
        delivered(x, 2)
        check_counts(1, 0, "X redelivered from memory")

        # F fails (one attempt allowed); P and Q complete and push X and F
        # out of memory.
        f = c.submit("python", {"job": "F"}, webhookUrl=hook, attempts=1)
        run(f, ok=False)
        delivered(f, 1)
        check_counts(1, 1, "F failed")
        p = c.submit("python", {"job": "P"}, webhookUrl=hook)
        run(p, ok=True)
        delivered(p, 1)
        q = c.submit("python", {"job": "Q"}, webhookUrl=hook)
        run(q, ok=True)
        delivered(q, 1)
        h.wait_equal(lambda: c.listed(), [q, p], 10,
                     "LIST holds only P and Q (X and F left memory)")
        check_counts(3, 1, "P and Q completed")

        # REDELIVER of X read back from Redis: the completed X, P and Q are
        # the 3 kept (X, counted twice, would have made P push it out).
        redeliver(x)
        delivered(x, 3)
        check_counts(3, 1, "X redelivered from Redis")

        # RETRY of F read back from Redis: its new run completes and counts;
        # its failure stays counted once.
        cmd, r = c.request(h.RETRY, {"jobId": f})
        h.check(cmd == h.ACCEPTED and r["jobId"] == f, "RETRY of F accepted", r)
        run(f, ok=True)
        delivered(f, 2)
        check_counts(4, 1, "F retried and completed")
        h.check(c.status(x) is None, "X, the oldest of 4 completed, is no longer kept")
        h.check(c.status(p) is not None, "P, one of the newest 3 completed, is kept")

        # And F's new outcome redelivered: no count either.
        redeliver(f)
        delivered(f, 3)
        check_counts(4, 1, "F redelivered")
        h.check(c.status(p) is not None and c.status(q) is not None,
                "P and Q still kept (F, redelivered, still takes one place)")
        w.close()
        c.close()


if __name__ == "__main__":
    h.main(test)

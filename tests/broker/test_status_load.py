"""A job the broker no longer holds in memory (KEEP_FINISHED_JOBS newer ones
pushed it out) is read back from Redis for STATUS without taking a place
among the jobs it holds: LIST keeps showing the newest KEEP_FINISHED_JOBS,
however many old jobs a client polls.  RETRY and REDELIVER of such a job
still work (they read it back too).

Real redis, broker (KEEP_FINISHED_JOBS=5), a noop python worker (one job at
a time: jobs end in the order they were submitted), webhook manager and
mock webhook receiver.  Job A is a node job cancelled while queued (no node
worker yet), B..Z python jobs; all 26 with a webhook.
"""
import harness as h

KEEP = 5


def test():
    with h.Stack("status-load") as s:
        s.redis()
        s.broker(env={"KEEP_FINISHED_JOBS": str(KEEP)})
        mock = s.webhooks()
        s.worker("--noop", "--type", "python", "--concurrency", "1", name="noop")
        s.wait_workers(1, "python")
        c = s.client()
        hook = mock + "/hook"

        a = c.submit("node", {"job": "A"}, webhookUrl=hook)
        cmd, r = c.request(h.CANCEL, {"jobId": a})
        h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "A cancelled while queued", r)
        ids = [a] + [c.submit("python", {"job": chr(ord("B") + i)}, webhookUrl=hook)
                     for i in range(25)]
        b = ids[1]
        delivered = lambda: c.stats()["types"].get("webhook", {}).get("completed", 0)
        h.wait_until(lambda: delivered() >= len(ids), 60,
                     "the %d delivery jobs to complete" % len(ids), interval=0.1)
        newest = list(reversed(ids[-KEEP:]))
        h.wait_equal(lambda: c.listed(), newest, 5, "LIST shows the newest %d jobs, newest first" % KEEP)

        # A client polls STATUS over every old job, twice: each answers from
        # Redis, and none takes a place among the jobs the broker holds.
        for _ in range(2):
            for i, jid in enumerate(ids[:-KEEP]):
                rec = c.status(jid)
                want = "cancelled" if jid == a else "completed"
                h.check(rec and rec["jobId"] == jid and rec["state"] == want
                        and rec["webhook"]["state"] == "delivered",
                        "STATUS of old job %s answers from Redis: %s, webhook delivered"
                        % (chr(ord("A") + i), want), rec)
        h.check(c.listed() == newest,
                "after STATUS of %d old jobs LIST still shows exactly the newest %d, "
                "newest first" % (len(ids) - KEEP, KEEP), c.listed(), newest)
        h.check(sorted(c.listed(webhook="delivered")) == sorted(newest),
                "LIST webhook=delivered shows the same %d jobs" % KEEP, c.listed(webhook="delivered"))
        cmd, r = c.request(h.CANCEL, {"jobId": b})
        h.check(cmd == h.REJECTED and r["code"] == "conflict", "CANCEL of old job B: conflict", r)
        cmd, r = c.request(h.RETRY, {"jobId": b})
        h.check(cmd == h.REJECTED and r["code"] == "conflict",
                "RETRY of old job B (completed): conflict", r)
        h.check(c.listed() == newest, "refused actions on B leave LIST as it was", c.listed())

        # REDELIVER of B: read back, its delivery made and sent; the newest
        # 5 stay (B leaves memory again once its delivery is on its way).
        cmd, r = c.request(h.REDELIVER, {"jobId": b})
        h.check(cmd == h.ACCEPTED and r["jobId"] == b, "REDELIVER of old job B accepted", r)
        h.wait_until(lambda: len(h.mock_deliveries(mock, b)) == 2, 15,
                     "the mock to receive B's second delivery")
        h.wait_until(lambda: (lambda rec: rec["webhook"]["state"] == "delivered"
                              and rec["webhook"].get("redeliveries") == 1)(c.status(b)), 15,
                     "STATUS of B: webhook delivered, redeliveries 1")
        h.wait_equal(lambda: c.listed(), newest, 5, "after B's redelivery LIST shows the newest %d" % KEEP)

        # RETRY of A: read back and queued again; a node worker runs it.
        cmd, r = c.request(h.RETRY, {"jobId": a})
        h.check(cmd == h.ACCEPTED and r["jobId"] == a, "RETRY of old job A accepted", r)
        rec = c.status(a)
        h.check(rec["state"] == "queued" and rec["attempts"] == 0, "A is queued again", rec)
        s.worker("--noop", "--type", "node", "--concurrency", "1", name="noop-node")
        rec = c.wait(a, timeout=30)
        h.check(rec["state"] == "completed" and rec["attempts"] == 1, "A ran again and completed", rec)
        # A ended last: it pushed out the oldest of the 5 (V).  LIST is by
        # creation, so A keeps the place it would have had had it never
        # left memory: last.
        h.wait_equal(lambda: c.listed(), list(reversed(ids[-(KEEP - 1):])) + [a], 5,
                     "LIST shows the newest 4 and A, by creation")
        h.wait_until(lambda: len(h.mock_deliveries(mock, a)) == 2, 15,
                     "the mock to receive the delivery of A's new outcome")
        c.close()


if __name__ == "__main__":
    h.main(test)

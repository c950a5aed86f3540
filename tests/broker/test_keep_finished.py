"""KEEP_FINISHED_JOBS counts the users' finished jobs: the webhook delivery
jobs of those jobs (which end after them, and LIST does not show) are kept
in a list of their own and push none of them out of the broker's memory.

Real redis, broker (KEEP_FINISHED_JOBS=20), a noop worker (one job at a
time: jobs end in the order they were submitted), webhook manager and mock
webhook receiver; 50 jobs, each with a webhook.
"""
import harness as h

KEEP = 20
JOBS = 50


def test():
    with h.Stack("keep-finished") as s:
        s.redis()
        s.broker(env={"KEEP_FINISHED_JOBS": str(KEEP)})
        mock = s.webhooks()
        s.worker("--noop", "--type", "python", "--concurrency", "1", name="noop")
        s.wait_workers(1, "python")
        c = s.client()

        ids = [c.submit("python", {"n": i}, webhookUrl=mock + "/hook") for i in range(JOBS)]
        # Every delivery job ended (its outcome confirmed by Redis).
        delivered = lambda: c.stats()["types"].get("webhook", {}).get("completed", 0)
        h.wait_until(lambda: delivered() >= JOBS, 60, "the %d delivery jobs to complete" % JOBS,
                     interval=0.1)
        h.check(delivered() == JOBS, "%d delivery jobs completed, one a job" % JOBS, delivered())
        newest = list(reversed(ids[-KEEP:]))

        # Waited for: jobs whose Redis confirmation was pending when the
        # last ones ended (a DONE_MANY ends many at once) leave memory at
        # the broker's next tick.
        h.wait_equal(lambda: c.listed(), newest, 5,
                     "LIST shows the newest %d jobs, newest first (no delivery pushed one out)" % KEEP)
        # (In the order their webhooks were delivered, which the manager's
        # concurrent attempts may shuffle.)
        h.wait_equal(lambda: sorted(c.listed(webhook="delivered")), sorted(newest), 5,
                     "LIST webhook=delivered shows the same %d jobs" % KEEP)
        h.check(c.listed(botType="webhook") == [], "LIST shows no delivery job")

        # The delivery jobs are kept, and bounded too (as many as
        # KEEP_FINISHED_JOBS, below 1,000): STATUS answers for the newest
        # 20 to end, not the older ones (their records left Redis as they
        # ended).  Which 20: the manager's concurrent attempts decide.
        answered = lambda: sum(c.status(jid + ".wh1") is not None for jid in ids)
        h.wait_equal(answered, KEEP, 5, "STATUS answers for %d delivery jobs" % KEEP)

        # An evicted job is still answered (from Redis), with its webhook.
        first = c.status(ids[0])
        h.check(first and first["state"] == "completed" and first["webhook"]["state"] == "delivered",
                "STATUS of the oldest job: completed, webhook delivered (from Redis)", first)
        c.close()


if __name__ == "__main__":
    h.main(test)

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


def listed(c, **filters):
    cmd, reply = c.request(h.LIST, dict(filters, limit=500))
    h.check(cmd == h.REPLY, "LIST %r answered" % (filters,), reply)
    return [job["jobId"] for job in reply["jobs"]]


def settles(fn, want, what, timeout=5):
    """Check that fn() comes to equal want within timeout seconds: jobs
    whose Redis confirmation was pending when the last ones ended (a
    DONE_MANY ends many at once) leave memory at the broker's next tick."""
    got = []

    def equal():
        got[:] = [fn()]
        return got[0] == want
    try:
        h.wait_until(equal, timeout, what, interval=0.05)
    except h.TestFailure:
        h.check(False, what, got[0] if got else None)
    h.log("ok:", what)


def test():
    with h.Stack("keep-finished") as s:
        s.redis()
        s.broker(env={"KEEP_FINISHED_JOBS": str(KEEP)})
        mock = s.webhooks()
        s.worker("--noop", "--type", "python", "--concurrency", "1", name="noop")
        s.wait_workers(1, "python")
        c = s.client()

        ids = [c.submit("python", {"n": i}, webhookUrl=mock + "/hook") for i in range(JOBS)]
        # Every delivery job ended (its outcome confirmed by Redis).  Not
        # by STATUS of each job: a STATUS of a job no longer in memory reads
        # it back from Redis into memory, as the newest finished.
        delivered = lambda: c.stats()["types"].get("webhook", {}).get("completed", 0)
        h.wait_until(lambda: delivered() >= JOBS, 60, "the %d delivery jobs to complete" % JOBS,
                     interval=0.1)
        h.check(delivered() == JOBS, "%d delivery jobs completed, one a job" % JOBS, delivered())
        newest = list(reversed(ids[-KEEP:]))

        settles(lambda: listed(c), newest,
                "LIST shows the newest %d jobs, newest first (no delivery pushed one out)" % KEEP)
        # (In the order their webhooks were delivered, which the manager's
        # concurrent attempts may shuffle.)
        settles(lambda: sorted(listed(c, webhook="delivered")), sorted(newest),
                "LIST webhook=delivered shows the same %d jobs" % KEEP)
        h.check(listed(c, botType="webhook") == [], "LIST shows no delivery job")

        # The delivery jobs are kept, and bounded too (as many as
        # KEEP_FINISHED_JOBS, below 1,000): STATUS answers for the newest
        # 20 to end, not the older ones (their records left Redis as they
        # ended).  Which 20: the manager's concurrent attempts decide.
        answered = lambda: sum(c.status(jid + ".wh1") is not None for jid in ids)
        settles(answered, KEEP, "STATUS answers for %d delivery jobs" % KEEP)

        # An evicted job is still answered (from Redis), with its webhook.
        first = c.status(ids[0])
        h.check(first and first["state"] == "completed" and first["webhook"]["state"] == "delivered",
                "STATUS of the oldest job: completed, webhook delivered (from Redis)", first)
        c.close()


if __name__ == "__main__":
    h.main(test)

"""A failure that runs down a chain of dependents, and the job whose end
starts it kept safe meanwhile.

A real broker without Redis (REDIS_URL none, so no write holds a finished
job in memory) and a botmesh-worker serving "bulk" (noop):

1. KEEP_FINISHED_JOBS 1: A (delayed an hour) with dependents B1 and B2.
   CANCEL A fails both; the finished list is bound to one job, yet A is
   not forgotten while its dependents are told (B1's end pushed A out,
   freed, then read: the CANCEL answer, its dispatch; ASan), and the
   broker answers PING afterwards.
2. A chain of 30000 jobs, each waiting for the one before, behind a
   delayed head: CANCEL of the head fails all of them (STATS), and the
   broker lives (the failure was passed down one call deeper per job:
   the stack overflowed).
"""
import harness as h

CHAIN = 30000


def test():
    with h.Stack("deps-cascade") as s:
        s.broker(redis=False, env={"KEEP_FINISHED_JOBS": "1"})
        s.worker("--noop", "--type", "bulk", "--concurrency", "4", "--name", "w1")
        s.wait_workers(1)
        c = s.client()

        # 1. the ended job outlives the failures it causes
        a = c.submit("bulk", 1, delayMs=3600_000)
        b1 = c.submit("bulk", 1, dependsOn=[a])
        b2 = c.submit("bulk", 2, dependsOn=[a])
        cmd, r = c.request(h.CANCEL, {"jobId": a})
        h.check(cmd == h.REPLY and r["job"]["jobId"] == a and r["job"]["state"] == "cancelled",
                "CANCEL of A answered with A's record", cmd, r)
        t = c.stats()["types"]["bulk"]
        h.check(t["failed"] == 2 and t["cancelled"] == 1 and t["waitingChildren"] == 0,
                "B1 and B2 failed by A's cancel, none left waiting", t)
        s.wait_ping()

        # 2. a chain as long as a pipeline may be
        head = c.submit("bulk", 1, delayMs=3600_000)
        prev = head
        for i in range(CHAIN):
            prev = c.submit("bulk", i, dependsOn=[prev])
        h.check(c.stats()["types"]["bulk"]["waitingChildren"] == CHAIN,
                "the chain waits", c.stats()["types"]["bulk"])
        cmd, r = c.request(h.CANCEL, {"jobId": head}, timeout=60)
        h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "CANCEL of the head", cmd, r)
        s.wait_ping()
        t = c.stats()["types"]["bulk"]
        h.check(t["failed"] == 2 + CHAIN and t["cancelled"] == 2 and t["waitingChildren"] == 0,
                "the whole chain failed, none left waiting", t)

if __name__ == "__main__":
    h.main(test)

"""A RETRY of a job failed by a failed dependency waits for that
dependency's own RETRY also when only Redis holds the dependency, and
also across a broker restart.

A real redis-server, broker (RETRY_ATTEMPTS 1, KEEP_FINISHED_JOBS 1) and
botmesh-worker whose bot ("dep", depbot.py) fails until a flag file exists:

1. G fails; W (dependsOn [G]) fails dependency_failed; other jobs end
   until G leaves the broker's memory (LIST no longer lists it); RETRY of
   W: W waits in waiting-children for G's RETRY, still a few ticks later
   (before: G was read back from Redis, seen failed, and W failed
   dependency_failed at once); the flag is made, RETRY of G completes it
   and W completes.
2. G2 fails, W2 (dependsOn [G2]) fails, RETRY of W2 waits (G2 in memory);
   the broker is restarted: W2 is recovered still waiting for G2's RETRY
   (before: the recovery saw G2 failed and failed W2), and completes once
   G2 is retried.
"""
import os
import harness as h

HERE = os.path.dirname(os.path.abspath(__file__))
BOT = "/usr/bin/python3 " + os.path.join(HERE, "depbot.py")
RETRY = 0x05


def still_waits(c, job, what):
    # a job due in 300 ms ends after several of the broker's ticks (each
    # 100 ms at most), and the read of a dependency from Redis is answered
    c.wait(c.submit("dep", {"n": "later"}, delayMs=300))
    rec = c.status(job)
    h.check(rec["state"] == "waiting-children", what, rec)


def test():
    with h.Stack("deps-retry-waits") as s:
        s.redis()
        benv = {"RETRY_ATTEMPTS": "1", "KEEP_FINISHED_JOBS": "1"}
        broker = s.broker(env=benv)
        s.worker("--type", "dep", "--concurrency", "2", "--name", "w1", env={"BOT_DEP_CMD": BOT})
        s.wait_workers(1)
        c = s.client()
        flag = os.path.join(s.dir, "flag")

        g = c.submit("dep", {"failUnless": flag})
        w = c.submit("dep", {"n": "w"}, dependsOn=[g])
        h.check(c.wait(w)["error"]["code"] == "dependency_failed", "W failed by G")
        for i in range(50):
            if g not in c.listed(state="failed"):
                break
            c.wait(c.submit("dep", {"n": i}))
        h.check(g not in c.listed(state="failed"), "G pushed out of the broker's memory")
        cmd, r = c.request(RETRY, {"jobId": w})
        h.check(cmd == h.ACCEPTED, "RETRY of W accepted", cmd, r)
        still_waits(c, w, "W waits for the RETRY of G, which only Redis holds")
        open(flag, "w").close()
        cmd, r = c.request(RETRY, {"jobId": g})
        h.check(cmd == h.ACCEPTED, "RETRY of G, read back from Redis, accepted", cmd, r)
        rec = c.wait(w)
        h.check(rec["state"] == "completed", "W completed once G did", rec)
        os.unlink(flag)

        g2 = c.submit("dep", {"failUnless": flag})
        w2 = c.submit("dep", {"n": "w2"}, dependsOn=[g2])
        h.check(c.wait(w2)["error"]["code"] == "dependency_failed", "W2 failed by G2")
        cmd, r = c.request(RETRY, {"jobId": w2})
        h.check(cmd == h.ACCEPTED, "RETRY of W2 accepted", cmd, r)
        still_waits(c, w2, "W2 waits for the RETRY of G2")
        c.close()
        broker.stop()
        broker = s.broker(env=benv)
        c = s.client()
        still_waits(c, w2, "W2 recovered still waiting for the RETRY of G2")
        open(flag, "w").close()
        cmd, r = c.request(RETRY, {"jobId": g2})
        h.check(cmd == h.ACCEPTED, "RETRY of G2 accepted", cmd, r)
        rec = c.wait(w2)
        h.check(rec["state"] == "completed", "W2 completed once G2 did", rec)


if __name__ == "__main__":
    h.main(test)

"""A job that waits for a failed dependency's RETRY ends when that
dependency is removed instead.

A real redis-server, broker (RETRY_ATTEMPTS 1) and botmesh-worker whose
bot ("dep", depbot.py) fails when asked:

G fails; W (dependsOn [G]) fails dependency_failed; RETRY of W makes it
wait in waiting-children for G's own RETRY.  REMOVE of G: W ends failed
dependency_failed naming G, and STATS counts none waiting (before, W
waited for a RETRY that could no longer come, until a restart failed it).

KEEP_FINISHED_JOBS 1: a failed dependency pushed out of memory is still in
Redis and can still be retried, so its dependent waits on: G2 fails (its
bot fails until a flag file exists), W2 fails by it, RETRY of W2 waits;
G2 leaves the broker's memory (LIST no longer lists it) and W2 still
waits a few ticks later (before: failed at once); the flag is made
and RETRY of G2 (read back from Redis) completes it, which releases W2:
W2 completes.
"""
import os
import harness as h

HERE = os.path.dirname(os.path.abspath(__file__))
REMOVE, RETRY = 0x0C, 0x05


def test():
    with h.Stack("deps-retry-forgotten") as s:
        s.redis()
        s.broker(env={"RETRY_ATTEMPTS": "1"})
        s.worker("--type", "dep", "--concurrency", "2", "--name", "w1",
                 env={"BOT_DEP_CMD": "/usr/bin/python3 " + os.path.join(HERE, "depbot.py")})
        s.wait_workers(1)
        c = s.client()

        g = c.submit("dep", {"fail": True})
        w = c.submit("dep", {"n": "w"}, dependsOn=[g])
        rec = c.wait(w)
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_failed",
                "W failed by G", rec)
        cmd, r = c.request(RETRY, {"jobId": w})
        h.check(cmd == h.ACCEPTED, "RETRY of W accepted", cmd, r)
        h.wait_until(lambda: c.status(w)["state"] == "waiting-children", 10,
                     "W to wait for G's RETRY")
        cmd, r = c.request(REMOVE, {"jobId": g})
        h.check(cmd == h.REPLY and r.get("removed") is True, "G is removed", cmd, r)
        rec = h.wait_until(lambda: (lambda j: j if j["state"] != "waiting-children" else None)(
            c.status(w)), 10, "W to leave waiting-children once G is removed")
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_failed"
                and g in rec["error"]["message"], "W failed dependency_failed naming G", rec)
        h.check(c.stats()["types"]["dep"]["waitingChildren"] == 0, "STATS: none waiting",
                c.stats()["types"]["dep"])

    with h.Stack("deps-retry-evicted") as s:
        s.redis()
        s.broker(env={"RETRY_ATTEMPTS": "1", "KEEP_FINISHED_JOBS": "1"})
        s.worker("--type", "dep", "--concurrency", "2", "--name", "w1",
                 env={"BOT_DEP_CMD": "/usr/bin/python3 " + os.path.join(HERE, "depbot.py")})
        s.wait_workers(1)
        c = s.client()
        flag = os.path.join(s.dir, "flag")
        g2 = c.submit("dep", {"failUnless": flag})
        w2 = c.submit("dep", {"n": "w2"}, dependsOn=[g2])
        h.check(c.wait(w2)["error"]["code"] == "dependency_failed", "W2 failed by G2")
        cmd, r = c.request(RETRY, {"jobId": w2})
        h.check(cmd == h.ACCEPTED, "RETRY of W2 accepted", cmd, r)
        h.wait_until(lambda: c.status(w2)["state"] == "waiting-children", 10,
                     "W2 to wait for G2's RETRY")
        # other jobs end until G2 is out of memory (LIST lists memory only)
        for i in range(50):
            if g2 not in c.listed(state="failed"):
                break
            c.wait(c.submit("dep", {"n": i}))
        h.check(g2 not in c.listed(state="failed"), "G2 pushed out of the broker's memory")
        # a job due in 300 ms ends after several of the broker's ticks (each
        # 100 ms at most), where a gone dependency's dependents are told
        c.wait(c.submit("dep", {"n": "later"}, delayMs=300))
        h.check(c.status(w2)["state"] == "waiting-children",
                "W2 still waits for G2's RETRY after G2 left memory", c.status(w2))
        open(flag, "w").close()
        cmd, r = c.request(RETRY, {"jobId": g2})
        h.check(cmd == h.ACCEPTED, "RETRY of G2, read back from Redis, accepted", cmd, r)
        rec = c.wait(w2)
        h.check(rec["state"] == "completed", "W2 waited on and completed once G2 did", rec)


if __name__ == "__main__":
    h.main(test)

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
3. G3 fails, W3 fails by it, RETRY of W3 waits; RETRY of G3, and the
   broker is killed while G3 runs again; G3 fails again while no broker
   runs (the worker keeps its DONE). The new broker starts with
   redis-server stopped (SIGSTOP), so that its recovery takes that DONE
   before it checks W3, and must fail W3 dependency_failed: G3 ended again since W3's RETRY
   (before: W3 went on waiting for a RETRY of G3 it had already had).
"""
import os
import signal
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


def evicted_and_restart():
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


def failed_again():
    hb = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5"}
    benv = dict(hb, RETRY_ATTEMPTS="1", BROKER_SAVE_RUNNING_MS="0")
    with h.Stack("deps-retry-failed-again") as s:
        redis = s.redis()
        broker = s.broker(env=benv)
        worker = s.worker("--type", "dep", "--name", "w1", env=dict(hb, BOT_DEP_CMD=BOT))
        s.wait_workers(1)
        c = s.client()
        g3 = c.submit("dep", {"fail": True, "sleepMs": 1500})
        w3 = c.submit("dep", {"n": "w3"}, dependsOn=[g3])
        h.check(c.wait(w3)["error"]["code"] == "dependency_failed", "W3 failed by G3")
        cmd, r = c.request(RETRY, {"jobId": w3})
        h.check(cmd == h.ACCEPTED, "RETRY of W3 accepted", cmd, r)
        still_waits(c, w3, "W3 waits for the RETRY of G3")
        cmd, r = c.request(RETRY, {"jobId": g3})
        h.check(cmd == h.ACCEPTED, "RETRY of G3 accepted", cmd, r)
        h.wait_until(lambda: s.redis_cli("HGET", "botmesh:{bm}:job:" + g3, "state") == "running",
                     10, "G3's running state in Redis")
        c.close()
        broker.kill()
        h.wait_until(lambda: worker.output().count(g3 + " failed in") >= 2, 15,
                     "G3 to fail again on the worker while the broker is down")
        # the new broker's recovery waits while redis-server is stopped:
        # the worker's DONE of G3 is taken by it, before W3 is checked
        redis.signal(signal.SIGSTOP)
        try:
            broker = s.broker(env=benv, name="broker-2", wait_recovered=False)
            h.wait_until(lambda: "before the recovery reached the job: kept" in broker.output(),
                         15, "the new broker to keep G3's DONE for its recovery")
        finally:
            redis.signal(signal.SIGCONT)
        c = s.client()
        rec = h.wait_until(lambda: (lambda j: j if j["state"] != "waiting-children" else None)(
            c.status(w3)), 15, "W3 to leave waiting-children once G3's DONE is taken")
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_failed"
                and g3 in rec["error"]["message"], "W3 failed dependency_failed naming G3", rec)


def test():
    evicted_and_restart()
    failed_again()


if __name__ == "__main__":
    h.main(test)

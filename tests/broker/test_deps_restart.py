"""Jobs waiting for their dependencies survive a broker restart and a
failover, and a dependency that ends while no broker runs is seen.

1. Real redis-server, broker and botmesh-worker (depbot.py, type "dep";
   --noop type "bulk").  B completes; A runs (1.5 s); C waits for [A, B]
   with dependencyResults, D for a delayed bulk job E.  The broker is
   killed (SIGKILL) while A runs; A ends while it is down (the worker
   keeps its DONE).  The new broker recovers C and D waiting-children
   (D's pendingDependencies [E]); C completes with both results (A's
   taken from the kept DONE), D once E ran.
2. Two brokers, BROKER_HA=redis: F waits for a slow G; the leader is
   killed; the new leader holds F waiting and releases it when G ends.
3. KEEP_FINISHED_JOBS=1: a dependency only Redis holds is read at SUBMIT
   (completed: its result reaches the bot; failed: the job fails dependency_failed, or is done with
   onDependencyFailure ignore; none: refused), in a SUBMIT_MANY item too.
4. REDIS_URL=none: the same flow in memory.
"""
import os
import time
import harness as h
import hatest

HERE = os.path.dirname(os.path.abspath(__file__))
BOT = "/usr/bin/python3 " + os.path.join(HERE, "depbot.py")
HB = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5"}


def restart():
    benv = dict(HB, BROKER_SAVE_RUNNING_MS="0")
    with h.Stack("deps-restart") as s:
        s.redis()
        broker = s.broker(env=benv)
        s.worker("--type", "dep", "--concurrency", "3", "--name", "w1",
                 env=dict(HB, BOT_DEP_CMD=BOT))
        s.worker("--noop", "--type", "bulk", "--name", "w2", env=HB)
        s.wait_workers(2)
        c = s.client()
        b = c.submit("dep", {"n": "b"})
        h.check(c.wait(b)["state"] == "completed", "B completed")
        a = c.submit("dep", {"n": "a", "sleepMs": 1500})
        cj = c.submit("dep", {"n": "c"}, dependsOn=[a, b], dependencyResults=True)
        e = c.submit("bulk", 5, delayMs=2500)
        d = c.submit("dep", {"n": "d"}, dependsOn=[e])
        h.wait_until(lambda: s.redis_cli("HGET", "botmesh:{bm}:job:" + a, "state") == "running",
                     10, "A's running state in Redis")
        h.check(c.status(cj)["pendingDependencies"] == [a], "C waits for A only", c.status(cj))
        c.close()
        broker.kill()
        h.log("broker killed while A runs")
        h.wait_until(lambda: "completed in" in s.procs[2].output()
                     and s.procs[2].output().count(" completed in ") >= 2, 15,
                     "A to end on the worker while the broker is down")
        broker = s.broker(env=benv)
        c = s.client()
        rec = c.status(d)
        h.check(rec["state"] == "waiting-children" and rec["pendingDependencies"] == [e],
                "D is recovered waiting for E", rec)
        rec = c.wait(cj, timeout=30)
        ra, rb = c.status(a), c.status(b)
        h.check(ra["state"] == "completed" and ra["attempts"] == 1, "A completed once", ra)
        h.check(rec["state"] == "completed" and rec["result"]["got"]["dependencies"]
                == {a: ra["result"], b: rb["result"]}, "C got A's and B's results", rec)
        rec = c.wait(d, timeout=30)
        h.check(rec["state"] == "completed", "D completed after E", rec)
        h.check("recovered 2 jobs waiting for their dependencies" in broker.output(),
                "the broker logs the waiting jobs it recovered")


def failover():
    with h.Stack("deps-ha") as s:
        s.redis()
        pair = hatest.HaPair(s, env=HB)
        first, c = pair.worker("dep", dict(HB, BOT_DEP_CMD=BOT))
        g = c.submit("dep", {"n": "g", "sleepMs": 2500})
        f = c.submit("dep", {"n": "f"}, dependsOn=[g], dependencyResults=True)
        h.check(c.status(f)["state"] == "waiting-children", "F waits", c.status(f))
        c.close()
        c = pair.fail_over(first)
        rec = hatest.wait_status(c, f, "pendingDependencies", "the new leader to answer STATUS of F")
        h.check(rec["state"] == "waiting-children" and rec["pendingDependencies"] == [g],
                "the new leader holds F waiting for G", rec)
        rec = c.wait(f, timeout=30)
        h.check(rec["state"] == "completed"
                and rec["result"]["got"]["dependencies"] == {g: c.status(g)["result"]},
                "F completed with G's result after the failover", rec)


def evicted():
    with h.Stack("deps-evicted") as s:
        s.redis()
        s.broker(env={"KEEP_FINISHED_JOBS": "1", "RETRY_ATTEMPTS": "1"})
        s.worker("--type", "dep", "--concurrency", "2", "--name", "w1", env=dict(HB, BOT_DEP_CMD=BOT))
        s.wait_workers(1)
        c = s.client()
        a = c.submit("dep", {"n": "a"})
        ra = c.wait(a)
        f = c.submit("dep", {"fail": True})
        c.wait(f)
        last = c.submit("dep", {"n": "last"})
        c.wait(last)
        h.check(a not in c.listed() and f not in c.listed(),
                "A and F are only in Redis (KEEP_FINISHED_JOBS=1)", c.listed())
        d = c.submit("dep", {"n": "d"}, dependsOn=[a, last], dependencyResults=True)
        rec = c.wait(d)
        h.check(rec["state"] == "completed" and rec["result"]["got"]["dependencies"][a] == ra["result"],
                "D, depending on A read from Redis, got A's result", rec)
        cmd, r = c.try_submit("dep", 1, dependsOn=[last, f])
        h.check(cmd == h.ACCEPTED and r.get("state") == "failed",
                "depending on a failed job only Redis holds: accepted, failed", cmd, r)
        rec = c.status(r["jobId"])
        h.check(rec["error"]["code"] == "dependency_failed" and f in rec["error"]["message"],
                "it failed dependency_failed naming F", rec)
        cmd, r = c.try_submit("dep", 1, dependsOn=[a, "no-such-job"])
        h.check(cmd == h.REJECTED and r["code"] == "bad_request" and "dependsOn[1]" in r["message"],
                "an id Redis does not hold either is refused", cmd, r)
        cmd, r = c.request(0x0A, {"jobs": [{"botType": "dep", "payload": 1, "dependsOn": [a]},
                                            {"botType": "dep", "payload": 2, "dependsOn": ["nope-1"]}]})
        h.check(cmd == 0x85 and r["jobs"][0].get("jobId") and r["jobs"][1].get("code") == "bad_request",
                "SUBMIT_MANY: an item on A (read from Redis) accepted, one on no job refused", cmd, r)
        h.check(c.wait(r["jobs"][0]["jobId"])["state"] == "completed", "the batch item ran")
        ok = c.submit("dep", {"n": "e"}, dependsOn=[f], onDependencyFailure="ignore")
        h.check(c.wait(ok)["state"] == "completed", "ignore: a failed job only Redis holds is done")


def memory():
    with h.Stack("deps-memory") as s:
        s.broker(redis=False)
        s.worker("--noop", "--type", "bulk", "--name", "w1")
        s.wait_workers(1)
        c = s.client()
        a = c.submit("bulk", 1, delayMs=300)
        cj = c.submit("bulk", 2, dependsOn=[a])
        h.check(c.status(cj)["state"] == "waiting-children", "C waits (no Redis)")
        h.check(c.wait(cj)["state"] == "completed", "C completed after A (no Redis)")


def test():
    restart()
    failover()
    evicted()
    memory()


if __name__ == "__main__":
    h.main(test)

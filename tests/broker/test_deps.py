"""SUBMIT dependsOn: a job that waits for other jobs and gets their results.

A real redis-server, broker and botmesh-worker whose bot ("dep", spawn
mode, depbot.py) answers with what it was given:

1. A and B (slow) then C with dependsOn [A, B] and dependencyResults: C is
   waiting-children (ACCEPTED state, the live event, STATUS with
   pendingDependencies, LIST state=waiting-children, STATS waitingChildren 1), then completes once
   both did, its bot given {payload, dependencies: {A: .., B: ..}}.
2. A dependency that fails (no runs left) fails C with dependency_failed
   naming it; with onDependencyFailure ignore, C runs with nil for it; a
   SUBMIT depending on it after it failed is accepted and fails the same.
3. dependsOn of an unknown id, a repeated id, a non-string, 101 ids: each
   bad_request naming dependsOn[i], each logged as a refused SUBMIT (also
   the unknown id, answered after a read from Redis).
4. CANCEL of a waiting job; REMOVE of a dependency fails its dependent.
5. RETRY of a failed dependent waits again for the dependency's RETRY.
6. 1000 jobs depending on one job are all released when it completes.
An idempotencyKey resubmitted with the same dependsOn is a duplicate; with
other ids, other options or none: idempotency_key_reused.
"""
import os
import re
import harness as h

HERE = os.path.dirname(os.path.abspath(__file__))
REMOVE, RETRY, SUBMIT_MANY, ACCEPTED_MANY = 0x0C, 0x05, 0x0A, 0x85
SUBSCRIBE, EVENT = 0x0F, 0x87


def test():
    with h.Stack("deps") as s:
        s.redis()
        broker = s.broker(env={"RETRY_ATTEMPTS": "1"})
        s.worker("--type", "dep", "--concurrency", "4", "--name", "w1",
                 env={"BOT_DEP_CMD": "/usr/bin/python3 " + os.path.join(HERE, "depbot.py")})
        s.worker("--noop", "--type", "bulk", "--concurrency", "200", "--name", "w2")
        s.wait_workers(2)
        c = s.client()

        # 1. A + B, then C with their results
        ev = s.client()
        cmd, r = ev.request(SUBSCRIBE, {"events": ["waiting-children"], "botTypes": ["dep"]})
        h.check(cmd == h.REPLY and r.get("subscription"), "SUBSCRIBE waiting-children", cmd, r)
        a = c.submit("dep", {"n": "a", "sleepMs": 600})
        b = c.submit("dep", {"n": "b", "sleepMs": 900})
        cmd, r = c.try_submit("dep", {"n": "c"}, dependsOn=[a, b], dependencyResults=True)
        h.check(cmd == h.ACCEPTED and r.get("state") == "waiting-children",
                "C is accepted waiting-children", cmd, r)
        cj = r["jobId"]
        cmd, e = ev.recv(10)
        h.check(cmd == EVENT and e["event"] == "waiting-children" and e["jobId"] == cj,
                "the live event waiting-children for C", cmd, e)
        rec = c.status(cj)
        h.check(rec["state"] == "waiting-children" and rec["dependsOn"] == [a, b]
                and sorted(rec["pendingDependencies"]) == sorted([a, b]),
                "C's record shows dependsOn and both pending", rec)
        h.check(cj in c.listed(state="waiting-children"), "LIST state=waiting-children lists C")
        h.check(c.stats()["types"]["dep"]["waitingChildren"] == 1, "STATS counts C waiting",
                c.stats()["types"]["dep"])
        rec = c.wait(cj, timeout=30)
        ra, rb = c.status(a), c.status(b)
        h.check(rec["state"] == "completed", "C completed", rec)
        h.check(rec["startedAt"] >= max(ra["finishedAt"], rb["finishedAt"]),
                "C started after A and B finished", rec, ra["finishedAt"], rb["finishedAt"])
        got = rec["result"]["got"]
        h.check(got == {"payload": {"n": "c"}, "dependencies": {a: ra["result"], b: rb["result"]}},
                "C's bot got its payload and both results", got)
        h.check(rec["pendingDependencies"] == [], "nothing pending once released", rec)
        h.check(c.stats()["types"]["dep"]["waitingChildren"] == 0, "STATS: none waiting")
        # without dependencyResults the payload is as submitted
        d = c.submit("dep", {"n": "d"}, dependsOn=[a])
        rec = c.wait(d)
        h.check(rec["state"] == "completed" and rec["result"]["got"] == {"n": "d"},
                "a dependent without dependencyResults gets its payload unchanged", rec)

        # An idempotencyKey names one job: its dependsOn and options count
        cmd, r = c.try_submit("dep", {"n": "k"}, dependsOn=[a], idempotencyKey="deps-key")
        h.check(cmd == h.ACCEPTED and not r["duplicate"], "K with dependsOn [A]", cmd, r)
        k = r["jobId"]
        cmd, r = c.try_submit("dep", {"n": "k"}, dependsOn=[a], idempotencyKey="deps-key")
        h.check(cmd == h.ACCEPTED and r["duplicate"] and r["jobId"] == k,
                "K again, the same dependsOn: a duplicate", cmd, r)
        for other in ({"dependsOn": [a, b]}, {"dependsOn": [b]},
                      {"dependsOn": [a], "onDependencyFailure": "ignore"},
                      {"dependsOn": [a], "dependencyResults": True}, {}):
            cmd, r = c.try_submit("dep", {"n": "k"}, idempotencyKey="deps-key", **other)
            h.check(cmd == h.REJECTED and r["code"] == "idempotency_key_reused",
                    "K with %r: idempotency_key_reused" % (other,), cmd, r)

        # 2. failure, and ignore
        f = c.submit("dep", {"fail": True, "sleepMs": 300})
        c1 = c.submit("dep", {"n": "c1"}, dependsOn=[a, f])
        c2 = c.submit("dep", {"n": "c2"}, dependsOn=[f, a], onDependencyFailure="ignore",
                      dependencyResults=True)
        rec = c.wait(c1)
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_failed"
                and f in rec["error"]["message"] and "bot_failed" in rec["error"]["message"],
                "C1 fails dependency_failed naming F and its code", rec)
        h.check(rec.get("attempts") == 0 and "attemptErrors" not in rec,
                "C1 never ran: no attempt, no attempt error", rec)
        rec = c.wait(c2)
        h.check(rec["state"] == "completed"
                and rec["result"]["got"]["dependencies"] == {f: None, a: ra["result"]},
                "C2 (ignore) runs with nil for the failed dependency", rec)
        h.check(rec["failedDependencies"] == [f], "C2's record names its failed dependency", rec)
        # A dependency failed before the SUBMIT: accepted, failed at once
        # as if it failed after.
        cmd, r = c.try_submit("dep", 1, dependsOn=[f])
        h.check(cmd == h.ACCEPTED and r.get("state") == "failed",
                "depending on a failed job: ACCEPTED, state failed", cmd, r)
        rec = c.status(r["jobId"])
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_failed"
                and rec["error"]["message"] == "dependency %s failed: bot_failed" % f
                and rec.get("attempts") == 0,
                "it failed dependency_failed naming F and its code, never ran", rec)

        # 3. refusals
        for deps, want in (([a, "no-such-job"], "dependsOn[1]"), ([a, b, a], "dependsOn[2]"),
                           ([a, 7], "dependsOn[1]"), ([a] * 101, "dependsOn"),
                           ([], "dependsOn")):
            cmd, r = c.try_submit("dep", 1, dependsOn=deps)
            h.check(cmd == h.REJECTED and r["code"] == "bad_request" and want in r["message"],
                    "dependsOn %r refused naming %s" % (deps[:3], want), cmd, r)
        # An id the broker does not hold is looked for in Redis first; its
        # refusal is logged as one answered at once: naming SUBMIT.
        for line in (r"rejected SUBMIT from a client \(routing id [0-9A-F]+\): bad_request "
                     r"\(dependsOn\[1\] \(no-such-job\) names no job\)",
                     r"rejected SUBMIT from a client \(routing id [0-9A-F]+\): bad_request "
                     r"\(dependsOn\[2\] repeats dependsOn\[0\]"):
            h.wait_until(lambda line=line: re.search(r"WARN +broker +" + line, broker.output()), 5,
                         "the log line: %s" % line)
        cmd, r = c.try_submit("dep", 1, onDependencyFailure="ignore")
        h.check(cmd == h.REJECTED and r["code"] == "bad_request", "options need dependsOn", r)
        cmd, r = c.try_submit("dep", 1, dependsOn=[a], onDependencyFailure="maybe")
        h.check(cmd == h.REJECTED and "onDependencyFailure" in r["message"],
                "a wrong onDependencyFailure is refused", r)

        # 4. CANCEL a waiting job; REMOVE a dependency
        slow = c.submit("dep", {"sleepMs": 60000})
        w1 = c.submit("dep", 1, dependsOn=[slow])
        cmd, r = c.request(h.CANCEL, {"jobId": w1})
        h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "CANCEL of a waiting job", r)
        queued = c.submit("dep", 1, delayMs=3600_000)
        w2 = c.submit("dep", 1, dependsOn=[queued])
        cmd, r = c.request(REMOVE, {"jobId": queued})
        h.check(cmd == h.REPLY and r.get("removed") is True, "the delayed dependency is removed", r)
        rec = c.wait(w2)
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_failed"
                and "removed" in rec["error"]["message"], "its dependent fails: removed", rec)

        # 5. RETRY of a failed dependent waits for the dependency's own RETRY
        g = c.submit("dep", {"fail": True})
        w3 = c.submit("dep", {"n": "w3"}, dependsOn=[g])
        h.check(c.wait(w3)["error"]["code"] == "dependency_failed", "W3 failed by G")
        cmd, r = c.request(RETRY, {"jobId": w3})
        h.check(cmd == h.ACCEPTED, "RETRY of W3 accepted", cmd, r)
        h.check(c.status(w3)["state"] == "waiting-children", "W3 waits for G again",
                c.status(w3))
        cmd, r = c.request(RETRY, {"jobId": g})
        h.check(cmd == h.ACCEPTED, "RETRY of G accepted", cmd, r)
        rec = c.wait(w3)
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_failed",
                "G failing again fails W3 again", rec)

        # 6. 1000 dependents of one job
        one = c.submit("dep", {"sleepMs": 1500})
        items = [{"botType": "bulk", "payload": i, "dependsOn": [one]} for i in range(1000)]
        cmd, r = c.request(SUBMIT_MANY, {"jobs": items}, timeout=30)
        h.check(cmd == ACCEPTED_MANY and all(j.get("state") == "waiting-children"
                                               for j in r["jobs"]),
                "1000 dependents accepted waiting-children", cmd, str(r)[:300])
        ids = [j["jobId"] for j in r["jobs"]]
        h.check(c.stats()["types"]["bulk"]["waitingChildren"] == 1000, "STATS: 1000 waiting",
                c.stats()["types"]["bulk"])
        h.wait_until(lambda: c.stats()["types"]["bulk"]["completed"] >= 1000, 60,
                     "the 1000 dependents to complete")
        states = {c.status(j)["state"] for j in ids}
        h.check(states == {"completed"}, "the dependents completed", states)
        h.check(c.stats()["types"]["bulk"]["waitingChildren"] == 0, "none left waiting")


if __name__ == "__main__":
    h.main(test)

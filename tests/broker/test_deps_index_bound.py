"""The dependents index does not keep the jobs that left their wait.

A real broker without Redis and a botmesh-worker serving "bulk" (noop):

X is delayed an hour (it does not end). Five times, 1000 jobs are submitted
(SUBMIT_MANY) with dependsOn [X, F] for a fresh delayed F, and F is
cancelled: the 1000 fail dependency_failed. The index's entries
(broker_dependency_watches, METRICS) must then be 0: the failed jobs' ids
in X's list were swept as they left (before: kept until X ends, 5000 ids
here, growing with every round; and no gauge said so). One job waiting
for X counts 1; CANCEL of X fails it and the index is empty again.
"""
import harness as h

SUBMIT_MANY, ACCEPTED_MANY = 0x0A, 0x85
ROUNDS, BATCH = 5, 1000


def watches(c):
    """broker_dependency_watches from METRICS, or None when absent."""
    return h.broker_gauge(c, "broker_dependency_watches")


def test():
    with h.Stack("deps-index-bound") as s:
        s.broker(redis=False)
        s.worker("--noop", "--type", "bulk", "--concurrency", "4", "--name", "w1")
        s.wait_workers(1)
        c = s.client()

        x = c.submit("bulk", "x", delayMs=3600_000)
        for r in range(ROUNDS):
            f = c.submit("bulk", "f", delayMs=3600_000)
            items = [{"botType": "bulk", "payload": i, "dependsOn": [x, f]} for i in range(BATCH)]
            cmd, reply = c.request(SUBMIT_MANY, {"jobs": items}, timeout=30)
            h.check(cmd == ACCEPTED_MANY and all(j.get("state") == "waiting-children"
                                                  for j in reply["jobs"]),
                    "round %d: %d dependents waiting" % (r, BATCH), cmd, str(reply)[:300])
            h.check(watches(c) == 2 * BATCH, "round %d: the index holds each twice (X, F)" % r,
                    watches(c))
            cmd, reply = c.request(h.CANCEL, {"jobId": f})
            h.check(cmd == h.REPLY, "round %d: F cancelled" % r, cmd, reply)
        t = c.stats()["types"]["bulk"]
        h.check(t["failed"] == ROUNDS * BATCH and t["waitingChildren"] == 0,
                "every dependent failed by its F", t)
        h.check(watches(c) == 0, "no entry left for the jobs that failed (X has not ended)",
                watches(c))

        w = c.submit("bulk", "w", dependsOn=[x])
        h.check(watches(c) == 1, "one job waiting for X: one entry", watches(c))
        cmd, reply = c.request(h.CANCEL, {"jobId": x})
        h.check(cmd == h.REPLY, "X cancelled", cmd, reply)
        rec = c.wait(w)
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_failed",
                "W failed by X", rec)
        h.check(watches(c) == 0, "the index is empty", watches(c))


if __name__ == "__main__":
    h.main(test)

"""CANCEL and RETRY cycles of a waiting job leave one entry for it in
the dependents index.

A real broker without Redis and a botmesh-worker serving "bulk" (noop):
X is delayed an hour (it does not end); O1..O10 and W wait for X (11
entries, broker_dependency_watches in METRICS). W is cancelled and
retried five times: each RETRY lists W again (16 entries, W's five
earlier ones stale). O1..O4 are cancelled: the list is swept once its
stale entries pass half of it, and must keep each of the 7 jobs still
waiting once (before: W's six copies were all kept, 12 entries, and
stayed while W waited). CANCEL of X fails the 7 and empties the index.
"""
import harness as h


def watches(c):
    """broker_dependency_watches from METRICS, or None when absent."""
    return h.broker_gauge(c, "broker_dependency_watches")


def test():
    with h.Stack("deps-index-dupes") as s:
        s.broker(redis=False)
        s.worker("--noop", "--type", "bulk", "--name", "w1")
        s.wait_workers(1)
        c = s.client()

        x = c.submit("bulk", "x", delayMs=3600_000)
        others = [c.submit("bulk", i, dependsOn=[x]) for i in range(10)]
        w = c.submit("bulk", "w", dependsOn=[x])
        h.check(watches(c) == 11, "11 jobs wait for X", watches(c))
        for i in range(5):
            cmd, r = c.request(h.CANCEL, {"jobId": w})
            h.check(cmd == h.REPLY, "cycle %d: W cancelled" % i, cmd, r)
            cmd, r = c.request(h.RETRY, {"jobId": w})
            h.check(cmd == h.ACCEPTED and c.status(w)["state"] == "waiting-children",
                    "cycle %d: W retried, waiting for X" % i, cmd, r)
        for o in others[:4]:
            cmd, r = c.request(h.CANCEL, {"jobId": o})
            h.check(cmd == h.REPLY, "O cancelled", cmd, r)
        h.check(c.stats()["types"]["bulk"]["waitingChildren"] == 7, "7 jobs still wait",
                c.stats()["types"]["bulk"])
        h.check(watches(c) == 7, "the swept index holds each waiting job once", watches(c))
        cmd, r = c.request(h.CANCEL, {"jobId": x})
        h.check(cmd == h.REPLY, "X cancelled", cmd, r)
        rec = c.wait(w)
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_failed",
                "W failed by X", rec)
        h.check(watches(c) == 0, "the index is empty", watches(c))


if __name__ == "__main__":
    h.main(test)

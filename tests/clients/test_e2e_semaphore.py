"""A Python worker and a Node worker serve the same bot type at once, and the
broker's semaphore (MAX_PYWORK_BOTS) still holds across them.

Limit 3, credits 2 + 2: the workers could run 4 at once, the semaphore allows
3, and reaching 3 needs both workers. Each job sleeps 200 ms and records its
start and end (wall clock, same machine); the recorded intervals lie inside
the permit's, so their largest overlap can only be <= the real concurrency.
"""
from e2elib import harness, botmesh, need_node, pyworker, nodeworker, wait_worker, max_overlap
from harness import check

LIMIT, JOBS = 3, 12


def main():
    need_node()
    with harness.Stack("clients-sem") as s:
        s.redis()
        s.broker(env={"MAX_PYWORK_BOTS": str(LIMIT)})
        pyworker(s, "py-sem", credit=2)
        nodeworker(s, "node-sem", types="pywork", credit=2)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-sem")
        wait_worker(c, "node-sem")
        ids = [c.submit("pywork", {"sleepMs": 200, "i": i}, notify=True) for i in range(JOBS)]
        usage_seen = []
        recs = []
        for jid in ids:
            st = c.stats()["types"]["pywork"]
            usage_seen.append(st["usage"])
            recs.append(c.wait(jid, timeout=30))
        check(all(r["state"] == "completed" for r in recs), "all %d jobs completed" % JOBS,
              [(r["jobId"], r["state"], r.get("error")) for r in recs if r["state"] != "completed"])
        by = {}
        for r in recs:
            by.setdefault(r["result"]["worker"], []).append(r)
        check(all(r["worker"] == r["result"]["worker"] for r in recs), "each record names the worker that ran it",
              [(r["worker"], r["result"]["worker"]) for r in recs])
        harness.log("jobs per worker:", {k: len(v) for k, v in by.items()})
        check(set(by) == {"py-sem", "node-sem"}, "both the Python and the Node worker ran jobs", list(by))
        conc = max_overlap([(r["result"]["start"], r["result"]["end"]) for r in recs])
        harness.log("max concurrency %d (limit %d); STATS usage seen %s" % (conc, LIMIT, usage_seen))
        check(conc == LIMIT, "max concurrency across both workers == MAX_PYWORK_BOTS", conc)
        check(max(usage_seen) <= LIMIT, "STATS usage never above the limit", usage_seen)
        per = {k: max_overlap([(r["result"]["start"], r["result"]["end"]) for r in v]) for k, v in by.items()}
        check(all(v <= 2 for v in per.values()), "no worker ran more than its credit at once", per)
        c.close()


if __name__ == "__main__":
    harness.main(main)

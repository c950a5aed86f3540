"""The broker's semaphore holds with real Java bots: 30 java jobs of 300 ms,
MAX_JAVA_BOTS=3, two workers of credit 5 each.  The bots' own start and end
timestamps (in their results) show at most 3 running at any moment, and 3
reached.  The bots' intervals lie inside the permits' (a permit is taken
before the JVM starts and given back after it exited), so their overlap can
only understate the real concurrency, never overstate it.
"""
import harness
from harness import check, log
from wlib import max_overlap

JOBS, LIMIT, SLEEP_MS = 30, 3, 300


def main():
    with harness.Stack("worker-e2e-semaphore") as s:
        s.broker(redis=False, env={"MAX_JAVA_BOTS": str(LIMIT)})
        s.worker("--type", "java", "--concurrency", "5", "--name", "java-a")
        s.worker("--type", "java", "--concurrency", "5", "--name", "java-b")
        s.wait_workers(2, "java")
        c = s.client()
        ids = [c.submit("java", {"operation": "batch_process", "records": 100, "sleepMs": SLEEP_MS, "i": i})
               for i in range(JOBS)]
        usage = []
        recs = []
        for jid in ids:
            usage.append(c.stats()["types"]["java"]["usage"])
            recs.append(c.wait(jid, timeout=90))
        bad = [(r["jobId"], r["state"], r.get("error")) for r in recs if r["state"] != "completed"]
        check(not bad, "all %d java jobs completed" % JOBS, bad)
        intervals = [(r["result"]["startedAt"], r["result"]["finishedAt"]) for r in recs]
        check(all(e - b >= SLEEP_MS for b, e in intervals), "each bot ran at least %d ms" % SLEEP_MS)
        conc = max_overlap(intervals)
        by_worker = {}
        for r in recs:
            by_worker.setdefault(r["worker"], []).append(r)
        log("max concurrency %d; jobs per worker %s; STATS usage seen %s" % (
            conc, {k: len(v) for k, v in by_worker.items()}, usage))
        check(conc <= LIMIT, "never more than MAX_JAVA_BOTS=%d bots at once" % LIMIT, conc)
        check(conc == LIMIT, "the limit of %d was reached" % LIMIT, conc)
        check(max(usage) <= LIMIT, "STATS usage never above the limit", usage)
        check(len(by_worker) == 2, "both workers ran jobs", list(by_worker))
        span = (max(e for _, e in intervals) - min(b for b, _ in intervals)) / 1000.0
        log("30 jobs in %.1f s" % span)
        c.close()


if __name__ == "__main__":
    harness.main(main)

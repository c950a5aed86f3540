"""STATS totals go on across failovers: a new leader continues the counts of
the last metric snapshot in Redis, and a leader stopped with SIGTERM writes
one as it stops.

Two real brokers with BROKER_HA=redis on one real redis-server
(METRICS_SNAPSHOT_INTERVAL=5), a fake worker the test drives.  On the
first leader: 12 jobs submitted (8 completed, 4 failed) and 3 submissions
of a type nobody serves rejected; once a snapshot holds those counts, the
leader is killed with SIGKILL.  The second leader's STATS totals and
python counts must be at least those before (they are the snapshot's,
written after the last job ended), and its own snapshots in Redis must not
drop below them.  On the second leader: 6 more jobs completed, then at
once (well within the 5 s interval, so no timed snapshot holds them) a
SIGTERM: the third leader (the first broker, started again) must count
exactly all 18 jobs.  (Before: every new leader's STATS started from 0,
its totals the jobs it saw itself: submitted 0 after the kill.)
"""
import json
import signal
import harness as h
import hatest
from fakeworker import FakeWorker

SNAP = "botmesh:{bm}:snapshots"


def last_snapshot(s):
    text = s.redis_cli("LINDEX", SNAP, "0").strip()
    return json.loads(text) if text else None


def counts(c):
    # Once the leader read the last snapshot (totals.known): before, its
    # totals are only its own counts.
    st = h.wait_until(lambda: (lambda x: x if x["totals"].get("known") else None)(c.stats()),
                      15, "the leader's STATS totals to be known (the last snapshot read)")
    t, py = st["totals"], st["types"].get("python", {})
    return {"submitted": t["submitted"], "completed": t["completed"], "failed": t["failed"],
            "rejected": t["rejected"], "python.submitted": py.get("submitted", 0),
            "python.completed": py.get("completed", 0), "python.failed": py.get("failed", 0)}


def run(c, endpoint, name, ok, failed):
    """ok + failed python jobs submitted at c and run by a fake worker."""
    w = FakeWorker(endpoint, name, ["python"], 20)
    ids = [c.submit("python", {"n": n}) for n in range(ok + failed)]
    for n in range(ok + failed):
        job = w.recv_job(timeout=10)
        h.check(job is not None, "a JOB for each of the %d jobs (%d so far)" % (ok + failed, n))
        w.done(job["jobId"], {"n": n}, ok=n < ok)
    h.wait_until(lambda: all(c.status(j)["state"] in ("completed", "failed") for j in ids), 15,
                 "the %d jobs to end" % len(ids))
    w.close()
    return ids


def failover(pair, old, sig):
    pair.procs[old].signal(sig)
    try:
        pair.procs[old].p.wait(15)
    except Exception:
        h.check(False, "broker %s ends on signal %d" % (old, sig), pair.procs[old].output()[-2000:])
    new = pair.wait_leader(timeout=15, other_than=old)
    pair.start(old)                         # back, as a standby
    c = h.Client(pair.endpoint(new))
    return new, c


def at_least(after, before, what):
    low = {k: (after[k], v) for k, v in before.items() if after[k] < v}
    h.check(not low, "%s: every total at least the one before (after, before): %s"
            % (what, low), after, before)


def test():
    with h.Stack("ha-stats-totals") as s:
        s.redis()
        pair = hatest.HaPair(s, env={"METRICS_SNAPSHOT_INTERVAL": "5"})
        first = pair.wait_leader()
        c = h.Client(pair.endpoint(first))
        run(c, pair.endpoint(first), "w1", 8, 4)
        for n in range(3):
            cmd, r = c.try_submit("nosuch", {"n": n})
            h.check(cmd == h.REJECTED, "a type nobody serves is rejected", r)
        before = h.wait_until(lambda: (lambda x: x if x["submitted"] == 12 and x["completed"] == 8
                                       and x["failed"] == 4 and x["rejected"] >= 3 else None)(
            counts(c)), 10, "the first leader to count 12 jobs, 8 completed, 4 failed, 3 rejected")
        h.log("first leader %s: %s" % (first, before))
        total = {k: before[k] for k in ("submitted", "completed", "failed", "rejected")}
        h.wait_until(lambda: (lambda x: x and x["types"].get("python", {}).get("completed") == 8
                              and x["types"]["python"].get("failed") == 4
                              and {k: x["totals"].get(k) for k in total} == total)(
            last_snapshot(s)), 15, "a snapshot in Redis with the first leader's counts %s" % total)
        c.close()

        second, c = failover(pair, first, signal.SIGKILL)
        after = counts(c)
        h.log("second leader %s after SIGKILL of %s: %s" % (second, first, after))
        at_least(after, before, "after the SIGKILL")
        killed_at = last_snapshot(s)["t"]
        snap = h.wait_until(lambda: (lambda x: x if x["t"] > killed_at else None)(last_snapshot(s)),
                            15, "a snapshot of the second leader")
        h.check(snap["totals"]["completed"] >= 8 and snap["types"]["python"]["completed"] >= 8,
                "the second leader's snapshot continues the counts", snap)

        run(c, pair.endpoint(second), "w2", 6, 0)
        before = h.wait_until(lambda: (lambda x: x if x["submitted"] == after["submitted"] + 6
                                       and x["completed"] == after["completed"] + 6 else None)(
            counts(c)), 10, "the second leader to count its own 6 jobs on top of %s" % after)
        c.close()
        third, c = failover(pair, second, signal.SIGTERM)
        after = counts(c)
        h.log("third leader %s after SIGTERM of %s: %s" % (third, second, after))
        h.check(after == before, "after a SIGTERM the totals are exactly those before "
                "(the stopping leader wrote a snapshot)", after, before)
        h.check(after["submitted"] == 18 and after["completed"] == 14 and after["failed"] == 4,
                "18 jobs submitted, 14 completed, 4 failed over the three leaders", after)
        c.close()


if __name__ == "__main__":
    h.main(test)

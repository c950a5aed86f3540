"""The dashboard's throughput after a Redis outage: jobs that ended while
Redis was away are spread over the whole time since the last snapshot
written, not counted as one interval's (before: 10 jobs that ended over
~4 s of outage read as 10 jobs/s in the first snapshot after it, with
1 s snapshots).

A real redis-server and broker (METRICS_SNAPSHOT_INTERVAL=1), a fake
worker the test drives: 10 jobs taken, Redis killed, the 10 ended one by
one over ~3 s (the outage itself, not a wait for an event), Redis back."""
import json
import time

import harness as h
from fakeworker import FakeWorker

JOBS = 10


def snapshots(s):
    return [json.loads(x) for x in s.redis_cli("LRANGE", "botmesh:{bm}:snapshots", "0", "-1").splitlines() if x]


def test():
    env = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "50", "METRICS_SNAPSHOT_INTERVAL": "1",
           "MAX_PYTHON_BOTS": str(JOBS)}
    with h.Stack("snapshot_gap") as s:
        redis = s.redis()
        s.broker(env=env)
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "broker connected to redis")
        w = FakeWorker(s.endpoint, "w1", ["python"], JOBS)
        ids = [c.submit("python", {"n": n}) for n in range(JOBS)]
        got = [w.recv_job()["jobId"] for _ in ids]
        h.check(sorted(got) == sorted(ids), "the worker holds the %d jobs" % JOBS)
        h.wait_until(lambda: snapshots(s), 10, "a first snapshot")

        redis.kill()
        h.wait_until(lambda: not c.request(h.PING)[1]["redis"], 10, "the broker to notice Redis gone")
        down = time.monotonic()
        for job in ids:
            w.done(job, {"ok": True})
            w.recv(timeout=0.3)         # heartbeats meanwhile: 0.3 s between DONEs
        h.wait_until(lambda: all(c.status(j)["state"] == "completed" for j in ids), 10,
                     "the jobs to complete in the broker's memory")
        s.redis()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 15, "the broker to reconnect")
        outage = time.monotonic() - down
        h.wait_until(lambda: snapshots(s) and snapshots(s)[0]["types"]["python"]["completed"] == JOBS,
                     10, "a snapshot after the outage")
        first = [x["types"]["python"] for x in reversed(snapshots(s))          # oldest first
                 if x["types"]["python"]["completed"] == JOBS][0]
        rate = first["throughput"]
        h.log("outage %.1f s; the first snapshot after it: completed %d, throughput %.2f jobs/s"
              % (outage, first["completed"], rate))
        h.check(0 < rate <= JOBS / (outage - 1.0),
                "throughput %.2f jobs/s: %d jobs over the %.1f s since the last snapshot written "
                "(not %d jobs in one 1 s interval)" % (rate, JOBS, outage, JOBS), first)
        w.close()
        c.close()


if __name__ == "__main__":
    h.main(test)

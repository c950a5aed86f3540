"""STATS totals across a stop and a restart: the stop's snapshot holds the
jobs that ended while the writes flushed, and a restarted broker says its
totals are not known (totals.known false) until it read the last snapshot.

Real redis-server, a solo broker (METRICS_SNAPSHOT_INTERVAL=60: no timed
snapshot in the test's time) and a fake worker the test drives.  One job
runs; redis-server is stopped (SIGSTOP), the broker gets SIGTERM (its
writes cannot flush), the worker's DONE arrives and is counted, then
redis-server goes on (SIGCONT) and the broker ends.  The broker started
again with redis-server stopped answers STATS with totals.known false;
once redis-server goes on, totals.known true and 1 submitted, 1 completed.
A type "ghost" added to the last snapshot, that no worker served and
nothing names, is not in the restarted broker's STATS.  (Before: the
stop's snapshot was taken at the SIGTERM, without the job; STATS had no
`known`, its totals 0 while the snapshot was unread; every type of the
snapshot came back.)
"""
import json
import signal

import harness as h
from fakeworker import FakeWorker

ENV = {"METRICS_SNAPSHOT_INTERVAL": "60"}
SNAP = "botmesh:{bm}:snapshots"


def totals(c):
    return c.stats()["totals"]


def test():
    with h.Stack("stats-totals-stop") as s:
        redis = s.redis()
        b = s.broker(env=ENV)
        c = s.client()
        w = FakeWorker(s.endpoint, "w1", ["python"], 1)
        job_id = c.submit("python", {"n": 1})
        job = w.recv_job(timeout=10)
        h.check(job is not None and job["jobId"] == job_id, "the job is sent to the worker", job)
        redis.signal(signal.SIGSTOP)
        try:
            b.signal(signal.SIGTERM)
            w.done(job_id, {"n": 1})
            h.wait_until(lambda: c.status(job_id)["state"] == "completed", 10,
                         "the stopping broker to take the job's DONE")
        finally:
            redis.signal(signal.SIGCONT)
        try:
            b.p.wait(15)
        except Exception:
            h.check(False, "the broker ends once its writes are flushed", b.output()[-2000:])
        c.close()
        w.close()
        # A type no worker served and nothing names (say, a typo QUEUE
        # made) in that snapshot: not brought back by the restart.
        snap = json.loads(s.redis_cli("LINDEX", SNAP, "0"))
        h.check(snap["totals"]["completed"] == 1, "the stop's snapshot holds the job", snap)
        snap["types"]["ghost"] = dict(snap["types"]["python"])
        s.redis_cli("LPUSH", SNAP, json.dumps(snap))

        redis.signal(signal.SIGSTOP)
        try:
            s.broker(env=ENV, name="broker-2", wait_recovered=False)
            c = s.client()
            t = totals(c)
            h.check(t.get("known") is False, "before the last snapshot is read, STATS says "
                    "its totals are not known", t)
        finally:
            redis.signal(signal.SIGCONT)
        t = h.wait_until(lambda: (lambda x: x if x.get("known") else None)(totals(c)), 15,
                         "the restarted broker's totals to be known")
        h.check(t["submitted"] == 1 and t["completed"] == 1,
                "the totals hold the job that completed during the stop", t)
        types = c.stats()["types"]
        h.check(types.get("python", {}).get("completed") == 1,
                "python (in the bot types record) goes on with its count", types.get("python"))
        h.check("ghost" not in types, "a type of the snapshot nothing knows is forgotten",
                types.get("ghost"))
        c.close()


if __name__ == "__main__":
    h.main(test)

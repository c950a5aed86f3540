"""A duplicate 202 (the same idempotencyKey again) says the job's priority,
not the one the new request asked for: a real gateway, broker and Redis.

The broker's ACCEPTED for a duplicate carries the job's priority (and each
duplicate outcome of an ACCEPTED_MANY), whether the job is in its memory,
named by an earlier item of the same batch, or only in Redis (finished
before a broker restart).  Before, POST /invoke and /invoke/batch echoed
the new request's priority, which the job never had.
"""
import os
import sys

import harness as h
from gwtest import gateway, curl, post_json

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "broker"))
from fakeworker import FakeWorker   # noqa: E402


def job(key, priority):
    return {"botType": "python", "payload": {"k": key}, "idempotencyKey": key, "priority": priority}


def test():
    with h.Stack("gw-duplicate-priority") as s:
        s.redis()
        broker = s.broker()
        gw = gateway(s)
        u = gw.url

        r = post_json(u + "/invoke", job("k1", 1))
        h.check(r.status == 202 and r.json["priority"] == 1 and "duplicate" not in r.json,
                "the first request: 202, priority 1", r)
        first = r.json["jobId"]
        r = post_json(u + "/invoke", job("k1", 5))
        h.check(r.status == 202 and r.json["duplicate"] is True and r.json["jobId"] == first
                and r.json["priority"] == 1,
                "the same key, priority 5: 202 duplicate, the job's priority 1", r)
        h.check(curl(u + "/job/" + first).json["priority"] == 1, "the job's record says 1")

        r = post_json(u + "/invoke/batch", [job("k1", 7), job("k2", 2), job("k2", 9)])
        jobs = r.json["jobs"] if r.json else []
        h.check(r.status == 207 and [j.get("priority") for j in jobs] == [1, 2, 2]
                and [j.get("duplicate", False) for j in jobs] == [True, False, True],
                "a batch: the earlier job's priority 1, a new job's 2, its duplicate's 2", r)

        # A job only Redis holds: finished, then the broker restarted.
        w = FakeWorker(s.endpoint, "fw-prio", ["python"], 1)
        r = post_json(u + "/invoke", job("k3", 4))
        third = r.json["jobId"]
        got = None
        while got != third:                          # k1 and k2 are queued before it
            got = w.recv_job()["jobId"]
            w.done(got, result=1)
        h.wait_until(lambda: curl(u + "/job/" + third, show=False).json["state"] == "completed", 5,
                     "job k3 to complete")
        w.close()
        broker.stop()
        s.broker()
        h.wait_until(lambda: post_json(u + "/invoke", job("k3", 8), show=False).status == 202, 15,
                     "the gateway to reach the restarted broker")
        r = post_json(u + "/invoke", job("k3", 8))
        h.check(r.status == 202 and r.json["duplicate"] is True and r.json["jobId"] == third
                and r.json["status"] == "completed" and r.json["priority"] == 4,
                "after a restart (the job in Redis only): duplicate, completed, priority 4", r)


if __name__ == "__main__":
    h.main(test)

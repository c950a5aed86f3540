"""A duplicate SUBMIT (an idempotencyKey seen before) answers the first
job's id and its state now: a client that retries after the job ran learns
that it ran, and does not wait for a run that will not come.

A real redis-server and broker (KEEP_FINISHED_JOBS=1, so that a finished
job leaves the broker's memory and only Redis can tell its state); a fake
worker the test drives.
"""
import harness as h
from fakeworker import FakeWorker

SUBMIT_MANY, ACCEPTED_MANY = 0x0A, 0x85


def dup(c, key, n):
    cmd, r = c.try_submit("python", {"n": n}, idempotencyKey=key)
    h.check(cmd == h.ACCEPTED and r["duplicate"] is True, "SUBMIT with key %s is a duplicate" % key, r)
    return r


def test():
    with h.Stack("duplicate_state") as s:
        s.redis()
        s.broker(env={"KEEP_FINISHED_JOBS": "1"})
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "broker connected to redis")

        first = c.submit("python", {"n": 1}, idempotencyKey="order-1")
        r = dup(c, "order-1", 1)
        h.check(r["jobId"] == first and r.get("state") == "queued",
                "no worker yet: the duplicate answers the first job, queued", r)

        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        job = w.recv_job(10)
        h.check(job["jobId"] == first, "the worker runs the first job", job)
        r = dup(c, "order-1", 1)
        h.check(r.get("state") == "running", "while it runs: running", r)

        w.done(first, result={"ok": 1})
        c.wait(first)
        r = dup(c, "order-1", 1)
        h.check(r["jobId"] == first and r.get("state") == "completed",
                "after it ran: completed (the broker holds it)", r)

        # A second job ends: with KEEP_FINISHED_JOBS=1 the first one leaves
        # the broker's memory; its state now comes from Redis.
        second = c.submit("python", {"n": 2}, idempotencyKey="order-2", attempts=1)
        w.done(w.recv_job(10)["jobId"], ok=False)
        c.wait(second)
        third = c.submit("python", {"n": 3})
        w.done(w.recv_job(10)["jobId"], result=3)
        c.wait(third)
        r = dup(c, "order-1", 1)
        h.check(r["jobId"] == first and r.get("state") == "completed",
                "out of the broker's memory: completed, read from Redis", r)
        r = dup(c, "order-2", 2)
        h.check(r["jobId"] == second and r.get("state") == "failed", "a failed job: failed", r)

        # The same in a SUBMIT_MANY: each duplicate item with its state.
        cmd, r = c.request(SUBMIT_MANY, {"jobs": [
            {"botType": "python", "payload": {"n": 1}, "idempotencyKey": "order-1"},
            {"botType": "python", "payload": {"n": 2}, "idempotencyKey": "order-2"},
            {"botType": "python", "payload": {}, "idempotencyKey": "order-9"},
            {"botType": "python", "payload": {}, "idempotencyKey": "order-9"}]})
        h.check(cmd == ACCEPTED_MANY, "SUBMIT_MANY answered", cmd, r)
        out = r["jobs"]
        h.check(out[0]["jobId"] == first and out[0]["duplicate"] is True
                and out[0].get("state") == "completed", "item 0: the completed job", out[0])
        h.check(out[1]["jobId"] == second and out[1].get("state") == "failed",
                "item 1: the failed job", out[1])
        h.check(out[2]["duplicate"] is False and "state" not in out[2], "item 2: a new job", out[2])
        h.check(out[3]["jobId"] == out[2]["jobId"] and out[3]["duplicate"] is True,
                "item 3: item 2's job (the same key in one batch)", out[3])
        w.close()


if __name__ == "__main__":
    h.main(test)

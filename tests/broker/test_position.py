"""ACCEPTED's `position` and the default priority (protocol.md section 4).

A real broker (no Redis) and no worker for the type at first, so every job
stays queued and each position can be predicted exactly; then one fake
worker takes the jobs and the dispatch order must match the positions.
"""
import harness as h
from fakeworker import FakeWorker


def accepted(c, bot_type, payload, **opts):
    cmd, reply = c.try_submit(bot_type, payload, **opts)
    h.check(cmd == h.ACCEPTED, "SUBMIT %r accepted" % (opts,), reply)
    return reply


def test():
    with h.Stack("position") as s:
        s.broker(redis=False)
        c = s.client()

        # An empty queue: the first job is next to be dispatched.
        a = accepted(c, "python", {"n": "a"}, priority=5)
        h.check(a.get("position") == 1, "first job in an empty queue: position 1", a)

        # Priority 5 again: behind the first (FIFO within a priority).
        b = accepted(c, "python", {"n": "b"}, priority=5)
        h.check(b.get("position") == 2, "second job at priority 5: position 2", b)

        # Priority 1 jumps ahead of both.
        d = accepted(c, "python", {"n": "d"}, priority=1)
        h.check(d.get("position") == 1, "priority 1 ahead of two priority-5 jobs: position 1", d)

        # No priority: 3, behind priority 1, ahead of priority 5.
        e = accepted(c, "python", {"n": "e"})
        h.check(e.get("position") == 2, "no priority = 3: behind the priority-1 job only", e)
        h.check(c.status(e["jobId"])["priority"] == 3, "a SUBMIT without priority has priority 3",
                c.status(e["jobId"]))
        f = accepted(c, "python", {"n": "f"}, priority=3)
        h.check(f.get("position") == 3, "explicit priority 3 after the default one: position 3", f)
        g = accepted(c, "python", {"n": "g"}, priority=0)
        h.check(g.get("position") == 1, "priority 0 goes first: position 1", g)

        # Other types have their own queues.
        n = accepted(c, "node", {"n": "n"}, priority=9)
        h.check(n.get("position") == 1, "a job of another type counts only its own queue", n)

        # A duplicate (same idempotencyKey) carries no position.
        k1 = accepted(c, "node", {"n": "k"}, idempotencyKey="pos-key")
        h.check(k1.get("position") == 1, "the first job with a key: position 1 (priority 3 before 9)", k1)
        k2 = accepted(c, "node", {"n": "k"}, idempotencyKey="pos-key")
        h.check(k2["duplicate"] is True and "position" not in k2,
                "a duplicate answers the first job's id without a position", k2)

        # The worker takes the python jobs in exactly the predicted order.
        w = FakeWorker(s.endpoint, "w-pos", ["python"], 1)
        order = []
        for _ in range(6):
            job = w.recv_job()
            h.check(job is not None, "a python job dispatched", order)
            order.append(job["jobId"])
            w.done(job["jobId"], {"ok": 1})
        expect = [g, d, e, f, a, b]
        h.check(order == [x["jobId"] for x in expect],
                "dispatch order g(0) d(1) e(3, default) f(3) a(5) b(5)", order)

        # RETRY answers the job's place again: the cancelled priority-9 node
        # job goes back behind the queued priority-1 and priority-3 ones.
        w.close()
        c.request(h.CANCEL, {"jobId": n["jobId"]})
        one = accepted(c, "node", {"n": 1}, priority=1)
        h.check(one.get("position") == 1, "node priority 1 ahead of the keyed priority-3 job", one)
        cmd, r = c.request(h.RETRY, {"jobId": n["jobId"]})
        h.check(cmd == h.ACCEPTED and r["jobId"] == n["jobId"], "RETRY of the cancelled job accepted", r)
        h.check(r.get("position") == 3,
                "retried priority-9 job: behind the priority-1 and priority-3 node jobs", r)


if __name__ == "__main__":
    h.main(test)

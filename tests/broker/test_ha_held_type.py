"""A new leader takes SUBMITs of a type whose only jobs it holds for their worker.

Two real brokers with BROKER_HA=redis on one real redis-server.  A fake
worker (type "heldtype", not configured: known to the leader only from its
worker) takes a job and keeps it running; the BROKER_SAVE_RUNNING_MS (0 here)
write puts its running state in Redis.  The leader is killed with SIGKILL;
the fake worker stays silent (it has not registered with the new leader).
The new leader recovers the job as running and holds it for its worker.

What must hold: a SUBMIT of that type to the new leader is ACCEPTED (the
type is known from the job it holds), not REJECTED unknown_bot_type; a
type nobody ever used is refused unknown_bot_type at once (the old
leader recorded its workers' types in Redis: the new one knows them all,
tests/broker/test_types_recorded.py).  Then the worker registers, listing
the job: it is adopted (attempts 1).
"""
import harness as h
import hatest
from fakeworker import FakeWorker


def test():
    with h.Stack("ha-held-type") as s:
        s.redis()
        pair = hatest.HaPair(s, env={"BROKER_SAVE_RUNNING_MS": "0", "HEARTBEAT_INTERVAL_MS": "1000",
                                     "HEARTBEAT_LIVENESS": "10"})
        first = pair.wait_leader()
        second = pair.other(first)
        c = h.Client(pair.endpoint(first))
        w = FakeWorker(pair.endpoint(first), "held-w", ["heldtype"], 1)
        h.wait_until(lambda: any(x.get("name") == "held-w" for x in c.stats()["workers"]), 10,
                     "the fake worker to register")
        jid = c.submit("heldtype", {"n": 1})
        job = w.recv_job(timeout=10)
        h.check(job and job.get("jobId") == jid, "the fake worker got the job", job)
        h.wait_until(lambda: s.redis_cli("HGET", "botmesh:{bm}:job:" + jid, "state") == "running", 5,
                     "the job's running state in Redis")
        c.close()

        pair.procs[first].kill()
        pair.wait_leader(timeout=10, other_than=first)
        new = h.Client(pair.endpoint(second))
        h.check(not any(x.get("name") == "held-w" for x in new.stats()["workers"]),
                "the worker has not registered with the new leader")
        cmd, reply = new.try_submit("heldtype", {"n": 2})
        h.check(cmd == h.ACCEPTED, "a SUBMIT of the held job's type is accepted by the new leader",
                cmd, reply)
        cmd, reply = new.try_submit("nevertype", {"n": 3})
        h.check(cmd == h.REJECTED and reply.get("code") == "unknown_bot_type"
                and "heldtype" in reply.get("message", ""),
                "a type nobody used: unknown_bot_type at once, the message listing the "
                "recorded type", cmd, reply)

        w.close()
        w = FakeWorker(pair.endpoint(second), "held-w", ["heldtype"], 1, ready=False)
        w.send(h.READY, {"name": "held-w", "types": ["heldtype"], "credit": 1, "running": [jid]})
        h.wait_until(lambda: "adopted" in pair.procs[second].output(), 10,
                     "the new leader to adopt the job")
        rec = new.status(jid)
        h.check(rec["state"] == "running" and rec["attempts"] == 1, "adopted, attempts 1", rec)
        w.close()
        new.close()


if __name__ == "__main__":
    h.main(test)

"""Worker names and READY, as protocol.md section 5 settles them.

A real broker (no Redis) and raw DEALER workers the test drives step by step:
- a READY without a name is taken under a name the broker makes from the
  whole routing id, told to the worker at once in a HEARTBEAT {name}: two
  connections whose routing ids share a prefix get two names, and a DONE
  from the one that does not hold a job never completes it;
- a READY whose name does not read is refused, NACK bad_request naming
  `name`, and registers nothing;
- a new connection under a live worker's name replaces the old one: the
  jobs its READY lists in running move over, the old connection is told
  DISCONNECT {reason: replaced} and its other jobs are queued again (here
  dispatched again to the new one as attempt 2); a WARN names both
  connections; the old connection's DONE is not taken.
"""
import harness as h
from fakeworker import FakeWorker


def names(c):
    return sorted(w["name"] for w in c.stats()["workers"])


def unnamed(endpoint, routing_id, types=("python",), credit=1):
    """A worker whose READY gives no name; returns it and the name the
    broker told it (the first message it gets, a HEARTBEAT {name})."""
    w = FakeWorker(endpoint, None, list(types), credit, ready=False, routing_id=routing_id)
    w.send(h.READY, {"types": list(types), "credit": credit})
    msg = w.recv(timeout=5, skip_heartbeats=False)
    h.check(msg and msg[0] == h.HEARTBEAT and "name" in msg[1],
            "a READY without a name is answered HEARTBEAT {name}", msg)
    return w, msg[1]["name"]


def test():
    with h.Stack("worker_names") as s:
        broker = s.broker(redis=False, env={"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5"})
        c = s.client()

        # 1. Names the broker makes: the whole routing id, never shared.
        # These two routing ids share their first 8 hex digits (00B69579).
        one, one_name = unnamed(s.endpoint, b"\x00\xb6\x95\x79\x01")
        two, two_name = unnamed(s.endpoint, b"\x00\xb6\x95\x79\x02")
        h.check(one_name == "worker-00B6957901" and two_name == "worker-00B6957902",
                "each generated name holds the whole routing id in hex", (one_name, two_name))
        h.check(names(c) == [one_name, two_name], "STATS lists both workers under their own names",
                c.stats()["workers"])
        h.wait_until(lambda: "worker %s ready" % one_name in broker.output(), 5,
                     "the ready line to name the generated name")
        job_id = c.submit("python", {"n": 1})
        holder, other = None, None
        for w in (one, two):
            msg = w.recv(timeout=0.5)
            if msg and msg[0] == h.JOB:
                holder, other = w, (two if w is one else one)
        h.check(holder is not None and other is not None, "one of them runs the job")
        other.done(job_id, {"forged": True})
        msg = other.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "not_owner",
                "a DONE from the worker that does not hold the job: NACK not_owner", msg)
        h.check(c.status(job_id)["state"] == "running", "the job still runs on its worker",
                c.status(job_id))
        holder.done(job_id, {"real": True})
        rec = c.wait(job_id, timeout=5)
        h.check(rec["state"] == "completed" and rec["result"] == {"real": True},
                "the holder's DONE completes it", rec)

        # A name a live worker chose for itself is not made again: the
        # generated one gets a suffix.
        chooser = FakeWorker(s.endpoint, "worker-00B6957903", ["python"], 0)
        h.wait_until(lambda: "worker-00B6957903" in names(c), 5, "the chooser to register")
        three, three_name = unnamed(s.endpoint, b"\x00\xb6\x95\x79\x03")
        h.check(three_name == "worker-00B6957903-2",
                "a generated name a live worker holds gets a suffix", three_name)
        h.check(names(c).count("worker-00B6957903") == 1, "no two live workers share it", names(c))

        # 2. A name that does not read is refused, naming the field.
        for bad in ("has space", "n" * 200, 42, ""):
            w = FakeWorker(s.endpoint, None, ["python"], 1, ready=False)
            w.send(h.READY, {"name": bad, "types": ["python"], "credit": 1})
            msg = w.recv(timeout=5, skip_heartbeats=False)
            h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "bad_request"
                    and "name" in msg[1]["message"],
                    "READY with name %r: NACK bad_request naming name" % (bad,), msg)
            w.close()
        h.check(len(c.stats()["workers"]) == 4, "the refused READYs registered nothing",
                c.stats()["workers"])
        for w in (one, two, chooser, three):
            w.close()

        # 3. One name, one live worker: a new connection replaces the old.
        first = FakeWorker(s.endpoint, "vm-7", ["node"], 2, routing_id=b"OLD-CONN")
        h.wait_until(lambda: "vm-7" in names(c), 5, "vm-7 to register")
        listed, unlisted = c.submit("node", {"n": 1}), c.submit("node", {"n": 2})
        got = {first.recv_job()["jobId"], first.recv_job()["jobId"]}
        h.check(got == {listed, unlisted}, "the old connection runs both jobs", got)
        second = FakeWorker(s.endpoint, "vm-7", ["node"], 2, ready=False, routing_id=b"NEW-CONN")
        second.send(h.READY, {"name": "vm-7", "types": ["node"], "credit": 2, "running": [listed]})
        msg = first.recv(timeout=5)
        h.check(msg and msg[0] == h.DISCONNECT and msg[1].get("reason") == "replaced",
                "the old connection is told DISCONNECT {reason: replaced}", msg)
        workers = [w for w in c.stats()["workers"] if w["name"] == "vm-7"]
        h.check(len(workers) == 1, "one live worker under the name", c.stats()["workers"])
        job = second.recv_job()
        h.check(job and job["jobId"] == unlisted and job["attempt"] == 2,
                "the job the new READY did not list is queued again: attempt 2, on the new one", job)
        rec = c.status(listed)
        h.check(rec["state"] == "running" and rec["attempts"] == 1,
                "the listed job runs on, attempt 1", rec)
        old_hex, new_hex = b"OLD-CONN".hex().upper(), b"NEW-CONN".hex().upper()
        h.wait_until(lambda: [l for l in broker.output().splitlines()
                              if "WARN" in l and "replaces connection" in l
                              and old_hex in l and new_hex in l], 5,
                     "a WARN naming both connections")
        first.done(listed, {"from": "old"})
        msg = first.recv(timeout=5)
        h.check(msg and msg[0] == h.DISCONNECT, "the old connection's DONE: DISCONNECT (not known)", msg)
        h.check(c.status(listed)["state"] == "running", "and it is not taken", c.status(listed))
        second.done(listed, {"from": "new"})
        second.done(unlisted, {"from": "new"})
        for jid in (listed, unlisted):
            rec = c.wait(jid, timeout=5)
            h.check(rec["state"] == "completed" and rec["result"] == {"from": "new"},
                    "the new connection's DONE completes %s" % jid, rec)
        for w in (first, second):
            w.close()
        c.close()


if __name__ == "__main__":
    h.main(test)

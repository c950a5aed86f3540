"""A leader paused past its lease (SIGSTOP 10 s) finds itself fenced.

Two real brokers with BROKER_HA=redis on one real redis-server, a fake
worker on the leader running job J1.  The leader is stopped with SIGSTOP;
the standby takes over (epoch 2) and recovers J1 as queued.  While the old
leader is stopped, messages wait in its socket: J1's DONE from the worker
and a SUBMIT from a client.  After 10 s it gets SIGCONT: it must step down
before it handles any of them (its log says so), write nothing (J1 stays
queued in Redis, no job record for the SUBMIT), dispatch nothing, answer
no ACCEPTED, and come back as a standby naming the new leader.  J1 then
runs on the new leader and completes exactly once.
"""
import signal
import time
import harness as h
import hatest
from fakeworker import FakeWorker


def job_keys(s):
    return [k for k in s.redis_cli("KEYS", "botmesh:{bm}:job:*").split("\n") if k]


def test():
    with h.Stack("ha-pause") as s:
        s.redis()
        pair = hatest.HaPair(s)
        old = pair.wait_leader()
        new = pair.other(old)
        w = FakeWorker(pair.endpoint(old), "w1", ["python"], 5)
        c = h.Client(pair.endpoint(old))
        j1 = c.submit("python", {"n": 1})
        job = w.recv_job(timeout=5)
        h.check(job["jobId"] == j1, "J1 dispatched to the worker on the leader", job)

        pair.procs[old].signal(signal.SIGSTOP)
        stopped = time.monotonic()
        h.log("leader %s stopped (SIGSTOP)" % old)
        pair.wait_leader(timeout=10, other_than=old)
        h.log("standby %s leads after %.2f s" % (new, time.monotonic() - stopped))
        h.check(s.redis_cli("GET", "botmesh:{bm}:epoch") == "2", "the new reign is epoch 2")
        h.check(s.redis_cli("HGET", "botmesh:{bm}:job:" + j1, "state") == "queued",
                "the new leader recovered J1 as queued")

        # Messages that wait for the paused broker.
        w.done(j1, {"by": "old leader"})
        c2 = h.Client(pair.endpoint(old))
        c2.req += 1
        c2.send(h.SUBMIT, {"req": c2.req, "botType": "python", "payload": {"n": 2}})
        keys_before = job_keys(s)
        h.check(keys_before == ["botmesh:{bm}:job:" + j1], "one job record in Redis", keys_before)

        time.sleep(max(0.0, 10 - (time.monotonic() - stopped)))   # the pause itself, not a sync
        pair.procs[old].signal(signal.SIGCONT)
        h.log("leader %s continued (SIGCONT) after %.1f s" % (old, time.monotonic() - stopped))

        h.wait_until(lambda: "stepping down" in pair.procs[old].output(), 10,
                     "the old leader to log that it steps down")
        out = pair.procs[old].output()
        h.check("serves no more and writes nothing" in out, "the step-down is logged", out[-2000:])
        cmd, r = h.wait_until(lambda: (lambda x: x if x and x[1].get("leader") else None)(
            hatest.ping(pair.endpoint(old))), 10, "the old leader to answer as a standby")
        h.check(cmd == h.REJECTED and r["code"] == "not_leader" and r["leader"] == pair.endpoint(new),
                "the old leader is a standby naming the new leader", r)
        h.check(pair.procs[old].alive(), "the old leader process lives on (same pid)")
        with open("/proc/%d/comm" % pair.procs[old].pid) as f:
            comm = f.read().strip()
        h.check(comm == "botmesh-broker",
                "the restarted standby keeps its name (ps, pkill and ./botmesh find it)", comm)

        # Nothing it held was written or answered.
        answer = c2.sock.poll(1000)
        if answer:
            cmd, r = c2.recv(0.1)
            h.check(cmd != h.ACCEPTED, "the SUBMIT sent to the paused leader is not accepted", r)
        h.check(job_keys(s) == keys_before, "no job record written by the old leader", job_keys(s))
        h.check(s.redis_cli("HGET", "botmesh:{bm}:job:" + j1, "state") == "queued",
                "J1 is still queued: its DONE was not taken by the old leader")
        msg = w.recv(timeout=1)
        h.check(msg is None or msg[0] != h.JOB, "the old leader dispatched nothing", msg)

        # J1 runs on the new leader, once.
        w.sock.close()
        w = FakeWorker(pair.endpoint(new), "w1", ["python"], 5)
        job = w.recv_job(timeout=10)
        h.check(job["jobId"] == j1, "J1 re-dispatched by the new leader", job)
        w.done(j1, {"by": "new leader"})
        cn = h.Client(pair.endpoint(new))
        rec = cn.wait(j1, timeout=10)
        h.check(rec["state"] == "completed" and rec["result"] == {"by": "new leader"},
                "J1 completed by the new leader's worker", rec)
        h.check(int(s.redis_cli("SCARD", "botmesh:{bm}:unfinished")) == 0, "nothing left unfinished")
        for sock in (w.sock, c.sock, c2.sock, cn.sock):
            sock.close()


if __name__ == "__main__":
    h.main(test)

"""After a broker restart, a job recovered as running and held for its
worker keeps its permit: with MAX_PYTHON_BOTS=1, the queued job behind it
waits until the held job is adopted and ends, or the hold ends without
it.  The type never runs more than its limit, even for a moment.  STATS
says how many jobs of the type are held (`held`: 1 while a is, 0 after).

Real redis (AOF) and broker, killed (SIGKILL) and started again on the
same port; fake python workers whose every frame the test sends.  Hold:
2 x HEARTBEAT_INTERVAL_MS (200) x HEARTBEAT_LIVENESS (5) = 2 s.
"""
import harness as h
from fakeworker import FakeWorker

ENV = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5", "BROKER_SAVE_RUNNING_MS": "0",
       "MAX_PYTHON_BOTS": "1"}


def python(c):
    st = c.stats()["types"]["python"]
    return {k: st.get(k) for k in ("usage", "limit", "waiting", "waitingForPermit", "held")}


def one_running_one_queued(s, **fields):
    """w1 runs a (recorded running in Redis), b waits for the one permit."""
    c = s.client()
    w1 = FakeWorker(s.endpoint, "w1", ["python"], 1)
    s.wait_workers(1, "python")
    a = c.submit("python", {"n": "a"}, **fields)
    job = w1.recv_job()
    h.check(job and job["jobId"] == a, "w1 runs a", job)
    b = c.submit("python", {"n": "b"})
    h.wait_until(lambda: s.redis_cli("HGET", "botmesh:{bm}:job:" + a, "state") == "running", 5,
                 "redis to record a running")
    h.check(python(c) == {"usage": 1, "limit": 1, "waiting": 1, "waitingForPermit": 1,
                          "held": 0},
            "before the restart: a runs, b waits for the permit", python(c))
    c.close()
    w1.close()
    return a, b


def restart(s, broker, name):
    """SIGKILL the broker, start another on its port, wait for its recovery."""
    broker.kill()
    h.log("broker killed; started again as", name)
    broker = s.broker(env=ENV, name=name)
    h.wait_until(lambda: "recovered 2 unfinished jobs" in broker.output(), 10,
                 "the restarted broker to recover a and b")
    return broker, s.client()


def next_job(workers, what):
    """The first JOB any of these (heartbeating) workers receives: (worker, body)."""
    def got():
        for w in workers:
            msg = w.recv(timeout=0.05)
            if msg:
                h.check(msg[0] == h.JOB, "%s receives a JOB" % w.name, msg)
                return w, msg[1]
        return None
    return h.wait_until(got, 10, what)


def b_runs_then_completes(c, w, b):
    """b holds the one permit; w's DONE completes it and frees it."""
    h.check(python(c) == {"usage": 1, "limit": 1, "waiting": 0, "waitingForPermit": 0,
                          "held": 0},
            "b runs: usage 1 of 1", python(c))
    w.done(b, {"n": "b"})
    h.check(c.wait(b, 10)["state"] == "completed", "b completes")
    h.check(python(c)["usage"] == 0, "python usage 0 at the end", python(c))


def adopted_keeps_limit():
    with h.Stack("restart-adopt-limit") as s:
        s.redis()
        broker = s.broker(env=ENV)
        a, b = one_running_one_queued(s)
        broker, c = restart(s, broker, "broker-2")

        # w2 registers first: the permit is a's, held for w1, so b stays queued.
        w2 = FakeWorker(s.endpoint, "w2", ["python"], 1)
        s.wait_workers(1, "python")
        h.check(python(c) == {"usage": 0, "limit": 1, "waiting": 1, "waitingForPermit": 1,
                              "held": 1},
                "w2 registered while a is held: b still waits for the permit", python(c))
        h.check(w2.recv(timeout=0.3) is None, "w2 receives no JOB")

        # w1 comes back reporting a: adopted, the one permit in use.
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1, ready=False)
        w1.send(h.READY, {"name": "w1", "types": ["python"], "credit": 1, "running": [a]})
        rec = h.wait_until(lambda: (lambda r: r if r and r["state"] == "running" else None)(
            c.status(a)), 5, "a to be adopted (running)")
        h.check(rec["attempts"] == 1 and rec.get("worker") == "w1", "a adopted by w1, attempt 1",
                rec)
        h.check(python(c) == {"usage": 1, "limit": 1, "waiting": 1, "waitingForPermit": 1,
                              "held": 0},
                "a adopted: usage 1 of 1, b still queued", python(c))
        h.check(c.status(b)["state"] == "queued", "b queued")

        # a ends: its permit goes to b.
        w1.done(a, {"n": "a"})
        rec = c.wait(a, 10)
        h.check(rec["state"] == "completed", "w1's DONE completes a", rec)
        w, job = next_job([w1, w2], "b to be dispatched once a ends")
        h.check(job["jobId"] == b and job["attempt"] == 1, "%s runs b, attempt 1" % w.name, job)
        b_runs_then_completes(c, w, b)
        w1.close()
        w2.close()


def unreported_hold_frees_permit():
    with h.Stack("restart-adopt-limit-unreported") as s:
        s.redis()
        broker = s.broker(env=ENV)
        a, b = one_running_one_queued(s, maxAttempts=1)
        broker, c = restart(s, broker, "broker-2")

        w2 = FakeWorker(s.endpoint, "w2", ["python"], 1)
        s.wait_workers(1, "python")
        h.check(python(c) == {"usage": 0, "limit": 1, "waiting": 1, "waitingForPermit": 1,
                              "held": 1},
                "w2 registered while a is held: b waits for the permit", python(c))

        # No worker reports a: when the hold ends it fails (its last allowed
        # dispatch) and its permit goes to b.
        w, job = next_job([w2], "b to be dispatched once the hold ends")
        h.check(job["jobId"] == b and job["attempt"] == 1, "w2 runs b, attempt 1", job)
        rec = c.status(a)
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "worker_lost",
                "a, never reported, failed worker_lost when the hold ended", rec)
        b_runs_then_completes(c, w2, b)
        w2.close()


def test():
    adopted_keeps_limit()
    unreported_hold_frees_permit()


if __name__ == "__main__":
    h.main(test)

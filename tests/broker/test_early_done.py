"""A DONE that reaches a restarted broker before its recovery reached the
job is kept, and taken when the recovery reads the job back: the job
completes with that run (attempts 1) and is not dispatched again.

Real redis (AOF) and broker, killed (SIGKILL) and started again on the
same port; fake workers whose every frame the test sends.  The recovery is
made to wait: redis-server is stopped (SIGSTOP) before the new broker
starts, and continued (SIGCONT) once the workers' DONEs reached it.

Before the restart w2 runs j4, w1 runs j1, j2, j3 (attempt 1 each), their
running state in Redis.  While the recovery waits:
- w1 comes back (a new connection, READY running []) and sends the DONEs
  of j1 and j2 (attempt 1), one of j3 naming attempt 2 (not the run the
  broker knows of) and one of a job Redis never had.  None is answered
  yet (a PROGRESS after them is, NACK bad_request: they were read).  Then
  w1 reconnects once more (another connection under its name, which sends
  nothing again): the DONEs came from a connection that is gone.
- w2 comes back, sends the DONE of j4 and leaves (DISCONNECT).
Once Redis answers: j1, j2, j4 complete with attempt 1's result, attempts
1, and no JOB is sent for them; j3's DONE is refused (NACK not_owner) and
j3 runs again once the hold ends (attempt 2); the DONE of the unknown job
is refused (NACK not_owner) when the recovery ends, logged at debug level
(a worker sends its recent DONEs again after every reconnect: not a WARN
line, nor a rejected frame).  python usage is 0 at
the end.  Hold: 2 x HEARTBEAT_INTERVAL_MS (200) x HEARTBEAT_LIVENESS (5).
"""
import signal

import harness as h
from fakeworker import FakeWorker

ENV = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5", "BROKER_SAVE_RUNNING_MS": "0"}


def done(worker, job_id, attempt):
    worker.send(h.DONE, {"jobId": job_id, "ok": True, "attempt": attempt,
                         "result": {"job": job_id, "attempt": attempt}})


def read_up_to_barrier(worker):
    """What the broker sent worker before its answer to a PROGRESS with no
    jobId (NACK bad_request, sent at once): the answers to the frames sent
    before it, which the broker read first."""
    worker.send(h.PROGRESS, {"progress": 1})
    got = []
    while True:
        msg = worker.recv(timeout=10)
        h.check(msg is not None, "%s: the PROGRESS after the DONEs is answered" % worker.name)
        if msg[0] == h.NACK and msg[1].get("code") == "bad_request":
            return got
        got.append(msg)


def test():
    with h.Stack("early-done") as s:
        redis = s.redis()
        broker = s.broker(env=ENV)
        c = s.client()
        w2 = FakeWorker(s.endpoint, "w2", ["python"], 1)
        s.wait_workers(1, "python")
        j4 = c.submit("python", {"n": 4})
        h.check(w2.recv_job()["jobId"] == j4, "w2 runs j4")
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 3)
        s.wait_workers(2, "python")
        j1, j2, j3 = (c.submit("python", {"n": n}) for n in (1, 2, 3))
        got = {w1.recv_job()["jobId"] for _ in range(3)}
        h.check(got == {j1, j2, j3}, "w1 runs j1, j2, j3", got)
        h.wait_until(lambda: all(s.redis_cli("HGET", "botmesh:{bm}:job:" + j, "state") == "running"
                                 for j in (j1, j2, j3, j4)), 5, "redis to record the four running")
        c.close()
        w1.close()
        w2.close()
        broker.kill()
        redis.signal(signal.SIGSTOP)
        h.log("broker killed, redis-server stopped (SIGSTOP): the recovery waits")
        broker = s.broker(env=ENV, name="broker-2", wait_recovered=False)   # Redis stopped

        w1a = FakeWorker(s.endpoint, "w1", ["python"], 3, ready=False)
        w1a.send(h.READY, {"name": "w1", "types": ["python"], "credit": 3, "running": []})
        done(w1a, j1, 1)
        done(w1a, j2, 1)
        done(w1a, j3, 2)
        done(w1a, "nosuchjob", 1)
        early_w1 = read_up_to_barrier(w1a)
        w2a = FakeWorker(s.endpoint, "w2", ["python"], 1, ready=False)
        w2a.send(h.READY, {"name": "w2", "types": ["python"], "credit": 1, "running": []})
        done(w2a, j4, 1)
        early_w2 = read_up_to_barrier(w2a)
        w2a.send(h.DISCONNECT, {"reason": "test"})
        w2a.close()
        w1b = FakeWorker(s.endpoint, "w1", ["python"], 3, ready=False)
        w1b.send(h.READY, {"name": "w1", "types": ["python"], "credit": 3, "running": []})
        h.wait_until(lambda: "replaces connection" in broker.output(), 5,
                     "w1's new connection to replace the one that sent the DONEs")
        w1a.close()
        h.check("unfinished jobs from redis" not in broker.output(),
                "the recovery has not ended yet")
        redis.signal(signal.SIGCONT)
        h.log("redis-server continued (SIGCONT)")

        # w1b answers a JOB of j1/j2 with its kept DONE, as a worker does;
        # any other JOB it runs (attempt N, result of attempt N).
        after, jobs = [], []
        c = s.client()

        def pump():
            msg = w1b.recv(timeout=0.05)
            while msg:
                after.append(msg)
                if msg[0] == h.JOB:
                    j = msg[1]
                    jobs.append((j["jobId"], j["attempt"]))
                    done(w1b, j["jobId"], 1 if j["jobId"] in (j1, j2) else j["attempt"])
                msg = w1b.recv(timeout=0.01)

        def ended(j):
            pump()
            rec = c.status(j)
            return rec if rec["state"] in ("completed", "failed", "cancelled") else None

        recs = {j: h.wait_until(lambda: ended(j), 20, "%s to end" % j) for j in (j1, j2, j4)}
        for j, rec in recs.items():
            h.check(rec["state"] == "completed" and rec["attempts"] == 1
                    and rec["result"] == {"job": j, "attempt": 1},
                    "%s completed with the DONE that came before the recovery, attempts 1" % j,
                    rec)
        rec3 = h.wait_until(lambda: ended(j3), 20, "j3 to end")
        h.check(rec3["state"] == "completed" and rec3["attempts"] == 2
                and rec3["result"] == {"job": j3, "attempt": 2},
                "j3, whose DONE named another run, ran again (attempt 2)", rec3)
        h.check(jobs == [(j3, 2)], "the only JOB sent after the restart is j3's attempt 2", jobs)
        h.check(early_w1 == [] and early_w2 == [],
                "no DONE is answered before the recovery reached its job", early_w1, early_w2)
        nacks = [m for m in after if m[0] == h.NACK]
        h.check(len(nacks) == 2 and all(m[1]["code"] == "not_owner" for m in nacks),
                "two DONEs refused after the recovery: j3's (attempt 2) and the unknown job's",
                after)
        blog = broker.output()
        # A takeover brings thousands of them: one line at the first, one
        # with the sum when the recovery ends, not a line each.
        kept = [l for l in blog.splitlines() if "kept until the recovery reaches" in l]
        h.check(len(kept) == 1, "one INFO line for the first DONE kept while the recovery ran",
                kept)
        summed = [l for l in blog.splitlines() if "recovery: 5 DONE(s) came before it reached" in l
                  and "1 were of jobs it did not bring back" in l]
        h.check(len(summed) == 1, "the recovery's end counts the five DONEs kept, one of a job "
                "it did not bring back", blog[-3000:])
        # The unknown job's DONE is one a worker sends again after every
        # reconnect (its job had ended): not a WARN, not a rejected frame.
        warned = [l for l in blog.splitlines() if "nosuchjob" in l and " WARN " in l]
        h.check(warned == [], "the DONE of a job the recovery did not bring back is no WARN",
                warned)
        h.wait_until(lambda: c.stats()["types"]["python"]["usage"] == 0, 5, "python usage 0")
        c.close()
        w1b.close()


if __name__ == "__main__":
    h.main(test)

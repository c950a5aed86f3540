"""Two workers' DONEs for two runs of one job, both reaching a restarted
broker before its recovery reached the job: the later run's decides.

Real redis (AOF) and broker (BROKER_SAVE_RUNNING_MS 0: each dispatch is
in Redis at once), killed (SIGKILL) and started again on the same port;
fake workers whose every frame the test sends.  The recovery is made to
wait: redis-server is stopped (SIGSTOP) before the new broker starts, and
continued (SIGCONT) once the DONEs reached it.

Before the restart j runs on w1 (attempt 1); w1 goes away and is declared
lost; j runs on w2 (attempt 2, in Redis).  While the recovery waits, w1
comes back and sends its kept DONE of attempt 1, then w2 its DONE of
attempt 2 (both completed).  What must hold: w1's DONE is answered NACK
not_owner (the later run's replaces it), w2's is kept; once Redis
answers, j is completed with attempt 2's result, attempts 2, and no JOB
is sent for it again.  The broker logs no WARN about the two DONEs.
(Before: w2's DONE was refused at once, "WARN ... which keeps the DONE w1
sent already: not kept (NACK not_owner)", w1's was refused at the
recovery, and j ran a third time once the hold ended.)
"""
import signal

import harness as h
from fakeworker import FakeWorker
from test_early_done import read_up_to_barrier as answered_before

ENV = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5", "BROKER_SAVE_RUNNING_MS": "0"}


def back(endpoint, name):
    """The worker on a new connection: READY running [], credit 1."""
    w = FakeWorker(endpoint, name, ["python"], 1, ready=False)
    w.send(h.READY, {"name": name, "types": ["python"], "credit": 1, "running": []})
    return w


def two_runs_then_restart(s, **submit):
    """j runs on w1 (attempt 1), w1 goes silent and is declared lost, j
    runs on w2 (attempt 2, in Redis); then the broker is killed,
    redis-server stopped (SIGSTOP) and a new broker started on the same
    port: its recovery waits.  Returns (redis, the new broker, j)."""
    redis = s.redis()
    broker = s.broker(env=ENV)
    c = s.client()
    w1 = FakeWorker(s.endpoint, "w1", ["python"], 1)
    s.wait_workers(1, "python")
    j = c.submit("python", {"n": 1}, maxAttempts=3, **submit)
    h.check(w1.recv_job()["attempt"] == 1, "w1 runs j, attempt 1")
    w1.close()                              # silent from now on: lost
    w2 = FakeWorker(s.endpoint, "w2", ["python"], 1)
    job = w2.recv_job(timeout=15)
    h.check(job and job["jobId"] == j and job["attempt"] == 2,
            "w1 declared lost, w2 runs j, attempt 2", job)
    h.wait_until(lambda: (lambda r: r and r["state"] == "running" and int(r["attempts"]) == 2)(
        h.job_record(s.redis_port, j)), 5, "Redis to record attempt 2 running")
    c.close()
    w2.close()
    broker.kill()
    redis.signal(signal.SIGSTOP)
    h.log("broker killed, redis-server stopped (SIGSTOP): the recovery waits")
    return redis, s.broker(env=ENV, name="broker-2", wait_recovered=False), j


def wait_end(c, j, workers):
    """Wait for j to end (or wait out a backoff, delayed); returns its
    record and the JOBs the workers got meanwhile, (name, jobId, attempt)."""
    jobs = []

    def ended():
        for w in workers:
            msg = w.recv(timeout=0.02)
            while msg:
                if msg[0] == h.JOB:
                    jobs.append((w.name, msg[1]["jobId"], msg[1]["attempt"]))
                msg = w.recv(timeout=0.01)
        rec = c.status(j)
        return rec if rec["state"] in h.TERMINAL or rec["state"] == "delayed" else None
    return h.wait_until(ended, 15, "j to end"), jobs


def test():
    with h.Stack("early-done-later") as s:
        redis, broker, j = two_runs_then_restart(s)

        w1a = back(s.endpoint, "w1")
        w1a.send(h.DONE, {"jobId": j, "ok": True, "attempt": 1, "result": {"attempt": 1}})
        to_w1 = answered_before(w1a)
        w2a = back(s.endpoint, "w2")
        w2a.send(h.DONE, {"jobId": j, "ok": True, "attempt": 2, "result": {"attempt": 2}})
        to_w2 = answered_before(w2a)
        to_w1 += answered_before(w1a)
        h.check("unfinished jobs from redis" not in broker.output(), "the recovery has not ended yet")
        h.check(to_w2 == [], "w2's DONE (attempt 2) is not answered: kept", to_w2)
        h.check(len(to_w1) == 1 and to_w1[0][0] == h.NACK and to_w1[0][1]["code"] == "not_owner",
                "w1's DONE (attempt 1) is answered NACK not_owner once w2's came", to_w1)
        redis.signal(signal.SIGCONT)
        h.log("redis-server continued (SIGCONT)")

        c = s.client()
        rec, jobs = wait_end(c, j, (w1a, w2a))
        h.check(rec["state"] == "completed" and rec["attempts"] == 2
                and rec["result"] == {"attempt": 2},
                "j completed with attempt 2's DONE, attempts 2", rec)
        h.check(jobs == [], "no JOB sent for j after the restart", jobs)
        warned = [l for l in broker.output().splitlines() if " WARN " in l and j in l]
        h.check(warned == [], "no WARN about j's two DONEs", warned)
        c.close()
        w1a.close()
        w2a.close()


if __name__ == "__main__":
    h.main(test)

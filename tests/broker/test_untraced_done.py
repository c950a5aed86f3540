"""A job whose dispatch never reached Redis, completed by its worker while
the broker was away, is completed with that worker's DONE, not run again.

Real redis and broker (BROKER_SAVE_RUNNING_MS 60000: a dispatch is written
only once the run is that old, so these runs leave no trace in Redis, as
a leader's dispatches do while it has lost Redis); fake workers whose
every frame the test sends.  w1 gets j1 and j2 (attempt 1); Redis still
says both are queued; the broker is killed (SIGKILL) and started again, and
recovers them queued (attempts 0).  w1 comes back with credit 0 (no JOB for
it) and sends its kept DONEs: j1 completed, j2 failed (attempt 1 each).

What must hold: j1 is completed with w1's result, attempts 1, and the log
says the DONE was taken; a worker with credit that registers then gets no
JOB for j1, only j2's (a failed run's DONE is not taken this way: the
next attempt decides).  (Before: j1's DONE was refused, NACK not_owner,
and the job was dispatched again: its bot ran twice.)
"""
import harness as h
from fakeworker import FakeWorker

ENV = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5",
       "BROKER_SAVE_RUNNING_MS": "60000"}


def test():
    with h.Stack("untraced-done") as s:
        s.redis()
        broker = s.broker(env=ENV)
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 2)
        s.wait_workers(1, "python")
        j1, j2 = c.submit("python", {"n": 1}), c.submit("python", {"n": 2})
        got = {}
        for _ in range(2):
            job = w1.recv_job()
            h.check(job is not None, "w1 gets a JOB for each job")
            got[job["jobId"]] = job["attempt"]
        h.check(got == {j1: 1, j2: 1}, "w1 runs j1 and j2, attempt 1", got)
        h.check([s.redis_cli("HGET", "botmesh:{bm}:job:" + j, "state") for j in (j1, j2)]
                == ["queued", "queued"], "Redis has no trace of the runs: both queued")
        c.close()
        w1.close()
        broker.kill()
        broker = s.broker(env=ENV, name="broker-2")
        h.check("recovered 2 unfinished jobs from redis (2 queued" in broker.output(),
                "the restarted broker recovered both jobs queued", broker.output()[-1500:])

        w1a = FakeWorker(s.endpoint, "w1", ["python"], 0)
        w1a.send(h.DONE, {"jobId": j1, "ok": True, "attempt": 1, "result": {"ran": j1}})
        w1a.send(h.DONE, {"jobId": j2, "ok": False, "attempt": 1,
                          "error": {"code": "bot_failed", "message": "failed"}})
        c = s.client()
        rec = h.wait_until(lambda: (lambda r: r if r["state"] != "queued" else None)(c.status(j1)),
                           10, "j1 to leave queued")
        h.check(rec["state"] == "completed" and rec["attempts"] == 1
                and rec["result"] == {"ran": j1},
                "j1 completed with w1's DONE, attempts 1", rec)
        h.check("which completed attempt 1 before its dispatch reached redis: taken"
                in broker.output(), "the log says the DONE was taken")
        w2 = FakeWorker(s.endpoint, "w2", ["python"], 2)
        job = w2.recv_job(timeout=5)
        h.check(job is not None and job["jobId"] == j2, "w2 gets j2 (its failed DONE not taken)",
                job)
        w2.done(j2, {"ran": j2})
        extra = w2.recv(timeout=1.0)
        h.check(extra is None, "no JOB for j1: it is not run again", extra)
        h.check(c.wait(j2)["state"] == "completed", "j2 completed on w2")
        c.close()
        w1a.close()
        w2.close()


if __name__ == "__main__":
    h.main(test)

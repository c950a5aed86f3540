"""A job that goes back to waiting sheds the fields of the run it lost.

A real broker on a real redis-server and fake workers.  When a job is
queued again (its worker died; the broker restarted while it ran) or
delayed for a retry (its run failed), GET /job's record (STATUS) and its
Redis record show no progress, startedAt or worker of that run: they
would describe a run that is not going on.  The Redis record keeps the
lost run's worker apart (lastWorker), so that worker's DONE is still taken
if it comes back before the job is dispatched again.
"""
import harness as h
from fakeworker import FakeWorker

# A worker is gone after 1 s without a message: the fake workers heartbeat
# before every request of the test while their job must stay theirs.
# The failed run's retry waits 60 s: the test reads the delayed state
# (STATUS, then Redis) well within that, however slow the machine.
ENV = {"HEARTBEAT_INTERVAL_MS": "100", "HEARTBEAT_LIVENESS": "10", "RETRY_BACKOFF_MS": "60000"}


def run_with_progress(s, c, bot_type, name, **opts):
    """A job of bot_type running on a new fake worker that reported 20 %."""
    w = FakeWorker(s.endpoint, name, [bot_type], 1)
    h.wait_until(lambda: w.heartbeat() or bot_type in c.stats()["types"], 10,
                 "%s to register" % name)
    jid = c.submit(bot_type, {"n": 1}, **opts)
    job = w.recv_job()
    h.check(job and job["jobId"] == jid, "%s runs the job" % name, job)
    w.send(h.PROGRESS, {"jobId": jid, "progress": 20})

    def saved():
        w.heartbeat()
        rec = h.job_record(s.redis_port, jid)
        return rec if rec and rec.get("progress") == 20 and rec["state"] == "running" else None
    saved = h.wait_until(saved, 10, "the running state with progress 20 in Redis")
    h.check(saved.get("worker") == name and saved.get("startedAt"),
            "the Redis record names the worker and the start while it runs", saved)
    w.heartbeat()
    rec = c.status(jid)
    h.check(rec["state"] == "running" and rec["progress"] == 20 and rec["worker"] == name
            and rec.get("startedAt"), "STATUS shows the run", rec)
    w.heartbeat()
    return w, jid


def check_cleared(rec, state, what):
    h.check(rec and rec["state"] == state and not rec.get("progress")
            and "startedAt" not in rec and "worker" not in rec, what, rec)


def test():
    with h.Stack("requeue-fields") as s:
        s.redis()
        broker = s.broker(env=ENV)
        c = s.client()

        # The worker dies (goes silent): queued again.
        w, jid = run_with_progress(s, c, "t-dies", "w-dies")
        rec = h.wait_until(lambda: (lambda r: r if r["state"] == "queued" else None)(c.status(jid)),
                           10, "the job to be queued again after its worker went silent")
        check_cleared(rec, "queued", "STATUS after the worker died: no progress, startedAt, worker")
        h.check(rec["attempts"] == 1, "attempts stays 1", rec)
        red = h.wait_until(lambda: (lambda r: r if r["state"] == "queued" else None)(
            h.job_record(s.redis_port, jid)), 10, "the queued state in Redis")
        check_cleared(red, "queued", "the Redis record after the worker died")
        h.check(red.get("lastWorker") == "w-dies", "the Redis record keeps the lost run's worker apart",
                red)
        w.close()

        # A failed run waits for its retry: delayed, without the run's fields.
        w, jid = run_with_progress(s, c, "t-fails", "w-fails", attempts=2)
        w.done(jid, ok=False, error={"code": "bot_failed", "message": "exit 1"})
        rec = h.wait_until(lambda: (lambda r: r if r["state"] == "delayed" else None)(c.status(jid)),
                           10, "the failed run's job to wait for its retry")
        check_cleared(rec, "delayed", "STATUS while a retry waits: no progress, startedAt, worker")
        h.check(len(rec.get("attemptErrors", [])) == 1, "the failed run is in attemptErrors", rec)
        red = h.wait_until(lambda: (lambda r: r if r["state"] == "delayed" else None)(
            h.job_record(s.redis_port, jid)), 10, "the delayed state in Redis")
        check_cleared(red, "delayed", "the Redis record while a retry waits")
        w.close()

        # The broker restarts while a job runs: recovered and queued again.
        w, jid = run_with_progress(s, c, "t-restart", "w-restart")
        c.close()
        broker.kill()
        w.close()
        broker = s.broker(env=ENV)
        c = s.client()
        rec = h.wait_until(lambda: (lambda r: r if r and r["state"] == "queued" else None)(
            c.status(jid)), 10, "the restarted broker to recover the job, queued")
        check_cleared(rec, "queued", "STATUS after the restart: no progress, startedAt, worker")
        red = h.wait_until(lambda: (lambda r: r if r["state"] == "queued" else None)(
            h.job_record(s.redis_port, jid)), 10, "the queued state in Redis after the restart")
        check_cleared(red, "queued", "the Redis record after the restart")
        h.check(red.get("lastWorker") == "w-restart", "the Redis record keeps w-restart apart", red)
        c.close()


if __name__ == "__main__":
    h.main(test)

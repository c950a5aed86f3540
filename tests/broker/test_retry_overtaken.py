"""A failure a RETRY overtakes is counted once: the job fails, Redis has
not yet confirmed the failure's write when a RETRY queues the job again,
and the confirmation, which arrives for a job no longer failed, counts the
failure all the same.  The retried run's completion counts once more.
So does the failure of a job that, retried so, is removed (a drain, whose
answer comes once Redis continues) before Redis confirms the failure.

Real redis and broker; a fake python worker fails or completes each run on
command.  Redis is stopped (SIGSTOP: connected, answering nothing) from the
failure's DONE until the broker has taken the RETRY, asked on a second
connection so that the first keeps the RETRY's answer.  Counts: STATS
types.python (what GET /stats shows) and the broker's
bot_executions_total{bot_type="python",status=...} on its /metrics.
"""
import signal
import harness as h
from fakeworker import FakeWorker

QUEUE = 0x0B


def fail_and_retry_while_redis_stopped(s, redis, c, w, jid, retried_state, while_stopped=None):
    """Redis stopped, the fake worker fails `jid`'s run and the client asks
    for a RETRY; once a second connection sees the job in `retried_state`
    (the broker took the RETRY), `while_stopped(watcher)` runs, still with
    redis stopped.  Redis continues; returns the RETRY's reply."""
    redis.signal(signal.SIGSTOP)
    h.log("redis stopped (SIGSTOP)")
    try:
        w.done(jid, ok=False, error={"code": "bot_failed", "message": "run failed"})
        h.wait_until(lambda: c.status(jid)["state"] == "failed", 5, "the job to fail in memory")
        retry_req = c.send_request(h.RETRY, {"jobId": jid})
        watcher = s.client()
        h.wait_until(lambda: watcher.status(jid)["state"] in retried_state, 5,
                     "the broker to take the RETRY (the job %s)" % " or ".join(retried_state))
        if while_stopped:
            while_stopped(watcher)
    finally:
        redis.signal(signal.SIGCONT)
    h.log("redis continued (SIGCONT)")
    return c.reply_to(retry_req)


def test():
    with h.Stack("retry-overtaken") as s:
        redis = s.redis()
        broker = s.broker(env={"HEARTBEAT_LIVENESS": "20"})
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        s.wait_workers(1, "python")
        c = s.client()

        def counts(client=c):
            """(STATS completed, failed, bot_executions_total completed, failed)"""
            t = client.stats()["types"]["python"]
            return (t["completed"], t["failed"],
                    h.executions(broker.metrics_port, "python", "completed"),
                    h.executions(broker.metrics_port, "python", "failed"))

        jid = c.submit("python", {"n": 1}, attempts=1)
        job = w.recv_job(5)
        h.check(job and job["jobId"] == jid, "the job is dispatched to the fake worker", job)

        def not_counted_yet(watcher):
            h.check(counts(watcher) == (0, 0, 0, 0), "the failure is not counted before redis has it")

        cmd, r = fail_and_retry_while_redis_stopped(s, redis, c, w, jid, ("queued", "running"),
                                                    not_counted_yet)
        h.check(cmd == h.ACCEPTED, "RETRY accepted: the job is queued again", r)
        h.wait_equal(counts, (0, 1, 0, 1), 10, "the overtaken failure counted once redis confirms it: "
                     "STATS python failed 1, bot_executions_total failed 1")

        job = w.recv_job(10)
        h.check(job and job["jobId"] == jid, "the retried run is dispatched to the fake worker", job)
        w.done(jid, result={"done": True})
        rec = c.wait(jid)
        h.check(rec["state"] == "completed", "the retried run completes", rec)
        h.wait_equal(counts, (1, 1, 1, 1), 10, "the retried run's completion counted: "
                     "STATS python completed 1, failed 1, bot_executions_total the same")

        # Overtaken, then removed before redis confirms: python paused, so
        # that the retried job waits in its queue, where a drain removes it.
        jid = c.submit("python", {"n": 2}, attempts=1)
        job = w.recv_job(5)
        h.check(job and job["jobId"] == jid, "the second job is dispatched to the fake worker", job)
        cmd, r = c.request(QUEUE, {"botType": "python", "action": "pause"})
        h.check(cmd == h.REPLY, "QUEUE pause python answered", cmd, r)

        drains = []

        def drain(watcher):
            # Answered once Redis has the deletion, after it continues.
            drains.append((watcher, watcher.send_request(QUEUE, {"botType": "python", "action": "drain"})))
            h.wait_until(lambda: watcher.stats()["types"]["python"]["waiting"] == 0, 5,
                         "the drain to remove the retried job (STATS python waiting 0)")

        cmd, r = fail_and_retry_while_redis_stopped(s, redis, c, w, jid, ("queued",), drain)
        h.check(cmd == h.ACCEPTED, "the second RETRY accepted", r)
        cmd, r = drains[0][0].reply_to(drains[0][1])
        h.check(cmd == h.REPLY and r.get("removed") == 1, "QUEUE drain removed the retried job", cmd, r)
        h.wait_equal(counts, (1, 2, 1, 2), 10, "the failure of a job removed before redis confirmed it "
                     "counted all the same: STATS python failed 2, bot_executions_total failed 2")
        w.close()


if __name__ == "__main__":
    h.main(test)

"""Durable job status in Redis: records, restart recovery, TTL, outage.

A real redis-server (AOF on) and a real broker; fake workers the test
drives, so each state change is seen in Redis exactly.
"""
import os
import signal
import time
import harness as h
from fakeworker import FakeWorker


def key(job_id):
    return "botmesh:{bm}:job:" + job_id


def test():
    # A worker is gone after 2 s without a message; the jobs recovered as
    # running are held 4 s for their worker.
    env = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "10",
           "COMPLETED_JOB_TTL": "6", "METRICS_SNAPSHOT_INTERVAL": "1"}
    with h.Stack("redis") as s:
        s.redis()
        broker = s.broker(env=env)
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "broker connected to redis")
        ready = "http://127.0.0.1:%d/ready" % broker.metrics_port
        st, _, body = h.wait_until(lambda: (lambda r: r if r[0] == 200 else None)(h.http("GET", ready)),
                                   10, "the broker's /ready to answer 200")
        h.check(body == {"status": "ready", "leader": True, "redis": True},
                "GET /ready on the metrics port: ready, leader, redis", body)

        # The record is in Redis when SUBMIT is acknowledged.
        jid = c.submit("python", {"task": "data_analysis"}, priority=2, webhookUrl="http://127.0.0.1:9/x")
        h.check(s.redis_cli("HGET", key(jid), "state") == "queued", "ACCEPTED job is in Redis as queued")
        h.check(s.redis_cli("SISMEMBER", "botmesh:{bm}:unfinished", jid) == "1", "and in the unfinished set")

        # Running, then completed: the result is durable, the record expires.
        # w1 must stay live (2 s without a message ends it) until the
        # restart below: it heartbeats in every wait and between the checks.
        w = FakeWorker(s.endpoint, "w1", ["python"], 2)

        def beating(fn):
            return lambda: w.heartbeat() or fn()

        job = w.recv_job()
        h.wait_until(beating(lambda: s.redis_cli("HGET", key(jid), "state") == "running"), 5, "running in Redis")
        h.check(h.job_record(s.redis_port, jid)["worker"] == "w1", "Redis names the worker")
        w.done(jid, {"mean": 4.2})
        rec = h.wait_until(beating(lambda: (lambda r: r if r["state"] in h.TERMINAL else None)(c.status(jid))),
                           30, "job %s to end" % jid)
        h.check(rec["state"] == "completed" and rec["result"] == {"mean": 4.2}, "completed", rec)
        h.wait_until(beating(lambda: s.redis_cli("HGET", key(jid), "state") == "completed"), 5, "completed in Redis")
        # No Redis TTL: its id in the type's finished set, which the broker
        # sweeps after COMPLETED_JOB_TTL.
        w.heartbeat()
        h.check(s.redis_cli("PTTL", key(jid)) == "-1", "a completed record carries no Redis TTL")
        h.check(s.redis_cli("ZSCORE", "botmesh:{bm}:finished:completed:python", jid) != "",
                "its id is in the finished set, which the broker sweeps after COMPLETED_JOB_TTL")
        w.heartbeat()
        h.check(s.redis_cli("SISMEMBER", "botmesh:{bm}:unfinished", jid) == "0", "and left the unfinished set")
        # Its webhook delivery became a job of the built-in webhook type.
        h.check(s.redis_cli("SISMEMBER", "botmesh:{bm}:unfinished", jid + ".wh1") == "1", "its webhook delivery is an unfinished job")
        w.heartbeat()

        # Restart: queued and running jobs come back; running ones count an
        # attempt.  w1 (credit 2) takes the first two python jobs at once: they
        # run at the restart, with the node job on w2.
        queued = [c.submit("python", {"n": i}, priority=5 - (i % 2)) for i in range(4)]
        got = [w.recv_job(), w.recv_job()]
        h.check([j and j["jobId"] for j in got] == queued[:2], "w1 runs the first two python jobs", got)
        w2 = FakeWorker(s.endpoint, "w2", ["node"], 1)
        running = c.submit("node", {"r": 1})
        job = w2.recv_job()
        h.check(job["jobId"] == running and job["attempt"] == 1, "node job running, attempt 1", job)
        h.wait_until(lambda: w.heartbeat() or w2.heartbeat() or all(
            s.redis_cli("HGET", key(j), "state") == "running" for j in queued[:2] + [running]),
            5, "the three running states in Redis")
        w.close()
        w2.close()
        broker.kill()
        h.log("broker killed with SIGKILL")
        broker = s.broker(env=env)
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "restarted broker recovered from redis")
        rec = c.status(running)
        h.check(rec["state"] == "queued" and rec["attempts"] == 1, "the running job is queued again", rec)
        for q in queued:
            h.check(c.status(q)["state"] == "queued", "queued job %s survived the restart" % q)
        old = c.status(jid)
        h.check(old and old["state"] == "completed" and old["result"] == {"mean": 4.2},
                "STATUS answers a finished job from Redis after the restart", old)
        w3 = FakeWorker(s.endpoint, "w3", ["python", "node"], 10)
        got = {}
        for _ in range(5):
            j = w3.recv_job(15)
            got[j["jobId"]] = j
            w3.done(j["jobId"], {"ok": True})
        h.check(got[running]["attempt"] == 2, "the interrupted job runs again as attempt 2", got[running])
        h.check([got[q]["attempt"] for q in queued] == [2, 2, 1, 1],
                "the python jobs w1 ran run again as attempt 2, the queued ones as attempt 1",
                [got[q]["attempt"] for q in queued])
        # The queued ones go first, by priority (4 before 5); the ones that
        # were running wait for their worker to report them, then follow in
        # priority order too (w1 never comes back).
        order = [j for j in got if j != running]
        expect = [queued[3], queued[2], queued[1], queued[0]]
        h.check(order == expect, "recovered queue keeps priority; jobs that were running are held first",
                (order, expect))

        # Retention: the completed record is deleted after 6 s (the sweep
        # runs every 3 s here).
        h.wait_until(lambda: s.redis_cli("EXISTS", key(jid)) == "0", 15, "record deleted after its retention")

        # Snapshots for the dashboard, bounded history.
        h.wait_until(lambda: int(s.redis_cli("LLEN", "botmesh:{bm}:snapshots") or 0) >= 1, 5, "metric snapshots written")

        # Redis outage: SUBMIT rejected with store_unavailable, broker stays up,
        # a running job's completion waits and is flushed on reconnect.
        w3.close()
        w3 = FakeWorker(s.endpoint, "w4", ["python"], 2)
        failed = c.submit("python", {"will": "fail"})
        j = w3.recv_job()
        w3.done(failed, None, ok=False, error={"code": "bot_failed", "message": "exit 1"})
        h.wait_until(lambda: s.redis_cli("HGET", key(failed), "state") == "failed", 5, "failed job in Redis")
        pending = c.submit("python", {"during": "outage"})
        j = w3.recv_job()
        redis_proc = [p for p in s.procs if p.name == "redis"][0]
        redis_proc.kill()
        h.wait_until(lambda: not c.request(h.PING)[1]["redis"], 10, "broker noticed redis is gone")
        ready = "http://127.0.0.1:%d/ready" % broker.metrics_port      # the restarted broker's
        st, hdrs, body = h.wait_until(lambda: (lambda r: r if r[0] == 503 else None)(h.http("GET", ready)),
                                      10, "the broker's /ready to answer 503 without Redis")
        h.check(body.get("status") == "not_ready" and body.get("redis") is False
                and body["error"]["code"] == "redis_unavailable",
                "/ready without Redis: 503 redis_unavailable", body)
        h.check(hdrs.get("Retry-After") == "1", "/ready's 503 says Retry-After", dict(hdrs))
        cmd, r = c.try_submit("python", {"x": 1})
        h.check(cmd == h.REJECTED and r["code"] == "store_unavailable", "SUBMIT during the outage: store_unavailable", r)
        w3.done(pending, {"finished": "while redis was away"})
        h.wait_until(lambda: c.status(pending)["state"] == "completed", 5, "job completes in memory")
        w3.recv(timeout=0.3)        # heartbeat
        s.redis()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 15, "broker reconnected")
        h.wait_until(lambda: h.http("GET", ready)[0] == 200, 10, "/ready to answer 200 again")
        h.wait_until(lambda: s.redis_cli("HGET", key(pending), "state") == "completed", 10,
                     "the buffered state change reached Redis after the outage")
        h.check(h.job_record(s.redis_port, failed)["errorMessage"] == "exit 1",
                "records written before Redis was killed survived its restart (AOF)")
        jid2 = c.submit("python", {"after": "outage"})
        h.check(s.redis_cli("HGET", key(jid2), "state") in ("queued", "running"), "SUBMIT works again after the outage")
        out = broker.output()
        h.check(out.count("unavailable") <= 2, "the outage is logged once, not per job", out.count("unavailable"))

        # Graceful stop: SIGTERM flushes and exits 0.
        broker.signal(signal.SIGTERM)
        rc = broker.p.wait(10)
        h.check(rc == 0, "broker exits 0 on SIGTERM", rc)


if __name__ == "__main__":
    h.main(test)

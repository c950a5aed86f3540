"""A job's record in Redis (docs/redis.md): five fields (state, r, x, w, wt), at
most 1 KiB of Redis memory beyond its payload and result once it ended and
its webhook was delivered, no record left of the delivery job; GET of it
from Redis alone after a restart answers as before; records of the earlier
layout (a hash field per job field) still read: a queued one is recovered
and runs (its id, in the earlier sorted set "live", moves to the
unfinished set), a completed one answers STATUS.

Real redis, broker, webhook manager and mock webhook receiver; a fake
worker runs the jobs.
"""
import time
import harness as h
from fakeworker import FakeWorker

PREFIX = "botmesh:{bm}:"


def key(job_id):
    return PREFIX + "job:" + job_id


def test():
    with h.Stack("record") as s:
        s.redis()
        broker = s.broker(env={"HEARTBEAT_LIVENESS": "20"})
        mock = s.webhooks()
        c = s.client()
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        s.wait_workers(1, "python")

        # Submitted: the state and one map (the payload in it).
        payload = {"task": "data_analysis", "rows": list(range(40))}
        jid = c.submit("python", payload, priority=2, webhookUrl=mock + "/hook")
        fields = sorted(s.redis_cli("HKEYS", key(jid)).split("\n"))
        h.check(fields == ["r", "state"], "a submitted job's record has two fields", fields)
        rec = h.job_record(s.redis_port, jid)
        h.check(rec["state"] == "queued" and rec["payload"] == payload and rec["priority"] == 2
                and rec["botType"] == "python" and rec["webhookUrl"] == mock + "/hook",
                "the submit map holds the payload and the options", rec)

        # Completed, webhook delivered: five fields, the delivery's record gone.
        result = {"mean": 4.2, "rows": list(range(40))}
        job = w.recv_job(5)
        h.check(job and job["jobId"] == jid, "the job was dispatched", job)
        w.done(jid, result=result)
        h.wait_until(lambda: c.status(jid).get("webhook", {}).get("state") == "delivered", 20,
                     "the webhook to be delivered")
        h.wait_until(lambda: (h.job_record(s.redis_port, jid) or {}).get("webhook", {}).get("state")
                     == "delivered", 5, "the delivered state in Redis")
        fields = sorted(s.redis_cli("HKEYS", key(jid)).split("\n"))
        h.check(fields == ["r", "state", "w", "wt", "x"], "a finished job's record has five fields", fields)
        rec = h.job_record(s.redis_port, jid)
        h.check(rec["state"] == "completed" and rec["result"] == result and rec["worker"] == "fw"
                and rec["attempts"] == 1 and rec["deliveries"] == 1 and rec["finishedAt"] > 0,
                "the run map holds the outcome", rec)
        h.check(int(rec["wt"]) >= rec["finishedAt"], "wt: when the webhook was delivered, after the end", rec)
        h.wait_until(lambda: s.redis_cli("EXISTS", key(jid + ".wh1")) == "0", 5,
                     "the delivery job's record to be deleted once it ended")
        h.check(s.redis_cli("SCARD", PREFIX + "unfinished") == "0", "nothing left in the unfinished set")
        h.check(s.redis_cli("PTTL", key(jid)) == "-1"
                and s.redis_cli("ZSCORE", PREFIX + "finished:completed:python", jid) != "",
                "the record has no Redis TTL: its id is in the finished set the broker sweeps")
        used = int(s.redis_cli("MEMORY", "USAGE", key(jid), "SAMPLES", "0"))
        inner = len(h.pack(payload)) + len(h.pack(result))
        h.log("record: %d bytes in Redis, %d of them payload and result" % (used, inner))
        h.check(used - inner <= 1024, "at most 1 KiB beyond payload and result (%d)" % (used - inner))

        # A restart: the broker answers from Redis what it answered before.
        before = c.status(jid)
        c.close()
        w.close()
        broker.stop()
        broker = s.broker(env={"HEARTBEAT_LIVENESS": "20"})
        c = s.client()
        after = c.status(jid)
        for field in ("jobId", "botType", "state", "result", "attempts", "priority", "createdAt",
                      "startedAt", "finishedAt", "webhookUrl", "webhook", "worker"):
            h.check(after.get(field) == before.get(field), "after a restart, %s reads as before" % field,
                    before.get(field), after.get(field))

        # The earlier layout: a queued job in the live set, a completed one
        # (ended a minute ago: within COMPLETED_JOB_TTL, or it reads as gone).
        old_payload, old_result = {"old": True}, {"answer": 42}
        t0 = int(time.time() * 1000) - 60000
        flat = {"jobId": "old-queued", "botType": "python", "state": "queued", "priority": "0",
                "seq": "900", "attempts": "0", "maxAttempts": "3", "timeoutMs": "60000", "progress": "0",
                "createdAt": str(t0), "payload": h.pack(old_payload)}
        done = dict(flat, jobId="old-done", state="completed", attempts="1", seq="899",
                    startedAt=str(t0 + 100), finishedAt=str(t0 + 200), worker="w-old",
                    result=h.pack(old_result))
        commands = [["HSET", key(r["jobId"])] + [x for kv in r.items() for x in kv] for r in (flat, done)]
        commands.append(["ZADD", PREFIX + "live", "900", "old-queued"])
        h.redis_pipeline(s.redis_port, commands)
        c.close()
        broker.stop()
        broker = s.broker(env={"HEARTBEAT_LIVENESS": "20"})
        c = s.client()
        got = c.status("old-done")
        h.check(got["state"] == "completed" and got["result"] == old_result and got["worker"] == "w-old"
                and got["finishedAt"] == t0 + 200, "a completed record of the earlier layout reads", got)
        w = FakeWorker(s.endpoint, "fw2", ["python"], 1)
        job = w.recv_job(10)
        h.check(job and job["jobId"] == "old-queued" and job["payload"] == old_payload,
                "a queued record of the earlier layout is recovered and runs", job)
        h.check(s.redis_cli("EXISTS", PREFIX + "live") == "0"
                and s.redis_cli("SISMEMBER", PREFIX + "unfinished", "old-queued") == "1",
                "the earlier layout's live set moved to the unfinished set",
                s.redis_cli("EXISTS", PREFIX + "live"), s.redis_cli("SMEMBERS", PREFIX + "unfinished"))
        w.done("old-queued", result={"ran": True})
        rec = c.wait("old-queued")
        h.check(rec["state"] == "completed" and rec["result"] == {"ran": True}, "and completes", rec)
        h.wait_until(lambda: h.job_record(s.redis_port, "old-queued")["state"] == "completed", 5,
                     "its record completed in Redis")
        rec = h.job_record(s.redis_port, "old-queued")
        h.check(rec["result"] == {"ran": True} and rec["payload"] == old_payload,
                "a record begun in the earlier layout reads with the newer fields", rec)
        h.wait_until(lambda: s.redis_cli("SCARD", PREFIX + "unfinished") == "0", 5,
                     "and it left the unfinished set")
        w.close()
        c.close()


if __name__ == "__main__":
    h.main(test)

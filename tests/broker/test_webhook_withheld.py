"""Webhook deliveries withheld until their job's outcome is durable do not
outlive their job, and there are at most WEBHOOK_WITHHELD_MAX of them.

Real redis, broker (WEBHOOK_WITHHELD_MAX=2), webhook manager and mock
webhook receiver; a fake worker runs the jobs.  Redis is stopped (SIGSTOP:
connected, answering nothing) while a job fails, so its delivery is
withheld; the job is retried before Redis answers (its terminal write was
confirmed for a job that runs again: the delivery stays withheld) and then
removed.  The withheld delivery goes with it: an INFO line names the job,
the broker no longer knows the delivery, and its Redis record is gone (a
broker started on that Redis would otherwise send the webhook of a job that
no longer exists).

Then three jobs complete while Redis is stopped: three withheld deliveries,
one over the cap.  The oldest is dropped with a WARN, its job's webhook
state says failed naming the cap; once Redis answers again the other two
are delivered, and the dropped one never is (its delivery job is gone).
"""
import signal
import harness as h
from fakeworker import FakeWorker

QUEUE, REMOVE = 0x0B, 0x0C


def delivery_exists(s, jid):
    return s.redis_cli("EXISTS", "botmesh:{bm}:job:%s.wh1" % jid) == "1"


def test():
    with h.Stack("webhook-withheld") as s:
        redis = s.redis()
        broker = s.broker(env={"HEARTBEAT_LIVENESS": "20", "WEBHOOK_WITHHELD_MAX": "2"})
        w = FakeWorker(s.endpoint, "fw", ["python"], 3)
        mock = s.webhooks()
        s.wait_workers(2)
        c = s.client()

        # A failed job, retried before its failure is durable, then removed.
        jid = c.submit("python", {"n": 1}, attempts=1, webhookUrl=mock + "/hook")
        job = w.recv_job(5)
        h.check(job and job["jobId"] == jid, "the job is dispatched to the worker", job)
        cmd, r = c.request(QUEUE, {"botType": "python", "action": "pause"})
        h.check(cmd == h.REPLY and r["paused"], "python paused: a retried run stays queued", r)
        redis.signal(signal.SIGSTOP)
        h.log("redis stopped (SIGSTOP)")
        try:
            w.done(jid, ok=False, error={"code": "bot_failed", "message": "run failed"})
            h.wait_until(lambda: c.status(jid)["state"] == "failed", 5, "the job to fail in memory")
            h.check(c.status(jid + ".wh1") is not None, "its delivery exists, withheld", jid + ".wh1")
            retry_req = c.send_request(h.RETRY, {"jobId": jid})
            # Redis continues only once the broker has taken the RETRY (the
            # job queued again in its memory): a broker that read Redis's
            # answer first would confirm the failure and send its webhook
            # before the retry, and nothing would be withheld.  Asked on a
            # second connection, so that c keeps the RETRY's answer.
            watcher = s.client()
            h.wait_until(lambda: watcher.status(jid)["state"] != "failed", 5,
                         "the broker to take the RETRY (the job no longer failed)")
            h.check(watcher.status(jid)["state"] == "queued", "the retried job is queued again (python paused)")
        finally:
            redis.signal(signal.SIGCONT)
        h.log("redis continued (SIGCONT)")
        cmd, r = c.reply_to(retry_req)
        h.check(cmd == h.ACCEPTED, "RETRY accepted: the job is queued again", r)
        h.wait_until(lambda: delivery_exists(s, jid), 10, "the withheld delivery's record in redis")

        def remove():
            cmd, r = c.request(REMOVE, {"jobId": jid})
            return r if cmd == h.REPLY else None
        r = h.wait_until(remove, 10, "REMOVE of the queued job to be taken")
        h.check(r["removed"] is True, "the retried job is removed", r)
        h.check(c.status(jid) is None, "the job is gone")
        h.check(c.status(jid + ".wh1") is None, "its withheld delivery is gone with it")
        h.wait_until(lambda: not delivery_exists(s, jid), 10, "the delivery's redis record to be deleted")
        line = [ln for ln in broker.output().splitlines() if "withheld" in ln and jid in ln]
        h.check(line and "INFO" in line[0], "one INFO line names the job of the dropped delivery", line)
        cmd, r = c.request(QUEUE, {"botType": "python", "action": "resume"})
        h.check(cmd == h.REPLY and not r["paused"], "python resumed", r)

        # Three completions while redis is stopped: one withheld over the cap.
        ids = [c.submit("python", {"n": i}, webhookUrl=mock + "/hook") for i in range(3)]
        got = [w.recv_job(5) for _ in ids]
        h.check([j and j["jobId"] for j in got] == ids, "the three jobs are dispatched", got)
        redis.signal(signal.SIGSTOP)
        h.log("redis stopped (SIGSTOP)")
        try:
            for i in ids:
                w.done(i, result={"done": True})
            h.wait_until(lambda: all(c.status(i)["state"] == "completed" for i in ids), 5,
                         "the three jobs to complete in memory")
            first = c.status(ids[0])["webhook"]
            h.check(first["state"] == "failed" and "WEBHOOK_WITHHELD_MAX" in first.get("lastError", ""),
                    "the oldest withheld delivery is dropped: its job's webhook failed, naming the cap", first)
            h.check([c.status(i)["webhook"]["state"] for i in ids[1:]] == ["pending", "pending"],
                    "the two newer deliveries stay withheld")
            warn = [ln for ln in broker.output().splitlines() if "WEBHOOK_WITHHELD_MAX" in ln and ids[0] in ln]
            h.check(warn and "WARN" in warn[0], "one WARN line names the dropped delivery's job", warn)
        finally:
            redis.signal(signal.SIGCONT)
        h.log("redis continued (SIGCONT)")
        h.check(c.status(ids[0] + ".wh1") is None, "the dropped delivery job is gone")
        for i in ids[1:]:
            h.wait_until(lambda: c.status(i).get("webhook", {}).get("state") == "delivered", 20,
                         "the webhook of %s to be delivered once redis has the outcome" % i)
            h.check(len(h.mock_deliveries(mock, i)) == 1, "one delivery of %s" % i)
        h.check(h.mock_deliveries(mock, ids[0]) == [], "none of the dropped one (its delivery job is gone)")
        rec = h.job_record(s.redis_port, ids[0])
        h.check(rec["webhook"]["state"] == "failed", "redis has its webhook state: failed", rec)
        w.close()


if __name__ == "__main__":
    h.main(test)

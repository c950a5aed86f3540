"""A job's webhook goes out only once its outcome is durable in Redis.

Real redis, broker, webhook manager and mock webhook receiver; a fake
worker runs the job.  Redis is stopped (SIGSTOP: connected, answering
nothing) while the job runs; the worker's DONE completes the job in the
broker's memory, but the terminal write waits for Redis.  A leader that
lost Redis then would lose its lease, and the next leader would run the
job again: a webhook sent now would announce an outcome that may be
undone, and the next leader's would look like a first delivery.  So
nothing reaches the receiver while Redis is stopped; once Redis answers
again (SIGCONT) the webhook is delivered, once, as attempt 1.
"""
import signal
import time
import harness as h
from fakeworker import FakeWorker


def test():
    with h.Stack("webhook-durable") as s:
        redis = s.redis()
        s.broker(env={"HEARTBEAT_LIVENESS": "20"})
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        mock = s.webhooks()
        s.wait_workers(2)
        c = s.client()
        jid = c.submit("python", {"n": 1}, webhookUrl=mock + "/hook")
        job = w.recv_job(5)
        h.check(job and job["jobId"] == jid, "the job is dispatched to the worker", job)

        redis.signal(signal.SIGSTOP)
        h.log("redis stopped (SIGSTOP)")
        try:
            w.done(jid, result={"done": True})
            h.wait_until(lambda: c.status(jid)["state"] == "completed", 5,
                         "the broker to take the DONE (the job completed in memory)")
            h.check(c.status(jid)["webhook"]["state"] == "pending",
                    "the job's webhook is pending", c.status(jid))
            # An observation window for something that must not happen.
            time.sleep(1.5)
            got = h.mock_deliveries(mock, jid)
            h.check(got == [], "no webhook while the completion is not durable (1.5 s watched)", got)
        finally:
            redis.signal(signal.SIGCONT)
        h.log("redis continued (SIGCONT)")

        h.wait_until(lambda: c.status(jid).get("webhook", {}).get("state") == "delivered", 20,
                     "the webhook to be delivered once redis has the outcome")
        h.check(h.job_record(s.redis_port, jid)["state"] == "completed",
                "the record in redis says completed", h.job_record(s.redis_port, jid))
        got = h.mock_deliveries(mock, jid)
        h.check([d["hdr"].get("x-delivery-attempt") for d in got] == ["1"],
                "exactly one delivery, X-Delivery-Attempt 1", got)
        w.close()


if __name__ == "__main__":
    h.main(test)

"""A job that fails twice and then completes fires its webhook once, for the
final outcome; one that fails every run fires once too, with the failure.

Real redis, broker, webhook manager and mock webhook receiver; a fake
worker fails runs on command (attempts 3, fixed backoff 100 ms).
"""
import harness as h
from fakeworker import FakeWorker


def test():
    with h.Stack("retry-webhook") as s:
        s.redis()
        s.broker(env={"HEARTBEAT_LIVENESS": "20"})
        mock = s.webhooks()
        c = s.client()
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        s.wait_workers(1, "python")
        deliveries = lambda jid: h.mock_deliveries(mock, jid)

        for outcomes in ((False, False, True), (False, False, False)):
            jid = c.submit("python", {"o": list(outcomes)}, attempts=3, webhookUrl=mock + "/hook",
                           backoff={"type": "fixed", "delayMs": 100})
            for ok in outcomes:
                job = w.recv_job(5)
                h.check(job and job["jobId"] == jid, "run dispatched")
                if not ok:
                    # Between runs: no webhook yet.
                    w.done(jid, ok=False, error={"code": "bot_failed", "message": "run failed"})
                    h.wait_until(lambda: c.status(jid)["state"] in ("delayed", "failed"), 5, "the run's end")
                    if c.status(jid)["state"] == "delayed":
                        h.check(deliveries(jid) == [], "no webhook while the job waits to run again")
                else:
                    w.done(jid, result={"done": True})
            rec = c.wait(jid)
            want = "completed" if outcomes[-1] else "failed"
            h.check(rec["state"] == want and len(rec["attemptErrors"]) == outcomes.count(False),
                    "the job ended %s after %d runs" % (want, len(outcomes)), rec)
            h.wait_until(lambda: c.status(jid).get("webhook", {}).get("state") == "delivered", 20,
                         "the webhook to be delivered")
            got = deliveries(jid)
            h.check(len(got) == 1, "exactly one webhook delivery for job %s" % jid, got)
        w.close()


if __name__ == "__main__":
    h.main(test)

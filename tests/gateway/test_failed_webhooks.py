"""The failed webhooks list, as an operator uses it, against a real stack
(redis, broker, no-op worker, botmesh-webhook, botmesh-mock, gateway, curl):
GET /jobs?webhook=failed lists the jobs whose webhook gave up (newest to
give up first) and no other; webhook=delivered those delivered; it combines
with botType and limit; a redelivery (POST /job/{id}/redeliver) takes the
job off the list once delivered.  A webhook value that is not a webhook
state, given twice or holding a NUL is a 400 invalid_webhook naming it.
A redelivered job's record keeps its history: webhook.redeliveries counts
the redeliveries and webhook.previousError is the lastError of the latest
delivery that gave up, in memory and in Redis, while webhook.attempts
counts the latest delivery's attempts."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "webhook"))
import harness
from gwtest import check, curl, gateway, post_json, start_workers, wait_until
import whlib


def webhook_state(u, job_id, state):
    """Wait for the job record's webhook.state to be state; the record."""
    def reached():
        r = curl(u + "/job/" + job_id, show=False)
        return r.json if r.status == 200 and r.json.get("webhook", {}).get("state") == state else None
    return wait_until(reached, 20, "job %s's webhook to be %s" % (job_id, state))


def listed(u, query):
    r = curl(u + "/jobs?" + query)
    check(r.status == 200, "GET /jobs?%s: 200" % query, r)
    return [j["jobId"] for j in r.json["jobs"]]


def main():
    with harness.Stack("gw-failed-webhooks") as s:
        s.redis()
        s.broker()
        start_workers(s, ["python"])
        mock = whlib.mock(s)
        whlib.manager(s, {"WEBHOOK_RETRY_DELAY": "100", "WEBHOOK_JITTER": "none"})
        s.wait_workers(1, "webhook")
        g = gateway(s)
        u = g.url
        hook = mock.url + "/hook"

        def invoke(webhook=True):
            body = {"botType": "python", "payload": {"n": 1}, "priority": 1}
            if webhook:
                body["webhookUrl"] = hook
            r = post_json(u + "/invoke", body)
            check(r.status == 202, "POST /invoke: 202", r)
            return r.json["jobId"]

        # One delivered, two given up (a 404 is final: one attempt), one without a webhook.
        ok = invoke()
        webhook_state(u, ok, "delivered")
        whlib.mock_mode(mock, failFirst=1, status=404)
        first = invoke()
        rec = webhook_state(u, first, "failed")
        check(rec["webhook"]["lastStatus"] == 404 and "redeliveries" not in rec["webhook"],
              "the first gave up on a 404 (no redeliveries yet)", rec["webhook"])
        gave_up = rec["webhook"]["lastError"]
        whlib.mock_mode(mock, failFirst=1, status=404)
        second = invoke()
        second_gave_up = webhook_state(u, second, "failed")["webhook"]["lastError"]
        plain = invoke(webhook=False)
        wait_until(lambda: curl(u + "/job/" + plain, show=False).json.get("state") == "completed", 20,
                   "the job without a webhook to complete")

        check(listed(u, "webhook=failed") == [second, first],
              "webhook=failed: the two that gave up, newest to give up first", listed(u, "webhook=failed"))
        check(listed(u, "webhook=delivered") == [ok], "webhook=delivered: the delivered one only")
        check(listed(u, "webhook=pending") == [] and listed(u, "webhook=retrying") == [],
              "webhook=pending and webhook=retrying: none now")
        check(listed(u, "webhook=failed&limit=1") == [second], "webhook=failed&limit=1: the newest only")
        check(listed(u, "webhook=failed&state=completed&botType=python") == [second, first],
              "webhook=failed with state and botType: both (completed python jobs)")
        check(listed(u, "webhook=failed&botType=node") == [], "webhook=failed&botType=node: none")
        check(listed(u, "webhook=failed&state=failed") == [], "webhook=failed&state=failed: none (the jobs completed)")
        check(listed(u, "webhook=") [:4] == [plain, second, first, ok], "webhook= (empty): any, as without it")
        check(plain in listed(u, "limit=10") and plain not in listed(u, "webhook=failed"),
              "a job without a webhook is listed without the filter, not with it")

        # The operator redelivers the first: once delivered, it leaves the failed list.
        r = curl("-X", "POST", u + "/job/%s/redeliver" % first)
        check(r.status == 202 and r.json == {"jobId": first, "webhook": "pending", "status": "redelivery queued"},
              "POST /job/{id}/redeliver: 202", r)
        webhook_state(u, first, "delivered")
        check(listed(u, "webhook=failed") == [second], "webhook=failed: the one still failed")
        check(listed(u, "webhook=delivered") == [first, ok], "webhook=delivered: the redelivered one first")

        # The record keeps what a redelivery would otherwise lose.
        rec = curl(u + "/job/" + first).json["webhook"]
        check(rec["attempts"] == 1 and rec["redeliveries"] == 1 and rec["previousError"] == gave_up,
              "redelivered once: attempts 1 (this delivery's), redeliveries 1, previousError the 404's", rec)
        check("redeliveries" not in curl(u + "/job/" + ok).json["webhook"]
              and "previousError" not in curl(u + "/job/" + ok).json["webhook"],
              "a job never redelivered has neither field")
        # The second gives up again, then gets through on a third delivery.
        whlib.mock_mode(mock, failFirst=2, status=410)     # per webhook-id: its 2nd arrival fails
        r = curl("-X", "POST", u + "/job/%s/redeliver" % second)
        check(r.status == 202, "redeliver the second (the receiver answers 410 this time)", r)
        wait_until(lambda: curl(u + "/job/" + second, show=False).json["webhook"].get("lastStatus") == 410, 20,
                   "the second's redelivery to give up on a 410")
        rec = curl(u + "/job/" + second).json["webhook"]
        check(rec["state"] == "failed" and rec["redeliveries"] == 1 and rec["previousError"] == second_gave_up,
              "failed again: redeliveries 1, previousError its first give-up's (the 404)", rec)
        check(listed(u, "webhook=failed") == [second], "still on the failed webhooks list")
        again = rec["lastError"]
        r = curl("-X", "POST", u + "/job/%s/redeliver" % second)
        rec = webhook_state(u, second, "delivered")["webhook"]
        check(rec["redeliveries"] == 2 and rec["previousError"] == again and rec["attempts"] == 1,
              "third delivery: redeliveries 2, previousError the 410's, attempts 1", rec)
        stored = harness.job_record(s.redis_port, second)["webhook"]
        check(stored.get("redeliveries") == 2 and stored.get("previousError") == again
              and stored.get("state") == "delivered", "Redis holds the same webhook state", stored)
        check(listed(u, "webhook=failed") == [], "the failed webhooks list is empty")

        # Bad values: 400 invalid_webhook, naming the parameter.
        for query, why in (("webhook=Failed", "not a webhook state (names are lower case)"),
                           ("webhook=gaveup", "not a webhook state"),
                           ("webhook=failed&webhook=failed", "given twice"),
                           ("webhook=%00", "a NUL"),
                           ("webhook=" + "f" * 40, "too long")):
            r = curl(u + "/jobs?" + query)
            check(r.status == 400 and r.error_code() == "invalid_webhook" and "webhook" in r.json["error"]["message"],
                  "GET /jobs?%s: 400 invalid_webhook naming webhook (%s)" % (query[:30], why), r)
        r = curl(u + "/jobs?webhook=nope")
        check("pending, retrying, delivered, failed" in r.json["error"]["message"],
              "the message lists the webhook states", r.json)


if __name__ == "__main__":
    harness.main(main)

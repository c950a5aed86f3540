"""Reals keep their value end to end: a payload's 0.1 + 0.2
(0.30000000000000004) reaches the bot, its result, the job record over
HTTP and the webhook's body as the same double (a JSON text takes 16
significant digits when every real in it reads back exactly from them, so
0.1 is still written "0.1"; else 17; 16 alone wrote 0.30000000000000004
as 0.3).

A real stack: redis, broker, gateway, a worker whose python bot is `cat`
(the result is the payload it was given on stdin), the mock receiver and
the webhook manager."""
import json

import harness
from gwtest import check, curl, gateway, log, wait_until

SUM = 0.1 + 0.2
PAYLOAD_TEXT = '{"sum": 0.30000000000000004, "tenth": 0.1, "third": 0.3333333333333333, "big": 1e300}'


def test():
    with harness.Stack("reals") as s:
        s.redis()
        s.broker()
        mock = s.webhooks()
        s.worker("--type", "python", "--concurrency", "1", env={"BOT_PYTHON_CMD": "cat"})
        s.wait_workers(1, "python")
        gw = gateway(s)

        log("POST /invoke with the payload %s" % PAYLOAD_TEXT)
        body = '{"botType": "python", "payload": %s, "webhookUrl": "%s/webhook"}' % (PAYLOAD_TEXT, mock)
        r = curl(gw.url + "/invoke", "-X", "POST", "-H", "Content-Type: application/json", "-d", body)
        check(r.status == 202, "the job is accepted", r.body)
        job_id = r.json["jobId"]

        def record():
            rec = curl(gw.url + "/job/" + job_id, show=False)
            return rec if rec.json and rec.json.get("state") in ("completed", "failed") else None
        wait_until(record, 30, "the job to end")
        rec = record()
        check(rec.json["state"] == "completed", "the bot (cat) completed", rec.body)
        log("GET /job/%s -> %s" % (job_id, rec.body))
        result = rec.json["result"]
        check(result["sum"] == SUM and result["sum"] != 0.3,
              "the result's sum read back is 0.1 + 0.2 exactly (the bot got it so)", result)
        check(result == json.loads(PAYLOAD_TEXT), "every real read back unchanged", result)
        check('"sum":0.30000000000000004' in rec.body,
              "the record's JSON text writes 0.30000000000000004", rec.body)

        wait_until(lambda: harness.mock_deliveries(mock, job_id), 30, "the webhook's delivery")
        hook = harness.mock_deliveries(mock, job_id)[0]
        log("the mock got: %s" % json.dumps(hook["body"])[:400])
        sent = hook["body"]
        check(sent["result"]["sum"] == SUM, "the webhook body's result carries the exact sum", sent)

        log("a payload whose reals all fit 16 digits is written as short as before")
        body = '{"botType": "python", "payload": {"tenth": 0.1, "half": 0.5}}'
        r = curl(gw.url + "/invoke", "-X", "POST", "-H", "Content-Type: application/json", "-d", body)
        job_id = r.json["jobId"]
        wait_until(record, 30, "the second job to end")
        rec = record()
        check('"result":{"tenth":0.1,"half":0.5}' in rec.body, "0.1 is written 0.1", rec.body)


if __name__ == "__main__":
    harness.main(test)

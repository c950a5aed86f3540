"""A job's webhook, through the real stack (redis, broker, noop worker,
botmesh-webhook, botmesh-mock): delivered once, signed, recorded in the job,
counted the same by the manager and the mock; then redelivered on demand
(POST /deliveries/{jobId}/retry) with the same webhook-id."""
import base64
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, http, wait_until
import whlib

SECRET = "whsec_" + base64.b64encode(b"delivery-test-secret-bytes-0123").decode()


def main():
    with harness.Stack("wh-delivery") as s:
        s.redis()
        s.broker()
        s.worker("--noop", "--type", "python")
        mock = whlib.mock(s, {"MOCK_WEBHOOK_SECRET": SECRET})
        mgr = whlib.manager(s, {"WEBHOOK_SECRET": SECRET})
        s.wait_workers(1, "webhook")
        c = s.client()

        job = c.submit("python", {"task": "data_analysis"}, webhookUrl=mock.url + "/hooks/results")
        rec = c.wait(job)
        check(rec["state"] == "completed", "the job completed", rec)
        rec = wait_until(lambda: (lambda r: r if r.get("webhook", {}).get("state") == "delivered" else None)(
            c.status(job)), 15, "the job record to say delivered")
        wh = rec["webhook"]
        check(wh["attempts"] == 1 and wh["lastStatus"] == 200,
              "job record: webhook {state: delivered, attempts: 1, lastStatus: 200}", wh)

        got = whlib.mock_deliveries(mock, job)
        check(len(got) == 1, "the mock received the delivery exactly once", got)
        d = got[0]
        check(d["path"] == "/hooks/results" and d["status"] == 200, "POSTed to the URL's path, answered 200", d)
        check(d["signature"] == "valid", "the mock found the signature valid", d)
        body = d["body"]
        check(body["jobId"] == job and body["botType"] == "python" and body["status"] == "completed"
              and "result" in body and body["attempts"] == 1 and "durationMs" in body
              and "createdAt" in body and "finishedAt" in body,
              "body {jobId, botType, status, result, attempts, durationMs, createdAt, finishedAt}", body)
        check(body["success"] is True and body["data"] == body["result"] and body["data"] is not None
              and body["timestamp"] == body["finishedAt"] and "error" not in body,
              "body also {success: true, data: the result, timestamp}", body)
        hdr = {k.lower(): v for k, v in d["headers"].items()}
        check(hdr["webhook-id"] == job, "webhook-id is the job id", hdr)
        check(hdr["x-bot-job-id"] == job and hdr["x-delivery-attempt"] == "1",
              "X-Bot-Job-Id is the job id, X-Delivery-Attempt 1", hdr)
        # The mock keeps the parsed body; re-sign the canonical JSON the broker sends
        # (compact, same key order) and compare with Python's own HMAC.
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
        key = base64.b64decode(SECRET[6:])
        mac = base64.b64encode(hmac.new(key, ("%s.%s.%s" % (job, hdr["webhook-timestamp"], text)).encode(),
                                        hashlib.sha256).digest()).decode()
        check(("v1," + mac) in hdr["webhook-signature"].split(), "signature matches an independent HMAC", hdr)

        # Both services count the same.
        ms = whlib.get_json(mock.url + "/stats")
        ws = whlib.get_json(mgr.url + "/stats")
        check(ms["received"] == 1 and ms["byStatus"] == {"200": 1} and ms["signatures"]["valid"] == 1,
              "mock /stats: 1 received, 200, signature valid", ms)
        check(ws["delivered"] == 1 and ws["failed"] == 0 and ws["attempts"] == 1 and ws["inFlight"] == 0
              and ws["retrying"] == 0 and ws["broker"]["connected"], "manager /stats agrees", ws)
        status, hdrs, metrics = http("GET", mgr.url + "/metrics")
        check(status == 200 and 'webhook_deliveries_total{status="success"} 1\n' in metrics
              and 'webhook_deliveries_total{status="failed"} 0\n' in metrics
              and "webhook_delivery_duration_seconds_count 1" in metrics,
              "manager /metrics: webhook_deliveries_total, webhook_delivery_duration_seconds", metrics[:400])

        # Both /metrics pass Prometheus' own linter, when it is installed.
        if shutil.which("promtool"):
            for name, url in (("manager", mgr.url), ("mock", mock.url)):
                text = http("GET", url + "/metrics")[2]
                out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                                     text=True, timeout=30)
                check(out.returncode == 0, "promtool check metrics: %s /metrics is clean" % name,
                      out.stdout, out.stderr)

        # Redelivery on demand: same webhook-id, the receiver counts a duplicate.
        status, _, reply = http("POST", "%s/deliveries/%s/retry" % (mgr.url, job), b"")
        check(status == 202, "POST /deliveries/{jobId}/retry: 202", reply)
        check(reply == {"jobId": job, "status": "redelivery queued", "webhook": "pending"},
              "it answers with the fields of the gateway's POST /job/{id}/redeliver", reply)
        wait_until(lambda: len(whlib.mock_deliveries(mock, job)) == 2, 15, "the redelivery to arrive")
        got = whlib.mock_deliveries(mock, job)
        check(got[1]["webhookId"] == job and got[1]["signature"] == "valid", "redelivery: same webhook-id, signed", got[1])
        check(whlib.get_json(mock.url + "/stats")["duplicates"] == 1, "the mock counts it as a duplicate")
        status, _, reply = http("POST", "%s/deliveries/%s/retry" % (mgr.url, "nosuchjob"), b"")
        check(status == 404 and reply["error"]["code"] == "not_found", "retry of an unknown job: 404", reply)
        plain = c.submit("python", {"x": 1})
        c.wait(plain)
        status, _, reply = http("POST", "%s/deliveries/%s/retry" % (mgr.url, plain), b"")
        check(status == 409 and reply["error"]["code"] == "conflict", "retry of a job without webhook: 409", reply)
        c.close()
        whlib.stop_clean(mgr, mock)


harness.main(main)

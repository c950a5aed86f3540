"""A client of the BullMQ-based bot system botmesh re-creates, unchanged,
against the real stack (redis, broker, workers, botmesh-webhook,
botmesh-mock, botmesh-gateway): its requests, the JSON paths it reads, the
headers its webhook receivers read.

- POST /invoke answers botType, priority, estimatedPosition; no priority
  means 3.
- GET /job/{id} carries id, data, returnvalue, attemptsMade, processedOn, finishedOn,
  failedReason.
- GET /stats carries botQueue and webhookQueue {waiting, active, completed,
  failed}.
- The webhook body carries success, botType, data, error (a string),
  timestamp; the headers X-Bot-Job-Id and X-Delivery-Attempt.
- The mock: GET /webhooks?limit=&offset= (newest first, total),
  GET /webhooks/{id}, DELETE /webhooks, /test/not-found 404, other /test/x
  400, /stats total/successful/failed/botTypeStats/lastHour/lastDay.
- /health on every service: status healthy and an ISO timestamp.
- Every answer of every service: CORS and the browser security headers; a
  preflight from a browser-like Origin; CORS_ORIGINS as a list.
- Metrics: each service its own series; webhook_deliveries_total{status}
  success|failed.
"""
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "webhook"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "worker"))
import harness
from harness import check, http, wait_until
from gwtest import gateway
import whlib
import wlib

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ORIGIN = "http://localhost:8080"
SECURITY = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "SAMEORIGIN",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "x-dns-prefetch-control": "off",
}


def lower(headers):
    return {k.lower(): v for k, v in headers.items()}


def get(url, headers=None):
    status, hdrs, body = http("GET", url, headers=headers)
    return status, lower(hdrs), body


def check_headers(name, hdrs, origin="*"):
    """The security headers, and CORS for a request from ORIGIN."""
    for key, value in SECURITY.items():
        check(hdrs.get(key) == value, "%s: %s: %s" % (name, key, value), hdrs)
    csp = hdrs.get("content-security-policy", "")
    check("default-src 'self'" in csp and "script-src 'self'" in csp
          and "frame-ancestors 'self'" in csp, "%s: a Content-Security-Policy" % name, csp)
    check("strict-transport-security" not in hdrs, "%s: no HSTS over plain HTTP" % name, hdrs)
    check(hdrs.get("access-control-allow-origin") == origin,
          "%s: Access-Control-Allow-Origin: %s" % (name, origin), hdrs)


def job_done(gw, job_id):
    status, _, rec = get("%s/job/%s" % (gw.url, job_id))
    return rec if status == 200 and rec["state"] in ("completed", "failed") else None


def main():
    with harness.Stack("gw-seed-client") as s:
        s.redis()
        broker = s.broker()
        s.worker("--noop", "--type", "python,node")
        s.worker("--type", "java", env={"BOT_JAVA_CMD": wlib.testbot_cmd()})
        mock = whlib.mock(s)
        mgr = whlib.manager(s)
        s.wait_workers(1, "webhook")
        s.wait_workers(1, "java")
        gw = gateway(s)
        hook = mock.url          # the seed's examples POST to the mock's root

        # POST /invoke as the seed README writes it.
        payload = {"task": "data_analysis", "dataset": "sales_2024"}
        status, _, r = http("POST", gw.url + "/invoke", {"botType": "python", "payload": payload,
                                                         "webhookUrl": hook, "priority": 1})
        check(status == 202 and r["status"] == "queued" and r["botType"] == "python"
              and r["priority"] == 1 and isinstance(r["estimatedPosition"], int)
              and r["estimatedPosition"] >= 1,
              "POST /invoke: {jobId, status, botType, priority, estimatedPosition}", r)
        ok_id = r["jobId"]
        status, _, r = http("POST", gw.url + "/invoke", {"botType": "node", "payload": {"test": 1},
                                                         "webhookUrl": hook})
        check(status == 202 and r["priority"] == 3 and r["botType"] == "node",
              "POST /invoke without priority: priority 3", r)
        node_id = r["jobId"]
        status, _, r = http("POST", gw.url + "/invoke", {"botType": "java",
                                                         "payload": {"exit": 3, "stderr": "it broke"},
                                                         "webhookUrl": hook, "priority": 2})
        check(status == 202, "POST /invoke java (a bot that fails)", r)
        bad_id = r["jobId"]

        # GET /job/{id} with BullMQ's names.
        rec = wait_until(lambda: job_done(gw, ok_id), 20, "the python job to end")
        check(rec["state"] == "completed" and rec["id"] == ok_id and rec["data"] == payload
              and isinstance(rec["processedOn"], int) and isinstance(rec["finishedOn"], int)
              and rec["finishedOn"] >= rec["processedOn"] > 0 and rec["failedReason"] is None,
              "GET /job: id, data, processedOn, finishedOn (ms), failedReason null", rec)
        check(rec["returnvalue"] == rec["result"] and rec["returnvalue"] is not None
              and rec["attemptsMade"] == rec["attempts"] == 1,
              "GET /job: returnvalue (= result), attemptsMade (= attempts, 1)", rec)
        bad = wait_until(lambda: job_done(gw, bad_id), 20, "the java job to end")
        check(bad["state"] == "failed" and isinstance(bad["failedReason"], str)
              and bad["failedReason"] and isinstance(bad["finishedOn"], int),
              "GET /job of a failed job: failedReason is its error message", bad)
        check(bad["returnvalue"] is None and bad["attemptsMade"] == bad["attempts"] >= 1,
              "GET /job of a failed job: returnvalue null, attemptsMade = attempts", bad)
        wait_until(lambda: job_done(gw, node_id), 20, "the node job to end")

        # The webhooks, as a receiver of the seed reads them.
        def all_delivered():
            st = whlib.get_json(mock.url + "/stats")
            return st if st["total"] >= 3 else None
        stats = wait_until(all_delivered, 30, "three webhooks at the mock")
        status, _, page = get(mock.url + "/webhooks?limit=10&offset=0")
        hooks = page["webhooks"]
        check(status == 200 and page["total"] == 3 and len(hooks) == 3,
              "GET /webhooks: {webhooks: [3], total: 3}", page)
        check(all(set(("id", "timestamp", "headers", "body")) <= set(h) for h in hooks)
              and all(ISO.match(h["timestamp"]) for h in hooks),
              "each webhook: {id, timestamp (ISO), headers, body}", hooks)
        check([h["timestamp"] for h in hooks] == sorted((h["timestamp"] for h in hooks), reverse=True)
              and int(hooks[0]["id"]) > int(hooks[-1]["id"]), "newest first", hooks)
        by_job = {h["body"]["jobId"]: h for h in hooks}
        good = by_job[ok_id]
        body, hdrs = good["body"], lower(good["headers"])
        check(body["success"] is True and body["botType"] == "python" and isinstance(body["data"], dict)
              and ISO.match(body["timestamp"]) and "error" not in body,
              "webhook body: success true, botType, data (the result), timestamp", body)
        check(hdrs.get("x-bot-job-id") == ok_id and hdrs.get("x-delivery-attempt") == "1"
              and hdrs.get("webhook-id") == ok_id,
              "webhook headers: X-Bot-Job-Id, X-Delivery-Attempt 1 (and webhook-id)", hdrs)
        failed = by_job[bad_id]["body"]
        check(failed["success"] is False and failed["botType"] == "java"
              and isinstance(failed["error"], str) and failed["error"] and failed["data"] is None,
              "failed job's webhook: success false, error a string", failed)
        status, _, page = get(mock.url + "/webhooks?limit=1&offset=1")
        check(status == 200 and len(page["webhooks"]) == 1 and page["total"] == 3
              and page["webhooks"][0]["id"] == hooks[1]["id"], "limit=1&offset=1: the second newest", page)
        status, _, one = get("%s/webhooks/%s" % (mock.url, good["id"]))
        check(status == 200 and one["id"] == good["id"] and one["body"] == body,
              "GET /webhooks/{id}", one)
        status, _, err = get(mock.url + "/webhooks/999999")
        check(status == 404 and err["error"]["code"] == "not_found", "GET /webhooks/{unknown}: 404 JSON", err)
        status, _, err = get(mock.url + "/webhooks?limit=many")
        check(status == 400 and "limit" in err["error"]["message"], "GET /webhooks?limit=many: 400", err)

        # The mock's /stats as the seed's.
        check(stats["total"] == 3 and stats["successful"] == 2 and stats["failed"] == 1
              and stats["lastHour"] == 3 and stats["lastDay"] == 3
              and stats["botTypeStats"]["java"] == {"total": 1, "successful": 0, "failed": 1}
              and stats["botTypeStats"]["python"]["successful"] == 1
              and stats["received"] == 3 and "byStatus" in stats,
              "mock /stats: total, successful, failed, botTypeStats, lastHour, lastDay (and its own)", stats)

        # The seed's test endpoints.
        for path, want in (("/test/success", 200), ("/test/error", 500), ("/test/not-found", 404),
                           ("/test/whatever", 400)):
            status, _, r = http("POST", mock.url + path, {"x": 1})
            check(status == want, "POST %s: %d" % (path, want), r)

        # GET /stats with the seed's totals.
        status, _, st = get(gw.url + "/stats")
        bq, wq = st["botQueue"], st["webhookQueue"]
        check(status == 200 and set(bq) == {"waiting", "active", "completed", "failed"}
              and bq["completed"] >= 2 and bq["failed"] >= 1 and set(wq) == set(bq)
              and wq["completed"] >= 3 and "types" in st,
              "GET /stats: botQueue, webhookQueue {waiting, active, completed, failed}", st)

        # DELETE /webhooks clears.
        status, _, r = http("DELETE", mock.url + "/webhooks")
        check(status == 200, "DELETE /webhooks", r)
        page = whlib.get_json(mock.url + "/webhooks")
        check(page == {"webhooks": [], "total": 0}, "nothing on record after DELETE /webhooks", page)

        # /health on every service; the common headers on every answer.
        services = {"gateway": gw.url, "webhook manager": mgr.url, "mock": mock.url,
                    "broker metrics": "http://127.0.0.1:%d" % broker.metrics_port}
        for name, url in services.items():
            status, hdrs, h = get(url + "/health", {"Origin": ORIGIN})
            check(status == 200 and h["status"] == "healthy" and ISO.match(h["timestamp"]),
                  "%s /health: status healthy, ISO timestamp" % name, h)
            check_headers(name + " /health", hdrs)
            status, hdrs, _ = get(url + "/metrics")
            check_headers(name + " /metrics", hdrs)
            status, hdrs, _ = get(url + "/no-such-page")
            check(status in (404, 405), "%s: unknown path answered" % name, status)
            check_headers(name + " 404", hdrs)
            # A browser's preflight for a JSON POST with an API key.
            status, hdrs, _ = http("OPTIONS", url + "/invoke", headers={
                "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-api-key"})
            hdrs = lower(hdrs)
            check(status == 204 and "POST" in hdrs.get("access-control-allow-methods", "")
                  and hdrs.get("access-control-allow-headers") == "content-type,x-api-key",
                  "%s: CORS preflight 204 allows POST and the asked headers" % name, hdrs)
            check_headers(name + " preflight", hdrs)
        status, hdrs, _ = get(gw.url + "/admin/queues")
        check(status == 200, "the dashboard page still loads", status)
        check_headers("gateway /admin/queues", hdrs)

        # Each service its own metrics.
        _, _, text = get(gw.url + "/metrics")
        check("gateway_http_requests_total" in text and "bot_executions_total" not in text
              and "queue_size" not in text, "gateway /metrics: its own series only", text[-400:])
        _, _, text = get("http://127.0.0.1:%d/metrics" % broker.metrics_port)
        check("bot_executions_total" in text, "broker /metrics: bot_executions_total", text[-400:])
        _, _, text = get(mgr.url + "/metrics")
        check('webhook_deliveries_total{status="success"} 3\n' in text
              and 'webhook_deliveries_total{status="failed"} 0\n' in text,
              'webhook manager: webhook_deliveries_total{status="success"|"failed"}', text[:600])

        # CORS_ORIGINS as a list: the matching Origin is echoed, others get none.
        gw2 = gateway(s, env={"CORS_ORIGINS": "https://app.example.com, " + ORIGIN})
        status, hdrs, _ = get(gw2.url + "/health", {"Origin": ORIGIN})
        check(hdrs.get("access-control-allow-origin") == ORIGIN and "Origin" in hdrs.get("vary", ""),
              "CORS_ORIGINS list: the matching Origin echoed, Vary: Origin", hdrs)
        status, hdrs, _ = get(gw2.url + "/health", {"Origin": "http://evil.example"})
        check(status == 200 and "access-control-allow-origin" not in hdrs,
              "CORS_ORIGINS list: another Origin gets no Access-Control-Allow-Origin", hdrs)
        bad_gw = s.spawn("gateway-bad-cors", [s.bin("botmesh-gateway")],
                         {"CORS_ORIGINS": "app.example.com/path", "API_GATEWAY_PORT": "0",
                          "BROKER_ENDPOINT": s.endpoint})
        rc = bad_gw.p.wait(timeout=10)
        check(rc != 0 and "CORS_ORIGINS" in bad_gw.output(),
              "a bad CORS_ORIGINS stops the gateway with a message naming it", rc, bad_gw.output()[-500:])

        whlib.stop_clean(gw, gw2, mgr, mock)


harness.main(main)

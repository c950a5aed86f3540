"""Every request error the gateway answers by itself, with no broker
running: 400 (each field), 413, 415, 404, 405, and the 503 for a broker
that is down.  Each exchange is printed as a curl transcript."""
import harness
from gwtest import check, curl, gateway, post_json, stop_clean

SEED = {"botType": "python", "payload": {"task": "data_analysis", "dataset": "sales_2024"},
        "webhookUrl": "http://mock-webhook:5000", "priority": 1}


def with_(**fields):
    body = dict(SEED)
    for k, v in fields.items():
        if v is KeyError:
            body.pop(k, None)
        else:
            body[k] = v
    return body


def main():
    with harness.Stack("gw-validation") as s:
        g = gateway(s, env={"MAX_BODY_BYTES": "4096", "BROKER_CONNECT_TIMEOUT_MS": "200"})
        u = g.url

        r = curl(u + "/health")
        check(r.status == 200 and r.json["status"] == "healthy" and r.json["timestamp"].endswith("Z"),
              "/health is 200 {status: healthy, timestamp} with no broker", r)

        # 400: malformed JSON, wrong types, missing fields, ranges.
        cases = [
            ('{"botType": "python", "payload": ', "invalid_json"),
            ('{"botType": "python", "payload": {}} trailing', "invalid_json"),
            ('[1, 2, 3]', "invalid_body"),
            ('"just a string"', "invalid_body"),
            (with_(botType=KeyError), "missing_field"),
            (with_(payload=KeyError), "missing_field"),
            (with_(botType=42), "invalid_bot_type"),
            (with_(botType="Python!"), "invalid_bot_type"),
            (with_(botType="x" * 33), "invalid_bot_type"),
            (with_(priority=-1), "invalid_priority"),
            (with_(priority=2097153), "invalid_priority"),
            (with_(priority="high"), "invalid_priority"),
            (with_(priority=1.5), "invalid_priority"),
            (with_(webhookUrl="ftp://example.com/x"), "invalid_webhook_url"),
            (with_(webhookUrl="not a url"), "invalid_webhook_url"),
            (with_(webhookUrl=5000), "invalid_webhook_url"),
            (with_(timeoutMs=0), "invalid_timeout"),
            (with_(timeoutMs=86400001), "invalid_timeout"),
            (with_(maxAttempts=0), "invalid_max_attempts"),
            (with_(maxAttempts=101), "invalid_max_attempts"),
            (with_(idempotencyKey="has space"), "invalid_idempotency_key"),
            (with_(idempotencyKey="k" * 129), "invalid_idempotency_key"),
        ]
        for body, code in cases:
            r = post_json(u + "/invoke", body)
            check(r.status == 400 and r.error_code() == code and r.json["error"]["message"],
                  "400 %s" % code, r)
        # Nesting deeper than 32 inside payload.
        deep = '{"botType":"python","payload":' + "[" * 40 + "]" * 40 + "}"
        r = post_json(u + "/invoke", deep)
        check(r.status == 400 and r.error_code() == "invalid_payload", "400 payload too deep", r)
        # Empty body.
        r = curl("-X", "POST", u + "/invoke", "-H", "Content-Type: application/json")
        check(r.status == 400 and r.error_code() == "invalid_json", "400 empty body", r)

        # 415: the body is declared as something else than JSON.
        r = curl("-X", "POST", u + "/invoke", "-H", "Content-Type: text/plain", "-d", "{}")
        check(r.status == 415 and r.error_code() == "unsupported_media_type", "415 text/plain", r)
        r = curl("-X", "POST", u + "/invoke", "-d", "botType=python")   # curl's form default
        check(r.status == 415, "415 form-urlencoded", r)
        # charset parameter and case are fine; so is no Content-Type at all.
        r = curl("-X", "POST", u + "/invoke", "-H", "Content-Type: Application/JSON; charset=utf-8",
                 "-d", '{"botType":"python"}')
        check(r.status == 400 and r.error_code() == "missing_field", "charset param accepted", r)
        r = curl("-X", "POST", u + "/invoke", "-H", "Content-Type:", "-d", '{"botType":"python"}')
        check(r.status == 400 and r.error_code() == "missing_field",
              "no Content-Type: parsed as JSON", r)

        # 413: Content-Length over MAX_BODY_BYTES (4096 here), and a chunked
        # body that grows past it.
        big = '{"botType":"python","payload":"%s"}' % ("x" * 5000)
        r = post_json(u + "/invoke", big)
        check(r.status == 413 and r.error_code() == "body_too_large", "413 Content-Length", r)
        r = curl("-X", "POST", u + "/invoke", "-H", "Content-Type: application/json",
                 "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", stdin=big.encode())
        check(r.status == 413 and r.error_code() == "body_too_large", "413 chunked", r)

        # 404 and 405 (with Allow).
        for path in ("/nope", "/job/", "/job/a%20b", "/jobs/x", "/admin/queuesX", "/stats/"):
            r = curl(u + path)
            check(r.status == 404 and r.error_code() == "not_found", "404 " + path, r)
        r = curl(u + "/invoke")
        check(r.status == 405 and r.headers.get("allow") == "POST", "405 GET /invoke", r)
        # Allow lists every method the path takes: DELETE /job/{id} removes
        # a job, POST /schedules adds a schedule (gateway.control); each one
        # listed is answered by its route (503 here: no broker; 400 for a
        # POST without a body), never 405.
        for path, allow in (("/job/abc", "GET, HEAD, DELETE"), ("/schedules", "POST, GET, HEAD"),
                            ("/schedules/k", "DELETE")):
            r = curl("-X", "PUT", u + path)
            check(r.status == 405 and r.headers.get("allow") == allow
                  and allow in r.json["error"]["message"], "405 PUT %s: Allow: %s" % (path, allow), r)
            for method in allow.split(", "):
                r = curl("-I" if method == "HEAD" else "-X" + method, u + path, show=False)
                check(r.status in (400, 503), "%s %s is a route's (not 405)" % (method, path), r)
        r = curl("-X", "POST", u + "/stats")
        check(r.status == 405 and r.headers.get("allow") == "GET, HEAD", "405 POST /stats", r)
        r = curl(u + "/job/abc/cancel")
        check(r.status == 405 and r.headers.get("allow") == "POST", "405 GET cancel", r)
        r = curl("-X", "PUT", u + "/health")
        check(r.status == 405 and r.headers.get("allow") == "GET, HEAD", "405 PUT /health", r)
        r = curl("-I", u + "/health")
        check(r.status == 200 and r.body == "" and int(r.headers.get("content-length", "0")) > 40,
              "HEAD /health: headers only (Content-Length of the GET body)", r)

        # The dashboard's files, with their types; no CDN, all served here.
        r = curl(u + "/admin/queues", show=False)
        check(r.status == 200 and r.headers["content-type"].startswith("text/html")
              and "<html" in r.body.lower(), "GET /admin/queues: the page", r.headers)
        for path in ("/admin/queues/", "/admin/queues/index.html", "/admin/queues/?x=1"):
            check(curl(u + path, show=False).status == 200, "GET " + path)
        r = curl(u + "/admin/queues/app.js", show=False)
        check(r.status == 200 and "javascript" in r.headers["content-type"], "app.js", r.headers)
        r = curl(u + "/admin/queues/app.css", show=False)
        check(r.status == 200 and "css" in r.headers["content-type"], "app.css", r.headers)
        r = curl(u + "/admin/queues/nope.js")
        check(r.status == 404 and r.error_code() == "not_found", "404 unknown asset", r)

        # No broker: a valid request is 503 with Retry-After, fast.
        r = post_json(u + "/invoke", SEED)
        check(r.status == 503 and r.error_code() == "broker_unavailable"
              and r.headers.get("retry-after") == "1", "503 broker down", r)
        for path in ("/stats", "/job/abc", "/jobs"):
            r = curl(u + path)
            check(r.status == 503 and r.error_code() == "broker_unavailable", "503 " + path, r)
        r = curl("-X", "POST", u + "/job/abc/cancel")
        check(r.status == 503, "503 cancel", r)
        r = curl(u + "/ready")
        check(r.status == 503 and r.json["broker"] is False and r.error_code() == "broker_unavailable",
              "/ready 503 names the broker", r)
        r = curl(u + "/api/history")
        check(r.status == 503 and r.error_code() == "history_unavailable",
              "/api/history 503 without Redis", r)

        # Every error body is JSON {"error": {"code", "message"}}, never HTML.
        r = curl(u + "/health")
        check(r.status == 200, "still healthy after all that", r)
        stop_clean(g)


if __name__ == "__main__":
    harness.main(main)

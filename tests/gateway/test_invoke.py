"""The seed's README curl examples, verbatim, and every endpoint against a
real stack (redis, broker, no-op workers): invoke, job record, stats, the
seed's load loop, idempotency, unknown bot type, cancel/retry/redeliver
with their conflicts, /jobs, /ready, /metrics (the gateway's own series)."""
import re
import subprocess

import harness
from gwtest import check, curl, gateway, log, post_json, promtool_ok, start_workers, stop_clean, \
    wait_until

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

# The seed README's examples, exactly as written there.
SEED_EXAMPLES = [
    '''curl -X POST http://localhost:3000/invoke \\
  -H "Content-Type: application/json" \\
  -d '{
    "botType": "python",
    "payload": {"task": "data_analysis", "dataset": "sales_2024"},
    "webhookUrl": "http://mock-webhook:5000",
    "priority": 1
  }\'''',
    '''curl -X POST http://localhost:3000/invoke \\
  -H "Content-Type: application/json" \\
  -d '{
    "botType": "node",
    "payload": {"action": "process_api", "endpoint": "/users"},
    "webhookUrl": "http://mock-webhook:5000",
    "priority": 2
  }\'''',
    '''curl -X POST http://localhost:3000/invoke \\
  -H "Content-Type: application/json" \\
  -d '{
    "botType": "java",
    "payload": {"operation": "batch_process", "records": 1000},
    "webhookUrl": "http://mock-webhook:5000",
    "priority": 3
  }\'''',
]
SEED_LOAD = '''for i in {1..10}; do
  curl -X POST http://localhost:3000/invoke \\
    -H "Content-Type: application/json" \\
    -d "{\\"botType\\":\\"node\\",\\"payload\\":{\\"test\\":$i},\\"webhookUrl\\":\\"http://mock-webhook:5000\\"}" &
done'''


def shell(script, port):
    """Run a seed snippet with bash, pointed at our port; print it."""
    script = script.replace("localhost:3000", "127.0.0.1:%d" % port)
    print("$ " + script.replace("\n", "\n  "), flush=True)
    out = subprocess.run(["bash", "-c", script + "\nwait"], capture_output=True, text=True, timeout=60)
    print("  " + out.stdout.replace("}{", "}\n  {"), flush=True)
    return out.stdout


def job(u, job_id):
    return curl(u + "/job/" + job_id, show=False).json


def main():
    with harness.Stack("gw-invoke") as s:
        s.redis()
        s.broker(env={"MAX_SLOWPOKE_BOTS": "1"})
        start_workers(s, ["python", "node", "java"])
        g = gateway(s)
        u = g.url
        import json

        # The seed's three examples.
        ids = []
        for example in SEED_EXAMPLES:
            body = json.loads(shell(example, g.port))
            check(body["status"] == "queued" and body["jobId"], "seed example accepted", body)
            ids.append(body["jobId"])
        for job_id in ids:
            rec = wait_until(lambda: (lambda j: j if j["state"] == "completed" else None)(job(u, job_id)),
                             30, "job %s to complete" % job_id)
        log("record:", rec)
        r = curl(u + "/job/" + ids[0])             # the seed's "Check Job Status"
        rec = r.json
        check(r.status == 200 and rec["jobId"] == ids[0] and rec["botType"] == "python"
              and rec["priority"] == 1 and rec["attempts"] == 1 and "result" in rec,
              "GET /job/{id}: the record", rec)
        check(all(ISO.match(rec[k]) for k in ("createdAt", "startedAt", "finishedAt")),
              "timestamps are ISO-8601 with ms", rec)
        check(isinstance(rec.get("webhook"), dict) and rec.get("webhookUrl") == "http://mock-webhook:5000",
              "webhook delivery state present", rec)

        # The seed's "View Statistics".
        r = curl(u + "/stats")
        st = r.json
        py = st["types"]["python"]
        check(r.status == 200 and py["completed"] >= 1 and py["active"] == py["running"]
              and "limit" in py and "usage" in py and "waitingForPermit" in py, "GET /stats", st)
        check(len(st["workers"]) >= 1 and "totals" in st, "workers and totals", st)

        # The seed's load-testing loop: 10 parallel invokes.
        out = shell(SEED_LOAD, g.port)
        load_ids = re.findall(r'"jobId":"([^"]+)"', out)
        check(len(set(load_ids)) == 10, "seed load loop: 10 distinct jobs", out)

        # Idempotency: the same key answers the first job.
        body = {"botType": "python", "payload": {"x": 1}, "idempotencyKey": "order-42"}
        r1 = post_json(u + "/invoke", body)
        r2 = post_json(u + "/invoke", body)
        check(r1.status == 202 and r2.status == 202 and r1.json["jobId"] == r2.json["jobId"]
              and r2.json.get("duplicate") is True and "duplicate" not in r1.json,
              "idempotencyKey: same job, duplicate: true", r1, r2)
        wait_until(lambda: job(u, r1.json["jobId"])["state"] == "completed", 20,
                   "the keyed job to complete")
        r3 = post_json(u + "/invoke", body)
        check(r3.status == 202 and r3.json["jobId"] == r1.json["jobId"] and r3.json["duplicate"] is True
              and r3.json["status"] == "completed",
              "the same key after the job ran: its status now, completed (not queued)", r3)

        # A BullMQ user's body: delay (ms) is delayMs, jobId is idempotencyKey,
        # other unknown fields are accepted and named in "ignored".
        body = {"botType": "python", "payload": {}, "delay": 5000, "jobId": "my-own-id",
                "removeOnComplete": True}
        r1 = post_json(u + "/invoke", body)
        check(r1.status == 202 and r1.json["status"] == "delayed"
              and r1.json.get("ignored") == ["removeOnComplete"],
              "BullMQ body: delay honoured (delayed), removeOnComplete named as ignored", r1)
        rec = job(u, r1.json["jobId"])
        check(rec["state"] == "delayed", "the job waits for its delay", rec)
        r2 = post_json(u + "/invoke", body)
        check(r2.status == 202 and r2.json["jobId"] == r1.json["jobId"] and r2.json.get("duplicate") is True,
              "the same jobId again: the same job, duplicate: true", r2)
        r = post_json(u + "/invoke", dict(body, jobId="other-id", idempotencyKey="my-own-id"))
        check(r.status == 400 and r.error_code() == "invalid_idempotency_key"
              and "jobId" in r.json["error"]["message"] and "idempotencyKey" in r.json["error"]["message"],
              "jobId and idempotencyKey differing: 400 naming both", r)
        r = post_json(u + "/invoke", dict(body, delayMs=1000))
        check(r.status == 400 and r.error_code() == "invalid_delay"
              and "delayMs" in r.json["error"]["message"] and "delay " in r.json["error"]["message"],
              "delay and delayMs differing: 400 naming both", r)
        r = post_json(u + "/invoke", {"botType": "python", "payload": {}})
        check(r.status == 202 and "ignored" not in r.json, "no unknown field: no ignored list", r)
        r = post_json(u + "/invoke/batch", [
            {"botType": "python", "payload": {}, "jobId": "my-own-id", "attemptsMade": 0},
            {"botType": "python", "payload": {}, "delay": 60000, "lifo": True, "removeOnFail": 5},
            {"botType": "python", "payload": {}}])
        items = r.json["jobs"] if r.status == 207 else []
        check(len(items) == 3 and items[0]["jobId"] == r1.json["jobId"] and items[0].get("duplicate") is True
              and items[0].get("ignored") == ["attemptsMade"]
              and items[1]["status"] == "delayed" and items[1].get("ignored") == ["lifo", "removeOnFail"]
              and items[2]["httpStatus"] == 202 and "ignored" not in items[2],
              "/invoke/batch items: the same aliases and ignored lists", r)

        # Cancel a queued job (slowpoke has a limit but no worker), conflicts.
        r = post_json(u + "/invoke", {"botType": "slowpoke", "payload": {}, "priority": 5})
        check(r.status == 202, "slowpoke job queued", r)
        sid = r.json["jobId"]
        check(job(u, sid)["state"] == "queued", "it waits (no worker)")
        r = curl(u + "/jobs?state=queued&botType=slowpoke&limit=10")
        check(r.status == 200 and [j["jobId"] for j in r.json["jobs"]] == [sid], "GET /jobs filters", r)
        r = curl("-X", "POST", u + "/job/%s/cancel" % sid)
        check(r.status == 200 and r.json["state"] == "cancelled", "cancel -> cancelled", r)
        r = curl("-X", "POST", u + "/job/%s/cancel" % sid)
        check(r.status == 409 and r.error_code() == "conflict", "cancel again -> 409", r)
        r = curl("-X", "POST", u + "/job/%s/retry" % sid)
        check(r.status == 202 and job(u, sid)["state"] == "queued", "retry cancelled -> queued", r)
        r = curl("-X", "POST", u + "/job/%s/retry" % sid)
        check(r.status == 409, "retry a queued job -> 409", r)
        r = curl("-X", "POST", u + "/job/%s/redeliver" % sid)
        check(r.status == 409, "redeliver without webhook -> 409", r)
        r = curl("-X", "POST", u + "/job/%s/redeliver" % ids[0])
        check(r.status == 202, "redeliver a finished job's webhook -> 202", r)
        check(r.json == {"jobId": ids[0], "webhook": "pending", "status": "redelivery queued"},
              "it answers with the fields of the webhook manager's POST /deliveries/{jobId}/retry", r.json)
        r = curl(u + "/job/0000000000-none-00000000")
        check(r.status == 404 and r.error_code() == "not_found", "unknown job -> 404", r)
        r = curl("-X", "POST", u + "/job/0000000000-none-00000000/cancel")
        check(r.status == 404, "cancel unknown -> 404", r)

        # /jobs without filters: newest first, no payloads.
        r = curl(u + "/jobs?limit=3", show=False)
        check(r.status == 200 and len(r.json["jobs"]) == 3
              and all("payload" not in j for j in r.json["jobs"]), "GET /jobs?limit=3", r)

        # Health, readiness, metrics.
        check(curl(u + "/health").status == 200, "/health")
        r = curl(u + "/ready")
        check(r.status == 200 and r.json == {"status": "ready", "broker": True, "redis": True}, "/ready", r)
        r = curl(u + "/metrics", show=False)
        check(r.status == 200 and "gateway_http_requests_total" in r.body
              and "bot_executions_total" not in r.body, "/metrics: the gateway's own series only",
              r.body[-500:])
        rc, out = promtool_ok(r.body)
        check(rc == 0, "promtool check metrics", out)

        # Unknown bot type: 400 with the types the broker knows.
        r = post_json(u + "/invoke", {"botType": "cobol", "payload": {}})
        check(r.status == 400 and r.error_code() == "invalid_bot_type"
              and r.json["error"]["message"].startswith("botType must be one of: ")
              and "python" in r.json["error"]["message"] and "webhook" not in r.json["error"]["message"],
              "unknown bot type -> 400 invalid_bot_type", r)
        stop_clean(g)


if __name__ == "__main__":
    harness.main(main)

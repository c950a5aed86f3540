"""Every broker answer mapped to HTTP, against a scripted fake broker
(a real ROUTER socket): ACCEPTED (and duplicate), each REJECTED code,
no answer (504), job records with ISO-8601 times, cancel/retry/redeliver
conflicts (409), LIST, STATS, PING for /ready, the gateway's own /metrics."""
import re

import harness
from harness import ACCEPTED, REJECTED, REPLY, SUBMIT, STATUS, CANCEL, STATS, RETRY, \
    REDELIVER, LIST, PING, METRICS
from gwtest import FakeBroker, check, curl, gateway, post_json, promtool_ok, stop_clean

T0 = 1795898401123          # 2026-11-28T20:40:01.123Z
RECORD = {"jobId": "j-1", "botType": "python", "state": "completed", "priority": 1,
          "payload": {"a": 1}, "progress": 100, "attempts": 1, "maxAttempts": 3,
          "timeoutMs": 300000, "createdAt": T0, "startedAt": T0 + 77, "finishedAt": T0 + 1000,
          "worker": "w-1", "result": {"mean": 4.2}, "webhookUrl": "http://mock-webhook:5000",
          "webhook": {"state": "retrying", "attempts": 2, "lastStatus": 500,
                      "lastError": "HTTP 500", "nextAttemptAt": T0 + 5000}}
BROKER_METRICS = ("# HELP queue_size Jobs waiting per bot type\n# TYPE queue_size gauge\n"
                  'queue_size{queue_name="python"} 3\n')
state = {"redis": True, "metrics": True, "standby": False}
RECOVERING = "the broker is reading its queues back from Redis; try again shortly"
TYPES_WAIT = ("the broker started or took over moments ago and the workers are registering "
              "with it again; botType is not known yet; try again shortly")
NO_LEADER = ("no broker leads: the brokers answer as standbys (none holds the lease, "
             "or they cannot reach Redis); retry later")


def handler(cmd, body):
    if cmd == SUBMIT:
        bt = body.get("botType")
        if bt == "python":
            dup = body.get("idempotencyKey") == "seen-before"
            return ACCEPTED, {"jobId": "job-%d" % body["req"], "duplicate": dup, "position": 7}
        if bt == "slow":
            return None
        codes = {"ghost": ("unknown_bot_type", "unknown bot type ghost"),
                 "bad": ("bad_request", "priority out of range"),
                 "huge": ("payload_too_large", "payload is 2000000 bytes"),
                 "full": ("queue_full", "queue of full is full"),
                 "nostore": ("store_unavailable", "redis down at 10.0.0.7:6379"),
                 "recovering": ("store_unavailable", RECOVERING),
                 "returning": ("store_unavailable", TYPES_WAIT),
                 "standby": ("not_leader", "this broker is a standby; no leader is known yet"),
                 "closing": ("shutting_down", "bye"),
                 "frame": ("bad_frame", "internal detail /src/x.c:12")}
        code, message = codes[bt]
        return REJECTED, {"code": code, "message": message}
    job = body.get("jobId")
    if cmd == STATUS:
        if job == "j-1":
            return REPLY, {"job": RECORD}
        return REJECTED, {"code": "not_found", "message": "no such job"}
    if cmd == CANCEL:
        if job == "j-run":
            return REPLY, {"job": dict(RECORD, jobId="j-run", state="cancelled",
                                       error={"code": "cancelled", "message": "cancelled"})}
        if job == "j-1":
            return REJECTED, {"code": "conflict", "message": "job already ended"}
        return REJECTED, {"code": "not_found", "message": "no such job"}
    if cmd in (RETRY, REDELIVER):
        if job == "j-failed":
            return ACCEPTED, {"jobId": job}
        return REJECTED, {"code": "conflict", "message": "job is not failed or cancelled"}
    if cmd == LIST:
        return REPLY, {"jobs": [dict(RECORD, jobId="j-%d" % i) for i in range(2)]}
    if cmd == STATS:
        t = {"waiting": 1, "running": 2, "completed": 3, "failed": 0, "cancelled": 0,
             "limit": 5, "usage": 2, "waitingForPermit": 0, "workers": 1}
        return REPLY, {"types": {"python": t, "node": t, "java": t, "webhook": t},
                       "workers": [{"name": "w-1", "types": ["python"], "credit": 5,
                                    "running": 2, "lastHeartbeat": T0}],
                       "totals": {"submitted": 9, "completed": 3, "failed": 0, "cancelled": 0,
                                  "rejected": 1, "retried": 0},
                       "redis": state["redis"], "uptimeMs": 1000}
    if cmd == PING:
        if state["standby"]:
            return REJECTED, {"code": "not_leader", "message": "standby", "leader": ""}
        return REPLY, {"redis": state["redis"], "uptimeMs": 1000}
    if cmd == METRICS:
        return (REPLY, {"text": BROKER_METRICS}) if state["metrics"] else None
    return REJECTED, {"code": "bad_command", "message": "?"}


def main():
    fake = FakeBroker(handler)
    try:
        with harness.Stack("gw-answers") as s:
            # Every answer but "slow" must arrive within BROKER_TIMEOUT_MS:
            # 400 ms was too short for the fake broker's thread and a
            # gateway under TSan on a loaded machine (a 504 on the first
            # SUBMIT); 3 s costs the one "slow" case 3 s.
            g = gateway(s, endpoint=fake.endpoint, env={"BROKER_TIMEOUT_MS": "3000"})
            run(g.url, fake)
            stop_clean(g)
    finally:
        fake.close()


def run(u, fake):
    body = {"botType": "python", "payload": {"task": "data_analysis"},
            "webhookUrl": "http://mock-webhook:5000", "priority": 1, "idempotencyKey": "k-1",
            "timeoutMs": 60000, "maxAttempts": 2}
    r = post_json(u + "/invoke", body)
    check(r.status == 202 and r.json["status"] == "queued" and r.json["jobId"].startswith("job-")
          and "duplicate" not in r.json, "202 queued", r)
    check(r.json["botType"] == "python" and r.json["priority"] == 1 and r.json["estimatedPosition"] == 7,
          "202 also {botType, priority, estimatedPosition: the ACCEPTED position}", r)
    check(r.headers.get("location") == "/job/" + r.json["jobId"], "Location header", r.headers)
    sent = [b for c, b in fake.seen if c == SUBMIT][-1]
    check(all(sent.get(k) == v for k, v in body.items()), "SUBMIT carries every field", sent)
    r = post_json(u + "/invoke", dict(body, idempotencyKey="seen-before"))
    check(r.status == 202 and r.json.get("duplicate") is True, "duplicate: true", r)
    check(r.json["status"] == "unknown",
          "a duplicate the broker gives no state for: status unknown, never queued "
          "(its job may no longer exist)", r)
    r = post_json(u + "/invoke", {"botType": "python", "payload": None})
    sent = [b for c, b in fake.seen if c == SUBMIT][-1]
    check(r.status == 202 and sent["priority"] == 3 and "webhookUrl" not in sent
          and r.json["priority"] == 3 and r.json["botType"] == "python",
          "defaults: priority 3 (behind priorities 0-3 sent before), no webhook", sent, r)

    # REJECTED codes.
    r = post_json(u + "/invoke", {"botType": "ghost", "payload": {}})
    check(r.status == 400 and r.error_code() == "invalid_bot_type"
          and r.json["error"]["message"] == "botType must be one of: java, node, python",
          "unknown_bot_type -> 400 with the broker's types", r)
    r = post_json(u + "/invoke", {"botType": "bad", "payload": {}})
    check(r.status == 400 and r.error_code() == "bad_request", "bad_request -> 400", r)
    r = post_json(u + "/invoke", {"botType": "huge", "payload": {}})
    check(r.status == 413 and r.error_code() == "payload_too_large", "payload_too_large -> 413", r)
    for bt, code, retry in (("full", "queue_full", "1"), ("nostore", "store_unavailable", "2"),
                            ("closing", "shutting_down", "5")):
        r = post_json(u + "/invoke", {"botType": bt, "payload": {}})
        check(r.status == 503 and r.error_code() == code and r.headers.get("retry-after") == retry,
              "%s -> 503 Retry-After %s" % (code, retry), r)
        if code == "queue_full":
            check(r.json["error"]["message"] == "queue of full is full",
                  "queue_full in the broker's words (they name the type and its bound)", r)
    check("10.0.0.7" not in r.body, "no internal detail leaks", r)
    # The broker reads its queues back from Redis (a start, a failover):
    # still store_unavailable, in words that say so.
    r = post_json(u + "/invoke", {"botType": "recovering", "payload": {}})
    check(r.status == 503 and r.error_code() == "store_unavailable"
          and r.json["error"]["message"] == RECOVERING and r.headers.get("retry-after") == "2",
          "store_unavailable while recovering -> 503 Retry-After 2, saying the broker recovers", r)
    # A type not known yet while the workers register again (a start, a
    # failover): 503, in the broker's words, not 400 invalid_bot_type.
    r = post_json(u + "/invoke", {"botType": "returning", "payload": {}})
    check(r.status == 503 and r.error_code() == "store_unavailable"
          and r.json["error"]["message"] == TYPES_WAIT and r.headers.get("retry-after") == "2",
          "store_unavailable while workers register again -> 503 Retry-After 2, in its words", r)
    # A standby answered (no broker leads): 503 broker_unavailable saying so,
    # not 502.
    r = post_json(u + "/invoke", {"botType": "standby", "payload": {}})
    check(r.status == 503 and r.error_code() == "broker_unavailable"
          and r.json["error"]["message"] == NO_LEADER and r.headers.get("retry-after") == "1",
          "not_leader -> 503 broker_unavailable: no broker leads", r)
    r = post_json(u + "/invoke", {"botType": "frame", "payload": {}})
    check(r.status == 502 and "src/x.c" not in r.body, "bad_frame -> 502, details hidden", r)
    r = post_json(u + "/invoke", {"botType": "slow", "payload": {}})
    check(r.status == 504 and r.error_code() == "broker_timeout", "no answer -> 504", r)
    r = post_json(u + "/invoke", body)
    check(r.status == 202, "the next request after a timeout is fine", r)

    # GET /job/{id}: the record, times as ISO-8601 UTC with ms.
    r = curl(u + "/job/j-1")
    j = r.json
    check(r.status == 200 and j["jobId"] == "j-1" and j["state"] == "completed"
          and j["result"] == {"mean": 4.2} and j["priority"] == 1, "GET /job/{id} record", r)
    check(j["createdAt"] == "2026-11-28T20:40:01.123Z" and j["startedAt"] == "2026-11-28T20:40:01.200Z"
          and j["finishedAt"] == "2026-11-28T20:40:02.123Z", "ISO times", j)
    check(j["webhook"]["nextAttemptAt"] == "2026-11-28T20:40:06.123Z"
          and j["webhook"]["state"] == "retrying", "webhook.nextAttemptAt ISO", j["webhook"])
    r = curl(u + "/job/nope")
    check(r.status == 404 and r.error_code() == "not_found", "unknown job -> 404", r)

    # cancel / retry / redeliver.
    r = curl("-X", "POST", u + "/job/j-run/cancel")
    check(r.status == 200 and r.json["state"] == "cancelled", "cancel -> 200 record", r)
    r = curl("-X", "POST", u + "/job/j-1/cancel")
    check(r.status == 409 and r.error_code() == "conflict", "cancel ended job -> 409", r)
    r = curl("-X", "POST", u + "/job/nope/cancel")
    check(r.status == 404, "cancel unknown -> 404", r)
    r = curl("-X", "POST", u + "/job/j-failed/retry")
    check(r.status == 202 and r.json == {"jobId": "j-failed", "status": "queued"}, "retry -> 202", r)
    r = curl("-X", "POST", u + "/job/j-1/retry")
    check(r.status == 409, "retry completed job -> 409", r)
    r = curl("-X", "POST", u + "/job/j-failed/redeliver")
    check(r.status == 202, "redeliver -> 202", r)
    r = curl("-X", "POST", u + "/job/j-1/redeliver")
    check(r.status == 409, "redeliver conflict -> 409", r)

    # GET /jobs: parameters checked, then forwarded.
    r = curl(u + "/jobs?state=failed&botType=python&limit=7")
    sent = [b for c, b in fake.seen if c == LIST][-1]
    check(r.status == 200 and len(r.json["jobs"]) == 2
          and r.json["jobs"][0]["createdAt"] == "2026-11-28T20:40:01.123Z", "GET /jobs", r)
    check(sent["state"] == "failed" and sent["botType"] == "python" and sent["limit"] == 7,
          "LIST carries the filters", sent)
    # BullMQ's names of the states, as /stats reports them, are read as ours.
    for alias, ours in (("waiting", "queued"), ("wait", "queued"), ("active", "running")):
        r = curl(u + "/jobs?state=" + alias)
        sent = [b for c, b in fake.seen if c == LIST][-1]
        check(r.status == 200 and sent["state"] == ours, "/jobs?state=%s asks LIST for %s" % (alias, ours),
              r, sent)
    r = curl(u + "/jobs?state=bogus")
    check("waiting" in r.json["error"]["message"] and "active" in r.json["error"]["message"],
          "the invalid_state message names the aliases too", r)
    for q, code in (("state=bogus", "invalid_state"), ("limit=0", "invalid_limit"),
                    ("limit=501", "invalid_limit"), ("limit=x", "invalid_limit"),
                    ("botType=BAD!", "invalid_bot_type")):
        r = curl(u + "/jobs?" + q)
        check(r.status == 400 and r.error_code() == code, "/jobs?%s -> 400" % q, r)

    # GET /: a small index (what a browser opening the gateway's address sees).
    r = curl(u + "/")
    eps = r.json.get("endpoints", []) if isinstance(r.json, dict) else []
    check(r.status == 200 and r.json["service"] == "botmesh-gateway" and r.json["version"]
          and r.json["dashboard"] == "/admin/queues" and r.json["health"] == "/health"
          and {"GET /", "GET /health", "POST /invoke", "GET /job/{id}", "GET /jobs", "GET /stats",
               "GET /admin/queues"} <= set(eps), "GET / -> 200 {service, version, dashboard, endpoints}", r)
    r = curl("-I", u + "/")
    check(r.status == 200, "HEAD / -> 200", r)
    r = curl("-X", "POST", u + "/")
    check(r.status == 405, "POST / -> 405", r)

    # GET /stats: running is also "active"; workers get an ISO heartbeat.
    r = curl(u + "/stats")
    py = r.json["types"]["python"]
    check(r.status == 200 and py["active"] == py["running"] == 2 and py["limit"] == 5
          and py["waitingForPermit"] == 0 and r.json["totals"]["submitted"] == 9, "GET /stats", r)
    check(r.json["workers"][0]["lastHeartbeatAt"] == "2026-11-28T20:40:01.123Z", "worker heartbeat",
          r.json["workers"])

    # /ready follows the broker's redis flag.
    r = curl(u + "/ready")
    check(r.status == 200 and r.json["redis"] is True and r.json["broker"] is True, "/ready 200", r)
    state["redis"] = False
    r = curl(u + "/ready")
    check(r.status == 503 and r.error_code() == "redis_unavailable" and r.json["broker"] is True
          and r.json["redis"] is False, "/ready 503 names Redis", r)
    state["standby"] = True
    r = curl(u + "/ready")
    check(r.status == 503 and r.error_code() == "broker_unavailable" and r.json["broker"] is False
          and r.json["error"]["message"] == NO_LEADER, "/ready 503: no broker leads", r)
    state["standby"] = False

    # /metrics: the gateway's own series only (the broker serves its own).
    r = curl(u + "/metrics", show=False)
    check(r.status == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4"),
          "/metrics content type", r.headers)
    check("queue_size" not in r.body and "bot_executions_total" not in r.body,
          "no broker series in the gateway's /metrics", r.body[-300:])
    check(re.search(r'gateway_http_requests_total\{route="/invoke",code="202"\} [1-9]', r.body),
          "requests counted by route and code", r.body[:2000])
    check(re.search(r'gateway_invoke_rejected_total\{reason="queue_full"\} 1', r.body),
          "rejections counted by reason", r.body[:3000])
    rc, out = promtool_ok(r.body)
    check(rc == 0, "promtool check metrics", out)


if __name__ == "__main__":
    harness.main(main)

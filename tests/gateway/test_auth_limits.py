"""API keys (401, Bearer and X-API-Key, open endpoints, the /metrics
rule) and the token-bucket rate limiter (429 with Retry-After, per key),
against a fake broker that accepts everything."""
import harness
from harness import ACCEPTED, REPLY, SUBMIT, PING, METRICS, STATS, REDELIVER

QUEUE = 0x0B
from gwtest import FakeBroker, check, curl, gateway, post_json, stop_clean

BODY = {"botType": "python", "payload": {"n": 1}}


def handler(cmd, body):
    if cmd == SUBMIT:
        return ACCEPTED, {"jobId": "job-%d" % body["req"], "duplicate": False}
    if cmd == PING:
        return REPLY, {"redis": True, "uptimeMs": 1}
    if cmd == METRICS:
        return REPLY, {"text": ""}
    if cmd == STATS:
        return REPLY, {"types": {}, "workers": [], "totals": {}, "redis": True}
    if cmd == REDELIVER:
        return ACCEPTED, {"jobId": body["jobId"], "duplicate": False}
    if cmd == QUEUE:
        return REPLY, {"botType": body["botType"], "paused": body["action"] == "pause", "removed": 0}
    return None


def main():
    fake = FakeBroker(handler)
    try:
        with harness.Stack("gw-auth") as s:
            keys(s, fake)
            admin_keys(s, fake)
            limits(s, fake)
    finally:
        fake.close()


def admin_keys(s, fake):
    """ADMIN_API_KEYS: only its keys may use the queue and admin endpoints
    (403 forbidden for the others); all keys still read, submit and act on
    a job, its redelivery included (the webhook manager's own redelivery
    endpoint takes admin keys only: webhook.retry_auth)."""
    g = gateway(s, endpoint=fake.endpoint, name="gateway-admin",
                env={"API_KEYS": "alpha-key,beta-key", "ADMIN_API_KEYS": "alpha-key"})
    u = g.url
    beta = ("-H", "X-API-Key: beta-key")
    for path in ("/queues/python/pause", "/queues/python/resume", "/queues/python/drain",
                 "/queues/python/clean", "/queues/python/retry", "/schedules"):
        r = post_json(u + path, {"key": "k", "cron": "* * * * *", "botType": "python"}, *beta)
        check(r.status == 403 and r.error_code() == "forbidden"
              and "ADMIN_API_KEYS" in r.json["error"]["message"], "403 forbidden for a non-admin key: " + path, r)
    r = curl(u + "/schedules/k", "-X", "DELETE", *beta)
    check(r.status == 403, "403 for a non-admin key: DELETE /schedules/{key}", r)
    r = curl(u + "/stats", *beta)
    check(r.status == 200, "a non-admin key still reads /stats", r)
    r = post_json(u + "/invoke", BODY, *beta)
    check(r.status == 202, "a non-admin key still submits", r)
    r = post_json(u + "/job/job-1/redeliver", {}, *beta)
    check(r.status == 202 and r.json.get("jobId") == "job-1",
          "a non-admin key still redelivers a job's webhook (acting on a job)", r)
    r = post_json(u + "/queues/python/pause", {}, "-H", "X-API-Key: alpha-key")
    check(r.status == 200 and r.json.get("paused") is True, "an admin key passes to the broker", r)
    r = post_json(u + "/queues/python/pause", {})
    check(r.status == 401, "no key: 401 as before", r)
    bad = gateway_start_fails(s, fake, {"API_KEYS": "alpha-key", "ADMIN_API_KEYS": "gamma-key"})
    check("ADMIN_API_KEYS" in bad, "an admin key not in API_KEYS: the gateway does not start", bad)


def gateway_start_fails(s, fake, env):
    import os
    import subprocess
    e = dict(os.environ, BROKER_ENDPOINT=fake.endpoint, API_GATEWAY_PORT="0",
             GATEWAY_LISTEN="127.0.0.1", REDIS_URL="none", **env)
    out = subprocess.run([s.bin("botmesh-gateway")], env=e, capture_output=True, text=True, timeout=30)
    check(out.returncode != 0, "the gateway exits", out.returncode)
    return out.stdout + out.stderr


def keys(s, fake):
    g = gateway(s, endpoint=fake.endpoint, name="gateway-keys",
                env={"API_KEYS": "alpha-key, beta-key"})
    u = g.url
    r = post_json(u + "/invoke", BODY)
    check(r.status == 401 and r.error_code() == "unauthorized"
          and r.headers.get("www-authenticate") == "Bearer", "401 without a key", r)
    r = post_json(u + "/invoke", BODY, "-H", "Authorization: Bearer wrong-key")
    check(r.status == 401 and "not valid" in r.json["error"]["message"], "401 with a wrong key", r)
    r = post_json(u + "/invoke", BODY, "-H", "Authorization: Bearer alpha-ke")
    check(r.status == 401, "401 with a prefix of a key", r)
    r = post_json(u + "/invoke", BODY, "-H", "Authorization: Bearer alpha-key")
    check(r.status == 202, "Bearer key accepted", r)
    r = post_json(u + "/invoke", BODY, "-H", "X-API-Key: beta-key")
    check(r.status == 202, "X-API-Key accepted", r)
    for path in ("/stats", "/jobs", "/job/abc", "/api/history"):
        r = curl(u + path)
        check(r.status == 401, "401 on " + path, r)
    r = curl(u + "/stats", "-H", "X-API-Key: alpha-key")
    check(r.status == 200, "/stats with a key", r)
    # Open: health, ready, metrics (METRICS_REQUIRE_KEY unset), the page shell.
    for path in ("/", "/health", "/ready", "/metrics", "/admin/queues", "/admin/queues/app.js"):
        r = curl(u + path, show=path != "/metrics" and not path.endswith(".js"))
        check(r.status == 200, "open without a key: " + path, r.status)
    # Error bodies never echo the key.
    r = post_json(u + "/invoke", BODY, "-H", "Authorization: Bearer secret-guess")
    check("secret-guess" not in r.body, "the presented key is not echoed", r)

    g2 = gateway(s, endpoint=fake.endpoint, name="gateway-metrics-key",
                 env={"API_KEYS": "alpha-key", "METRICS_REQUIRE_KEY": "1"})
    r = curl(g2.url + "/metrics")
    check(r.status == 401, "METRICS_REQUIRE_KEY=1: /metrics needs a key", r)
    r = curl(g2.url + "/metrics", "-H", "Authorization: Bearer alpha-key", show=False)
    check(r.status == 200 and "gateway_auth_failures_total 1" in r.body,
          "/metrics with a key; auth failures counted", r.status)
    r = curl(g2.url + "/health")
    check(r.status == 200, "/health stays open", r)
    stop_clean(g)
    stop_clean(g2)


def limits(s, fake):
    # 2 tokens, refilled at 0.5/s: the third request in a row is refused.
    g = gateway(s, endpoint=fake.endpoint, name="gateway-limits",
                env={"RATE_LIMIT_RPS": "0.5", "RATE_LIMIT_BURST": "2",
                     "API_KEYS": "alpha-key,beta-key"})
    u = g.url
    a = ("-H", "X-API-Key: alpha-key")
    r1 = post_json(u + "/invoke", BODY, *a)
    r2 = post_json(u + "/invoke", BODY, *a)
    r3 = post_json(u + "/invoke", BODY, *a)
    check(r1.status == 202 and r2.status == 202, "burst of 2 allowed", r1, r2)
    check(r3.status == 429 and r3.error_code() == "rate_limited"
          and int(r3.headers.get("retry-after", "0")) >= 1, "429 with Retry-After", r3)
    r = curl(u + "/stats", *a)
    check(r.status == 429, "the bucket covers every limited endpoint", r)
    r = post_json(u + "/invoke", BODY, "-H", "X-API-Key: beta-key")
    check(r.status == 202, "another key has its own bucket", r)
    for path in ("/", "/health", "/ready", "/metrics"):
        r = curl(u + path, *a, show=False)
        check(r.status == 200, "not rate-limited: " + path, r.status)
    r = curl(u + "/metrics", show=False)
    check("gateway_rate_limited_total 2" in r.body
          and 'gateway_invoke_rejected_total{reason="rate_limited"} 1' in r.body,
          "429s counted", [l for l in r.body.splitlines() if "rate_limited" in l])
    stop_clean(g)

    # Keys off: per client address.
    g = gateway(s, endpoint=fake.endpoint, name="gateway-limits-addr",
                env={"RATE_LIMIT_RPS": "0.5", "RATE_LIMIT_BURST": "1"})
    r1 = post_json(g.url + "/invoke", BODY)
    r2 = post_json(g.url + "/invoke", BODY)
    check(r1.status == 202 and r2.status == 429, "per-address bucket when keys are off", r1, r2)
    stop_clean(g)


if __name__ == "__main__":
    harness.main(main)

"""The webhook manager's HTTP API under API_KEYS, as the gateway's: a
redelivery (POST /deliveries/{jobId}/retry) needs a key of ADMIN_API_KEYS
(any key of API_KEYS when ADMIN_API_KEYS is unset), GET /stats any key,
/health and /ready none, /metrics none unless METRICS_REQUIRE_KEY=1.
Refused requests never reach the broker, and 401 looks the same whether
the job exists or not.  A redelivery's answers carry no
"Access-Control-Allow-Origin: *", its CORS preflight neither, and a
browser page of an origin CORS_ORIGINS does not list is refused (one it
lists is served, and granted).  A bad key list
stops the manager at start.  A fake broker (tests/lib/fakebroker.py)
answers REDELIVER; the manager is the real process.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, http, wait_until
import whlib
from whlib import C, REDELIVER, ACCEPTED, REJECTED, FakeBroker

ADMIN, USER = "adm-key-0123456789", "usr-key-9876543210"


def redelivers(broker):
    return sorted(b["jobId"] for _, h, c, b in broker.inbox if h == C and c == REDELIVER)


def main():
    with harness.Stack("wh-retry-auth") as s:
        broker = FakeBroker()
        known = {"job-1"}
        broker.redeliver_answer = lambda b: (
            (ACCEPTED, {"jobId": b["jobId"], "req": b["req"]}) if b["jobId"] in known
            else (REJECTED, {"code": "not_found", "message": "no such job", "req": b["req"]}))
        s.endpoint = broker.endpoint
        mgr = whlib.manager(s, {"API_KEYS": "%s, %s" % (ADMIN, USER), "ADMIN_API_KEYS": ADMIN,
                                "METRICS_REQUIRE_KEY": "1", "HEARTBEAT_INTERVAL_MS": str(whlib.HB)})
        retry = lambda job: "%s/deliveries/%s/retry" % (mgr.url, job)

        # No key, a wrong key: 401, the same for a job that exists and one that does not.
        for job in ("job-1", "job-unknown"):
            st, hdrs, body = http("POST", retry(job), b"")
            check(st == 401 and body["error"]["code"] == "unauthorized"
                  and "API key is required" in body["error"]["message"]
                  and hdrs.get("WWW-Authenticate") == "Bearer",
                  "retry of %s without a key: 401 unauthorized, WWW-Authenticate: Bearer" % job, st, body)
            st, _, body = http("POST", retry(job), b"", {"X-API-Key": "not-a-key"})
            check(st == 401 and "not valid" in body["error"]["message"],
                  "retry of %s with a wrong key: 401" % job, st, body)
        # A key of API_KEYS that is not an admin key: 403.
        st, _, body = http("POST", retry("job-1"), b"", {"Authorization": "Bearer " + USER})
        check(st == 403 and body["error"]["code"] == "forbidden" and "ADMIN_API_KEYS" in body["error"]["message"],
              "retry with a key not in ADMIN_API_KEYS: 403 forbidden", st, body)
        check(redelivers(broker) == [], "no refused request reached the broker", broker.inbox)

        # The admin key: the broker is asked, its answers mapped; no CORS grant.
        st, hdrs, body = http("POST", retry("job-1"), b"", {"Authorization": "Bearer " + ADMIN})
        check(st == 202 and body["jobId"] == "job-1", "retry with the admin key (Bearer): 202", st, body)
        check("Access-Control-Allow-Origin" not in hdrs, "the 202 carries no Access-Control-Allow-Origin", hdrs)
        st, hdrs, body = http("POST", retry("job-unknown"), b"", {"X-API-Key": ADMIN})
        check(st == 404 and body["error"]["code"] == "not_found", "an unknown job with the admin key: 404", st, body)
        check("Access-Control-Allow-Origin" not in hdrs, "the 404 carries no Access-Control-Allow-Origin", hdrs)
        check(redelivers(broker) == ["job-1", "job-unknown"], "the broker got exactly those two REDELIVERs",
              redelivers(broker))

        # A browser page of another origin: refused even with a valid key; the preflight grants nothing.
        st, hdrs, body = http("POST", retry("job-1"), b"", {"X-API-Key": ADMIN, "Origin": "http://evil.example"})
        check(st == 403 and body["error"]["code"] == "forbidden_origin"
              and "Access-Control-Allow-Origin" not in hdrs,
              "retry from a page of another origin: 403 forbidden_origin, no CORS grant", st, body, hdrs)
        st, hdrs, _ = http("OPTIONS", retry("job-1"), None,
                           {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST",
                            "Access-Control-Request-Headers": "x-api-key"})
        check(st == 204 and "Access-Control-Allow-Origin" not in hdrs,
              "the preflight of a retry: 204 without Access-Control-Allow-Origin", st, hdrs)
        check(redelivers(broker) == ["job-1", "job-unknown"], "the refused origin reached no broker")

        # Read-only endpoints, as the gateway's.
        st, _, body = http("GET", mgr.url + "/stats")
        check(st == 401, "GET /stats without a key: 401", st, body)
        st, hdrs, body = http("GET", mgr.url + "/stats", None, {"X-API-Key": USER})
        check(st == 200 and "delivered" in body and hdrs.get("Access-Control-Allow-Origin") == "*",
              "GET /stats with any key: 200 (read-only: CORS as CORS_ORIGINS says)", st, body)
        for path in ("/health", "/ready"):
            wait_until(lambda: http("GET", mgr.url + path)[0] == 200, 5, "GET %s without a key: 200" % path)
            check(True, "GET %s needs no key" % path)
        check(http("GET", mgr.url + "/metrics")[0] == 401, "GET /metrics without a key: 401 (METRICS_REQUIRE_KEY=1)")
        st, _, text = http("GET", mgr.url + "/metrics", None, {"Authorization": "Bearer " + USER})
        check(st == 200 and 'webhook_redeliver_requests_total{result="unauthorized"} 4' in text
              and 'webhook_redeliver_requests_total{result="forbidden"} 2' in text,
              "GET /metrics with a key: 200; the refusals counted (4 unauthorized, 2 forbidden)", text[-1500:])
        whlib.stop_clean(mgr)

        # An origin CORS_ORIGINS names may ask (with a key), and gets itself back.
        ops = whlib.manager(s, {"API_KEYS": ADMIN, "CORS_ORIGINS": "http://ops.example",
                                "HEARTBEAT_INTERVAL_MS": str(whlib.HB)}, name="webhook-ops")
        st, hdrs, body = http("POST", "%s/deliveries/job-1/retry" % ops.url, b"",
                              {"X-API-Key": ADMIN, "Origin": "http://ops.example"})
        check(st == 202 and hdrs.get("Access-Control-Allow-Origin") == "http://ops.example",
              "retry from a page of a listed origin: 202, Access-Control-Allow-Origin: that origin", st, hdrs)
        st, hdrs, _ = http("OPTIONS", "%s/deliveries/job-1/retry" % ops.url, None,
                           {"Origin": "http://ops.example", "Access-Control-Request-Method": "POST"})
        check(st == 204 and hdrs.get("Access-Control-Allow-Origin") == "http://ops.example",
              "... and its preflight grants that origin", st, hdrs)
        st, _, body = http("POST", "%s/deliveries/job-1/retry" % ops.url, b"",
                           {"X-API-Key": ADMIN, "Origin": "http://evil.example"})
        check(st == 403 and body["error"]["code"] == "forbidden_origin", "another origin: 403", st, body)
        whlib.stop_clean(ops)

        # A bad key list is a configuration error: exit 2, naming it.
        bad = whlib.manager(s, {"API_KEYS": USER, "ADMIN_API_KEYS": "someone-else"}, name="webhook-bad",
                            wait=False)
        wait_until(lambda: not bad.alive(), 10, "the manager with a bad ADMIN_API_KEYS to exit")
        check(bad.p.returncode == 2 and "ADMIN_API_KEYS holds a key that is not in API_KEYS" in bad.output(),
              "ADMIN_API_KEYS with a key not in API_KEYS: exit 2, named", bad.p.returncode, bad.output()[-600:])
        broker.close()


if __name__ == "__main__":
    harness.main(main)

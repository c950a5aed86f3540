"""botmesh-mock on its own: the seed's test endpoints, recording and
/deliveries, /stats and its reset, failure modes (status, failFirst,
Retry-After, delay, drop), signature checks, bounded memory, bad input and
bad configuration; and botmesh-webhook's configuration checks and --help."""
import base64
import datetime
import hashlib
import hmac
import http.client as hc
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, http, wait_until
import whlib

SECRET = "whsec_" + base64.b64encode(b"mock-test-secret").decode()


def signed(body, wid, ts=None, secret=SECRET):
    ts = str(int(time.time()) if ts is None else ts)
    key = base64.b64decode(secret[6:])
    sig = base64.b64encode(hmac.new(key, ("%s.%s.%s" % (wid, ts, body)).encode(), hashlib.sha256).digest()).decode()
    return {"webhook-id": wid, "webhook-timestamp": ts, "webhook-signature": "v1," + sig,
            "Content-Type": "application/json"}


def main():
    with harness.Stack("wh-mock") as s:
        mock = whlib.mock(s, {"MOCK_WEBHOOK_SECRET": SECRET, "MOCK_MAX_RECORDS": "5",
                              "MOCK_TIMEOUT_DELAY_MS": "300"})
        u = mock.url

        st, _, body = http("GET", u + "/ready")
        check(st == 200 and body == {"status": "ready"}, "GET /ready: 200 (the mock waits for nothing)", body)

        # Seed endpoints.
        check(http("POST", u + "/test/success", {})[0] == 200, "POST /test/success: 200")
        check(http("POST", u + "/test/error", {})[0] == 500, "POST /test/error: 500")
        t0 = time.monotonic()
        status = http("POST", u + "/test/timeout", {})[0]
        check(status == 200 and time.monotonic() - t0 >= 0.3, "POST /test/timeout answers after the delay")
        st = whlib.get_json(u + "/stats")
        check(st["total"] == 3 and st["successful"] == 2 and st["failed"] == 1
              and st["successful"] + st["failed"] == st["total"],
              "/test/* calls count by the answer: success and timeout (200) successful, error (500) "
              "failed; successful + failed == total", st)
        http("POST", u + "/test/nope", {})
        http("POST", u + "/e", json.dumps({"jobId": "job-e", "success": False}).encode())
        st = whlib.get_json(u + "/stats")
        check(st["total"] == 5 and st["successful"] == 2 and st["failed"] == 3,
              "an unknown /test/ path (400) and a body saying success false count as failed", st)
        check(http("DELETE", u + "/stats")[0] == 200, "DELETE /stats")
        st = whlib.get_json(u + "/stats")
        check(st["received"] == 0 and st["records"] == 0, "reset clears everything", st)

        # Signatures: valid, wrong, missing, stale.
        body = json.dumps({"jobId": "job-1", "status": "completed"})
        check(http("POST", u + "/a", body.encode(), signed(body, "msg-1"))[0] == 200, "signed delivery: 200")
        http("POST", u + "/a", body.encode(), dict(signed(body, "msg-1"), **{"webhook-signature": "v1,AAAA"}))
        http("POST", u + "/a", body.encode(), {"Content-Type": "application/json"})
        http("POST", u + "/a", body.encode(), signed(body, "msg-1", ts=int(time.time()) - 3600))
        st = whlib.get_json(u + "/stats")
        check(st["signatures"] == {"valid": 1, "invalid": 3, "unchecked": 0}, "1 valid, 3 invalid signatures", st)
        # Keyed by webhook-id (msg-1: 3 arrivals), else by jobId (the unsigned one).
        check(st["duplicates"] == 2 and st["repeats"] == 2 and st["uniqueIds"] == 2,
              "same webhook-id answered 200 again: duplicates counted", st)
        got = whlib.get_json(u + "/deliveries?jobId=job-1")
        check(got["count"] == 4 and got["deliveries"][0]["path"] == "/a"
              and got["deliveries"][0]["body"]["jobId"] == "job-1", "GET /deliveries?jobId= lists them", got)

        # Bounded: MOCK_MAX_RECORDS=5 keeps the last 5, counters go on.
        for i in range(10):
            http("POST", u + "/b", json.dumps({"jobId": "job-b%d" % i}).encode())
        st = whlib.get_json(u + "/stats")
        check(st["records"] == 5 and st["received"] == 14 and st["evicted"] == 9,
              "records bounded at 5, counters complete", st)
        check(whlib.get_json(u + "/deliveries?jobId=job-1")["count"] == 0, "evicted records are gone")

        # Modes.
        whlib.mock_mode(mock, failFirst=2, status=502, retryAfter=7)
        answers = []
        for _ in range(3):
            st_, hdrs, _ = http("POST", u + "/c", json.dumps({"jobId": "job-c"}).encode(), {"webhook-id": "msg-c"})
            answers.append((st_, hdrs.get("Retry-After")))
        check(answers == [(502, "7"), (502, "7"), (200, None)], "failFirst 2 per webhook-id, Retry-After on failures", answers)
        whlib.mock_mode(mock, failFirst=0, failRate=1, status=503, retryAfter="Wed, 21 Oct 2015 07:28:00 GMT")
        st_, hdrs, _ = http("POST", u + "/d", b"{}")
        check(st_ == 503 and hdrs.get("Retry-After") == "Wed, 21 Oct 2015 07:28:00 GMT", "failRate 1 + HTTP-date Retry-After")
        whlib.mock_mode(mock, failRate=0, retryAfter=None, delayMs=300)
        t0 = time.monotonic()
        check(http("POST", u + "/e", b"{}")[0] == 200 and time.monotonic() - t0 >= 0.3, "delayMs delays the answer")
        whlib.mock_mode(mock, delayMs=0, dropRate=1)
        conn = hc.HTTPConnection("127.0.0.1", mock.port, timeout=5)
        conn.request("POST", "/f", body=b"{}")
        try:
            conn.getresponse()
            dropped = False
        except (hc.RemoteDisconnected, ConnectionResetError, hc.BadStatusLine):
            dropped = True
        conn.close()
        check(dropped, "dropRate 1 closes the connection without an answer")
        whlib.mock_mode(mock, dropRate=0)
        check(whlib.get_json(u + "/stats")["dropped"] == 1, "the drop is counted")

        # Bad input.
        for bad in ({"failRate": 2}, {"status": 42}, {"nope": 1}, [1]):
            st_, _, reply = http("POST", u + "/mode", bad)
            check(st_ == 400 and "error" in reply, "POST /mode %r: 400" % (bad,), reply)
        st_, _, reply = http("POST", u + "/mode", b"{not json")
        check(st_ == 400, "POST /mode with broken JSON: 400", reply)
        check(http("GET", u + "/deliveries?limit=0")[0] == 400, "limit=0: 400")
        check(http("PUT", u + "/stats", b"")[0] == 405, "PUT /stats: 405")
        check(http("GET", u + "/nope")[0] == 404, "GET of an unknown path: 404")
        st_, _, metrics = http("GET", u + "/metrics")
        check(st_ == 200 and 'mock_webhook_deliveries_total{status="200"}' in metrics, "GET /metrics", metrics[:300])
        check(mock.alive(), "the mock survived all of it")
        whlib.stop_clean(mock)

        # SIGTERM right after a request stops it promptly.  civetweb's
        # listening thread polls 2 s at a time from its last accept: a bare
        # mg_stop took ~1.9 s here.  Timed between the mock's own log lines.
        quick = whlib.mock(s, name="mock-stop")
        check(http("GET", quick.url + "/health")[0] == 200, "a request just before the stop")
        quick.signal(signal.SIGTERM)
        rc = quick.p.wait(timeout=30)
        out = quick.output()
        stamps = {}
        for line in out.splitlines():
            for word in ("SIGTERM received", "stopped"):
                if word in line:
                    stamps[word] = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
        check(rc == 0 and len(stamps) == 2, "the mock logged its stop and exited 0", rc, out[-1000:])
        took_ms = (stamps["stopped"] - stamps["SIGTERM received"]).total_seconds() * 1000
        check(took_ms < 1000, "the mock stopped %.0f ms after SIGTERM (under 1 s)" % took_ms, out[-1000:])

        # A client's keep-alive connection open, its request just answered
        # (as the webhook manager's curl keeps them): civetweb's thread polls
        # it for the next request 2 s at a time; SIGTERM ends it at once, before
        # that poll would have ended (2.0 s when the stop waited for it).
        held_mock = whlib.mock(s, name="mock-keepalive", env={"MOCK_KEEPALIVE_MS": "5000"})
        conn = hc.HTTPConnection("127.0.0.1", held_mock.port, timeout=5)
        conn.request("GET", "/health")
        check(conn.getresponse().read() is not None, "a keep-alive request answered")
        t0 = time.monotonic()
        held_mock.signal(signal.SIGTERM)
        rc = held_mock.p.wait(timeout=30)
        took = time.monotonic() - t0
        check(rc == 0 and took < 1.9, "with a keep-alive client, the mock exits 0 within 1.9 s of "
              "SIGTERM, before civetweb's 2 s poll ends (took %.2f s)" % took, rc)
        conn.close()

        # Bad configuration stops each binary at start, naming the variable.
        for binary, var, value in (("botmesh-mock", "MOCK_FAIL_RATE", "2"),
                                   ("botmesh-mock", "MOCK_WEBHOOK_PORT", "http"),
                                   ("botmesh-mock", "MOCK_WEBHOOK_SECRET", "whsec_!!"),
                                   ("botmesh-webhook", "WEBHOOK_MAX_RETRIES", "-1"),
                                   ("botmesh-webhook", "WEBHOOK_TIMEOUT_MS", "ten"),
                                   ("botmesh-webhook", "WEBHOOK_JITTER", "some"),
                                   ("botmesh-webhook", "WEBHOOK_SECRET", "whsec_###")):
            env = dict(os.environ, **{var: value, "WEBHOOK_MANAGER_PORT": "0", "MOCK_WEBHOOK_PORT": "0"})
            env[var] = value
            out = subprocess.run([s.bin(binary)], env=env, capture_output=True, text=True, timeout=10)
            check(out.returncode != 0 and var in out.stderr, "%s with %s=%s exits, naming it" % (binary, var, value),
                  out.returncode, out.stderr[-300:])
        out = subprocess.run([s.bin("botmesh-webhook"), "--help"], capture_output=True, text=True, timeout=10)
        check(out.returncode == 0 and "6 attempts" in out.stdout and "WEBHOOK_MAX_RETRIES" in out.stdout
              and "WEBHOOK_ALLOWED_HOSTS" in out.stdout, "botmesh-webhook --help says how many attempts", out.stdout[:200])
        out = subprocess.run([s.bin("botmesh-mock"), "--help"], capture_output=True, text=True, timeout=10)
        check(out.returncode == 0 and "MOCK_FAIL_FIRST" in out.stdout, "botmesh-mock --help lists its variables")


harness.main(main)

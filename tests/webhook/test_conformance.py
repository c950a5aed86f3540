"""Conformance of botmesh-webhook to the worker protocol (BMW01,
docs/protocol.md sections 5 and 6), against a fake broker written here
from the document: a ZeroMQ ROUTER that sends JOB, CANCEL, DISCONNECT,
heartbeats, and checks READY, PROGRESS, DONE, RELEASE, DISCONNECT and the
REDELIVER the manager's HTTP API sends as a client.

Runs without the real broker: it pins the manager's side of the contract."""
import base64
import hashlib
import hmac
import json
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
import msgpack
import zmq
from harness import check, http, log, pack, unpack, wait_until
import whlib

from whlib import (W, C, READY, JOB, PROGRESS, DONE, HEARTBEAT, DISCONNECT, WCANCEL, RELEASE,
                   NACK, REDELIVER, ACCEPTED, REJECTED, FakeBroker, job)
SECRET = "whsec_" + base64.b64encode(b"conformance-test-key-0123456789").decode()
HB = whlib.HB


def main():
    with harness.Stack("wh-conformance") as s:
        broker = FakeBroker()
        mock = whlib.mock(s, {"MOCK_WEBHOOK_SECRET": SECRET, "MOCK_TIMEOUT_DELAY_MS": "20000"})
        s.endpoint = broker.endpoint
        mgr = whlib.manager(s, {
            "HEARTBEAT_INTERVAL_MS": str(HB), "HEARTBEAT_LIVENESS": "3",
            "WEBHOOK_RETRY_DELAY": "100", "WEBHOOK_JITTER": "none", "WEBHOOK_MAX_DELAY": "5000",
            "WEBHOOK_MAX_RETRIES": "5", "WEBHOOK_TIMEOUT_MS": "3000", "WEBHOOK_SECRET": SECRET,
            "WEBHOOK_ALLOW_PRIVATE": "0", "WEBHOOK_ALLOWED_HOSTS": "localhost",
            "WEBHOOK_SHUTDOWN_GRACE_MS": "3000"}, wait=False)

        # READY: name, types ["webhook"], credit, pid
        ident, _, ready = broker.expect_cmd(READY, what="READY")
        check(ready.get("types") == ["webhook"] and ready.get("credit") == 10000
              and ready.get("name") == "webhook" and ready.get("pid") == mgr.pid,
              "READY {name, types: [webhook], credit: 10000, pid}", ready)
        wait_until(lambda: http("GET", mgr.url + "/health")[2]["broker"]["connected"], 5,
                   "manager to count the broker as connected")
        st, _, body = http("GET", mgr.url + "/ready")
        check(st == 200 and body == {"status": "ready"}, "GET /ready: 200 while the broker answers", body)

        # Heartbeats flow when idle.
        broker.expect(lambda h, c, b: h == W and c == HEARTBEAT, 2, "a HEARTBEAT from the manager")
        check(True, "the manager heartbeats when idle")

        # 1. A delivery that succeeds at once, signed (localhost is allowed by name).
        url = "http://localhost:%d/hook" % mock.port
        text = json.dumps({"jobId": "j1", "botType": "python", "status": "completed",
                           "result": {"x": 1}, "attempts": 1})
        broker.send(JOB, job("j1.wh1", url, text))
        _, _, done = broker.expect_cmd(DONE, "j1.wh1")
        wh = done.get("webhook", {})
        check(done.get("ok") is True and wh.get("state") == "delivered" and wh.get("attempts") == 1
              and wh.get("lastStatus") == 200 and wh.get("nextAttemptAt") is None,
              "DONE {ok: true, webhook: delivered, 1 attempt, 200}", done)
        got = whlib.mock_deliveries(mock, "j1")
        check(len(got) == 1 and got[0]["signature"] == "valid" and got[0]["webhookId"] == "j1",
              "the mock got it once, signature valid, webhook-id = parent job id", got)
        # The signature, recomputed independently with Python's hmac.
        hdr = {k.lower(): v for k, v in got[0]["headers"].items()}
        key = base64.b64decode(SECRET[len("whsec_"):])
        # The mock shows JSON bodies parsed: sign the text we sent.
        expected = "v1," + base64.b64encode(hmac.new(
            key, ("j1.%s.%s" % (hdr["webhook-timestamp"], text)).encode(), hashlib.sha256).digest()).decode()
        check(hdr.get("webhook-signature") == expected, "webhook-signature matches Python's HMAC-SHA256",
              hdr.get("webhook-signature"), expected)
        check(abs(int(hdr["webhook-timestamp"]) - time.time()) < 30, "webhook-timestamp is now (seconds)")
        check(hdr.get("content-type") == "application/json", "Content-Type: application/json", hdr)

        # 2. Two failures, then success: PROGRESS retrying after each, attempts count.
        whlib.mock_mode(mock, failFirst=2, status=503)
        broker.send(JOB, job("j2.wh1", url, json.dumps({"jobId": "j2"})))
        _, _, p1 = broker.expect_cmd(PROGRESS, "j2.wh1")
        w1 = p1["webhook"]
        check(w1["state"] == "retrying" and w1["attempts"] == 1 and w1["lastStatus"] == 503
              and w1["lastError"].startswith("HTTP 503: ") and "mock_failure" in w1["lastError"]
              and w1["nextAttemptAt"] > 0,
              "PROGRESS {webhook: retrying, attempts 1, lastStatus 503, lastError 'HTTP 503: <the answer's "
              "first bytes>', nextAttemptAt}", p1)
        _, _, p2 = broker.expect_cmd(PROGRESS, "j2.wh1")
        check(p2["webhook"]["attempts"] == 2, "PROGRESS attempts 2", p2)
        check(p2["webhook"]["nextAttemptAt"] - int(time.time() * 1000) <= 250,
              "second wait is the ceiling 200 ms (jitter none)", p2)
        _, _, d2 = broker.expect_cmd(DONE, "j2.wh1")
        check(d2["ok"] is True and d2["webhook"]["attempts"] == 3, "DONE delivered on attempt 3", d2)

        # 3. Resume from a reported state: attempts 4 of 6, next attempt in 400 ms.
        whlib.mock_mode(mock, failFirst=1000000)
        resume_at = int(time.time() * 1000) + 400
        broker.send(JOB, job("j3.wh1", url, json.dumps({"jobId": "j3"}),
                             webhook={"state": "retrying", "attempts": 4, "lastStatus": 503,
                                      "lastError": "HTTP 503", "nextAttemptAt": resume_at}))
        _, _, p3 = broker.expect_cmd(PROGRESS, "j3.wh1")
        check(p3["webhook"]["attempts"] == 5, "attempts continue from the reported state (5)", p3)
        _, _, d3 = broker.expect_cmd(DONE, "j3.wh1")
        check(d3["ok"] is False and d3["webhook"]["state"] == "failed" and d3["webhook"]["attempts"] == 6
              and d3["error"]["code"] == "webhook_failed" and "gave up after 6 attempts" in d3["error"]["message"],
              "DONE {ok: false, webhook failed after 6 attempts, error webhook_failed}", d3)
        first = whlib.mock_deliveries(mock, "j3")[0]["time"]
        check(first >= resume_at - 5, "the first resumed attempt waited for nextAttemptAt", first, resume_at)
        whlib.mock_mode(mock, failFirst=0)

        # 4. Permanent failure: 404 once, no retry.
        whlib.mock_mode(mock, failFirst=1, status=404)
        broker.send(JOB, job("j5.wh1", url, json.dumps({"jobId": "j5"})))
        _, _, d5 = broker.expect_cmd(DONE, "j5.wh1")
        check(d5["ok"] is False and d5["webhook"]["attempts"] == 1 and d5["webhook"]["lastStatus"] == 404,
              "404: DONE failed after one attempt", d5)
        whlib.mock_mode(mock, failFirst=0, status=503)

        # 5. SSRF guard: 127.0.0.1 is not in WEBHOOK_ALLOWED_HOSTS: refused, permanent.
        broker.send(JOB, job("j6.wh1", "http://127.0.0.1:%d/hook" % mock.port, json.dumps({"jobId": "j6"})))
        _, _, d6 = broker.expect_cmd(DONE, "j6.wh1")
        check(d6["ok"] is False and "SSRF" in d6["webhook"]["lastError"]
              and "loopback" in d6["webhook"]["lastError"] and d6["webhook"]["attempts"] == 1,
              "a loopback target is refused, permanently, with a clear lastError", d6)
        check(whlib.mock_deliveries(mock, "j6") == [], "the refused delivery never reached the mock")

        # 6. Invalid payloads: DONE failed, no crash.
        broker.send(JOB, {"jobId": "j7.wh1", "botType": "webhook", "payload": "nope", "attempt": 1,
                          "timeoutMs": 60000})
        _, _, d7 = broker.expect_cmd(DONE, "j7.wh1")
        check(d7["ok"] is False and "invalid delivery" in d7["error"]["message"], "bad payload: DONE failed", d7)
        broker.send(JOB, {"jobId": "j7b.wh1", "botType": "webhook", "attempt": 1,
                          "payload": {"url": "http://localhost:%d/hook" % mock.port, "webhookId": "w", "body": "{}"}})
        _, _, d7b = broker.expect_cmd(DONE, "j7b.wh1")
        check(d7b["ok"] is False and d7b["error"]["code"] == "bad_request"
              and "timeoutMs" in d7b["error"]["message"],
              "a JOB body without timeoutMs: DONE bad_request naming the field", d7b)
        broker.send(JOB, job("j8.wh1", "ftp://localhost/x", "{}"))
        _, _, d8 = broker.expect_cmd(DONE, "j8.wh1")
        check(d8["ok"] is False and "http" in d8["error"]["message"], "ftp:// URL: DONE failed", d8)
        broker.send(JOB, job("j8b.wh1", "http://localhost:%d/a\u2028b" % mock.port, "{}"))
        _, _, d8b = broker.expect_cmd(DONE, "j8b.wh1")
        check(d8b["ok"] is False and "non-ASCII" in d8b["error"]["message"],
              "a URL with raw U+2028: DONE failed, asking for percent-encoding", d8b)
        broker.send_raw(broker.worker, [W, bytes([JOB]), b"\xdf\xff\xff\xff\xff"])
        broker.send_raw(broker.worker, [W, b"\x02"])
        broker.pump(0.3)
        check(mgr.alive(), "garbage frames do not crash the manager")

        # 7. CANCEL of a delivery in flight: DONE with the reason.
        broker.send(JOB, job("j9.wh1", "http://localhost:%d/test/timeout" % mock.port, "{}"))
        wait_until(lambda: get_inflight(mgr) == 1, 5, "the hanging request to be in flight")
        broker.send(WCANCEL, {"jobId": "j9.wh1", "reason": "timeout"})
        _, _, d9 = broker.expect_cmd(DONE, "j9.wh1")
        check(d9["ok"] is False and d9["error"]["code"] == "timeout", "CANCEL -> DONE {error: timeout}", d9)
        check(get_inflight(mgr) == 0, "the cancelled request is no longer in flight")

        # 8. Duplicate JOB for a held delivery: carried on once.
        whlib.mock_mode(mock, failFirst=1, retryAfter=1)
        broker.send(JOB, job("j10.wh1", url, json.dumps({"jobId": "j10"})))
        broker.expect_cmd(PROGRESS, "j10.wh1")
        broker.send(JOB, job("j10.wh1", url, json.dumps({"jobId": "j10"})))
        _, _, d10 = broker.expect_cmd(DONE, "j10.wh1")
        check(d10["ok"] is True and d10["webhook"]["attempts"] == 2,
              "a second JOB for a held delivery does not start another", d10)
        gaps = [d["time"] for d in whlib.mock_deliveries(mock, "j10")]
        check(len(gaps) == 2 and gaps[1] - gaps[0] >= 950, "Retry-After: 1 honoured", gaps)
        whlib.mock_mode(mock, failFirst=0, retryAfter=None)

        # 9. Broker silence: the manager reconnects with a new socket and READY.
        old = broker.worker
        broker.heartbeats = False
        st, _, body = wait_until(lambda: (lambda r: r[0] == 503 and r)(http("GET", mgr.url + "/ready")), 5,
                                 "GET /ready to answer 503 while the broker is silent")
        check(body["error"]["code"] == "broker_unavailable" and "BROKER_ENDPOINT" in body["error"]["message"],
              "... broker_unavailable, naming BROKER_ENDPOINT", body)
        ident, _, again = broker.expect_cmd(READY, timeout=5, what="READY after silence")
        check(ident != old and again["name"] == "webhook", "silent broker: new socket, READY again", again)
        broker.heartbeats = True
        wait_until(lambda: http("GET", mgr.url + "/ready")[0] == 200, 5, "GET /ready 200 again once the broker answers")
        # DISCONNECT from the broker: READY again.
        old = broker.worker
        broker.send(DISCONNECT, {})
        ident, _, again = broker.expect_cmd(READY, timeout=5, what="READY after DISCONNECT")
        check(ident != old, "DISCONNECT from the broker: new socket, READY again")

        # 10. POST /deliveries/{id}/retry -> REDELIVER as a client; answers mapped.
        answers = {"jx": (ACCEPTED, {"jobId": "jx"}), "jy": (REJECTED, {"code": "not_found", "message": "no such job"}),
                   "jz": (REJECTED, {"code": "conflict", "message": "the job has no webhook or has not ended"})}
        broker.redeliver_answer = lambda b: (answers[b["jobId"]][0], dict(answers[b["jobId"]][1], req=b["req"]))
        import threading
        results = {}
        def call(jid):
            results[jid] = http("POST", "%s/deliveries/%s/retry" % (mgr.url, jid), b"")
        threads = [threading.Thread(target=call, args=(j,)) for j in answers]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            broker.pump(0.05)
        check(results["jx"][0] == 202 and results["jx"][2]["jobId"] == "jx", "retry accepted: 202", results["jx"])
        check(results["jy"][0] == 404 and results["jy"][2]["error"]["code"] == "not_found",
              "retry of an unknown job: 404 {error: {code: not_found}}", results["jy"])
        check(results["jz"][0] == 409 and results["jz"][2]["error"]["code"] == "conflict",
              "retry of a job without webhook: 409 {error: {code: conflict}}", results["jz"])
        reqs = [b for _, h, c, b in broker.inbox if h == C and c == REDELIVER]
        check(sorted(b["jobId"] for b in reqs) == ["jx", "jy", "jz"] and all("req" in b for b in reqs),
              "the manager sent REDELIVER {req, jobId} as a BMC01 client", reqs)
        status, _, body = http("POST", mgr.url + "/deliveries/bad%20id/retry", b"")
        check(status == 400, "retry with an invalid job id: 400", body)

        # 11. SIGTERM: READY credit 0, RELEASE what waits for a retry, DISCONNECT, exit 0.
        whlib.mock_mode(mock, failFirst=1000000, retryAfter=30)
        broker.send(JOB, job("j11.wh1", url, json.dumps({"jobId": "j11"})))
        broker.expect_cmd(PROGRESS, "j11.wh1")
        broker.send(JOB, job("j12.wh1", "http://localhost:%d/test/timeout" % mock.port, "{}"))
        wait_until(lambda: get_inflight(mgr) == 1, 5, "a request in flight")
        mgr.signal(signal.SIGTERM)
        _, _, r0 = broker.expect_cmd(READY, what="READY credit 0")
        check(r0["credit"] == 0, "SIGTERM: READY with credit 0", r0)
        _, _, rel = broker.expect_cmd(RELEASE, "j11.wh1")
        check(True, "the delivery waiting for a retry is RELEASEd")
        # j12 hangs past the grace period (3 s): aborted and released.
        _, _, rel2 = broker.expect_cmd(RELEASE, "j12.wh1", timeout=8)
        check(True, "the request still in flight after the grace period is RELEASEd")
        broker.expect_cmd(DISCONNECT, timeout=5)
        wait_until(lambda: not mgr.alive(), 10, "the manager to exit")
        check(mgr.p.returncode == 0, "exit code 0 after SIGTERM", mgr.p.returncode)

        stats = whlib.get_json(mock.url + "/stats")
        check(stats["duplicates"] == 0, "no duplicate deliveries in this run", stats)
        broker.close()


def get_inflight(mgr):
    return whlib.get_json(mgr.url + "/stats")["inFlight"]


harness.main(main)

"""Retries through the real stack: two 503s then success (three attempts,
growing gaps in the mock's timestamps), a 404 (one attempt, failed for good,
in the job record), a receiver hanging past WEBHOOK_TIMEOUT_MS (retried),
and Retry-After: 2 on a 429 (honoured over a 200 ms backoff)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, http, wait_until
import whlib

BASE = 200          # WEBHOOK_RETRY_DELAY, jitter none: waits 200, 400, 800 ms...
SLACK = 30          # timer and scheduling slack, ms


def webhook_state(c, job, states=("delivered", "failed")):
    return wait_until(lambda: (lambda r: r if r.get("webhook", {}).get("state") in states else None)(
        c.status(job)), 20, "job %s webhook to reach %s" % (job, states))


def main():
    with harness.Stack("wh-retries") as s:
        s.redis()
        s.broker()
        s.worker("--noop", "--type", "python")
        mock = whlib.mock(s)
        mgr = whlib.manager(s, {"WEBHOOK_RETRY_DELAY": str(BASE), "WEBHOOK_JITTER": "none",
                                "WEBHOOK_MAX_DELAY": "5000", "WEBHOOK_TIMEOUT_MS": "700"})
        s.wait_workers(1, "webhook")
        c = s.client()
        hook = mock.url + "/hook"

        # Two 503s, then 200.
        whlib.mock_mode(mock, failFirst=2, status=503)
        a = c.submit("python", {"case": "503s"}, webhookUrl=hook)
        rec = webhook_state(c, a)
        check(rec["webhook"]["state"] == "delivered" and rec["webhook"]["attempts"] == 3
              and rec["webhook"]["lastStatus"] == 200, "two 503s then 200: delivered on attempt 3", rec["webhook"])
        got = whlib.mock_deliveries(mock, a)
        check([d["status"] for d in got] == [503, 503, 200], "the mock answered 503, 503, 200", got)
        t = [d["time"] for d in got]
        gaps = [t[1] - t[0], t[2] - t[1]]
        check(gaps[0] >= BASE - SLACK and gaps[1] >= 2 * BASE - SLACK and gaps[1] > gaps[0],
              "the gaps between attempts grow (>= 200 ms, then >= 400 ms)", gaps)
        check(len({d["webhookId"] for d in got}) == 1, "every attempt carries the same webhook-id")

        # 404: permanent, one attempt, the job record says so.
        whlib.mock_mode(mock, failFirst=1, status=404)
        b = c.submit("python", {"case": "404"}, webhookUrl=hook)
        rec = webhook_state(c, b)
        wh = rec["webhook"]
        check(wh["state"] == "failed" and wh["attempts"] == 1 and wh["lastStatus"] == 404
              and "404" in wh["lastError"], "404: failed after one attempt, lastStatus 404", wh)
        check(rec["state"] == "completed", "the job itself stays completed", rec["state"])
        check(len(whlib.mock_deliveries(mock, b)) == 1, "the 404 was not retried")

        # A receiver that hangs past the 700 ms timeout, then recovers.
        whlib.mock_mode(mock, failFirst=0, delayMs=3000)
        h = c.submit("python", {"case": "hang"}, webhookUrl=hook)
        wait_until(lambda: len(whlib.mock_deliveries(mock, h)) == 1, 15, "the first attempt to reach the mock")
        whlib.mock_mode(mock, delayMs=0)
        rec = webhook_state(c, h)
        check(rec["webhook"]["state"] == "delivered" and rec["webhook"]["attempts"] == 2,
              "the attempt that timed out was retried and delivered", rec["webhook"])
        got = whlib.mock_deliveries(mock, h)
        check(len(got) == 2 and got[1]["time"] - got[0]["time"] >= 700 + BASE - SLACK,
              "the retry came after the timeout plus the backoff", [d["time"] for d in got])
        _, _, metrics = http("GET", mgr.url + "/metrics")
        check('webhook_responses_total{code="none"} 1' in metrics, "the timeout counted as no answer")

        # Retry-After: 2 on a 429 overrides the 200 ms backoff.
        whlib.mock_mode(mock, failFirst=1, status=429, retryAfter=2)
        r = c.submit("python", {"case": "retry-after"}, webhookUrl=hook)
        rec = webhook_state(c, r)
        got = whlib.mock_deliveries(mock, r)
        check(rec["webhook"]["state"] == "delivered" and [d["status"] for d in got] == [429, 200],
              "429 retried, then delivered", rec["webhook"])
        gap = got[1]["time"] - got[0]["time"]
        check(2000 - SLACK <= gap <= 2000 + 1500, "Retry-After: 2 honoured (gap %d ms)" % gap, gap)

        ws = whlib.get_json(mgr.url + "/stats")
        ms = whlib.get_json(mock.url + "/stats")
        check(ws["attempts"] == ms["received"] == 8, "manager attempts = mock received = 8", ws, ms)
        # The hung attempt: the mock answered 200 after its delay, to a
        # client gone at 700 ms; the manager saw no answer.
        check(ms["byStatus"].get("200") == ws["responses"].get("200") + ws["responses"].get("none"),
              "the mock's 200s = the manager's 200s + the answer it never saw", ms, ws)
        check(ws["delivered"] == 3 and ws["failed"] == 1, "manager: 3 delivered, 1 failed", ws)
        c.close()
        whlib.stop_clean(mgr, mock)


harness.main(main)

"""An answer whose status lies outside 100-599 (libcurl takes up to 999)
is an answer: counted under code "other" in /stats responses and
webhook_responses_total, not as "none" (no answer), and retried like any
status outside the range.  A fake broker hands the real manager a delivery
to a receiver that answers "HTTP/1.1 799" (WEBHOOK_MAX_RETRIES=0).

Before, such a status was counted as code="none", as if nothing had
answered."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, http
import whlib
from whlib import DONE, JOB, job


def answer_799(receiver, path, conn, number):
    conn.sendall(b"HTTP/1.1 799 Odd\r\nContent-Length: 2\r\n\r\nno")
    return True


def responses_metric(mgr, code):
    _, _, text = http("GET", mgr.url + "/metrics")
    m = re.search(r'^webhook_responses_total\{code="%s"\} (\S+)$' % code, text, re.M)
    return float(m.group(1)) if m else 0.0


def main():
    with whlib.RawReceiver(answer_799) as receiver, harness.Stack("wh-status-other") as s:
        broker, mgr = whlib.manager_on_fake_broker(s, {"WEBHOOK_MAX_RETRIES": "0"})
        none_before = responses_metric(mgr, "none")
        broker.send(JOB, job("o1.wh1", "http://127.0.0.1:%d/hook" % receiver.port, '{"jobId":"o1"}'))
        _, _, done = broker.expect_cmd(DONE, "o1.wh1")
        check(done["ok"] is False and done["webhook"]["lastStatus"] == 799,
              "the 799 is the delivery's last status, and it failed (one attempt allowed)", done)
        stats = whlib.get_json(mgr.url + "/stats")
        check(stats["responses"] == {"other": 1}, "/stats counts the answer under \"other\"",
              stats["responses"])
        check(responses_metric(mgr, "other") == 1, 'webhook_responses_total{code="other"} is 1')
        check(responses_metric(mgr, "none") == none_before, 'webhook_responses_total{code="none"} did not grow')
        whlib.stop_clean(mgr)


if __name__ == "__main__":
    harness.main(main)

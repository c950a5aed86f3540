"""A JOB whose delivery is invalid (no url in its payload, a url libcurl
cannot read) is answered DONE webhook_failed and counted as a failed
delivery: /stats failed and webhook_deliveries_total{status="failed"}, as
well as webhook_bad_jobs_total.  A fake broker hands the real manager two
such JOBs.

Before, they showed only in webhook_bad_jobs_total: /stats failed and
webhook_deliveries_total{status="failed"} stayed 0."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, http
import whlib
from whlib import DONE, JOB, job


def metric(mgr, pattern):
    _, _, text = http("GET", mgr.url + "/metrics")
    m = re.search(r"^%s (\S+)$" % re.escape(pattern), text, re.M)
    return float(m.group(1)) if m else None


def main():
    with harness.Stack("wh-bad-job") as s:
        broker, mgr = whlib.manager_on_fake_broker(s)
        bad = job("x1.wh1", "http://127.0.0.1:1/hook", "{}")
        del bad["payload"]["url"]
        broker.send(JOB, bad)
        _, _, done = broker.expect_cmd(DONE, "x1.wh1")
        check(done["ok"] is False and done["error"]["code"] == "webhook_failed"
              and "payload.url" in done["error"]["message"],
              "a JOB without payload.url: DONE webhook_failed naming it", done)
        broker.send(JOB, job("x2.wh1", "http://[::1/hook", "{}"))
        _, _, done = broker.expect_cmd(DONE, "x2.wh1")
        check(done["ok"] is False and "invalid delivery" in done["error"]["message"],
              "a url that does not parse: DONE webhook_failed", done)
        stats = whlib.get_json(mgr.url + "/stats")
        check(stats["failed"] == 2, "/stats failed counts both", stats)
        check(metric(mgr, 'webhook_deliveries_total{status="failed"}') == 2,
              'webhook_deliveries_total{status="failed"} counts both')
        check(metric(mgr, "webhook_bad_jobs_total") == 2, "webhook_bad_jobs_total counts both")
        whlib.stop_clean(mgr)


if __name__ == "__main__":
    harness.main(main)

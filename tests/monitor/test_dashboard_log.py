"""test_dashboard_log.py - the dashboard's job detail shows the job's log
(the tail of its bot's stderr, the record's `log`), in headless Chromium
against a real stack (redis + broker + gateway, a fake worker whose DONE
carries the log a C worker would send).

A completed job with a log of three lines, one of them markup: the detail
shows the box, the text as it is (the markup as text, no element made of
it); a job without a log: the box is hidden.  Before, the detail had no
log box ("the detail shows the log box" failed: no #detail-log-box).
"""
import json

import harness
from harness import check

import cdp
from test_dashboard import start_gateway
from fakeworker import FakeWorker

LOG = "step one\n<b id=\"injected\">not markup</b>\nstep three"


def test():
    with harness.Stack("dashboard-log") as s:
        s.redis()
        s.broker()
        base = start_gateway(s)
        w = FakeWorker(s.endpoint, "fw-log", ["python"], 2)
        s.wait_workers(1, "python")

        def finish(log_text):
            status, _, reply = harness.http("POST", base + "/invoke", {"botType": "python", "payload": {}})
            check(status == 202, "invoke accepted", status, reply)
            job = w.recv_job(10)
            check(job and job["jobId"] == reply["jobId"], "the fake worker got the job", job)
            body = {"jobId": job["jobId"], "ok": True, "result": 1, "attempt": job["attempt"]}
            if log_text:
                body["log"] = log_text
            w.send(harness.DONE, body)
            harness.wait_until(lambda: harness.http("GET", base + "/job/" + job["jobId"])[2]["state"]
                               == "completed", 10, "the job to complete")
            return job["jobId"]

        logged = finish(LOG)
        quiet = finish(None)

        with cdp.Browser() as browser:
            page = browser.new_page(1440, 1000)
            page.goto(base + "/admin/queues")
            page.wait_for("document.querySelector('#jobs-body tr[data-job-id=\"%s\"]') !== null"
                          % logged, 10, "the logged job's row")
            page.click('#jobs-body tr[data-job-id="%s"]' % logged)
            page.wait_for("document.body.dataset.detailJob === %s" % json.dumps(logged), 10,
                          "the logged job's detail")
            shown = page.eval("""({box: !!document.getElementById('detail-log-box')
                                        && !document.getElementById('detail-log-box').hidden,
                text: (document.getElementById('detail-log') || {}).textContent,
                injected: document.getElementById('injected') !== null})""")
            harness.log("detail", shown)
            check(shown["box"], "the detail shows the log box", shown)
            check(shown["text"] == LOG and not shown["injected"],
                  "the log as text, its markup not made into an element", shown)

            page.click('#jobs-body tr[data-job-id="%s"]' % quiet)
            page.wait_for("document.body.dataset.detailJob === %s" % json.dumps(quiet), 10,
                          "the quiet job's detail")
            hidden = page.eval("document.getElementById('detail-log-box').hidden")
            check(hidden, "a job without a log: no log box", hidden)
        w.close()


if __name__ == "__main__":
    harness.main(test)

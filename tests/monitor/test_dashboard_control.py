"""test_dashboard_control.py - the dashboard's queue and job actions in
headless Chromium against a real stack (redis + broker + gateway, a fake
worker the test drives).

Clicks, and checks each against the gateway's own answers: Promote on a
delayed job (it is queued), Remove on it (404 after), Pause then Resume on
the python row (/stats paused, the row marked), Clean failed (exactly the
failed jobs go), Clean cancelled on java (its cancelled job goes, not its
queued ones), Drain on java (its queued jobs go), Retry failed on python
(its 2 new failed jobs run again and complete).
"""
import json
import os
import sys

import harness
from harness import check, log, wait_until

import cdp
from test_dashboard import start_gateway

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "broker"))
from fakeworker import FakeWorker   # noqa: E402


def test():
    with harness.Stack("dashboard-control") as s:
        s.redis()
        s.broker(env={"HEARTBEAT_LIVENESS": "30"})
        base = start_gateway(s)

        def call(method, path, body=None):
            return harness.http(method, base + path, body)

        def job(jid):
            status, _, body = call("GET", "/job/" + jid)
            return body if status == 200 else None

        w = FakeWorker(s.endpoint, "fw-dash", ["python"], 1)
        s.wait_workers(1, "python")
        # Jobs for the buttons: 1 completed and 2 failed python jobs, a
        # delayed node job, 2 queued java jobs (no java worker) and a
        # cancelled one.
        finished = {}
        for ok in (True, False, False):
            _, _, r = call("POST", "/invoke", {"botType": "python", "payload": {"ok": ok}, "attempts": 1})
            j = w.recv_job(15)
            check(j is not None, "the fake worker gets the python job", r)
            w.done(j["jobId"], result=1) if ok else w.done(j["jobId"], ok=False)
            wait_until(lambda: (job(r["jobId"]) or {}).get("state") in harness.TERMINAL, 15, "job to end")
            finished[r["jobId"]] = ok
        _, _, r = call("POST", "/invoke", {"botType": "node", "payload": {}, "delayMs": 600000})
        delayed = r["jobId"]
        java = [call("POST", "/invoke", {"botType": "java", "payload": i})[2]["jobId"] for i in range(2)]
        cancelled = call("POST", "/invoke", {"botType": "java", "payload": "c"})[2]["jobId"]
        _, _, r = call("POST", "/job/%s/cancel" % cancelled)
        check(r.get("state") == "cancelled", "a third java job, cancelled while queued", r)

        with cdp.Browser() as browser:
            page = browser.new_page(1440, 1000)
            # 1. Promote a delayed job from its detail
            page.goto(base + "/admin/queues#/job/" + delayed)
            # The sections above the job's detail fill in as their first
            # answers arrive, moving the buttons down: click once they did.
            page.wait_for("Number(document.body.dataset.statsUpdates || 0) >= 1"
                          " && Number(document.body.dataset.jobsUpdates || 0) >= 1"
                          " && Number(document.body.dataset.schedulesUpdates || 0) >= 1", 20, "the page's first data")
            page.wait_for("document.body.dataset.detailJob === %s" % json.dumps(delayed), 10, "the delayed job's detail")
            page.wait_for("document.querySelector('#job-detail [data-field=state]').dataset.value === 'delayed'"
                          " && !document.getElementById('action-promote').disabled", 10, "promote enabled")
            check(page.eval("document.getElementById('action-retry').disabled"), "retry disabled for a delayed job")
            page.click("#action-promote")
            page.wait_for("document.getElementById('action-message').dataset.result === 'ok'", 10, "promote to succeed")
            check(job(delayed)["state"] == "queued", "the gateway says the promoted job is queued")
            page.wait_for("document.querySelector('#job-detail [data-field=state]').dataset.value === 'queued'"
                          " && document.getElementById('action-promote').disabled"
                          " && !document.getElementById('action-remove').disabled", 10, "page: queued, remove enabled")

            # 2. Remove it (the message still says promote's 'ok' until cleared)
            page.eval("document.getElementById('action-message').dataset.result = ''")
            page.click("#action-remove")
            page.wait_for("document.getElementById('action-message').dataset.result === 'ok'", 10, "remove to succeed")
            check(job(delayed) is None, "GET /job of the removed job: 404")

            # 3. Pause, then resume, python from its row
            page.wait_for("document.getElementById('type-python-pause') !== null", 10, "the python row's Pause")
            page.click("#type-python-pause")
            page.wait_for("document.getElementById('queue-message').dataset.result === 'ok'", 10, "pause to succeed")
            check(call("GET", "/stats")[2]["types"]["python"]["paused"] is True, "/stats: python paused")
            page.wait_for("document.querySelector('#types-body tr[data-type=python]').dataset.paused === '1'"
                          " && document.getElementById('type-python-resume') !== null", 10, "row marked paused")
            page.eval("document.getElementById('queue-message').dataset.result = ''")
            page.click("#type-python-resume")
            page.wait_for("document.getElementById('queue-message').dataset.result === 'ok'", 10, "resume to succeed")
            check(call("GET", "/stats")[2]["types"]["python"]["paused"] is False, "/stats: python resumed")

            # 4. Clean failed python jobs: exactly the two failed ones go
            page.wait_for("document.getElementById('type-python-clean-failed') !== null", 10, "Clean failed")
            page.eval("document.getElementById('queue-message').dataset.result = ''")
            page.click("#type-python-clean-failed")
            page.wait_for("document.getElementById('queue-message').dataset.result === 'ok'", 10, "clean to succeed")
            check(page.eval("document.getElementById('queue-message').dataset.removed") == "2", "2 removed")
            for jid, ok in finished.items():
                check((job(jid) is not None) == ok, "after clean failed: %s %s" % (
                    jid, "stays (completed)" if ok else "is gone (failed)"))

            # 5. Clean cancelled java jobs: the cancelled one goes, the
            # queued ones stay
            page.wait_for("document.getElementById('type-java-clean-cancelled') !== null", 10,
                          "Clean cancelled")
            page.eval("document.getElementById('queue-message').dataset.result = ''")
            page.click("#type-java-clean-cancelled")
            page.wait_for("document.getElementById('queue-message').dataset.result === 'ok'", 10,
                          "clean cancelled to succeed")
            check(page.eval("document.getElementById('queue-message').dataset.removed") == "1", "1 removed")
            check(job(cancelled) is None and all(job(jid) is not None for jid in java),
                  "after clean cancelled: the cancelled java job is gone, the queued ones stay")

            # 6. Drain java: its two queued jobs go
            page.eval("document.getElementById('queue-message').dataset.result = ''")
            page.click("#type-java-drain")
            page.wait_for("document.getElementById('queue-message').dataset.result === 'ok'", 10, "drain to succeed")
            check(page.eval("document.getElementById('queue-message').dataset.removed") == "2", "2 drained")
            check(all(job(jid) is None for jid in java), "the drained java jobs are gone")
            page.wait_for("document.getElementById('type-java-waiting').textContent === '0'", 10, "java: 0 waiting")

            # 7. Retry failed on python: 2 new failed jobs run again
            again = []
            for i in range(2):
                _, _, r = call("POST", "/invoke", {"botType": "python", "payload": {"n": i}, "attempts": 1})
                j = w.recv_job(15)
                check(j is not None and j["jobId"] == r["jobId"], "the fake worker gets the python job", j)
                w.done(j["jobId"], ok=False)
                wait_until(lambda: (job(r["jobId"]) or {}).get("state") == "failed", 15, "the job to fail")
                again.append(r["jobId"])
            page.eval("document.getElementById('queue-message').dataset.result = ''")
            page.click("#type-python-retry-failed")
            page.wait_for("document.getElementById('queue-message').dataset.result === 'ok'", 10,
                          "retry failed to succeed")
            check(page.eval("document.getElementById('queue-message').dataset.retried") == "2", "2 retried")
            got = []
            for _ in again:
                j = w.recv_job(15)
                check(j is not None and j["attempt"] == 1, "a retried job is dispatched from attempt 1", j)
                got.append(j["jobId"])
                w.done(j["jobId"], result={"again": True})
            check(sorted(got) == sorted(again), "the retried jobs are the 2 failed ones", got, again)
            for jid in again:
                wait_until(lambda: (job(jid) or {}).get("state") == "completed", 15, "the retried job to complete")
            check(page.eval("document.getElementById('type-webhook-retry-failed') === null"),
                  "the webhook row has no Retry failed")

            errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"]
            check(not errors, "no JavaScript exceptions", errors[:3])
        w.close()


if __name__ == "__main__":
    harness.main(test)

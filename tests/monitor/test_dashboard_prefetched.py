"""test_dashboard_prefetched.py - the dashboard shows a type's prefetched
jobs (STATS prefetched: jobs that wait in their worker for a bot process,
WORKER_PREFETCH) beside its running count.

A real stack (redis + broker + gateway) and a fake worker of credit 2 the
test drives: it takes two python jobs and says one of them waits (PROGRESS
{waiting: true}).  /stats counts it prefetched (1) within running (2); the
page in headless Chromium shows "2 / limit (1 prefetched)" on the python
row and "(1 prefetched)" in the totals.  Once the job begins (PROGRESS
{started: true}) the note goes, running still 2.

Before, the page showed no prefetched count (failed at "the python row
shows 1 prefetched").
"""
import harness
from harness import check, wait_until

import cdp
from fakeworker import FakeWorker
from test_dashboard import start_gateway


def test():
    with harness.Stack("dashboard-prefetched") as s:
        s.redis()
        s.broker(env={"HEARTBEAT_LIVENESS": "30"})
        base = start_gateway(s)

        def python_stats(want):
            status, _, body = harness.http("GET", base + "/stats")
            t = (body.get("types") or {}).get("python", {}) if status == 200 else {}
            return t if all(t.get(k) == v for k, v in want.items()) else None

        w = FakeWorker(s.endpoint, "fw-prefetch", ["python"], 2)
        s.wait_workers(1, "python")
        ids = [harness.http("POST", base + "/invoke", {"botType": "python", "payload": i})[2]["jobId"]
               for i in range(2)]
        got = [w.recv_job(10) for _ in ids]
        check(all(got) and sorted(j["jobId"] for j in got) == sorted(ids),
              "the fake worker gets both jobs", got)
        waiting = ids[1]
        w.send(harness.PROGRESS, {"jobId": waiting, "waiting": True})
        t = wait_until(lambda: python_stats({"prefetched": 1, "running": 2}), 10,
                       "/stats: python prefetched 1 within running 2")

        with cdp.Browser() as browser:
            page = browser.new_page(1440, 1000)
            page.goto(base + "/admin/queues")
            page.wait_for("Number(document.body.dataset.statsUpdates || 0) >= 1", 20, "the page's first stats")
            page.wait_for("document.getElementById('type-python-running') !== null"
                          " && document.getElementById('type-python-running').textContent === '2'", 10,
                          "the python row's running 2")
            shown = page.eval("(function(){ var p = document.getElementById('type-python-prefetched');"
                              " return p ? p.textContent : null; })()")
            check(shown == "1", "the python row shows 1 prefetched", shown)
            cell = page.eval("document.getElementById('type-python-running').parentNode.textContent")
            check(cell == "2 / %d (1 prefetched)" % t["limit"],
                  "the running cell reads running / limit (prefetched)", cell)
            total = page.eval("(function(){ var p = document.getElementById('total-prefetched');"
                              " return p ? p.textContent : null; })()")
            check(total == "1", "the totals row shows 1 prefetched", total)

            w.send(harness.PROGRESS, {"jobId": waiting, "started": True})
            wait_until(lambda: python_stats({"prefetched": 0, "running": 2}), 10,
                       "/stats: python prefetched 0 once the job began")
            page.wait_for("document.getElementById('type-python-prefetched') === null"
                          " && document.getElementById('total-prefetched') === null", 10,
                          "the prefetched note to go once the job began")
            check(page.eval("document.getElementById('type-python-running').textContent") == "2",
                  "running still 2")
        for jid in ids:
            w.done(jid, result=1)
        w.close()


if __name__ == "__main__":
    harness.main(test)

"""test_dashboard_schedules.py - the dashboard's schedules view in headless
Chromium against a real stack (redis + broker + gateway, a fake worker that
completes every run).

Two schedules made over HTTP (POST /schedules): every 400 ms with a limit
of 3 runs, and a cron in a time zone.  The page lists both with what
GET /schedules says: the cron and its zone, the next due time (the same
ms), the runs (of the limit), active or ended; the every-400-ms one is seen
to reach 3 runs and end; its Remove button removes the cron schedule (gone
from GET /schedules and from the page).
"""
import os
import sys
import time
from datetime import datetime

import harness
from harness import check, wait_until

import cdp
from test_dashboard import start_gateway

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "broker"))
from fakeworker import FakeWorker   # noqa: E402


def ms(iso):
    """ms since the epoch of the gateway's ISO time ("...T02:30:00.000Z")."""
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def test():
    with harness.Stack("dashboard-schedules") as s:
        s.redis()
        s.broker(env={"HEARTBEAT_LIVENESS": "30"})
        base = start_gateway(s)

        def call(method, path, body=None):
            return harness.http(method, base + path, body)

        def listed():
            status, _, body = call("GET", "/schedules")
            check(status == 200, "GET /schedules answers 200", status, body)
            return {x["key"]: x for x in body["schedules"]}

        w = FakeWorker(s.endpoint, "fw-sched", ["python"], 5)
        s.wait_workers(1, "python")
        status, _, cron = call("POST", "/schedules", {"key": "nightly-report", "botType": "python",
                                                      "payload": {"r": 1}, "cron": "30 2 * * *",
                                                      "tz": "Europe/Paris"})
        check(status == 200 and ms(cron["nextAt"]) > time.time() * 1000, "cron schedule created", status, cron)

        with cdp.Browser() as browser:
            page = browser.new_page(1440, 1000)
            page.goto(base + "/admin/queues")
            page.wait_for("document.getElementById('schedule-nightly-report-nextAt') !== null", 10,
                          "the cron schedule's row")
            row = page.eval("""(function(){
                var tr = document.querySelector('#schedules-body tr[data-schedule="nightly-report"]');
                var f = function (n) { return tr.querySelector('[data-field=' + n + ']'); };
                return {botType: f('botType').textContent, when: f('when').textContent,
                        nextAt: Number(f('nextAt').dataset.value), runs: f('runs').textContent,
                        state: f('state').textContent};
            })()""")
            check(row == {"botType": "python", "when": "30 2 * * * (Europe/Paris)", "nextAt": ms(cron["nextAt"]),
                          "runs": "0", "state": "active"},
                  "the row shows the cron, its zone, the next due time GET /schedules gives, 0 runs, active", row)

            # An every-400-ms schedule of 3 runs: the page follows it to its end.
            status, _, every = call("POST", "/schedules", {"key": "every-400", "botType": "python",
                                                           "payload": {}, "everyMs": 400, "limit": 3})
            check(status == 200, "every-400 schedule created", status, every)
            runs = []
            deadline = time.monotonic() + 15
            while len(runs) < 3 and time.monotonic() < deadline:
                job = w.recv_job(max(0.1, deadline - time.monotonic()))
                runs.append(job["jobId"])
                w.done(job["jobId"], result=1)
            check(sorted(runs) == sorted("every-400@%d" % (ms(every["nextAt"]) + 400 * k) for k in range(3)),
                  "3 runs, ids <key>@<due ms> 400 ms apart", runs, every["nextAt"])
            page.wait_for("(function(){ var r = document.getElementById('schedule-every-400-runs');"
                          " return r && r.dataset.value === '3' &&"
                          " document.getElementById('schedule-every-400-state').textContent === 'ended'; })()",
                          10, "the page to show every-400 with 3 runs, ended")
            check(page.eval("document.getElementById('schedule-every-400-runs').textContent") == "3 / 3",
                  "runs shown of the limit (3 / 3)")
            api = listed()["every-400"]
            check(api["runs"] == 3 and api["ended"] is True, "GET /schedules agrees: 3 runs, ended", api)
            check(page.eval("document.getElementById('schedule-every-400-when').textContent") == "every 400 ms",
                  "the page shows 'every 400 ms'")
            check(page.eval("document.getElementById('schedules-count').textContent") == "(2)", "2 schedules listed")

            # Remove the cron schedule from its row.
            page.click("#schedule-nightly-report-remove")
            page.wait_for("document.getElementById('schedule-message').dataset.result === 'ok'", 10,
                          "remove to succeed")
            check("nightly-report" not in listed(), "GET /schedules no longer lists nightly-report")
            page.wait_for("document.getElementById('schedule-nightly-report-remove') === null", 10,
                          "the row to go from the page")
            check(page.eval("document.getElementById('schedules-count').textContent") == "(1)", "1 schedule left")
            status, _, body = call("DELETE", "/schedules/nightly-report")
            check(status == 404, "removing it again over HTTP: 404", status, body)

            errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"]
            check(not errors, "no JavaScript exceptions", errors[:3])
        w.close()


if __name__ == "__main__":
    harness.main(test)

"""test_dashboard_children.py - the dashboard counts each type's jobs
waiting for their dependencies (STATS waitingChildren, dependsOn).

A real stack (redis + broker + gateway), no worker for "python": job A is
queued, then two jobs depend on it (POST /invoke dependsOn).  /stats says
python waitingChildren 2; the page in headless Chromium shows "(+2
waiting on dependencies)" beside the python row's waiting count and in the totals; its
state filter offers waiting-children.  A is cancelled: both fail
(dependency_failed) and the notes go.

Before, the page showed no such count (failed at "a dependent is
accepted": status queued, then at "the python row shows 2 waiting for
their dependencies").
"""
import harness
from harness import check, wait_until

import cdp
from test_dashboard import start_gateway


def test():
    with harness.Stack("dashboard-children") as s:
        s.redis()
        s.broker()
        base = start_gateway(s)

        def python_children(want):
            status, _, body = harness.http("GET", base + "/stats")
            t = (body.get("types") or {}).get("python", {}) if status == 200 else {}
            return t if t.get("waitingChildren") == want else None

        a = harness.http("POST", base + "/invoke", {"botType": "python", "payload": 0})[2]["jobId"]
        for i in range(2):
            status, _, body = harness.http("POST", base + "/invoke", {"botType": "python", "payload": i,
                                                                      "dependsOn": [a]})
            check(status == 202 and body["status"] == "waiting-children", "a dependent is accepted",
                  status, body)
        wait_until(lambda: python_children(2), 10, "/stats: python waitingChildren 2")

        with cdp.Browser() as browser:
            page = browser.new_page(1440, 1000)
            page.goto(base + "/admin/queues")
            page.wait_for("Number(document.body.dataset.statsUpdates || 0) >= 1", 20, "the page's first stats")
            page.wait_for("document.getElementById('type-python-waitingChildren') !== null", 10,
                          "the python row's children cell")
            shown = page.eval("document.getElementById('type-python-waitingChildren').textContent")
            check(shown == "2", "the python row shows 2 waiting for their dependencies", shown)
            note = page.eval("document.getElementById('type-python-waitingChildren').parentNode.textContent")
            check(note == " (+2 waiting on dependencies)",
                  "the note says the jobs wait on their dependencies", note)
            total = page.eval("document.getElementById('total-waitingChildren').textContent")
            check(total == "2", "the totals row shows 2", total)
            offered = page.eval("Array.prototype.map.call(document.querySelectorAll("
                                "'#filter-state option'), function (o) { return o.value; })")
            check("waiting-children" in offered, "the state filter offers waiting-children", offered)

            status, _, body = harness.http("POST", base + "/job/%s/cancel" % a)
            check(status == 200, "A is cancelled", status, body)
            wait_until(lambda: python_children(0), 10, "/stats: python waitingChildren 0")
            page.wait_for("document.getElementById('type-python-waitingChildren') === null"
                          " && document.getElementById('total-waitingChildren') === null",
                          15, "the children notes to go once none waits")


if __name__ == "__main__":
    harness.main(test)

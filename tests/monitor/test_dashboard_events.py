"""test_dashboard_events.py - the dashboard follows the gateway's GET /events
stream: a job submitted shows up and changes state in the page at once,
though the page polls only every 10 minutes (?poll=600000), in headless
Chromium against a real stack (redis + broker + a gateway without API keys
and one with, a fake worker that holds the job until the test lets it
finish).

The stream pill says "live", and it is the header's only "live" badge
(before, the polls' own pill said "live" beside it: "a single live badge in
the header, the stream's" failed with ['conn:live', 'stream:live']); the job's row appears (running, the fake worker
took it) and turns completed when the worker sends DONE, with no poll in
between (body data-polls stays unset) and events counted (data-events).
With API keys on, the page sends the key as a header on GET /events too
(read with fetch): the pill says "live" and the job shows up with no poll
(before, EventSource could not send the key and the page only polled: "the
stream pill says live with an API key" failed, the pill said "polling").
Unticking "live" closes the stream (gateway_event_streams 0), ticking it
opens one again.  A click on a job's row whose press and release
straddle a re-render of the list opens the job (before: the browser sent no
click, the pressed row being gone; "the job's detail, opened by the click
across the re-render" failed).  Before, the page only polled every 2 s and had no
stream: "the stream pill says live" failed (no #stream element, no GET
/events).
"""
import harness
from harness import check

import cdp
from test_dashboard import start_gateway
from fakeworker import FakeWorker

POLL_MS = 600000
KEY = "events-key-5c1d"


def row_state(job_id):
    return ("(function(){var r = document.querySelector('#jobs-body tr[data-job-id=\"%s\"]');"
            " return r ? r.dataset.state : null;})()" % job_id)


def wait_page(page, w, expression, what):
    """page.wait_for, the fake worker heartbeating meanwhile (it holds the job)."""
    def seen():
        w.heartbeat()
        return page.eval(expression)
    harness.wait_until(seen, 10, what, interval=0.05)


def test():
    with harness.Stack("dashboard-events") as s:
        s.redis()
        s.broker()
        base = start_gateway(s)
        w = FakeWorker(s.endpoint, "fw-events", ["python"], 2)
        s.wait_workers(1, "python")

        with cdp.Browser() as browser:
            page = browser.new_page(1440, 1000)
            page.goto(base + "/admin/queues?poll=%d" % POLL_MS)
            page.wait_for("(document.getElementById('stream') || {dataset: {}}).dataset.state === 'live'", 10,
                      "the stream pill says live (GET /events open)")
            page.wait_for("Number(document.body.dataset.jobsUpdates || 0) >= 1", 10, "the first job list")
            # One status in the header: the refresh that just worked (it
            # wrote "updated ...") shows no second "live" beside the stream's.
            page.wait_for("document.getElementById('updated').textContent !== ''", 10, "the first refresh done")
            badges = page.eval("""Array.prototype.filter.call(document.querySelectorAll('#status .pill'),
                function (p) { return !p.hidden && p.getClientRects().length > 0; })
                .map(function (p) { return p.id + ':' + p.textContent.trim(); })""")
            live = [b for b in badges if b.endswith(":live")]
            check(live == ["stream:live"], "a single live badge in the header, the stream's", badges)
            polls = page.eval("document.body.dataset.polls || '0'")

            status, _, reply = harness.http("POST", base + "/invoke", {"botType": "python", "payload": {}})
            check(status == 202, "invoke accepted", status, reply)
            job_id = reply["jobId"]
            job = w.recv_job(10)
            check(job and job["jobId"] == job_id, "the fake worker got the job", job)
            wait_page(page, w, row_state(job_id) + " === 'running'",
                      "the job's row, running, before any poll (only the stream explains it)")

            w.send(harness.DONE, {"jobId": job_id, "ok": True, "result": 1, "attempt": job["attempt"]})
            wait_page(page, w, row_state(job_id) + " === 'completed'",
                      "the job's row turns completed before any poll")
            seen = page.eval("""({polls: document.body.dataset.polls || '0',
                events: Number(document.body.dataset.events || 0),
                refreshes: Number(document.body.dataset.eventRefreshes || 0),
                pill: document.getElementById('stream').textContent})""")
            harness.log("page", seen)
            check(seen["polls"] == polls == "0", "no poll ran: the stream alone updated the page", seen)
            check(seen["events"] >= 2 and seen["refreshes"] >= 2,
                  "the job's events reached the page and refreshed it", seen)
            check(seen["pill"] == "live", "the pill still says live", seen)

            # A refresh that re-renders the list between a press and its
            # release (events ask for many) loses no click: the job's detail
            # opens.  Before, the browser sent no click (the pressed row was gone).
            box = page.eval("""(function(){
                var row = document.querySelector('#jobs-body tr[data-job-id="%s"]');
                row.scrollIntoView({block: 'center'});
                var r = row.getBoundingClientRect();
                return [r.left + r.width / 2, r.top + r.height / 2];})()""" % job_id)
            for kind in ("mouseMoved", "mousePressed"):
                page.call("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1],
                                                       "button": "left", "clickCount": 1})
            before = int(page.eval("document.body.dataset.jobsUpdates"))
            page.eval("window.botmesh.refresh(), 0")
            page.wait_for("Number(document.body.dataset.jobsUpdates) > %d" % before, 10,
                      "the job list re-rendered while the button is down")
            page.call("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": box[0], "y": box[1],
                                                   "button": "left", "clickCount": 1})
            page.wait_for("document.body.dataset.detailJob === '%s'" % job_id, 10,
                      "the job's detail, opened by the click across the re-render")

        # With API keys on, the page reads the stream with fetch and sends
        # the key as a header (as on its other requests): the pill says
        # "live" and a job shows up at once, with no poll.  The gateway
        # refuses GET /events without the key, so "live" means the key went.
        keyed = start_gateway(s, {"API_KEYS": KEY})
        w.heartbeat()       # the fake worker stays alive across the waits below (wait_page beats too)
        status, _, reply = harness.http("GET", keyed + "/events")
        check(status == 401, "GET /events without the key is refused", status, reply)
        with cdp.Browser() as browser:
            page = browser.new_page(1440, 1000)
            w.heartbeat()
            page.goto(keyed + "/admin/queues?poll=%d" % POLL_MS)
            wait_page(page, w, "!document.getElementById('auth').hidden", "the API key form")
            page.type_text("#auth-key", KEY)
            page.click("#auth-save")
            wait_page(page, w, "document.getElementById('stream').dataset.state === 'live'",
                      "the stream pill says live with an API key (GET /events open, key sent)")
            wait_page(page, w, "Number(document.body.dataset.jobsUpdates || 0) >= 1", "the first job list (key)")
            status, _, reply = harness.http("POST", keyed + "/invoke", {"botType": "python", "payload": {}},
                                            headers={"X-API-Key": KEY})
            check(status == 202, "invoke accepted (key)", status, reply)
            job = w.recv_job(10)
            check(job and job["jobId"] == reply["jobId"], "the fake worker got the second job", job)
            wait_page(page, w, row_state(reply["jobId"]) + " === 'running'",
                      "the second job's row, running, before any poll (the keyed stream)")
            seen = page.eval("""({polls: document.body.dataset.polls || '0',
                events: Number(document.body.dataset.events || 0),
                pill: document.getElementById('stream').textContent})""")
            harness.log("keyed page", seen)
            check(seen["polls"] == "0", "no poll ran: the keyed stream updated the page", seen)
            check(seen["events"] >= 1 and seen["pill"] == "live", "events came on the keyed stream", seen)

            # Unticking "live" aborts the fetch: the gateway sees its stream
            # leave (gateway_event_streams back to 0); ticking it opens one again.
            def streams():
                _, _, text = harness.http("GET", keyed + "/metrics", headers={"X-API-Key": KEY})
                for line in str(text).splitlines():
                    if line.startswith("gateway_event_streams "):
                        return float(line.split()[1])
                raise harness.TestFailure("no gateway_event_streams in /metrics")
            check(streams() == 1, "the keyed page holds one stream", streams())
            page.click("#live")
            wait_page(page, w, "document.getElementById('stream').dataset.state === 'off'",
                      "the pill says paused (live unticked)")
            harness.wait_until(lambda: w.heartbeat() or streams() == 0, 10, "the gateway's stream closed (live unticked)")
            page.click("#live")
            wait_page(page, w, "document.getElementById('stream').dataset.state === 'live'",
                      "the pill says live again (live ticked)")
            harness.wait_until(lambda: w.heartbeat() or streams() == 1, 10, "one stream again (live ticked)")
        w.close()


if __name__ == "__main__":
    harness.main(test)

"""test_dashboard_alerts.py - the dashboard flags what needs an operator.

redis + broker + a Python worker for the python type + the webhook manager +
the gateway, the page in headless Chromium.  Jobs of the node type (known,
no worker serves it) wait: the node row is flagged "no workers" (row class
alerting, data-alert, a badge) while the python row is not; once a node
worker connects and runs them the flag goes.  A webhook delivery that fails
after its retries (a refused connection, WEBHOOK_MAX_RETRIES=0) shows as a
badge in the header and on the webhook chart, not only in the chart.  With
Redis stopped the gateway cannot read the history: the badges then say the
count is unknown (data-failed="unknown"), never 0 nor hidden.
Keeps a screenshot in $BOTMESH_ARTIFACTS/dashboard_alerts.png.
"""
import os
import sys

import harness
from harness import check, log, wait_until

import cdp

HERE = os.path.dirname(os.path.abspath(__file__))

ROW_STATE = """(function(){
    var out = {};
    document.querySelectorAll('#types-body tr[data-type]').forEach(function (tr) {
        var badge = document.getElementById('type-' + tr.dataset.type + '-alert');
        out[tr.dataset.type] = {alert: tr.dataset.alert || '', cls: tr.className,
                                badge: badge ? badge.textContent : '',
                                bg: getComputedStyle(tr.cells[0]).backgroundColor};
    });
    return out;
})()"""

WEBHOOK_STATE = """(function(){
    var h = document.getElementById('webhook-alert'), c = document.getElementById('webhook-chart-alert');
    return {header: h.hidden ? null : h.textContent, chart: c.hidden ? null : c.textContent,
            failed: Number(h.dataset.failed), raw: h.dataset.failed, chartRaw: c.dataset.failed,
            box: document.getElementById('chart-webhook').parentNode.classList.contains('alerting')};
})()"""


def test():
    shot = harness.artifact("dashboard_alerts.png")
    if not os.path.exists(os.path.join(harness.BIN, "botmesh-webhook")):
        raise harness.TestFailure("botmesh-webhook is not built")

    with harness.Stack("dashboard-alerts") as s:
        redis = s.redis()
        s.broker(env={"METRICS_SNAPSHOT_INTERVAL": "1"})
        s.spawn("pyworker", [sys.executable, os.path.join(HERE, "pyworker.py"), s.endpoint, "python", "2"])
        s.wait_workers(1, "python")
        wh = s.spawn("webhook-manager", [s.bin("botmesh-webhook")], {
            "WEBHOOK_MANAGER_PORT": "0", "WEBHOOK_LISTEN_ADDR": "127.0.0.1", "WEBHOOK_ALLOW_PRIVATE": "1",
            "WEBHOOK_MAX_RETRIES": "0", "WEBHOOK_CONNECT_TIMEOUT_MS": "2000", "BROKER_ENDPOINT": s.endpoint})
        wh.listening("http")
        s.wait_workers(1, "webhook")
        gw = s.spawn("gateway", [s.bin("botmesh-gateway")], {
            "API_GATEWAY_PORT": "0", "GATEWAY_LISTEN": "127.0.0.1", "BROKER_ENDPOINT": s.endpoint,
            "WEBHOOK_ALLOW_PRIVATE": "1"})      # as the webhook manager: receivers on 127.0.0.1
        base = "http://127.0.0.1:%d" % gw.listening("http")
        wait_until(lambda: harness.http("GET", base + "/health")[0] == 200, 15, "gateway /health")

        def invoke(body):
            status, _, reply = harness.http("POST", base + "/invoke", body)
            check(status in (200, 201, 202), "invoke %s accepted" % body["botType"], status, reply)
            return reply["jobId"]

        def stats_type(name):
            return harness.http("GET", base + "/stats")[2]["types"].get(name, {})

        with cdp.Browser() as browser:
            page = browser.new_page(1400, 1000)
            page.goto(base + "/admin/queues")
            page.wait_for("Number(document.body.dataset.statsUpdates || 0) >= 1 && "
                          "!!document.querySelector('#types-body tr[data-type=\"node\"]')", 20, "the types table")

            # Healthy: python served, node idle with no worker, webhooks fine
            first = invoke({"botType": "python", "payload": {"n": 1}})
            wait_until(lambda: stats_type("python").get("completed") == 1, 20, "the python job to complete")
            rows = page.eval(ROW_STATE)
            check(not rows["python"]["alert"] and not rows["python"]["badge"], "python row not flagged", rows["python"])
            check(not rows["node"]["alert"], "node row not flagged while nothing waits for it", rows["node"])
            all_workers = page.eval("Number(document.querySelector('#totals tr[data-type=\"*\"] "
                                    "[data-field=workers]').textContent)")
            check(all_workers == 1, "the 'all' row counts the bot worker, not the webhook manager", all_workers)
            hooks = page.eval(WEBHOOK_STATE)
            check(hooks["header"] is None and hooks["chart"] is None and not hooks["box"],
                  "no webhook failure badge on a healthy stack", hooks)

            # Staged: node jobs wait, no node worker
            node_jobs = [invoke({"botType": "node", "payload": {"n": i}}) for i in range(2)]
            wait_until(lambda: stats_type("node").get("waiting") == 2, 10, "2 node jobs queued")
            page.wait_for("(document.querySelector('#types-body tr[data-type=\"node\"]') || {dataset: {}})"
                          ".dataset.alert === 'no-workers'", 15, "the node row flagged no-workers")
            # The row is flagged from the first waiting job on: the page's
            # poll may have seen one of the two; its next one sees both.
            page.wait_for("((document.getElementById('type-node-alert') || {}).title || '')"
                          ".indexOf('2 queued') >= 0", 15, "the badge's title to count both node jobs")
            rows = page.eval(ROW_STATE)
            node = rows["node"]
            check(node["badge"] == "no workers" and "alerting" in node["cls"], "node row reads 'no workers'", node)
            check(node["bg"] != rows["python"]["bg"], "the flagged row has its own colour", node, rows["python"])
            check(not rows["python"]["alert"], "python row still not flagged", rows["python"])
            title = page.eval("document.getElementById('type-node-alert').title")
            check("2 queued" in title, "the badge's title says how many wait", title)

            # Staged: a webhook delivery fails (connection refused, no retry)
            dead = "http://127.0.0.1:%d/hook" % harness.free_port()
            hooked = invoke({"botType": "python", "payload": {"n": 2}, "webhookUrl": dead})

            def delivery_failed():
                status, _, rec = harness.http("GET", base + "/job/" + hooked)
                return status == 200 and (rec.get("webhook") or {}).get("state") == "failed"
            wait_until(delivery_failed, 30, "the webhook delivery to fail")
            page.wait_for("Number(document.getElementById('webhook-alert').dataset.failed) >= 1", 20,
                          "the webhook failure badge")
            hooks = page.eval(WEBHOOK_STATE)
            check(hooks["failed"] == 1 and hooks["header"] == "1 webhook delivery failed in the last 5 min"
                  and hooks["chart"] == hooks["header"] and hooks["box"],
                  "header and chart badges name the failed delivery", hooks)
            page.screenshot(shot)
            log("screenshot", shot)

            # A node worker connects and runs them: the flag goes
            s.spawn("nodeworker", [sys.executable, os.path.join(HERE, "pyworker.py"), s.endpoint, "node", "2"])
            wait_until(lambda: stats_type("node").get("completed") == 2, 20, "the node jobs to complete")
            page.wait_for("(document.querySelector('#types-body tr[data-type=\"node\"]') || {dataset: {}})"
                          ".dataset.alert === undefined", 15, "the node row's flag to go")
            rows = page.eval(ROW_STATE)
            check(not rows["node"]["badge"] and "alerting" not in rows["node"]["cls"], "node row no longer flagged",
                  rows["node"])
            log("jobs", first, node_jobs, hooked)

            # Redis goes away: the history cannot be read, so the number of
            # failed deliveries is unknown, and the badges say so.
            redis.stop()
            wait_until(lambda: harness.http("GET", base + "/api/history")[0] == 503, 15,
                       "the gateway's /api/history to answer 503 without Redis")
            page.wait_for("document.getElementById('webhook-alert').dataset.failed === 'unknown'", 20,
                          "the webhook badge to say the count is unknown")
            hooks = page.eval(WEBHOOK_STATE)
            check(hooks["raw"] == "unknown" and hooks["chartRaw"] == "unknown"
                  and hooks["header"] == "failed webhook deliveries: unknown (no history)"
                  and hooks["chart"] == hooks["header"] and not hooks["box"],
                  "during a Redis outage both badges say the count is unknown (not hidden at 0)", hooks)


if __name__ == "__main__":
    harness.main(test)

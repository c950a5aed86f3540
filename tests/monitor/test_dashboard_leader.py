"""test_dashboard_leader.py - the dashboard names the leading broker.

Two real brokers with BROKER_HA=redis on one real redis-server, a gateway
given both endpoints.  /stats carries leader {endpoint, epoch, ha}; the page
in headless Chromium shows the leader's endpoint and epoch.  The leader is
killed with SIGKILL: the gateway moves to the standby, which takes the
lease, and the page names the new leader with the next epoch.
"""
import os
import sys

import harness
from harness import check, log, wait_until

import cdp

sys.path.insert(0, os.path.join(harness.ROOT, "tests", "broker"))
import hatest  # noqa: E402


def test():
    with harness.Stack("dashboard-leader") as s:
        s.redis()
        pair = hatest.HaPair(s)
        first = pair.wait_leader()
        second = pair.other(first)
        log("leader %s (%s), standby %s" % (first, pair.endpoint(first), second))
        gw = s.spawn("gateway", [s.bin("botmesh-gateway")], {
            "API_GATEWAY_PORT": "0", "GATEWAY_LISTEN": "127.0.0.1", "BROKER_ENDPOINT": pair.endpoints()})
        base = "http://127.0.0.1:%d" % gw.listening("http")

        def leader():
            status, _, body = harness.http("GET", base + "/stats")
            return body.get("leader") if status == 200 else None
        lead = wait_until(leader, 15, "/stats through the gateway")
        check(lead == {"endpoint": pair.endpoint(first), "epoch": 1, "ha": "redis"},
              "/stats names the leader, epoch 1", lead)

        with cdp.Browser() as browser:
            page = browser.new_page(1280, 800)
            page.goto(base + "/admin/queues")
            page.wait_for("document.getElementById('leader').dataset.state === 'ok'", 15, "the leader pill")
            text = page.eval("document.getElementById('leader').textContent")
            check(text == "leader %s (epoch 1)" % pair.endpoint(first), "the page names the leader", text)

            pair.procs[first].kill()
            log("leader %s killed with SIGKILL" % first)
            pair.wait_leader(timeout=10, other_than=first)
            want = "leader %s (epoch 2)" % pair.endpoint(second)
            page.wait_for("document.getElementById('leader').textContent === %r" % want, 20,
                          "the page to name the new leader")
            check(page.eval("document.getElementById('leader').dataset.epoch") == "2",
                  "the page shows the new epoch")
            lead = leader()
            check(lead == {"endpoint": pair.endpoint(second), "epoch": 2, "ha": "redis"},
                  "/stats names the new leader", lead)


if __name__ == "__main__":
    harness.main(test)

"""An idle webhook manager exits promptly at SIGTERM (webhook/README.md,
"SIGTERM/SIGINT"): READY credit 0, then, after a settle period of 200 ms
for JOBs the broker sent before it read that READY, DISCONNECT and exit 0,
within 2.5 s, whatever its heartbeat interval.

A fake broker; the manager's HEARTBEAT_INTERVAL_MS is 5000.  Before, the
settle period was one heartbeat interval: the manager took 5 s to exit."""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check
import whlib
from whlib import DISCONNECT, READY


def main():
    with harness.Stack("wh-idle-exit") as s:
        broker, mgr = whlib.manager_on_fake_broker(s, {"HEARTBEAT_INTERVAL_MS": "5000"})
        t0 = time.monotonic()
        mgr.signal(signal.SIGTERM)
        _, _, ready = broker.expect_cmd(READY, what="READY credit 0")
        check(ready["credit"] == 0, "SIGTERM: READY credit 0", ready)
        broker.expect_cmd(DISCONNECT, timeout=10)
        rc = mgr.p.wait(10)
        took = time.monotonic() - t0
        check(rc == 0 and took < 2.5, "the idle manager exits 0 within 2.5 s of SIGTERM, "
              "not after a 5 s heartbeat interval (took %.2f s)" % took, rc)
        check("stopped" in mgr.output(), "it logged its stop", mgr.output()[-500:])
        broker.close()


if __name__ == "__main__":
    harness.main(main)

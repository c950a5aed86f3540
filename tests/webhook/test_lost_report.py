"""A report the manager could not send names its job in the log line.

A fake broker hands the real manager a delivery the receiver holds 2 s;
SIGTERM starts the drain (the request may finish), then the broker says
another process took the name (DISCONNECT replaced): a stopping manager
closes its connection for good.  The delivery's DONE then has no socket
to go to: the WARN line saying so carries job=<its id>.

Before, the manager passed no job id with its reports: the line named no
job (and after a first failure, such lines went at DEBUG level only)."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, wait_until
import whlib
from whlib import DISCONNECT, JOB, READY, job


def main():
    with harness.Stack("wh-lost-report") as s:
        receiver = whlib.mock(s)
        broker, mgr = whlib.manager_on_fake_broker(s)
        whlib.mock_mode(receiver, delayMs=2000)
        broker.send(JOB, job("r1.wh1", receiver.url + "/hook", '{"jobId":"r1"}'))
        wait_until(lambda: len(whlib.mock_deliveries(receiver, "r1")) == 1, 10,
                   "the request to reach the receiver (held there 2 s)")
        mgr.signal(signal.SIGTERM)
        _, _, ready = broker.expect_cmd(READY, what="READY credit 0 (draining)")
        check(ready["credit"] == 0, "SIGTERM: READY credit 0", ready)
        broker.send(DISCONNECT, {"reason": "replaced", "by": "pid 1 at test"})
        wait_until(lambda: "could not send DONE" in mgr.output(), 10,
                   "the manager to fail sending the delivery's DONE")
        lines = [l for l in mgr.output().splitlines() if "could not send DONE" in l]
        check(any("WARN" in l and "job=r1.wh1" in l for l in lines),
              "the WARN line names the job", lines)
        rc = mgr.stop(timeout=30)
        check(rc == 0, "the manager exits 0", rc)


if __name__ == "__main__":
    harness.main(main)

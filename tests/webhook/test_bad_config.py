"""Settings that would quietly change how deliveries behave stop the
webhook manager at start, with a line naming the variable and why.

WEBHOOK_MAX_DELAY=0 caps every wait at nothing: no backoff, Retry-After
ignored.  Before, the manager started with it and retried at once."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check
import whlib


def main():
    with harness.Stack("wh-bad-config") as s:
        p = whlib.manager(s, {"WEBHOOK_MAX_DELAY": "0"}, wait=False)
        rc = p.p.wait(10)
        lines = [l for l in p.output().splitlines() if "WEBHOOK_MAX_DELAY" in l]
        check(rc != 0 and any("ERROR" in l and "at least 1 ms" in l and "Retry-After" in l for l in lines),
              "WEBHOOK_MAX_DELAY=0 stops the manager at start, saying why", rc, lines)
        p = whlib.manager(s, {"WEBHOOK_MAX_DELAY": "1"}, name="webhook-ok")
        check(p.alive(), "WEBHOOK_MAX_DELAY=1 is taken")
        whlib.stop_clean(p)


if __name__ == "__main__":
    harness.main(main)

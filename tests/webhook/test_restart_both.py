"""The broker and the webhook manager stopped together (SIGTERM both, as
`./botmesh restart broker webhook-manager` or `down`/`up` do) while a
delivery waits for its retry, then started again from Redis: the delivery
counts on from the attempts made before.

The receiver fails the first two arrivals (503) and answers the third.
The manager stops first and RELEASEs the waiting delivery to the broker
("re-queued (released) after 2 delivery attempts"), then the broker stops.
The new broker dispatches the delivery with its state, and the new
manager's try is attempt 3: the receiver sees X-Delivery-Attempt 1, 2, 3
and the job's webhook ends delivered after 3 attempts.

Before, the delivery's own record in Redis had no webhook state (it lived
only in the old broker's memory): the new manager started over, the
receiver saw 1, 2, 1 and the job's webhook said attempts 1 (and the
WEBHOOK_MAX_RETRIES budget started again).  The broker logged "re-queued
(released) after attempt 0"."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, log, wait_until
import whlib

HB = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "3"}
WH = dict(HB, WEBHOOK_RETRY_DELAY="2000", WEBHOOK_JITTER="none", WEBHOOK_MAX_RETRIES="5")


def webhook(c, job_id):
    return (c.status(job_id) or {}).get("webhook") or {}


def attempt_headers(mock, job_id):
    return [{k.lower(): v for k, v in d["headers"].items()}.get("x-delivery-attempt")
            for d in whlib.mock_deliveries(mock, job_id)]


def main():
    with harness.Stack("wh-restart-both") as s:
        s.redis()
        broker = s.broker(env=dict(HB))
        s.worker("--noop", "--type", "python", "--concurrency", "1", env=HB)
        mock = whlib.mock(s)
        mgr = whlib.manager(s, WH, name="hooks")
        s.wait_workers(1, "webhook")
        c = s.client()

        whlib.mock_mode(mock, failFirst=2, status=503)
        job = c.submit("python", {"i": 1}, webhookUrl=mock.url + "/hook")
        wait_until(lambda: webhook(c, job).get("state") == "retrying"
                   and webhook(c, job).get("attempts") == 2, 20,
                   "two attempts to fail and the delivery to wait 4 s for its third")
        c.close()

        log("SIGTERM the manager, then the broker; start both again")
        mgr.signal(15)
        delivery = job + ".wh1"
        wait_until(lambda: any(delivery in l and "re-queued (released)" in l
                               for l in broker.output().splitlines()), 10,
                   "the stopping manager's RELEASE to reach the broker")
        released = [l for l in broker.output().splitlines()
                    if delivery in l and "re-queued (released)" in l]
        check(released[-1].endswith("re-queued (released) after 2 delivery attempts"),
              "the broker names the delivery attempts made so far", released)
        check(mgr.stop(timeout=30) == 0, "the manager stopped cleanly", mgr.output()[-1500:])
        check(broker.stop(timeout=30) == 0, "the broker stopped cleanly", broker.output()[-1500:])

        broker = s.broker(env=dict(HB))
        mgr = whlib.manager(s, WH, name="hooks")
        c = s.client()
        wait_until(lambda: webhook(c, job).get("state") in ("delivered", "failed"), 20,
                   "the delivery to end after the restart")
        state = webhook(c, job)
        headers = attempt_headers(mock, job)
        check(headers == ["1", "2", "3"],
              "X-Delivery-Attempt counts on across the restart: 1, 2, 3", headers)
        check(state.get("state") == "delivered" and state.get("attempts") == 3,
              "the job's webhook: delivered after 3 attempts", state)
        check("resuming delivery" in mgr.output() and "after 2 attempts" in mgr.output(),
              "the new manager resumed after 2 attempts",
              [l for l in mgr.output().splitlines() if delivery in l])
        c.close()
        whlib.stop_clean(mgr)


harness.main(main)

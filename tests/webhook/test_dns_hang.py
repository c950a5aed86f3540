"""A DNS server that never answers does not freeze the webhook manager.

The manager runs in its own mount namespace (unshare -m) with
/etc/resolv.conf bound to a file naming 127.0.0.77, where this test holds
a UDP socket open and never answers.  With WEBHOOK_TIMEOUT_MS=1000:

1. a delivery to a host name fails within the timeout plus slack
   (retryable, one attempt: WEBHOOK_MAX_RETRIES=0), while heartbeats go on
   (no gap over ~1 s between the manager's messages);
2. past WEBHOOK_MAX_RESOLVING host name lookups that did not answer (the
   lookups of ended attempts still count, until the resolver gives up),
   a delivery to a host name is not tried: retryable at once with a clear
   lastError, the loop still free; an IP literal is still delivered.

Before the manager set CURLOPT_QUICK_EXIT, the end of an attempt whose
lookup was still under way waited for the resolver thread: part 1 saw the
outcome only after ~10 s, and no message for as long (the broker would
have dropped the manager).  Skipped (exit 77, with a log line) where the
test cannot bind port 53 or unshare -m is not allowed."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, log
import whlib
from whlib import DONE, JOB

DNS = "127.0.0.77"
TIMEOUT_MS = 1000
SLACK_S = 2.0


def largest_gap(broker, since):
    """The longest silence (s) between the manager's messages since since."""
    times = [m.at for m in broker.messages if m.at >= since and m.header == whlib.W]
    return max((b - a for a, b in zip(times, times[1:])), default=0.0)


def outcome(broker, job_id):
    _, _, body = broker.expect_cmd(DONE, job_id, timeout=30, what="the DONE of " + job_id)
    return body


def main():
    whlib.silent_name_server(DNS)
    with harness.Stack("wh-dns-hang") as s:
        env = {"WEBHOOK_TIMEOUT_MS": str(TIMEOUT_MS), "WEBHOOK_CONNECT_TIMEOUT_MS": str(TIMEOUT_MS),
               "WEBHOOK_MAX_RETRIES": "0", "WEBHOOK_MAX_RESOLVING": "2"}
        wrap = whlib.dns_wrap(s, DNS)
        broker = whlib.FakeBroker()
        s.endpoint = broker.endpoint
        mgr = whlib.manager(s, dict(env, HEARTBEAT_INTERVAL_MS=str(whlib.HB)), wrap=wrap)
        broker.expect_cmd(whlib.READY, what="the manager's READY")
        receiver = whlib.mock(s)

        log("part 1: one delivery to a name the DNS server never answers for")
        t0 = time.monotonic()
        broker.send(JOB, whlib.job("d1.wh1", "http://hang.test/hook", "{}"))
        done = outcome(broker, "d1.wh1")
        took = time.monotonic() - t0
        check(not done["ok"] and "timed out" in done["webhook"]["lastError"],
              "the delivery failed on its timeout", done)
        check(took < TIMEOUT_MS / 1000 + SLACK_S, "its outcome came within the timeout plus "
              "%.1f s (%.2f s)" % (SLACK_S, took))
        broker.pump(1.0)
        gap = largest_gap(broker, t0)
        check(gap < 1.0, "no gap over 1 s between the manager's messages (largest %.2f s)" % gap)

        log("part 2: two more lookups hang (WEBHOOK_MAX_RESOLVING=2), the next is not tried")
        t1 = time.monotonic()
        broker.send(JOB, whlib.job("d2.wh1", "http://hang2.test/hook", "{}"))
        outcome(broker, "d2.wh1")
        broker.send(JOB, whlib.job("d3.wh1", "http://hang3.test/hook", "{}"))
        done = outcome(broker, "d3.wh1")
        check("DNS" in done["webhook"]["lastError"] and "WEBHOOK_MAX_RESOLVING" in done["webhook"]["lastError"],
              "past the cap a delivery to a host name is not tried, and says why", done)
        check(time.monotonic() - t1 < TIMEOUT_MS / 1000 + SLACK_S,
              "... at once (after d2's own timeout)")
        broker.send(JOB, whlib.job("d4.wh1", receiver.url + "/hook", "{}"))
        done = outcome(broker, "d4.wh1")
        check(done["ok"], "an IP literal is still delivered", done)
        gap = largest_gap(broker, t1)
        check(gap < 1.0, "no gap over 1 s between the manager's messages (largest %.2f s)" % gap)
        stats = whlib.get_json(mgr.url + "/stats")
        check(stats["dnsPending"] >= 2, "/stats shows the lookups still pending", stats)
        whlib.stop_clean(mgr, receiver)


harness.main(main)

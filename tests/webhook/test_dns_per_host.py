"""A host name whose DNS never answers holds at most
WEBHOOK_MAX_RESOLVING_PER_HOST lookups: deliveries to other hosts go on.

The manager runs in its own mount namespace (unshare -m) with
/etc/resolv.conf bound to a file naming 127.0.0.78, where this test holds
a UDP socket open and never answers, and /etc/hosts bound to a file that
names only good.test and burst.test (127.0.0.1).  WEBHOOK_TIMEOUT_MS=1000,
WEBHOOK_MAX_RESOLVING=4, WEBHOOK_MAX_RESOLVING_PER_HOST=2,
WEBHOOK_MAX_RETRIES=0, WEBHOOK_CONNECT_TO maps mapped.test:80 to the
mock's 127.0.0.1 address.

0. Twelve deliveries at once to burst.test (in /etc/hosts): two lookups,
   the others wait for them (not counted as attempts); all are delivered
   on their first attempt.
1. Four deliveries to hang.test at once: two are looked up (and time out),
   the other two wait for those lookups, then are not tried (the per-host
   cap, saying so); /stats dnsPending is 2.  A delivery to good.test is
   then delivered on its first attempt.
2. Two deliveries to hang2.test fill WEBHOOK_MAX_RESOLVING (4 pending): a
   delivery to hang3.test is not tried (the total stays bounded), but
   mapped.test (WEBHOOK_CONNECT_TO to an IP address) and localhost need no
   lookup and are delivered on their first attempt.

Before, every lookup counted against one cap: the four hang.test
deliveries all started lookups (dnsPending 4), and that one name kept every
other host name from being tried; a host that WEBHOOK_CONNECT_TO maps to an
IP address (and localhost) counted as a lookup too and was not tried once
the cap was full.  Skipped (exit 77, with a log line) where the test cannot
bind port 53 or unshare -m is not allowed."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, log
import whlib
from whlib import DONE, JOB

DNS = "127.0.0.78"
TIMEOUT_MS = 1000


def outcomes(broker, job_ids):
    """The DONE bodies of job_ids, by job id, in whatever order they come."""
    got = {}
    while len(got) < len(job_ids):
        _, _, body = broker.expect(lambda h, c, b: h == whlib.W and c == DONE and isinstance(b, dict)
                                   and b.get("jobId") in job_ids and b.get("jobId") not in got,
                                   30, "the DONEs of %s (have %s)" % (job_ids, sorted(got)))
        got[body["jobId"]] = body
    return got


def delivered_first_time(broker, job_id, url, what):
    broker.send(JOB, whlib.job(job_id, url, '{"jobId":"%s"}' % job_id.split(".wh")[0]))
    done = outcomes(broker, [job_id])[job_id]
    check(done["ok"] and done["webhook"]["attempts"] == 1, what + ": delivered on its first attempt", done)


def main():
    whlib.silent_name_server(DNS)
    with harness.Stack("wh-dns-per-host") as s:
        #  No localhost line: libcurl answers localhost itself.  A lookup
        #  stays pending 15 s x 2 + 1 s: longer than the whole test.
        wrap = whlib.dns_wrap(s, DNS, hosts="127.0.0.1 good.test burst.test\n", timeout=15)
        receiver = whlib.mock(s)
        env = {"WEBHOOK_TIMEOUT_MS": str(TIMEOUT_MS), "WEBHOOK_CONNECT_TIMEOUT_MS": str(TIMEOUT_MS),
               "WEBHOOK_MAX_RETRIES": "0", "WEBHOOK_MAX_RESOLVING": "4",
               "WEBHOOK_MAX_RESOLVING_PER_HOST": "2",
               "WEBHOOK_CONNECT_TO": "mapped.test:80:127.0.0.1:%d" % receiver.port,
               "HEARTBEAT_INTERVAL_MS": str(whlib.HB)}
        broker = whlib.FakeBroker()
        s.endpoint = broker.endpoint
        mgr = whlib.manager(s, env, wrap=wrap)
        broker.expect_cmd(whlib.READY, what="the manager's READY")

        log("part 0: a burst to a name that answers waits for its first lookups, not counted")
        burst = ["b%d.wh1" % i for i in range(1, 13)]
        for j in burst:
            broker.send(JOB, whlib.job(j, "http://burst.test:%d/hook" % receiver.port, "{}"))
        done = outcomes(broker, burst)
        check(all(d["ok"] and d["webhook"]["attempts"] == 1 for d in done.values()),
              "12 deliveries at once to burst.test: all delivered on their first attempt",
              [d for d in done.values() if not d["ok"] or d["webhook"]["attempts"] != 1])

        log("part 1: four deliveries to hang.test at once, then one to good.test")
        hung = ["h%d.wh1" % i for i in range(1, 5)]
        for j in hung:
            broker.send(JOB, whlib.job(j, "http://hang.test/hook", "{}"))
        done = outcomes(broker, hung)
        errors = sorted(d["webhook"]["lastError"] for d in done.values())
        check(all(not d["ok"] for d in done.values()), "the four deliveries to hang.test failed", errors)
        timed_out = [e for e in errors if "timed out" in e]
        not_tried = [e for e in errors if "not tried" in e and "hang.test" in e
                     and "WEBHOOK_MAX_RESOLVING_PER_HOST=2" in e]
        check(len(timed_out) == 2 and len(not_tried) == 2,
              "two were looked up and timed out, two were not tried, naming the host and the "
              "per-host cap", errors)
        stats = whlib.get_json(mgr.url + "/stats")
        check(stats["dnsPending"] == 2, "/stats: the two abandoned lookups of hang.test pending",
              stats["dnsPending"])
        delivered_first_time(broker, "g1.wh1", "http://good.test:%d/hook" % receiver.port,
                             "good.test, while hang.test's lookups hang")

        log("part 2: hang2.test fills WEBHOOK_MAX_RESOLVING; no-lookup hosts still go")
        hung2 = ["k1.wh1", "k2.wh1"]
        for j in hung2:
            broker.send(JOB, whlib.job(j, "http://hang2.test/hook", "{}"))
        done = outcomes(broker, hung2)
        check(all("timed out" in d["webhook"]["lastError"] for d in done.values()),
              "both deliveries to hang2.test were looked up and timed out",
              [d["webhook"]["lastError"] for d in done.values()])
        check(whlib.get_json(mgr.url + "/stats")["dnsPending"] == 4, "/stats: 4 lookups pending")
        broker.send(JOB, whlib.job("x1.wh1", "http://hang3.test/hook", "{}"))
        error = outcomes(broker, ["x1.wh1"])["x1.wh1"]["webhook"]["lastError"]
        check("not tried" in error and "WEBHOOK_MAX_RESOLVING=4" in error,
              "past WEBHOOK_MAX_RESOLVING a third name is not tried: the total stays bounded", error)
        delivered_first_time(broker, "m1.wh1", "http://mapped.test/hook",
                             "mapped.test (WEBHOOK_CONNECT_TO to an IP address), the cap full")
        delivered_first_time(broker, "l1.wh1", "http://localhost:%d/hook" % receiver.port,
                             "localhost, the cap full")
        check(whlib.get_json(mgr.url + "/stats")["dnsPending"] == 4, "/stats: still 4 lookups pending")
        whlib.stop_clean(mgr, receiver)


harness.main(main)

"""WEBHOOK_MAX_HELD_BYTES bounds the bytes of the bodies a webhook manager
holds, not only their count (WEBHOOK_CONCURRENCY).

Against a fake broker, with a budget of 100,000 bytes and a receiver that
holds each request 1.5 s:
1. two 40 KB deliveries are taken; a third does not fit: it is handed back
   (RELEASE) and the manager announces credit 0 (READY), /stats and
   webhook_credit say 0;
2. once both are delivered the credit comes back (READY 10000);
3. a 150 KB body, larger than the whole budget, is taken when nothing else
   is held (never a stuck delivery), and delivered;
4. the budget counts what a delivery holds, not only its body: with a
   budget of 10,000 bytes, of eight deliveries with 2,000-byte URLs and
   30-byte bodies some are handed back (RELEASE, READY credit 0), and
   /stats heldBytes counts the URLs of those held.

Before the budget the manager took the third delivery (no RELEASE, no
READY credit 0): 100 held 1.5 MB bodies took its RSS from 15.6 to 200 MB.
Before the budget counted URLs (bodies only), part 4 took all eight: no
RELEASE within 10 s."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, http, log
import whlib
from whlib import DONE, JOB, READY, RELEASE

BUDGET = 100000


def body(job_id, size):
    head = '{"jobId":"%s","pad":"' % job_id.split(".wh")[0]
    return head + "x" * (size - len(head) - 2) + '"}'


def expect_credit(broker, credit, what):
    """The READY that changes the credit to credit (a READY of a new socket,
    after a reconnect on a loaded machine, lists running and is not it)."""
    _, _, ready = broker.expect(lambda h, c, b: c == READY and isinstance(b, dict)
                                and b.get("credit") == credit and "running" not in b, 10, what)
    return ready


def credit_metric(mgr):
    _, _, text = http("GET", mgr.url + "/metrics")
    for line in text.splitlines():
        if line.startswith("webhook_credit "):
            return float(line.split()[1])
    return None


def main():
    with harness.Stack("wh-held-bytes") as s:
        receiver = whlib.mock(s)
        broker, mgr = whlib.manager_on_fake_broker(s, {"WEBHOOK_MAX_HELD_BYTES": str(BUDGET)})
        whlib.mock_mode(receiver, delayMs=1500)
        hook = receiver.url + "/hook"

        log("part 1: 2 x 40 KB taken, the third does not fit")
        for j in ("b1.wh1", "b2.wh1"):
            broker.send(JOB, whlib.job(j, hook, body(j, 40000)))
        harness.wait_until(lambda: whlib.get_json(mgr.url + "/stats")["held"] == 2, 10,
                           "the manager to hold both")
        broker.send(JOB, whlib.job("b3.wh1", hook, body("b3.wh1", 40000)))
        broker.expect_cmd(RELEASE, "b3.wh1", what="the third handed back (RELEASE)")
        check(True, "the third delivery, past the budget, is RELEASEd")
        expect_credit(broker, 0, "READY with credit 0")
        check(True, "READY announces credit 0")
        stats = whlib.get_json(mgr.url + "/stats")
        check(stats["credit"] == 0 and stats["held"] == 2 and 80000 <= stats["heldBytes"] <= BUDGET,
              "/stats: credit 0, 2 held, their bytes under the budget", stats)
        check(credit_metric(mgr) == 0, "webhook_credit is 0")

        log("part 2: the bodies are released, the credit comes back")
        for j in ("b1.wh1", "b2.wh1"):
            _, _, done = broker.expect_cmd(DONE, j, what="the DONE of " + j)
            check(done["ok"], j + " delivered", done)
        expect_credit(broker, 10000, "READY with the whole credit again")
        check(True, "READY announces credit 10000 again")
        check(whlib.get_json(mgr.url + "/stats")["credit"] == 10000, "/stats credit 10000")

        log("part 3: one body larger than the budget, nothing else held")
        whlib.mock_mode(receiver, delayMs=0)
        broker.send(JOB, whlib.job("b4.wh1", hook, body("b4.wh1", 150000)))
        _, _, done = broker.expect_cmd(DONE, "b4.wh1", what="the DONE of the large delivery")
        check(done["ok"], "the 150 KB delivery is taken and delivered", done)
        got = whlib.mock_deliveries(receiver, "b4")
        check(len(got) == 1, "the receiver got it once", len(got))
        check(not [m for m in broker.inbox if m[2] == RELEASE], "nothing else was handed back")
        whlib.stop_clean(mgr, receiver)

    with harness.Stack("wh-held-cost") as s:
        log("part 4: long URLs, small bodies: the URLs count")
        receiver = whlib.mock(s)
        broker, mgr = whlib.manager_on_fake_broker(s, {"WEBHOOK_MAX_HELD_BYTES": "10000"})
        whlib.mock_mode(receiver, delayMs=1500)
        path = "/hook/" + "a" * (2000 - len(receiver.url) - 6)
        jobs = ["u%d.wh1" % i for i in range(1, 9)]
        for j in jobs:
            broker.send(JOB, whlib.job(j, receiver.url + path, body(j, 30)))
        _, _, released = broker.expect_cmd(RELEASE, what="a delivery handed back (RELEASE)")
        check(True, "a delivery past the budget is RELEASEd: %s" % released["jobId"])
        expect_credit(broker, 0, "READY with credit 0")
        check(True, "READY announces credit 0")
        stats = whlib.get_json(mgr.url + "/stats")
        check(0 < stats["held"] < len(jobs) and stats["held"] * 2000 <= stats["heldBytes"] <= 10000,
              "/stats: some held, heldBytes counts their 2,000-byte URLs, under the budget", stats)
        held = stats["held"]
        done = [broker.expect_cmd(DONE, what="a DONE")[2] for _ in range(held)]
        check(all(d["ok"] for d in done), "the %d held are delivered" % held, done)
        whlib.stop_clean(mgr, receiver)


harness.main(main)

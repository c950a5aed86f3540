"""1,000 jobs with webhooks against a mock that fails 30% of deliveries
(503): all 1,000 delivered in the end, and the counters of both services
agree (attempts = received, 200s = 200s = delivered, 503s = 503s, no
duplicates)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, log, wait_until
import whlib

N = 1000


def main():
    with harness.Stack("wh-load") as s:
        s.redis()
        s.broker(env={"MAX_PYTHON_BOTS": "50"})
        s.worker("--noop", "--type", "python", "--concurrency", "50")
        mock = whlib.mock(s, {"MOCK_FAIL_RATE": "0.3", "MOCK_FAIL_STATUS": "503"})
        # 11 attempts: the chance that one delivery fails all of them is
        # 0.3^11 = 1.8e-6, so 1,000 deliveries all succeed but for a 0.2% chance.
        mgr = whlib.manager(s, {"WEBHOOK_MAX_RETRIES": "10", "WEBHOOK_RETRY_DELAY": "20",
                                "WEBHOOK_MAX_DELAY": "200"})
        s.wait_workers(1, "webhook")
        c = s.client()
        hook = mock.url + "/load"
        start = time.monotonic()
        jobs = [c.submit("python", {"i": i}, webhookUrl=hook) for i in range(N)]
        log("submitted %d jobs in %.1f s" % (N, time.monotonic() - start))
        wait_until(lambda: whlib.get_json(mgr.url + "/stats")["delivered"] + 
                   whlib.get_json(mgr.url + "/stats")["failed"] >= N, 90,
                   "%d deliveries to end" % N, interval=0.2)
        log("all deliveries ended %.1f s after the first submit" % (time.monotonic() - start))
        ws = whlib.get_json(mgr.url + "/stats")
        ms = whlib.get_json(mock.url + "/stats")
        check(ws["delivered"] == N and ws["failed"] == 0, "manager: %d delivered, 0 failed" % N, ws)
        states = {}
        for j in jobs:
            st = (c.status(j) or {}).get("webhook", {}).get("state")
            states[st] = states.get(st, 0) + 1
        check(states == {"delivered": N}, "every job record says delivered", states)
        check(ms["received"] == ws["attempts"], "mock received %d = manager attempts %d"
              % (ms["received"], ws["attempts"]), ms, ws)
        check(ms["byStatus"].get("200") == ws["responses"].get("200") == N,
              "200s: mock %s = manager %s = %d" % (ms["byStatus"].get("200"), ws["responses"].get("200"), N))
        check(ms["byStatus"].get("503") == ws["responses"].get("503") == ws["retriesScheduled"],
              "503s: mock %s = manager %s = retries %s" % (ms["byStatus"].get("503"),
              ws["responses"].get("503"), ws["retriesScheduled"]))
        rate = ms["byStatus"]["503"] / ms["received"]
        check(0.2 < rate < 0.4, "the mock failed about 30%% (%.3f)" % rate)
        check(ms["uniqueIds"] == N and ms["duplicates"] == 0, "mock: %d ids, no duplicates" % N, ms)
        c.close()
        whlib.stop_clean(mgr, mock)


harness.main(main)

"""kill -9 of the webhook manager while deliveries wait for a retry and
others are in flight: after a new manager starts, every delivery arrives
at least once, duplicates share one webhook-id, and attempts keep counting
from the state the dead manager had reported.  A delivery that was in
flight when its manager died may have reached the receiver: its next try
says X-Delivery-Attempt 2 and the job's webhook.attempts counts it."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, wait_until
import whlib


def attempt_header(delivery):
    hdr = {k.lower(): v for k, v in delivery["headers"].items()}
    return int(hdr.get("x-delivery-attempt", 0))

HB = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "3"}
N = 20


def main():
    with harness.Stack("wh-crash") as s:
        s.redis()
        s.broker(env=dict(HB, MAX_PYTHON_BOTS="20"))
        s.worker("--noop", "--type", "python", "--concurrency", "20", env=HB)
        mock = whlib.mock(s)
        env = dict(HB, WEBHOOK_RETRY_DELAY="1500", WEBHOOK_JITTER="none", WEBHOOK_MAX_DELAY="5000")
        first = whlib.manager(s, env, name="webhook-a")
        s.wait_workers(1, "webhook")
        c = s.client()
        hook = mock.url + "/hook"

        # Every delivery's first arrival fails; the first batch then waits
        # 1.5 s for its retry, the second is held in flight by a slow mock.
        whlib.mock_mode(mock, failFirst=1, status=503)
        waiting = [c.submit("python", {"i": i}, webhookUrl=hook) for i in range(N)]
        wait_until(lambda: whlib.get_json(first.url + "/stats")["retrying"] == N, 15,
                   "the first batch to wait for its retry")
        whlib.mock_mode(mock, delayMs=5000)
        flying = [c.submit("python", {"i": N + i}, webhookUrl=hook) for i in range(N)]
        wait_until(lambda: whlib.get_json(first.url + "/stats")["inFlight"] == N, 15,
                   "the second batch to be in flight")
        # In flight at the manager is not yet at the receiver (a slow
        # machine may still be connecting): the kill comes once the mock
        # holds every one of them, so each has had its attempt 1.
        wait_until(lambda: all(len(whlib.mock_deliveries(mock, j)) == 1 for j in flying), 15,
                   "each in-flight delivery to reach the mock (held there 5 s)")
        stats = whlib.get_json(first.url + "/stats")
        check(stats["held"] == 2 * N and stats["delivered"] == 0, "the manager holds all 40, none delivered", stats)

        first.signal(signal.SIGKILL)
        wait_until(lambda: not first.alive(), 5, "the manager to die")
        check(True, "kill -9 with %d deliveries waiting and %d in flight" % (N, N))
        whlib.mock_mode(mock, delayMs=0)
        second = whlib.manager(s, env, name="webhook-b")

        jobs = waiting + flying
        def all_delivered():
            return all((c.status(j) or {}).get("webhook", {}).get("state") == "delivered" for j in jobs)
        wait_until(all_delivered, 30, "every webhook to be delivered")
        check(True, "after the restart every delivery was delivered")

        for j in jobs:
            got = whlib.mock_deliveries(mock, j)
            ok = [d for d in got if d["status"] == 200]
            if not ok or any(d["webhookId"] != j for d in got):
                check(False, "job %s: delivered at least once, one webhook-id" % j, got)
        check(True, "each job reached the mock with a 200 at least once; every arrival of a job "
              "carries the job's webhook-id")
        records = {j: c.status(j)["webhook"] for j in jobs}
        carried = [j for j in waiting if records[j]["attempts"] >= 2]
        check(len(carried) == N, "the waiting deliveries kept counting (attempts >= 2: the "
              "first attempt the dead manager had reported, then the new one)",
              {j: records[j] for j in waiting if j not in carried})
        # The in-flight ones reached the mock once from the dead manager
        # (attempt 1) and once from the new one: that one says attempt 2.
        wrong = {}
        for j in flying:
            got = whlib.mock_deliveries(mock, j)
            seen = [attempt_header(d) for d in got]
            if seen != [1, 2] or records[j]["attempts"] != 2:
                wrong[j] = {"X-Delivery-Attempt": seen, "webhook": records[j]}
        check(not wrong, "each of the %d deliveries in flight at the kill arrived twice, "
              "X-Delivery-Attempt 1 then 2, and its record says webhook.attempts 2" % N, wrong)
        ms = whlib.get_json(mock.url + "/stats")
        check(ms["uniqueIds"] == 2 * N, "the mock saw exactly the %d webhook ids" % (2 * N), ms)
        ws = whlib.get_json(second.url + "/stats")
        check(ws["delivered"] == 2 * N, "the new manager delivered all of them", ws)
        c.close()
        whlib.stop_clean(second, mock)


harness.main(main)

"""kill -9 of the broker while the webhook manager works, then a restart
from Redis: no delivery is sent twice.

1. The receiver holds a request 2.5 s; the broker dies meanwhile.  The
   manager's DONE for the 200 goes out while no broker listens and is
   dropped with the old socket; on the new connection the manager sends it
   again, so the restarted broker takes it instead of dispatching the
   recovered delivery once more: the receiver gets exactly one POST, and
   the job's webhook ends delivered.
2. A delivery waiting for its retry when the broker dies is listed in the
   manager's next READY (running): the restarted broker adopts it (log line
   "adopted") instead of dispatching it again, to this or another manager;
   the retry then comes from the manager that held it, once.

Before the manager listed its deliveries in READY and sent its DONEs again,
part 1 saw two POSTs (both X-Delivery-Attempt: 1) and part 2 no adoption."""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, log, wait_until
import whlib

HB = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "3"}


def kill_broker(broker):
    broker.signal(signal.SIGKILL)
    wait_until(lambda: not broker.alive(), 5, "the broker to die")


def webhook_state(c, job_id):
    return ((c.status(job_id) or {}).get("webhook") or {}).get("state")


def in_redis_running(s, job_id):
    return (harness.job_record(s.redis_port, job_id) or {}).get("state") == "running"


def main():
    with harness.Stack("wh-broker-restart") as s:
        s.redis()
        broker = s.broker(env=dict(HB))
        s.worker("--noop", "--type", "python", "--concurrency", "4", env=HB)
        mock = whlib.mock(s)
        env = dict(HB, WEBHOOK_RETRY_DELAY="4000", WEBHOOK_JITTER="none")
        mgr = whlib.manager(s, env, name="hooks")
        s.wait_workers(1, "webhook")
        c = s.client()
        hook = mock.url + "/hook"

        log("part 1: the receiver answers 200 after 2.5 s; the broker dies meanwhile")
        whlib.mock_mode(mock, delayMs=2500)
        job = c.submit("python", {"i": 1}, webhookUrl=hook)
        wait_until(lambda: len(whlib.mock_deliveries(mock, job)) == 1, 15,
                   "the delivery to reach the mock (held there 2.5 s)")
        wait_until(lambda: in_redis_running(s, job + ".wh1"), 10,
                   "the delivery's running state to reach Redis")
        c.close()
        kill_broker(broker)
        wait_until(lambda: whlib.get_json(mgr.url + "/stats")["delivered"] == 1, 10,
                   "the manager to see the 200 while no broker listens")
        reconnects = whlib.get_json(mgr.url + "/stats")["broker"]["reconnects"]
        # The restart comes once the manager gave the silent broker up (a new
        # socket): a DONE still queued on the old one is gone with it.
        wait_until(lambda: whlib.get_json(mgr.url + "/stats")["broker"]["reconnects"] > reconnects,
                   10, "the manager to replace its socket after the DONE")
        whlib.mock_mode(mock, delayMs=0)
        broker = s.broker(env=dict(HB))
        c = s.client()
        wait_until(lambda: webhook_state(c, job) == "delivered", 20,
                   "the job's webhook to end delivered")
        got = whlib.mock_deliveries(mock, job)
        check(len(got) == 1, "the receiver got exactly one POST for the job",
              [(d["status"], {k.lower(): v for k, v in d["headers"].items()}.get("x-delivery-attempt"))
               for d in got])

        log("part 2: a delivery waits 4 s for its retry; the broker dies and comes back")
        whlib.mock_mode(mock, failFirst=1, status=503)
        job2 = c.submit("python", {"i": 2}, webhookUrl=hook)
        wait_until(lambda: webhook_state(c, job2) == "retrying", 15,
                   "the first attempt to fail and the delivery to wait for its retry")
        wait_until(lambda: in_redis_running(s, job2 + ".wh1"), 10,
                   "the delivery's running state to reach Redis")
        c.close()
        kill_broker(broker)
        broker = s.broker(env=dict(HB))
        other = whlib.manager(s, env, name="hooks-b")
        c = s.client()
        wait_until(lambda: "adopted" in "\n".join(l for l in broker.output().splitlines()
                                                  if job2 + ".wh1" in l), 10,
                   "the restarted broker to adopt the waiting delivery from the READY")
        wait_until(lambda: webhook_state(c, job2) == "delivered", 20,
                   "the retry to deliver the second job's webhook")
        got = whlib.mock_deliveries(mock, job2)
        check([d["status"] for d in got] == [503, 200], "the receiver got one 503 and one 200",
              [d["status"] for d in got])
        check(whlib.get_json(other.url + "/stats")["received"] == 0,
              "the second manager was given no delivery")
        c.close()
        whlib.stop_clean(other, mgr)


harness.main(main)

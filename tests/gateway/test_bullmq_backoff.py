"""BullMQ's backoff forms on POST /invoke: a real gateway, broker and Redis.

"backoff": 1000 is BullMQ's fixed delay of 1000 ms; "jitter": 0.2 is BullMQ
v5's random fraction of the wait (the wait is uniform in [delay * 0.8,
delay]).  Both are read with that meaning, shown by GET /job, kept in the
job's record across a broker restart, and the fraction is what the broker
waits before the retry.  Bad values are a 400 invalid_backoff naming the
field.
"""
import datetime

import harness as h
from fakeworker import FakeWorker
from gwtest import curl, gateway, post_json


def ms(iso):
    return int(datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def now_ms():
    return int(datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000)


def test():
    with h.Stack("gw-bullmq-backoff") as s:
        s.redis()
        broker = s.broker()
        gw = gateway(s)
        u = gw.url

        # A number: a fixed delay in ms.
        r = post_json(u + "/invoke", {"botType": "python", "payload": 1, "attempts": 2,
                                      "delay": 60000, "backoff": 1000})
        h.check(r.status == 202 and r.json["status"] == "delayed", "backoff 1000: 202", r)
        fixed = r.json["jobId"]
        r = curl(u + "/job/" + fixed)
        h.check(r.status == 200
                and r.json["backoff"] == {"type": "fixed", "delayMs": 1000, "jitter": False},
                "backoff 1000 reads as fixed 1000 ms", r)

        # BullMQ v5's jitter: a fraction of the wait.
        r = post_json(u + "/invoke", {"botType": "python", "payload": 2, "attempts": 2,
                                      "delay": 60000, "backoff": {"type": "exponential",
                                                                  "delay": 1000, "jitter": 0.2}})
        h.check(r.status == 202, "jitter 0.2: 202", r)
        frac = r.json["jobId"]
        want = {"type": "exponential", "delayMs": 1000, "jitter": 0.2}
        r = curl(u + "/job/" + frac)
        h.check(r.status == 200 and r.json["backoff"] == want, "GET /job shows jitter 0.2", r)

        # The record keeps both across a broker restart.
        broker.stop()
        broker = s.broker()
        h.wait_until(lambda: curl(u + "/job/" + frac, show=False).status == 200, 15,
                     "the gateway to reach the restarted broker")
        r = curl(u + "/job/" + frac)
        h.check(r.json["backoff"] == want, "jitter 0.2 survives a broker restart", r)
        r = curl(u + "/job/" + fixed)
        h.check(r.json["backoff"] == {"type": "fixed", "delayMs": 1000, "jitter": False},
                "backoff 1000 survives a broker restart", r)

        # The broker waits within the fraction: fixed 20 s with jitter 0.25
        # is 15..20 s after the failed run.
        w = FakeWorker(s.endpoint, "fw-backoff", ["python"], 1)
        h.wait_until(lambda: any(x["name"] == "fw-backoff" for x in s.client().stats()["workers"]),
                     5, "the worker to register")
        r = post_json(u + "/invoke", {"botType": "python", "payload": 3, "attempts": 2,
                                      "backoff": {"type": "fixed", "delay": 20000, "jitter": 0.25}})
        h.check(r.status == 202, "fixed 20000 jitter 0.25: 202", r)
        jid = r.json["jobId"]
        job = w.recv_job(5)
        h.check(job is not None and job["jobId"] == jid, "the worker got the job", job)
        before = now_ms()
        w.done(jid, ok=False)
        h.wait_until(lambda: curl(u + "/job/" + jid, show=False).json["state"] == "delayed", 5,
                     "the failed run to wait for its retry")
        after = now_ms()
        r = curl(u + "/job/" + jid)
        run_at = ms(r.json["runAt"])
        h.check(before + 15000 - 50 <= run_at <= after + 20000 + 50,
                "the retry is due 15..20 s after the failure (%d ms after it)" % (run_at - before), r)
        w.close()

        # Bad values: 400 invalid_backoff naming the field.
        for backoff, word in ((-1, "backoff"), (1.5, "backoff"), ("1000", "backoff"),
                              (100000000000, "backoff"),
                              ({"delay": 1000, "jitter": 2}, "backoff.jitter"),
                              ({"delay": 1000, "jitter": -0.1}, "backoff.jitter"),
                              ({"delay": 1000, "jitter": "0.2"}, "backoff.jitter")):
            r = post_json(u + "/invoke", {"botType": "python", "payload": 1, "backoff": backoff})
            h.check(r.status == 400 and r.error_code() == "invalid_backoff"
                    and word in r.json["error"]["message"],
                    "backoff %r: 400 invalid_backoff naming %s" % (backoff, word), r)


if __name__ == "__main__":
    h.main(test)

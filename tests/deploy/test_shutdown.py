"""deploy.shutdown - SIGTERM each service under load: nothing accepted is lost.

A whole stack (Redis, broker, gateway, two workers with simulated bots,
webhook manager, mock receiver) under a steady load of POST /invoke with a
webhookUrl.  In turn the gateway, a worker, the broker and the webhook
manager get SIGTERM; each must exit by itself (status 0, no SIGKILL) and is
started again on the same port.  Then every job that got a 202 must be
completed, and its webhook delivered to the mock.  Requests refused while a
service was away (connection refused, 503) were never accepted and are only
counted.
"""
import collections
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import json

import deploylib as d
from harness import Stack, check, free_port, http, log, main, wait_until

GRACE_S = 20        # a service must exit within this after SIGTERM


class Load(threading.Thread):
    """POST /invoke in a loop at about `rate` requests per second."""

    def __init__(self, url, hook, rate=40):
        super().__init__(daemon=True)
        self.url, self.hook, self.period = url, hook, 1.0 / rate
        self.accepted, self.outcomes = [], collections.Counter()
        self.stop_flag = threading.Event()
        self.lock = threading.Lock()

    def run(self):
        n = 0
        while not self.stop_flag.is_set():
            n += 1
            body = json.dumps({"botType": ("python", "node", "java")[n % 3], "payload": {"n": n},
                               "webhookUrl": self.hook, "priority": n % 4}).encode()
            req = urllib.request.Request(self.url + "/invoke", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    status, answer = r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                status, answer = e.code, None
            except (OSError, ValueError) as e:
                status, answer = type(e).__name__, None
            with self.lock:
                self.outcomes[status] += 1
                if status != 202:
                    log("load: request %d answered %s" % (n, status))
                if status == 202:
                    self.accepted.append(answer["jobId"])
            self.stop_flag.wait(self.period)

    def count(self):
        with self.lock:
            return len(self.accepted)

    def stop(self):
        self.stop_flag.set()
        self.join(30)


def terminate(proc, what):
    """SIGTERM; the process must exit by itself, with status 0."""
    t0 = time.monotonic()
    log("SIGTERM to %s" % what)
    proc.signal(signal.SIGTERM)
    try:
        rc = proc.p.wait(GRACE_S)
    except Exception:                       # noqa: BLE001 - TimeoutExpired
        rc = None
    took = time.monotonic() - t0
    check(rc == 0, "%s exited by itself after SIGTERM in %.1fs (status %s)" % (what, took, rc),
          proc.output()[-1500:])


def test():
    for b in ("botmesh-broker", "botmesh-worker", "botmesh-gateway", "botmesh-webhook", "botmesh-mock"):
        if not d.binary(b):
            d.skip("%s is not built yet" % b)
    with Stack("shutdown") as s:
        s.redis()
        s.broker()
        gw_port = free_port()   # a restart takes the same one again

        def gateway():
            nonlocal gw_port
            p = s.spawn("gateway", [s.bin("botmesh-gateway")],
                        {"API_GATEWAY_PORT": str(gw_port), "GATEWAY_LISTEN": "127.0.0.1",
                         "BROKER_ENDPOINT": s.endpoint, "GATEWAY_THREADS": "32",
                         "WEBHOOK_ALLOW_PRIVATE": "1"})    # as the webhook manager below
            gw_port = p.listening("http")
            wait_until(lambda: http("GET", "http://127.0.0.1:%d/ready" % gw_port, timeout=2)[0] == 200,
                       20, "the gateway to be ready")
            return p

        def worker(i):
            return s.worker("--type", "python,node,java", "--simulate", "--concurrency", "8",
                            "--name", "w%d" % i,
                            env={"SIM_DURATION_MS": "50-300", "WORKER_GRACE_MS": "10000"}, name="worker-%d" % i)

        def webhook():
            p = s.spawn("webhook", [s.bin("botmesh-webhook")],
                        {"WEBHOOK_MANAGER_PORT": "0", "WEBHOOK_LISTEN_ADDR": "127.0.0.1",
                         "WEBHOOK_ALLOW_PRIVATE": "1", "BROKER_ENDPOINT": s.endpoint,
                         "WEBHOOK_RETRY_DELAY": "100", "WEBHOOK_MAX_DELAY": "1000",
                         "WEBHOOK_NAME": "webhook"})
            wh_port = p.listening("http")
            wait_until(lambda: http("GET", "http://127.0.0.1:%d/health" % wh_port, timeout=2)[0] == 200,
                       20, "the webhook manager to answer /health")
            return p

        mock_proc = s.spawn("mock", [s.bin("botmesh-mock")], {"MOCK_WEBHOOK_PORT": "0",
                                                               "MOCK_LISTEN_ADDR": "127.0.0.1"})
        mock = "http://127.0.0.1:%d" % mock_proc.listening("http")
        wait_until(lambda: http("GET", mock + "/health", timeout=2)[0] == 200, 20, "the mock to answer")
        gw = gateway()
        workers = [worker(0), worker(1)]
        wh = webhook()
        s.wait_workers(2, "python")

        url = "http://127.0.0.1:%d" % gw_port
        load = Load(url, mock + "/hooks/shutdown")
        load.start()

        def steady(what, more=20):
            n = load.count()
            wait_until(lambda: load.count() >= n + more, 30, "%d more jobs accepted %s" % (more, what))

        try:
            steady("before the first SIGTERM")
            terminate(gw, "the gateway")
            gw = gateway()
            steady("after the gateway restarted")

            terminate(workers[0], "worker w0 (with jobs running)")
            workers[0] = worker(0)
            steady("after the worker restarted")

            terminate(s.procs[[p.name for p in s.procs].index("broker")], "the broker")
            s.procs = [p for p in s.procs if p.alive() or p.name != "broker"]
            s.broker()
            steady("after the broker restarted")

            terminate(wh, "the webhook manager (with deliveries in flight)")
            wh = webhook()
            steady("after the webhook manager restarted")
        finally:
            load.stop()
        log("load: %s" % dict(load.outcomes))
        ids = list(load.accepted)
        check(len(ids) >= 100, "at least 100 jobs accepted under load", len(ids))

        def records():
            out = {}
            for i in ids:
                st, _, rec = http("GET", "%s/job/%s" % (url, i), timeout=10)
                out[i] = rec if st == 200 else {"state": "missing (%s)" % st}
            return out

        def all_done():
            recs = records()
            left = [i for i, r in recs.items()
                    if r.get("state") != "completed" or (r.get("webhook") or {}).get("state") != "delivered"]
            return recs if not left else None
        try:
            wait_until(all_done, 90, "every accepted job to complete and its webhook to be delivered",
                       interval=0.5)
        finally:
            recs = records()
            states = collections.Counter(r.get("state") for r in recs.values())
            hooks = collections.Counter((r.get("webhook") or {}).get("state") for r in recs.values())
            log("job states %s, webhook states %s" % (dict(states), dict(hooks)))
        check(states == {"completed": len(ids)}, "all %d accepted jobs completed" % len(ids), dict(states))
        check(hooks == {"delivered": len(ids)}, "all %d webhooks delivered" % len(ids), dict(hooks))
        st, _, stats = http("GET", mock + "/stats")
        check(stats.get("uniqueIds", 0) >= len(ids), "the mock saw a delivery for every job",
              stats.get("uniqueIds"), len(ids))
        again = collections.Counter(r.get("attempts") for r in recs.values())
        log("attempts per job: %s (more than 1: re-run after a shutdown, allowed)" % dict(again))


if __name__ == "__main__":
    main(test)

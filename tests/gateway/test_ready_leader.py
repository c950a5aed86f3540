"""A gateway's /ready follows a new leader at once once a standby names it.

BROKER_ENDPOINT lists a standby played by a fake broker (a real ZeroMQ
ROUTER answering REJECTED not_leader) and a real botmesh-broker with
BROKER_HA=redis whose Redis is not up yet (so it stands by too).  /ready is
asked until the link's backoff has grown (no broker leads: 100 ms doubling
to 2 s).  Then the fake holds one PING, Redis starts, the real broker takes
the lease and leads, and the fake answers the PING not_leader naming it.

What must hold: /ready answers 200 within READY_BOUND_S of the leader
leading: the link goes to the leader a standby names after the first
backoff (100 ms), not after the backoff grown while none led (2 s, and the
/ready asked meanwhile fails its connect timeout).  Printed: the lag.
"""
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "broker"))
import harness as h                 # noqa: E402
import gwtest                       # noqa: E402
import hatest                       # noqa: E402
from fakebroker import FakeBroker   # noqa: E402

READY_BOUND_S = 1.0


def test():
    with h.Stack("ready-leader") as s:
        redis_port = h.free_port()
        s.redis_port = redis_port
        s.redis_url = "redis://127.0.0.1:%d/0" % redis_port
        s.env["REDIS_URL"] = s.redis_url
        real = "tcp://127.0.0.1:%d" % h.free_port()
        s.spawn("broker", [s.bin("botmesh-broker")],
                dict(hatest.HA_ENV, BROKER_ENDPOINT=real, BROKER_METRICS_PORT="0"))
        h.wait_until(lambda: hatest.ping(real), 15, "the broker to answer (as a standby)")

        state = {"leader": "", "hold": False, "held": None}
        lock = threading.Lock()

        def standby(fb, m):
            if m.header != h.CLIENT or not isinstance(m.body, dict):
                return []
            with lock:
                if state["hold"] and state["held"] is None and m.cmd == h.PING:
                    state["held"] = m
                    return []
                leader = state["leader"]
            return [(h.REJECTED, {"req": m.body.get("req"), "code": "not_leader",
                                  "message": "a standby", "leader": leader})]
        fake = FakeBroker(standby)
        try:
            gw = gwtest.gateway(s, endpoint=fake.endpoint + "," + real,
                                # The moves after a search's first are logged at debug.
                                env={"BROKER_CONNECT_TIMEOUT_MS": "1000", "BROKER_TIMEOUT_MS": "10000",
                                     "LOG_LEVEL": "debug"})
            ready = lambda: h.http("GET", gw.url + "/ready", timeout=15)[0]
            # No broker leads: the link's backoff grows to its longest.
            h.wait_until(lambda: ready() == 200 or "in 2000 ms" in gw.output(), 30,
                         "the link's backoff to grow to 2 s while no broker leads")
            h.check(ready() == 503, "/ready is 503 while no broker leads")

            # The fake holds the next PING that reaches it.
            with lock:
                state["hold"] = True
            asked = []

            def ask():
                asked.append(ready())
            while True:
                t = threading.Thread(target=ask, daemon=True)
                t.start()
                held = h.wait_until(lambda: state["held"] or (not t.is_alive() and "done"), 15,
                                    "a /ready's PING to reach the fake standby or be answered")
                if held != "done":
                    break
                t.join()

            s.redis()
            h.wait_until(lambda: hatest.leads(real), 15, "the real broker to lead")
            led = time.monotonic()
            with lock:
                state["leader"] = real
                m = state["held"]
            fake.send(m.ident, h.REJECTED, {"req": m.body.get("req"), "code": "not_leader",
                                            "message": "a standby", "leader": real}, header=h.CLIENT)
            t.join(15)
            h.wait_until(lambda: ready() == 200, 15, "/ready 200 once the broker leads", interval=0.01)
            lag = time.monotonic() - led
            print("\n===== /ready after a new leader =====")
            print("lag                %.2f s (bound %g s)" % (lag, READY_BOUND_S))
            print("=====================================\n", flush=True)
            h.check(lag <= READY_BOUND_S, "/ready 200 within %g s of the leader leading" % READY_BOUND_S, lag)
        finally:
            fake.close()


if __name__ == "__main__":
    h.main(test)

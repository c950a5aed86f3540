"""The broker dies (SIGKILL) or hangs (SIGSTOP): the gateway's broker link
notices (socket monitor, ZMTP heartbeats) and answers within a bounded
time, far below BROKER_TIMEOUT_MS: an invoke already sent to the hung
broker gets 504 broker_connection_lost (the broker may still act on it);
one that cannot be sent gets 503 broker_unavailable with Retry-After, at
once once the broker has been gone for BROKER_CONNECT_TIMEOUT_MS; after the
broker is back, invokes work again."""
import signal
import time

import harness
from gwtest import check, curl, gateway, post_json, start_workers, stop_clean, wait_until

BODY = {"botType": "python", "payload": {"n": 1}}
BROKER_TIMEOUT_MS = 8000
CONNECT_TIMEOUT_MS = 500


def timed_invoke(g, show=True):
    t0 = time.monotonic()
    r = post_json(g.url + "/invoke", BODY, show=show)
    return r, time.monotonic() - t0


def check_lost(r, took, limit, what):
    check(r.status == 504 and r.error_code() == "broker_connection_lost"
          and "retry-after" not in r.headers and took < limit,
          "%s: 504 broker_connection_lost, no Retry-After, in %.2f s (< %.1f s)" % (what, took, limit), r)


def check_unavailable(r, took, limit, what):
    check(r.status == 503 and r.error_code() == "broker_unavailable"
          and r.headers.get("retry-after") == "1" and took < limit,
          "%s: 503 broker_unavailable, Retry-After 1, in %.2f s (< %.1f s)" % (what, took, limit), r)


def main():
    with harness.Stack("gw-kill") as s:
        s.redis()
        broker = s.broker()
        start_workers(s, ["python"])
        g = gateway(s, env={"GATEWAY_THREADS": "8", "BROKER_TIMEOUT_MS": str(BROKER_TIMEOUT_MS),
                            "BROKER_CONNECT_TIMEOUT_MS": str(CONNECT_TIMEOUT_MS)})
        for _ in range(4):
            check(post_json(g.url + "/invoke", BODY, show=False).status == 202, "accepted before")

        # A hung broker: its TCP connection stays open, only the ZMTP
        # heartbeats (3 s) can tell.  The request was sent: it is answered
        # well before BROKER_TIMEOUT_MS (8 s), as "outcome unknown".
        broker.signal(signal.SIGSTOP)
        try:
            r, took = timed_invoke(g)
            check_lost(r, took, 6.0, "broker stopped (SIGSTOP)")
            r, took = timed_invoke(g)
            check_unavailable(r, took, 2.0, "broker still stopped, connection known lost")
        finally:
            broker.signal(signal.SIGCONT)
        wait_until(lambda: post_json(g.url + "/invoke", BODY, show=False).status == 202, 15,
                   "invokes to be accepted after SIGCONT")

        # A dead broker: the connection drops at once.
        broker.kill()
        r, took = timed_invoke(g)
        # Sent just before the link saw the drop, or not sent at all.
        if r.status == 504:
            check_lost(r, took, 2.0, "broker killed (SIGKILL), request sent before the drop was seen")
        else:
            check_unavailable(r, took, 2.0, "broker killed (SIGKILL)")
        # Down for longer than BROKER_CONNECT_TIMEOUT_MS: no more waiting.
        wait_until(lambda: timed_invoke(g, show=False)[1] < 0.25, 10,
                   "invoke to fail at once while the broker stays down")
        r, took = timed_invoke(g)
        check_unavailable(r, took, 0.5, "broker still down")
        r = curl(g.url + "/ready")
        check(r.status == 503 and r.json["broker"] is False, "/ready says the broker is down", r)
        r = curl(g.url + "/metrics")
        unavailable = [line for line in r.body.splitlines()
                       if line.startswith('gateway_broker_errors_total{kind="unavailable"}')]
        check(unavailable and float(unavailable[0].split()[-1]) >= 3,
              "gateway_broker_errors_total{kind=\"unavailable\"} counts them", unavailable)

        s.broker()                                   # same endpoint
        wait_until(lambda: post_json(g.url + "/invoke", BODY, show=False).status == 202, 15,
                   "invokes to be accepted after the broker restarts")
        statuses = [post_json(g.url + "/invoke", BODY, show=False).status for _ in range(16)]
        check(statuses == [202] * 16, "invokes work again", statuses)
        check(curl(g.url + "/ready").status == 200, "/ready 200 again")
        stop_clean(g)


if __name__ == "__main__":
    harness.main(main)

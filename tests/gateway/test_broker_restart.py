"""The broker goes away and comes back: the gateway answers 503
broker_unavailable fast (not 504 after the full timeout) while it is down,
/ready says so (in /invoke's words), and every handler thread's socket reconnects by itself."""
import time

import harness
from gwtest import check, curl, gateway, post_json, start_workers, stop_clean, wait_until

BODY = {"botType": "python", "payload": {"n": 1}}


def main():
    with harness.Stack("gw-restart") as s:
        s.redis()
        broker = s.broker()
        start_workers(s, ["python"])
        g = gateway(s, env={"GATEWAY_THREADS": "8", "BROKER_CONNECT_TIMEOUT_MS": "300"})
        for _ in range(8):
            check(post_json(g.url + "/invoke", BODY, show=False).status == 202, "accepted before")
        broker.stop()
        t0 = time.monotonic()
        r = post_json(g.url + "/invoke", BODY)
        took = time.monotonic() - t0
        check(r.status == 503 and r.error_code() == "broker_unavailable" and took < 2,
              "503 broker_unavailable in %.2f s while the broker is down" % took, r)
        said = r.json["error"]["message"]
        r = curl(g.url + "/ready")
        check(r.status == 503 and r.json["broker"] is False, "/ready says the broker is down", r)
        check(said == r.json["error"]["message"] == "the broker is not reachable",
              "/invoke and /ready say it in the same words", said, r)
        check(curl(g.url + "/health").status == 200, "/health still 200")
        s.broker()                                   # same endpoint
        wait_until(lambda: post_json(g.url + "/invoke", BODY, show=False).status == 202, 15,
                   "invokes to be accepted again")
        # Every thread's socket is back, not just one: 16 in a row, spread
        # over the 8 threads by new connections.
        statuses = [post_json(g.url + "/invoke", BODY, show=False).status for _ in range(16)]
        check(statuses == [202] * 16, "all threads reconnected", statuses)
        r = curl(g.url + "/ready")
        check(r.status == 200, "/ready 200 again", r)
        stop_clean(g)


if __name__ == "__main__":
    harness.main(main)

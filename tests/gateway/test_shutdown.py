"""SIGTERM: the gateway stops taking new work (503 shutting_down, while
/health stays 200), lets requests in flight finish (here one the broker
answers only after 1.5 s), closes its port and exits 0; an idle gateway
with a client's keep-alive connection open exits within 1.5 s."""
import socket
import threading
import time

import harness
from harness import ACCEPTED, SUBMIT
from gwtest import FakeBroker, check, curl, gateway, post_json

release = threading.Event()


def handler(cmd, body):
    if cmd == SUBMIT:
        release.wait(1.5)              # slow broker: the request is in flight
        return ACCEPTED, {"jobId": "slow-1", "duplicate": False}
    return None


def main():
    fake = FakeBroker(handler)
    try:
        with harness.Stack("gw-shutdown") as s:
            g = gateway(s, endpoint=fake.endpoint)
            result = {}

            def call():
                result["r"] = post_json(g.url + "/invoke", {"botType": "python", "payload": {}},
                                        show=False)
            t = threading.Thread(target=call)
            t.start()
            harness.wait_until(lambda: any(c == SUBMIT for c, _ in fake.seen), 5,
                               "the request to reach the broker")
            t0 = time.monotonic()
            g.signal(15)
            harness.wait_until(lambda: "SIGTERM" in g.output(), 5, "the gateway to see SIGTERM")
            r = post_json(g.url + "/invoke", {"botType": "python", "payload": {}})
            check(r.status == 503 and r.error_code() == "shutting_down"
                  and r.headers.get("connection") == "close" and r.headers.get("retry-after"),
                  "new work refused while draining", r)
            r = curl(g.url + "/health")
            check(r.status == 200, "/health stays 200 while draining", r)
            t.join(10)
            r = result.get("r")
            check(r is not None and r.status == 202 and r.json["jobId"] == "slow-1",
                  "the in-flight request got its answer", r)
            rc = g.p.wait(10)
            check(rc == 0, "exit code 0 after SIGTERM (%.1f s)" % (time.monotonic() - t0), rc)
            check("stopped" in g.output(), "logged its stop", g.output()[-300:])
            try:
                socket.create_connection(("127.0.0.1", g.port), timeout=1).close()
                refused = False
            except OSError:
                refused = True
            check(refused, "no longer accepting connections")

            # Idle: a client holds a keep-alive connection, its request just
            # answered (civetweb's thread polls it for the next one, 2 s at a
            # time).  SIGTERM ends it at once: the gateway exits promptly,
            # before that poll would have ended (it took 2.0 s when it waited
            # for it; the bound leaves room for a sanitizer build on a busy box).
            g = gateway(s, endpoint=fake.endpoint, name="gateway-idle")
            held = socket.create_connection(("127.0.0.1", g.port), timeout=5)
            held.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            check(held.recv(4096).startswith(b"HTTP/1.1 200"), "the keep-alive request answered")
            t0 = time.monotonic()
            g.signal(15)
            rc = g.p.wait(10)
            took = time.monotonic() - t0
            check(rc == 0 and took < 1.9, "an idle gateway with a keep-alive client exits 0 "
                  "within 1.9 s of SIGTERM, before civetweb's 2 s poll ends (took %.2f s)"
                  % took, rc)
            held.close()
    finally:
        fake.close()


if __name__ == "__main__":
    harness.main(main)

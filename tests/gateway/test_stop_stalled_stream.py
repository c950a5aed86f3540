"""SIGTERM with a GET /events client that stopped reading: the gateway
exits within 1.5 s, its stream cut, after the /invoke in flight got its
answer (gateway/README.md, "Shutdown").

A fake broker answers SUBSCRIBE (sub-1) and holds the answer to SUBMIT
until the test gives it.  Two streams open: R, read by the test, and S,
from a socket with a 1 MiB receive buffer that the test never reads.
EVENTS events of 64 KiB each follow (more than S's socket and the
kernel's send buffer take): R gets them all, S's thread is left in a
write that cannot complete (civetweb's write timeout,
GATEWAY_REQUEST_TIMEOUT_MS, is 10 s by default).  An /invoke reaches the
broker; SIGTERM; the broker answers the SUBMIT HOLD s later.  The /invoke
gets its 202, R gets `event: end`, the gateway logs the stream it cut and
exits 0 within 1.5 s of the signal (before, it waited for S's write: the
10 s of GATEWAY_SHUTDOWN_MS, then civetweb's own stop; 11.7 s here).

Real gateway and sockets; the broker is tests/lib/fakebroker.py.
"""
import subprocess
import threading
import time

import fakebroker
import harness
from gwtest import check, gateway, post_json
from test_events import KEY, Stream
from test_events_slow_reader import event, stuck_stream

SUBMIT, PING, SUBSCRIBE, UNSUBSCRIBE = 0x01, 0x08, 0x0F, 0x10
ACCEPTED, REPLY = 0x81, 0x83
EVENTS = 160                            # 10 MiB: past tcp_wmem's 4 MiB maximum
PAD = "x" * 65536
HOLD = 0.3                              # the broker's answer to SUBMIT, after SIGTERM
BOUND = 1.5                             # seconds from SIGTERM to exit
STILL = 3.0                             # a full socket's Send-Q stays put this long


def respond(fb, m):
    body = m.body if isinstance(m.body, dict) else {}
    req = body.get("req")
    if m.cmd == SUBSCRIBE:
        return [(REPLY, {"req": req, "subscription": "sub-1", "ttlMs": 30000, "seq": 0,
                         "dropped": 0, "replayed": 0})]
    if m.cmd in (UNSUBSCRIBE, PING):
        return [(REPLY, {"req": req, "redis": "ok", "uptimeMs": 1000})]
    return []                           # SUBMIT: answered by the test


def send_queue(port, peer_port):
    """Bytes the gateway's socket to the client at peer_port has not sent
    yet (ss's Send-Q), or -1 when no such connection is listed."""
    out = subprocess.run(["ss", "-tnH", "state", "established", "( sport = :%d and dport = :%d )"
                          % (port, peer_port)], capture_output=True, text=True).stdout.split()
    return int(out[1]) if len(out) > 1 else -1


def main():
    fake = fakebroker.FakeBroker(respond, sndhwm=0)
    try:
        with harness.Stack("gw-stop-stalled") as s:
            g = gateway(s, endpoint=fake.endpoint, env={"API_KEYS": KEY})
            r = Stream(g.port)
            check(r.status == 200, "the reading stream: 200", r.headers)
            # A receive buffer of 1 MiB, which the kernel fills and then
            # closes its window on (a tiny one lets bytes trickle in for
            # seconds, as it packs what it holds)
            sock, _ = stuck_stream(g.port, 1 << 20)
            ident = fake.wait_for(lambda m: m.cmd == SUBSCRIBE, 10, "the gateway's SUBSCRIBE").ident
            for k in range(1, EVENTS + 1):
                fake.send(ident, 0x87, event("sub-1", k, k, PAD))
            got = [r.next(15)[1] for _ in range(EVENTS)]
            check(got == ["1-%d" % k for k in range(1, EVENTS + 1)],
                  "the reading stream gets the %d events" % EVENTS)
            # S's socket holds what the kernel takes; the rest waits in S's
            # thread's write and its queue.  Full: its Send-Q the same for
            # STILL s.
            peer = sock.getsockname()[1]
            seen = {"q": -1, "at": time.monotonic()}

            def stuck():
                q, now = send_queue(g.port, peer), time.monotonic()
                if q != seen["q"]:
                    seen.update(q=q, at=now)
                return q > 1 << 20 and now - seen["at"] >= STILL
            harness.wait_until(stuck, 20, "the stuck stream's socket to fill (ss Send-Q over "
                               "1 MiB, unchanged for %.1f s)" % STILL)

            result = {}

            def call():
                result["r"] = post_json(g.url + "/invoke", {"botType": "python", "payload": {}},
                                        "-H", "X-API-Key: " + KEY, show=False)
            t = threading.Thread(target=call)
            t.start()
            submit = fake.wait_for(lambda m: m.cmd == SUBMIT, 10, "the /invoke's SUBMIT")

            t0 = time.monotonic()
            g.signal(15)
            harness.wait_until(lambda: "SIGTERM" in g.output(), 5, "the gateway to see SIGTERM")
            time.sleep(HOLD)                # the broker is slow: the /invoke stays in flight
            fake.send(submit.ident, ACCEPTED, {"req": submit.body["req"], "jobId": "held-1",
                                               "duplicate": False})
            t.join(10)
            res = result.get("r")
            check(res is not None and res.status == 202 and res.json["jobId"] == "held-1",
                  "the /invoke in flight at SIGTERM got its 202", res)
            end = r.next(5)
            check(end[0] == "end", "the reading stream gets `event: end`", end)
            try:
                rc = g.p.wait(15)
            except subprocess.TimeoutExpired:
                rc = None
            took = time.monotonic() - t0
            print("gateway exit %.3f s after SIGTERM (the broker held the /invoke %.1f s)"
                  % (took, HOLD), flush=True)
            check(rc == 0 and took < BOUND, "exit 0 within %.1f s of SIGTERM with a stream whose "
                  "client stopped reading (took %.2f s, rc %s)" % (BOUND, took, rc),
                  g.output()[-1500:])
            check("1 event streams still writing" in g.output(),
                  "the cut stream is logged", g.output()[-1500:])
            out = g.output()
            check("Sanitizer" not in out and "runtime error" not in out, "no sanitizer report",
                  out[-1500:])
            sock.close()
            r.sock.close()
    finally:
        fake.close()


if __name__ == "__main__":
    harness.main(main)

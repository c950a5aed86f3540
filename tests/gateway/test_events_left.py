"""GET /events: a stream's HTTP thread is given back soon after its client
left, and a small gateway has a stream at all (gateway/README.md, "Live
events").

- GATEWAY_MAX_EVENT_STREAMS=1: a stream of a job that has no events, its
  client closes the connection; a new stream gets 200 within 8 s (the slot
  was freed: the gateway noticed the client had gone), and the
  gateway_event_streams gauge says 1, not 2;
- GATEWAY_THREADS=4 and GATEWAY_MAX_EVENT_STREAMS unset (its default: an
  eighth of the threads, at least one): a stream gets 200, not 503
  too_many_streams.

Real redis, broker and gateways; raw sockets for the streams.
"""
import socket
import time

import harness
from gwtest import check, curl, gateway

KEY = "events-left-key"


def open_stream(port, query=""):
    """GET /events on a raw socket: (status, socket) once the head came."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(("GET /events%s HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n"
                  "Accept: text/event-stream\r\n\r\n" % (query, KEY)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(4096)
        check(data, "the stream's head arrives", buf)
        buf += data
    return int(buf.split(b"\r\n", 1)[0].split()[1]), sock


def gauge(g):
    r = curl(g.url + "/metrics", "-H", "X-API-Key: " + KEY)
    for line in r.body.splitlines():
        if line.startswith("gateway_event_streams "):
            return float(line.split()[1])
    raise harness.TestFailure("no gateway_event_streams in /metrics: %s" % r.body[-2000:])


def test():
    with harness.Stack("gw-events-left") as s:
        s.redis()
        s.broker()
        g = gateway(s, env={"API_KEYS": KEY, "GATEWAY_MAX_EVENT_STREAMS": "1"})

        status, first = open_stream(g.port, "?jobId=no-such-job")
        check(status == 200, "the first stream: 200", status)
        check(gauge(g) == 1, "one stream open", gauge(g))
        first.close()
        t0 = time.monotonic()

        def reopened():
            status, sock = open_stream(g.port, "?jobId=no-such-job")
            if status == 200:
                return sock
            sock.close()
            check(status == 503, "a stream while the slot is taken: 503", status)
            return None
        second = harness.wait_until(reopened, 8, "the stream of a client that left to give its "
                                    "slot back (GATEWAY_MAX_EVENT_STREAMS=1: a new stream is 503 "
                                    "until then)", interval=0.2)
        harness.log("the slot was free %.2f s after the client left" % (time.monotonic() - t0))
        check(gauge(g) == 1, "gateway_event_streams: 1 (the left stream is not counted)",
              gauge(g))
        second.close()

        small = gateway(s, env={"API_KEYS": KEY, "GATEWAY_THREADS": "4"})
        status, sock = open_stream(small.port)
        check(status == 200, "GATEWAY_THREADS=4, GATEWAY_MAX_EVENT_STREAMS unset: a stream is "
              "200, not 503 too_many_streams", status)
        sock.close()


if __name__ == "__main__":
    harness.main(test)

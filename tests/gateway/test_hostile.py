"""Hostile input: truncated bodies, invalid UTF-8, deeply nested JSON,
10 MB bodies (declared and chunked), garbage request lines, huge headers,
slow clients holding every thread.  After each, the gateway is alive and
answers the next valid request."""
import json
import select
import socket
import time

import harness
from gwtest import check, curl, gateway, log, post_json, raw_request, stop_clean, wait_until

VALID = json.dumps({"botType": "python", "payload": {"ok": 1}})


def post_raw(body, extra=b"", content_length=None):
    cl = len(body) if content_length is None else content_length
    return (b"POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + extra + b"Content-Length: %d\r\n\r\n" % cl + body)


def status_of(raw):
    try:
        return int(raw.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


def main():
    with harness.Stack("gw-hostile") as s:
        s.broker(redis=False)
        g = gateway(s, env={"GATEWAY_THREADS": "8", "GATEWAY_REQUEST_TIMEOUT_MS": "1000",
                            "GATEWAY_KEEPALIVE_MS": "1000"})
        u, port = g.url, g.port

        def still_serving(what):
            check(g.alive(), "gateway alive after " + what)
            r = post_json(u + "/invoke", VALID, show=False)
            check(r.status == 202 and r.json["status"] == "queued",
                  "next valid request answered after " + what, r)

        # Truncated bodies: the client closes early, or stalls mid-body.
        raw_request(port, post_raw(b'{"botType":"py', content_length=500), read=False)
        still_serving("a body cut short by a close")
        t0 = time.monotonic()
        raw = raw_request(port, post_raw(b'{"botType":"py', content_length=500), timeout=10)
        check(status_of(raw) in (408, None) and time.monotonic() - t0 < 8,
              "a stalled body is cut after the request timeout", raw[:200])
        still_serving("a stalled body")

        # Invalid UTF-8 (in a string, and raw bytes), NUL bytes.
        for body, what in ((b'{"botType":"python","payload":"\xff\xfe"}', "invalid UTF-8 in a string"),
                           (b'\xc3\x28\xa0\xa1', "invalid UTF-8 bytes"),
                           (b'{"botType":"python","payload":"a\\u0000b"}', "an escaped NUL"),
                           (b'{"botType":"python"\x00,"payload":1}', "a raw NUL byte")):
            raw = raw_request(port, post_raw(body))
            check(status_of(raw) == 400 and b'"invalid_json"' in raw, "400 for " + what, raw[:300])
        still_serving("invalid UTF-8")

        # Deeply nested JSON: inside the 1 MiB limit, far past any depth limit.
        for depth in (100, 10000, 500000):
            body = b'{"botType":"python","payload":' + b"[" * depth + b"]" * depth + b"}"
            raw = raw_request(port, post_raw(body))
            check(status_of(raw) == 400, "400 for %d-deep nesting" % depth, raw[:300])
        raw = raw_request(port, post_raw(b"[" * 1000000))
        check(status_of(raw) == 400, "400 for 1,000,000 open brackets", raw[:300])
        still_serving("deep nesting")

        # 10 MB bodies: declared (refused before reading) and chunked.
        ten = b'{"botType":"python","payload":"' + b"x" * (10 * 1024 * 1024) + b'"}'
        t0 = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(post_raw(b"", content_length=len(ten)))   # headers only
            answer = c.recv(4096)
        check(status_of(answer) == 413 and b"body_too_large" in answer and time.monotonic() - t0 < 2,
              "413 from Content-Length alone, before any body byte", answer[:200])
        r = curl("-X", "POST", u + "/invoke", "-H", "Content-Type: application/json",
                 "--data-binary", "@-", stdin=ten)
        check(r.status == 413, "413 for a 10 MB body sent in full", r)
        r = curl("-X", "POST", u + "/invoke", "-H", "Content-Type: application/json",
                 "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", stdin=ten)
        check(r.status == 413, "413 for a 10 MB chunked body", r)
        still_serving("10 MB bodies")

        # Garbage request lines, bad methods, huge headers, bad chunking.
        for junk in (b"GARBAGE\r\n\r\n", b"\x00\x01\x02\r\n\r\n",
                     b"GET /health HTTP/9.9\r\n\r\n",
                     b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                     b"GET /health HTTP/1.1\r\nX-Big: " + b"b" * 40000 + b"\r\n\r\n",
                     b"POST /invoke HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                     b"POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                     b"POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
                     b"GET /job/%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n",
                     b"GET /job/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"):
            raw = raw_request(port, junk, timeout=5)
            log("junk %r -> %r" % (junk[:40], raw[:60]))
            check(status_of(raw) is None or (status_of(raw) >= 400 and b'{"error":{"code":' in raw),
                  "junk refused with a JSON error", raw[:300])
        still_serving("garbage requests")

        # Slow clients: hold all 8 threads with half-sent heads.  A new
        # request waits at most about the request timeout (1 s), then is
        # served; the slow ones are cut.
        slow = []
        for _ in range(8):
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            c.sendall(b"POST /invoke HTTP/1.1\r\nHost: x\r\n")
            slow.append(c)
        t0 = time.monotonic()
        r = post_json(u + "/invoke", VALID, show=False)
        took = time.monotonic() - t0
        check(r.status == 202 and took < 6, "valid request served while 8 slow clients hold the "
              "8 threads (%.1f s)" % took, r)
        for c in slow:
            c.close()
        # Slow body senders: a byte every 0.2 s never trips civetweb's
        # per-read timeout, but the body as a whole gets 1 s: 408, closed.
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.sendall(post_raw(b"", content_length=100))
        t0 = time.monotonic()
        answer = b""
        try:
            while time.monotonic() - t0 < 6 and not answer:
                c.sendall(b" ")
                if select.select([c], [], [], 0.2)[0]:
                    answer = c.recv(4096)
        except OSError:
            pass
        c.close()
        check(status_of(answer) == 408 and b"request_timeout" in answer and time.monotonic() - t0 < 4,
              "a trickled body is cut with 408 after the request timeout", answer[:300])
        still_serving("slow clients")
        check(curl(u + "/health").status == 200, "/health at the end")
        stop_clean(g)


if __name__ == "__main__":
    harness.main(main)

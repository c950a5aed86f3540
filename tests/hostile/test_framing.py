"""Request smuggling: every civetweb server refuses ambiguous framing.

civetweb reads the first Content-Length of a request; a proxy in front may
read another one, and the two then split the byte stream differently (the
rest of the body becomes a second request the proxy never saw).  Each of our
HTTP servers (the gateway, the broker's metrics port, the webhook manager,
the mock receiver), started for real, gets over real sockets and curl:

- Content-Length: 2 and Content-Length: 40: 400, a JSON error naming
  Content-Length (code bad_framing), the connection closed, and the 38
  bytes after the first 2 are never answered as a request of their own;
- Content-Length: 2, 40 (one header, two values): the same;
- Content-Length with Transfer-Encoding: chunked: the same;
- the same Content-Length twice: accepted (the route answers as usual);
- a plain request on each server still works afterwards.
"""
import json
import os
import socket
import subprocess

from harness import Stack, check, free_port, log, main, wait_until, http

SMUGGLED = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


def exchange(port, data, timeout=10):
    """Send raw bytes, read until the server closes (or timeout); return
    every byte answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(data)
        chunks = []
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except socket.timeout:
            chunks.append(b"<timeout>")
        return b"".join(chunks)


def refused(what, raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    check(raw.startswith(b"HTTP/1.1 400 "), "%s: answered 400" % what, raw[:300])
    check(raw.count(b"HTTP/1.1 ") == 1, "%s: one answer only (the rest is no request)" % what, raw[:600])
    check(b"<timeout>" not in raw, "%s: the connection is closed after the 400" % what, raw[:300])
    try:
        err = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        err = {}
    check(err.get("code") == "bad_framing" and "Content-Length" in err.get("message", ""),
          "%s: a JSON error naming Content-Length" % what, body[:300])


def test():
    with Stack("framing") as s:
        s.broker(redis=False)
        metrics = s.procs[-1].metrics_port
        gw = s.spawn("gateway", [s.bin("botmesh-gateway")], {
            "API_GATEWAY_PORT": "0", "GATEWAY_LISTEN": "127.0.0.1", "BROKER_ENDPOINT": s.endpoint,
            "REDIS_URL": "none"})
        gw_port = gw.listening("http")
        mock_port, wh_port = free_port(), free_port()
        s.spawn("mock", [s.bin("botmesh-mock")], {"MOCK_WEBHOOK_PORT": str(mock_port),
                                                  "MOCK_LISTEN_ADDR": "127.0.0.1"})
        s.spawn("webhook", [s.bin("botmesh-webhook")], {
            "WEBHOOK_MANAGER_PORT": str(wh_port), "WEBHOOK_LISTEN_ADDR": "127.0.0.1",
            "BROKER_ENDPOINT": s.endpoint})
        servers = {"gateway": (gw_port, "/invoke"), "broker metrics": (metrics, "/metrics"),
                   "webhook manager": (wh_port, "/stats"), "mock": (mock_port, "/webhook")}
        for name, (port, _) in servers.items():
            wait_until(lambda: http("GET", "http://127.0.0.1:%d/health" % port)[0] == 200, 20,
                       "%s /health on port %d" % (name, port))

        for name, (port, path) in servers.items():
            post = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" % path.encode()
            body = b"{}" + SMUGGLED + b"x" * (38 - len(SMUGGLED))
            refused("%s, Content-Length 2 then 40" % name,
                    exchange(port, post + b"Content-Length: 2\r\nContent-Length: 40\r\n\r\n" + body))
            refused("%s, Content-Length 40 then 2" % name,
                    exchange(port, post + b"Content-Length: 40\r\nContent-Length: 2\r\n\r\n" + body))
            refused("%s, Content-Length: 2, 40" % name,
                    exchange(port, post + b"Content-Length: 2, 40\r\n\r\n" + body))
            refused("%s, Content-Length with Transfer-Encoding" % name,
                    exchange(port, post + b"Content-Length: 7\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"2\r\n{}\r\n0\r\n\r\n"))
            # The same length twice is one length: the route answers it.
            raw = exchange(port, post + b"Content-Length: 2\r\nContent-length: 2\r\n"
                           b"Connection: close\r\n\r\n{}")
            check(raw.startswith(b"HTTP/1.1 ") and b"bad_framing" not in raw,
                  "%s: the same Content-Length twice is accepted" % name, raw[:300])

        # curl, as a client would send it (two -H Content-Length lines).
        url = "http://127.0.0.1:%d/invoke" % gw_port
        out = subprocess.run(["curl", "-s", "-i", "--max-time", "10", "-X", "POST", url,
                              "-H", "Content-Type: application/json", "-H", "Content-Length: 2",
                              "-H", "Content-Length: 40", "--data-binary", "{}" + "x" * 38],
                             capture_output=True, timeout=20)
        log("curl -> %r" % out.stdout[:200])
        check(out.stdout.startswith(b"HTTP/1.1 400") and b"bad_framing" in out.stdout,
              "curl with two Content-Length headers gets 400 bad_framing", out.stdout[:300])
        gw_log = gw.output()
        check("conflicting Content-Length" in gw_log, "the gateway logs the refused request", gw_log[-1000:])

        for name, (port, _) in servers.items():
            check(http("GET", "http://127.0.0.1:%d/health" % port)[0] == 200,
                  "%s still answers /health" % name)


if __name__ == "__main__":
    main(test)

"""Hostile HTTP clients all at once, while valid ones are served.

tests/gateway/test_hostile.py sends each kind of hostile request alone and
checks the gateway afterwards.  Here they all run at the same time for a
few seconds, from several threads, while the main thread keeps POSTing
valid /invoke requests and measures how long each takes:

- slowloris: connections that send a header line every 0.3 s and never
  finish, reconnecting whenever the gateway cuts them (fewer than the
  gateway's threads: with a thread per connection, more attackers than
  threads starve everyone until the request timeout, by design);
- header floods: a request head of 20,000 header lines (past
  GATEWAY_MAX_HEADER_BYTES), and one of 200 small headers (within the byte
  limit, past civetweb's 64 headers);
- 10 MB bodies announced with Content-Length and streamed;
- 1,000,000 open brackets, and invalid UTF-8 in a valid-looking body.

Checks: every valid request gets its 202 within 5 s (the request timeout is
2 s), each hostile request gets a 4xx with a JSON error or is cut (never a
2xx or 5xx, never a hang past its deadline), the gateway is alive and its
/health answers at the end, and its RSS stays below 300 MB (900 MB in an
ASan build: its quarantine alone holds 256 MB of freed memory)."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gateway"))
import harness                      # noqa: E402
from harness import check, log     # noqa: E402
import gwtest                       # noqa: E402

SECONDS = 6
VALID = json.dumps({"botType": "python", "payload": {"ok": 1}}).encode()


def request(port, data, timeout=10, read=True):
    """Send raw bytes; return the answer's status (0 when cut without one)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
            c.sendall(data)
            if not read:
                return 0
            answer = b""
            while b"\r\n" not in answer:
                chunk = c.recv(4096)
                if not chunk:
                    break
                answer += chunk
            return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0
    except (OSError, ValueError, IndexError):
        return 0


def post(body, extra=b""):
    return (b"POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + extra
            + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)


class Attack:
    def __init__(self, name, fn):
        self.name, self.fn = name, fn
        self.statuses = {}
        self.bad = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not STOP.is_set():
            t = time.monotonic()
            status = self.fn()
            took = time.monotonic() - t
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if (status and not 400 <= status < 500) or took > 12:
                self.bad.append((status, round(took, 1)))


STOP = threading.Event()


def main():
    with harness.Stack("hostile-http") as s:
        s.redis()
        s.broker()
        s.worker("--noop", "--type", "python", "--concurrency", "50")
        s.wait_workers(1, "python")
        g = gwtest.gateway(s, env={"GATEWAY_THREADS": "16", "GATEWAY_REQUEST_TIMEOUT_MS": "2000",
                                   "GATEWAY_KEEPALIVE_MS": "1000"})
        port = g.port

        def slowloris():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
                    c.sendall(b"POST /invoke HTTP/1.1\r\nHost: x\r\n")
                    for i in range(100):
                        if STOP.is_set():
                            break
                        c.sendall(b"X-Slow-%d: 1\r\n" % i)
                        time.sleep(0.3)
            except OSError:
                pass
            return 0

        many_lines = b"".join(b"X-Flood-%d: v\r\n" % i for i in range(20000))
        many_small = b"".join(b"X-H%d: v\r\n" % i for i in range(200))

        def big_body():
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                    c.sendall(b"POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 10485760\r\n\r\n")
                    chunk = b"[" * 65536
                    c.settimeout(0.5)
                    for _ in range(160):
                        try:
                            answer = c.recv(4096)
                            if answer:
                                return int(answer.split(b" ", 2)[1])
                            return 0
                        except socket.timeout:
                            pass
                        c.sendall(chunk)
            except (OSError, ValueError, IndexError):
                return 0
            return 0

        attacks = [Attack("slowloris-%d" % i, slowloris) for i in range(10)] + [
            Attack("20,000 header lines", lambda: request(port, b"GET /health HTTP/1.1\r\nHost: x\r\n"
                                                          + many_lines + b"\r\n")),
            Attack("200 small headers", lambda: request(port, post(VALID, many_small))),
            Attack("10 MB body", big_body),
            Attack("1,000,000 open brackets", lambda: request(port, post(b"[" * 1000000))),
            Attack("invalid UTF-8", lambda: request(port, post(b'{"botType":"python","payload":"\xff\xfe\xc0"}'))),
        ]
        for a in attacks:
            a.thread.start()

        latencies, failures = [], []
        t_end = time.monotonic() + SECONDS
        while time.monotonic() < t_end:
            t = time.monotonic()
            status = request(port, post(VALID), timeout=10)
            took = time.monotonic() - t
            latencies.append(took)
            if status != 202 or took > 5:
                failures.append((status, round(took, 2)))
        STOP.set()
        for a in attacks:
            a.thread.join(15)

        latencies.sort()
        log("valid requests: %d, median %.3fs, max %.3fs" % (
            len(latencies), latencies[len(latencies) // 2], latencies[-1]))
        for a in attacks:
            log("%-24s %s" % (a.name, a.statuses))
        check(len(latencies) >= 5, "valid requests were made during the attack (%d)" % len(latencies))
        check(not failures, "every valid request got its 202 within 5 s", failures[:10])
        bad = {a.name: a.bad[:5] for a in attacks if a.bad}
        check(not bad, "hostile requests got a 4xx or were cut, in time (never 2xx/5xx, never a hang)", bad)
        floods = [a for a in attacks if "header" in a.name]
        check(all(sum(n for st, n in a.statuses.items() if st) > 0 for a in floods),
              "the header floods were answered (not only cut)", {a.name: a.statuses for a in floods})
        check(g.alive(), "the gateway is alive")
        check(gwtest.curl(g.url + "/health", show=False).status == 200, "/health answers at the end")
        with open("/proc/%d/status" % g.pid) as f:
            rss = [int(l.split()[1]) // 1024 for l in f if l.startswith("VmRSS:")][0]
        ldd = subprocess.run(["ldd", s.bin("botmesh-gateway")], capture_output=True, text=True).stdout
        bound = 900 if "libasan" in ldd else 300
        check(rss < bound, "the gateway's RSS stays below %d MB (%d MB)" % (bound, rss))
        gwtest.stop_clean(g)


if __name__ == "__main__":
    harness.main(main)

"""gwtest.py - helpers for the gateway's black-box tests.

Starts botmesh-gateway under a harness.Stack, runs curl and prints each
exchange as a transcript, and offers a fake broker (a real ZeroMQ ROUTER
driven by a Python function) for answers a real broker gives only rarely
(queue_full, store_unavailable, timeouts...).
"""
import json
import os
import shlex
import socket
import subprocess
import time

import fakebroker
import harness
from harness import check, log, wait_until, free_port   # noqa: F401  (re-exported)


def gateway(s, *args, env=None, name=None, port=None, endpoint=None):
    """Start botmesh-gateway on a free_port() (or on port, for a restart:
    never a port the kernel gave, of its ephemeral range, which an outgoing
    connection may take meanwhile) and read the port it reports; waits
    until /health answers."""
    e = {"API_GATEWAY_PORT": str(port or free_port()), "GATEWAY_LISTEN": "127.0.0.1",
         "BROKER_ENDPOINT": endpoint or s.endpoint or "tcp://127.0.0.1:%d" % free_port(),
         "GATEWAY_THREADS": "32",
         # The tests' receivers listen on 127.0.0.1, and their webhook
         # manager allows private targets (harness.Stack.webhooks): the
         # gateway reads the same setting.
         "WEBHOOK_ALLOW_PRIVATE": "1"}
    if not s.redis_url:
        e["REDIS_URL"] = "none"
    e.update(env or {})
    name = name or "gateway-%d" % len(s.procs)
    p = s.spawn(name, [s.bin("botmesh-gateway")] + list(args), e)
    p.port = p.listening("http")
    p.url = "http://127.0.0.1:%d" % p.port
    wait_until(lambda: _health(p), 10, "gateway on port %d to answer /health" % p.port)
    return p


def _health(p):
    if not p.alive():
        raise harness.TestFailure("gateway exited: %s" % p.output()[-2000:])
    try:
        with socket.create_connection(("127.0.0.1", p.port), timeout=1) as c:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return c.recv(100).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # lower-case names
        self.body = body                # text
        try:
            self.json = json.loads(body)
        except ValueError:
            self.json = None

    def error_code(self):
        try:
            return self.json["error"]["code"]
        except (TypeError, KeyError):
            return None

    def __repr__(self):
        return "Resp(%s, %r, %s)" % (self.status, self.headers, self.body[:500])


def parse_http(raw):
    """Parse curl -i output (possibly with 100 Continue blocks)."""
    text = raw.decode("utf-8", errors="replace")
    while True:
        head, _, rest = text.partition("\r\n\r\n")
        if head.startswith("HTTP/") and head.split(" ", 2)[1] == "100":
            text = rest
            continue
        break
    lines = head.split("\r\n")
    status = int(lines[0].split(" ", 2)[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return Resp(status, headers, rest)


def curl(*args, show=True, timeout=30, stdin=None):
    """Run curl -s -i ARGS; print the transcript; return a Resp."""
    cmd = ["curl", "-s", "-i", "--max-time", str(timeout)] + list(args)
    out = subprocess.run(cmd, capture_output=True, timeout=timeout + 5, input=stdin)
    resp = parse_http(out.stdout)
    if show:
        shown = [a if len(a) < 300 else a[:120] + "...(%d bytes)" % len(a) for a in args]
        print("$ curl " + " ".join(shlex.quote(a) for a in shown), flush=True)
        keep = ("content-type", "retry-after", "allow", "location", "www-authenticate", "connection")
        print("  HTTP %d %s" % (resp.status, " ".join("%s=%s" % (k, v) for k, v in
                                                     resp.headers.items() if k in keep)))
        body = resp.body if len(resp.body) < 400 else resp.body[:400] + "..."
        print("  " + body.replace("\n", "\n  "), flush=True)
    return resp


def post_json(url, body, *extra, show=True):
    data = body if isinstance(body, str) else json.dumps(body)
    return curl("-X", "POST", url, "-H", "Content-Type: application/json", "-d", data, *extra,
                show=show)


def raw_request(port, data, read=True, timeout=10):
    """Send raw bytes on a new connection; return the raw answer (bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as c:
        c.sendall(data)
        if not read:
            return b""
        chunks = []
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                joined = b"".join(chunks)
                head, sep, body = joined.partition(b"\r\n\r\n")
                if sep:
                    for line in head.split(b"\r\n"):
                        if line.lower().startswith(b"content-length:"):
                            if len(body) >= int(line.split(b":")[1]):
                                return joined
        except socket.timeout:
            pass
        return b"".join(chunks)


def promtool_ok(text):
    """promtool check metrics: returns (rc, output)."""
    out = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                         capture_output=True, timeout=30)
    return out.returncode, (out.stdout + out.stderr).decode(errors="replace")


def start_workers(s, types, credit=50):
    """No-op workers for the given bot types: botmesh-worker --noop when it
    is built, else the benchmark's no-op worker."""
    if os.path.exists(s.bin("botmesh-worker")):
        procs = [s.worker("--type", t, "--noop", "--concurrency", str(credit)) for t in types]
    else:
        procs = [s.spawn("noop-worker", [s.bin("bm-bench-worker"), "noop", "--endpoint", s.endpoint,
                                         "--types", ",".join(types), "--credit", str(credit)])]
    for t in types:
        s.wait_workers(1, bot_type=t)
    return procs


class FakeBroker(fakebroker.FakeBroker):
    """The fake broker (tests/lib/fakebroker.py) answering BMC01 requests
    with a Python function.

    handler(command, body) returns (reply_command, reply_body) - "req" is
    added - or None for no answer.  Requests seen are in .seen, as
    (command, body)."""

    def __init__(self, handler):
        def respond(fb, m):
            answer = handler(m.cmd, m.body) if isinstance(m.body, dict) else None
            if answer is None:
                return []
            cmd, reply = answer
            return [(cmd, dict(reply, req=m.body.get("req")))]
        super().__init__(respond)

    @property
    def seen(self):
        return [(m.cmd, m.body) for m in self.got()]


def stop_clean(g):
    """SIGTERM the gateway; check it exits 0 with no sanitizer report (under
    ASan a leak at exit makes the exit code non-zero)."""
    rc = g.stop()
    out = g.output()
    check(rc == 0 and "Sanitizer" not in out and "runtime error" not in out,
          "gateway %s stopped cleanly (rc %s)" % (g.name, rc), out[-1500:])

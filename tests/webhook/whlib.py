"""whlib.py - helpers for the webhook tests: start botmesh-mock and
botmesh-webhook under a harness.Stack, talk to their HTTP APIs."""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import fakebroker
import harness
import zmq
from harness import pack, unpack
from harness import check, http, log, wait_until


def mock(stack, env=None, name="mock"):
    """Start botmesh-mock on a free port (127.0.0.1); returns the Proc with
    .port and .url set, once /health answers."""
    e = {"MOCK_WEBHOOK_PORT": "0", "MOCK_LISTEN_ADDR": "127.0.0.1"}
    e.update(env or {})
    p = stack.spawn(name, [stack.bin("botmesh-mock")], e)
    p.port = p.listening("http")
    p.url = "http://127.0.0.1:%d" % p.port
    wait_until(lambda: http("GET", p.url + "/health", timeout=2)[0] == 200, 10, "mock to answer /health")
    return p


def manager(stack, env=None, name="webhook", wait=True, wrap=()):
    """Start botmesh-webhook with test-friendly defaults; returns the Proc
    with .port and .url set (waits for /health unless wait is False).
    wrap: a command line that execs the manager (its argv follows it)."""
    e = {"WEBHOOK_MANAGER_PORT": "0", "WEBHOOK_LISTEN_ADDR": "127.0.0.1",
         "WEBHOOK_ALLOW_PRIVATE": "1", "BROKER_ENDPOINT": stack.endpoint or "tcp://127.0.0.1:1",
         "WEBHOOK_NAME": name}
    e.update(env or {})
    p = stack.spawn(name, list(wrap) + [stack.bin("botmesh-webhook")], e)
    try:
        p.port = p.listening("http")
        p.url = "http://127.0.0.1:%d" % p.port
    except harness.TestFailure:
        if wait:
            raise
        p.port = p.url = None       # it exited at start (a configuration test)
    if wait:
        wait_until(lambda: http("GET", p.url + "/health", timeout=2)[0] == 200, 10,
                   "webhook manager to answer /health")
    return p


def get_json(url):
    status, _, body = http("GET", url, timeout=5)
    if status != 200:
        raise harness.TestFailure("GET %s answered %s: %r" % (url, status, body))
    return body


def mock_mode(mock_proc, **mode):
    status, _, body = http("POST", mock_proc.url + "/mode", mode)
    check(status == 200, "mock mode set to %r" % (mode,), body)
    return body


def mock_deliveries(mock_proc, job_id):
    return get_json("%s/deliveries?jobId=%s&limit=1000" % (mock_proc.url, job_id))["deliveries"]


def stop_clean(*procs):
    """SIGTERM each process and check it exits 0 (under ASan/UBSan a
    sanitizer report makes the exit code non-zero)."""
    for p in procs:
        rc = p.stop(timeout=30)
        check(rc == 0, "%s stopped cleanly on SIGTERM (exit %s)" % (p.name, rc), p.output()[-2000:])


# --- A DNS server that never answers, for a manager in its own mount namespace.

def silent_name_server(address):
    """A name server on address:53 (a daemon thread) that reads every query
    and never answers.  The test is skipped (exit 77, with a log line) where
    the port cannot be bound or unshare -m (to bind a resolv.conf naming it
    over /etc/resolv.conf, see dns_wrap) is not allowed."""
    def skip(why):
        log("SKIP:", why)
        sys.exit(harness.SKIP)
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        skip("unshare -m is not allowed here")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((address, 53))
    except OSError as e:
        skip("cannot bind %s:53 for a silent name server (%s)" % (address, e))

    def run():
        while True:
            s.recvfrom(4096)
    threading.Thread(target=run, daemon=True).start()


def dns_wrap(stack, address, hosts=None, timeout=5):
    """The wrap (see manager) that runs the manager in its own mount
    namespace with /etc/resolv.conf naming only address (timeout s x 2
    tries), and /etc/hosts holding only the text hosts when it is given."""
    resolv = os.path.join(stack.dir, "resolv.conf")
    with open(resolv, "w") as f:
        f.write("nameserver %s\noptions timeout:%d attempts:2\n" % (address, timeout))
    script = 'mount --bind "$0" /etc/resolv.conf && exec "$@"'
    files = [resolv]
    if hosts is not None:
        files.append(os.path.join(stack.dir, "hosts"))
        with open(files[1], "w") as f:
            f.write(hosts)
        script = 'mount --bind "$0" /etc/resolv.conf && mount --bind "$1" /etc/hosts && shift && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script] + files


# --- A fake broker (docs/protocol.md sections 5, 6), for tests without the real one.

W = b"BMW01"
C = b"BMC01"
READY, JOB, PROGRESS, DONE, HEARTBEAT, DISCONNECT, WCANCEL, RELEASE, NACK = range(1, 10)
REDELIVER, ACCEPTED, REJECTED = 6, 0x81, 0x82
HB = 200        # HEARTBEAT_INTERVAL_MS the tests give the manager


class FakeBroker(fakebroker.FakeBroker):
    """The fake broker (tests/lib/fakebroker.py) as the webhook manager's
    broker: heartbeats the worker every HB ms (heartbeats=False: plays
    dead), answers a client's REDELIVER with redeliver_answer(body) ->
    (command, body), and keeps what arrives in .inbox as (identity,
    header, command, body) until expect() takes it."""

    def __init__(self):
        self.redeliver_answer = None   # function(body) -> (command, body)

        def respond(fb, m):
            if m.header == C and m.cmd == REDELIVER and self.redeliver_answer:
                cmd, reply = self.redeliver_answer(m.body)
                return [(C, cmd, reply)]
            return []
        super().__init__(respond, heartbeat_ms=HB)
        self.port = int(self.endpoint.rsplit(":", 1)[1])

    @property
    def heartbeats(self):
        return not self.quiet

    @heartbeats.setter
    def heartbeats(self, on):
        self.quiet = not on

    @property
    def worker(self):
        """Identity of the worker's current socket (its last READY)."""
        readys = [m.ident for m in self.got(READY) if m.header == W]
        return readys[-1] if readys else None

    @property
    def inbox(self):
        with self.lock:
            return [(m.ident, m.header, m.cmd, m.body) for m in self.unread]

    def send(self, command, body, identity=None):
        super().send(identity or self.worker, command, body, header=W)

    def pump(self, seconds):
        """Let the worker run for a while (heartbeats go on meanwhile)."""
        time.sleep(seconds)

    def expect(self, pred, timeout, what):
        """Wait for a message matching pred(header, command, body); returns
        (identity, command, body) and removes it from the inbox."""
        try:
            m = self.take(lambda m: pred(m.header, m.cmd, m.body), timeout, what)
        except fakebroker.FakeBrokerTimeout as e:
            raise harness.TestFailure(str(e))
        return m.ident, m.cmd, m.body

    def expect_cmd(self, command, job_id=None, timeout=10, what=None):
        return self.expect(lambda h, c, b: h == W and c == command and isinstance(b, dict)
                           and (job_id is None or b.get("jobId") == job_id),
                           timeout, what or "command %d for %s" % (command, job_id))


def manager_on_fake_broker(stack, env=None):
    """A FakeBroker and botmesh-webhook connected to it (heartbeats every HB
    ms), once its READY arrived; returns (broker, manager)."""
    broker = FakeBroker()
    stack.endpoint = broker.endpoint
    e = {"HEARTBEAT_INTERVAL_MS": str(HB)}
    e.update(env or {})
    mgr = manager(stack, e)
    broker.expect_cmd(READY, what="the manager's READY")
    return broker, mgr


def job(job_id, url, body, webhook=None, deadline_in=3600000):
    msg = {"jobId": job_id, "botType": "webhook",
           "payload": {"url": url, "webhookId": job_id.split(".wh")[0], "body": body},
           "attempt": 1, "timeoutMs": deadline_in, "deadline": int(time.time() * 1000) + deadline_in}
    if webhook is not None:
        msg["webhook"] = webhook
    return msg


# --- A receiver that answers whatever a test scripts, byte for byte.

class RawReceiver:
    """A TCP server on 127.0.0.1 (.port) that reads each request (head and
    Content-Length body) and hands it to answer(receiver, path, conn, number):
    the function writes what it likes on the socket (garbage, endless
    bodies...) and returns True to keep the connection for another request.
    .requests lists (connection number, path); .sent[number] counts the
    bytes answer() reported with note_sent.  host: the address it listens
    on ("::1" for IPv6).  A context manager: closes on exit."""

    def __init__(self, answer, host="127.0.0.1"):
        import socket
        import threading
        self.answer = answer
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = []
        self.sent = {}
        self.closed = {}            # connection number -> True once the peer closed it
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                number = self.connections
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn, number):
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                buf = buf[length:]
                path = head.split(b"\r\n")[0].split(b" ")[1].decode()
                with self.lock:
                    self.requests.append((number, path))
                try:
                    keep = self.answer(self, path, conn, number)
                except OSError:     # the manager closed the connection on us
                    with self.lock:
                        self.closed[number] = True
                    return
                if not keep:
                    return

    def note_sent(self, number, count):
        with self.lock:
            self.sent[number] = self.sent.get(number, 0) + count

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""whlib.py - helpers for the webhook tests: start botmesh-mock and
botmesh-webhook under a harness.Stack, talk to their HTTP APIs."""
import json
import os
import time

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


def manager(stack, env=None, name="webhook", wait=True):
    """Start botmesh-webhook with test-friendly defaults; returns the Proc
    with .port and .url set (waits for /health unless wait is False)."""
    e = {"WEBHOOK_MANAGER_PORT": "0", "WEBHOOK_LISTEN_ADDR": "127.0.0.1",
         "WEBHOOK_ALLOW_PRIVATE": "1", "BROKER_ENDPOINT": stack.endpoint or "tcp://127.0.0.1:1",
         "WEBHOOK_NAME": name}
    e.update(env or {})
    p = stack.spawn(name, [stack.bin("botmesh-webhook")], e)
    p.port = p.listening("http") if wait else None
    p.url = "http://127.0.0.1:%d" % p.port if wait else None
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


# --- A fake broker (docs/protocol.md sections 5, 6), for tests without the real one.

W = b"BMW01"
C = b"BMC01"
READY, JOB, PROGRESS, DONE, HEARTBEAT, DISCONNECT, WCANCEL, RELEASE, NACK = range(1, 10)
REDELIVER, ACCEPTED, REJECTED = 6, 0x81, 0x82
HB = 200        # HEARTBEAT_INTERVAL_MS the tests give the manager


class FakeBroker:
    def __init__(self):
        self.ctx = zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:0")
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.port = int(self.endpoint.rsplit(":", 1)[1])
        self.worker = None          # identity of the worker's current socket
        self.inbox = []             # (identity, header, command, body)
        self.heartbeats = True      # answer with heartbeats
        self.next_hb = 0
        self.redeliver_answer = None   # function(body) -> (command, body)

    def send(self, command, body, identity=None):
        self.sock.send_multipart([identity or self.worker, W, bytes([command]), pack(body)])

    def pump(self, seconds):
        deadline = time.monotonic() + seconds
        while True:
            now = time.monotonic()
            if self.heartbeats and self.worker and now >= self.next_hb:
                self.send(HEARTBEAT, {})
                self.next_hb = now + HB / 1000.0
            left = min(deadline, self.next_hb if self.heartbeats and self.worker else deadline) - now
            if now >= deadline:
                return
            if self.sock.poll(max(1, int(left * 1000))):
                frames = self.sock.recv_multipart()
                ident, header, command, body = frames[0], frames[1], frames[2][0], unpack(frames[3])
                if header == C and command == REDELIVER and self.redeliver_answer:
                    cmd, reply = self.redeliver_answer(body)
                    self.sock.send_multipart([ident, C, bytes([cmd]), pack(reply)])
                self.inbox.append((ident, header, command, body))
                if header == W and command == READY:
                    self.worker = ident

    def expect(self, pred, timeout, what):
        """Wait for a message matching pred(header, command, body); returns it
        and removes it from the inbox."""
        deadline = time.monotonic() + timeout
        while True:
            for i, (ident, header, command, body) in enumerate(self.inbox):
                if pred(header, command, body):
                    del self.inbox[i]
                    return ident, command, body
            if time.monotonic() >= deadline:
                raise harness.TestFailure("timed out after %ss waiting for %s; inbox: %r"
                                          % (timeout, what, [(c, b) for _, _, c, b in self.inbox][-10:]))
            self.pump(0.05)

    def expect_cmd(self, command, job_id=None, timeout=10, what=None):
        return self.expect(lambda h, c, b: h == W and c == command
                           and (job_id is None or b.get("jobId") == job_id),
                           timeout, what or "command %d for %s" % (command, job_id))


def job(job_id, url, body, webhook=None, deadline_in=3600000):
    msg = {"jobId": job_id, "botType": "webhook",
           "payload": {"url": url, "webhookId": job_id.split(".wh")[0], "body": body},
           "attempt": 1, "timeoutMs": deadline_in, "deadline": int(time.time() * 1000) + deadline_in}
    if webhook is not None:
        msg["webhook"] = webhook
    return msg

"""fakeworker.py - the one fake worker of the tests: a BMW01 worker in the
test process, driven step by step (tests/lib/fakebroker.py is the other
side).

Tests of the broker's own rules (dispatch order, semaphores, liveness,
NACKs) need a worker whose every move the test controls: this one sends
exactly what it is told to, and records what the broker sends it.
"""
import time
import zmq
import harness as h


class FakeWorker:
    def __init__(self, endpoint, name, types, credit, ready=True, routing_id=None, curve=None):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        h.curve_apply(self.sock, curve)     # (broker public key, secret cert path)
        if routing_id:                  # the broker's log names it (in hex)
            self.sock.setsockopt(zmq.ROUTING_ID, routing_id)
        self.sock.connect(endpoint)
        self.name, self.types, self.credit = name, types, credit
        if ready:
            self.ready(credit)

    def send(self, cmd, body, header=h.WORKER):
        self.sock.send_multipart([header, bytes([cmd]), h.pack(body)])

    def ready(self, credit):
        self.send(h.READY, {"name": self.name, "types": self.types, "credit": credit})

    def heartbeat(self):
        self.send(h.HEARTBEAT, {})

    def recv(self, timeout=5.0, skip_heartbeats=True):
        """Next message (command, body); None on timeout.  While waiting the
        worker heartbeats every 50 ms, as a live worker does."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not self.sock.poll(int(min(left, 0.05) * 1000)):
                self.heartbeat()
                continue
            frames = self.sock.recv_multipart()
            cmd, body = frames[1][0], h.unpack(frames[2])
            if skip_heartbeats and cmd == h.HEARTBEAT:
                continue
            return cmd, body

    def recv_job(self, timeout=5.0):
        msg = self.recv(timeout)
        if msg is None:
            return None
        h.check(msg[0] == h.JOB, "worker %s received JOB" % self.name, msg)
        return msg[1]

    def done(self, job_id, result=None, ok=True, error=None):
        body = {"jobId": job_id, "ok": ok}
        if ok:
            body["result"] = result
        else:
            body["error"] = error or {"code": "bot_failed", "message": "failed"}
        self.send(h.DONE, body)

    def close(self):
        self.sock.close()

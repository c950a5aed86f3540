"""fakebroker.py - a scripted ROUTER for unit tests of the botmesh clients.

It speaks the framing of docs/protocol.md section 2 (the ROUTER adds the
routing identity), records every message it receives, and answers with a
responder function the test supplies. It runs in its own thread; the test
talks to it through thread-safe methods.
"""
import queue
import threading
import time

import msgpack
import zmq


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class Msg:
    def __init__(self, ident, frames):
        self.ident = ident
        self.frames = frames
        self.header = frames[0] if frames else None
        self.cmd = frames[1][0] if len(frames) > 1 and len(frames[1]) == 1 else None
        try:
            self.body = unpack(frames[2]) if len(frames) > 2 else None
        except Exception:
            self.body = None
        self.at = time.monotonic()

    def __repr__(self):
        return "<Msg %r cmd=0x%02x %r>" % (self.ident, self.cmd or 0, self.body)


class FakeBroker:
    def __init__(self, responder=None, ctx=None, curve_secret=None):
        self.ctx = ctx or zmq.Context.instance()
        self.responder = responder          # fn(broker, msg) -> list of (cmd, body) or (header, cmd, body)
        self.messages = []
        self.lock = threading.Lock()
        self.outq = queue.Queue()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        if curve_secret:                    # a CURVE server, as the broker with a server key
            self.router.curve_server = True
            self.router.curve_secretkey = curve_secret
        self.router.bind("tcp://127.0.0.1:*")
        self.endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.header = b"BMC01"
        self.heartbeat_ms = 0               # > 0: HEARTBEAT every worker peer on a timer, as the broker does
        self._peers = set()
        self._next_hb = 0.0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self._stop.is_set():
            while True:
                try:
                    ident, frames = self.outq.get_nowait()
                except queue.Empty:
                    break
                self.router.send_multipart([ident] + frames)
            now = time.monotonic()
            if self.heartbeat_ms and now >= self._next_hb:
                self._next_hb = now + self.heartbeat_ms / 1000.0
                for ident in list(self._peers):
                    self.router.send_multipart([ident, b"BMW01", b"\x05", pack({})])
            if self.router.poll(10):
                raw = self.router.recv_multipart()
                msg = Msg(raw[0], raw[1:])
                if msg.header == b"BMW01":
                    self._peers.add(msg.ident)
                with self.lock:
                    self.messages.append(msg)
                if self.responder:
                    for out in self.responder(self, msg) or []:
                        self.send(msg.ident, *out)
        self.router.close(0)

    def send(self, ident, *parts):
        """send(ident, cmd, body) with the default header, or send(ident, header, cmd, body),
        or send(ident, [raw frames])."""
        if len(parts) == 1:
            frames = list(parts[0])
        elif len(parts) == 2:
            frames = [self.header, bytes([parts[0]]), pack(parts[1])]
        else:
            frames = [parts[0], bytes([parts[1]]), pack(parts[2])]
        self.outq.put((ident, frames))

    def got(self, cmd=None, ident=None):
        with self.lock:
            return [m for m in self.messages if (cmd is None or m.cmd == cmd) and (ident is None or m.ident == ident)]

    def wait_for(self, pred, timeout=5.0, what="a message"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for m in self.messages:
                    if pred(m):
                        return m
            time.sleep(0.01)
        raise AssertionError("fake broker: timed out waiting for %s; got %r" % (what, self.messages[-10:]))

    def close(self):
        self._stop.set()
        self.thread.join(5)

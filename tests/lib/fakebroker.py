"""fakebroker.py - the one fake broker of the tests: a real ZeroMQ ROUTER
played by a Python thread, for answers and misbehaviour the real broker
gives rarely or never (queue_full, silence, hostile frames, a broker that
comes up late...).

It speaks the framing of docs/protocol.md section 2 (the ROUTER adds the
routing identity) to both sides: clients (BMC01: the gateway, the client
libraries) and workers (BMW01: botmesh-worker, the webhook manager).

    fb = FakeBroker(responder)      # bound at tcp://127.0.0.1:0; fb.endpoint
    ...                             # point the component at fb.endpoint
    m = fb.take(lambda m: m.cmd == DONE, 10, "DONE")
    fb.send(m.ident, JOB, {...}, header=b"BMW01")
    fb.close()

- Every message received is kept (fb.messages, fb.got(), fb.wait_for()),
  and also put in the unread list that fb.take() consumes in order.
- responder(fb, msg), if given, returns what to answer: a list of
  (cmd, body) (with fb.header) or (header, cmd, body).
- Worker peers (header BMW01) get a HEARTBEAT every heartbeat_ms while
  quiet is False, as the broker does; quiet=True plays dead.
- send() is thread-safe: the socket is the thread's alone.
"""
import queue
import threading
import time

import msgpack
import zmq

CLIENT, WORKER = b"BMC01", b"BMW01"
HEARTBEAT = 5


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


class Msg:
    """One message as received: identity, the frames after it, and their
    reading (header, command byte, body; None where they are malformed)."""

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


class FakeBrokerTimeout(AssertionError):
    pass


class FakeBroker:
    def __init__(self, responder=None, ctx=None, curve_secret=None, endpoint=None, heartbeat_ms=0,
                 sndhwm=None):
        self.ctx = ctx or zmq.Context.instance()
        self.responder = responder
        self.messages = []                  # every Msg, oldest first
        self.unread = []                    # not taken yet, oldest first
        self.lock = threading.Condition()
        self.outq = queue.Queue()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
        if sndhwm is not None:              # past it (1000 by default) sends are dropped; 0: none
            self.router.setsockopt(zmq.SNDHWM, sndhwm)
        if curve_secret:                    # a CURVE server, as the broker with a server key
            self.router.curve_server = True
            self.router.curve_secretkey = curve_secret
        self.router.bind(endpoint or "tcp://127.0.0.1:0")
        self.endpoint = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.header = CLIENT                # send()'s default header
        self.heartbeat_ms = heartbeat_ms    # > 0: HEARTBEAT every worker peer on a timer
        self.quiet = False                  # True: no heartbeats (a broker playing dead)
        self.peers = set()                  # identities that sent BMW01
        self._last_sent = {}                # identity -> when we last sent it anything
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
                self._last_sent[ident] = time.monotonic()
            self._heartbeat()
            wait = 10 if not self.heartbeat_ms else max(1, min(10, int(self.heartbeat_ms / 4)))
            if self.router.poll(wait):
                raw = self.router.recv_multipart()
                msg = Msg(raw[0], raw[1:])
                if msg.header == WORKER and msg.ident not in self.peers:
                    self.peers.add(msg.ident)
                    self._heartbeat(msg.ident)      # a new worker hears from us at once
                with self.lock:
                    self.messages.append(msg)
                    self.unread.append(msg)
                    self.lock.notify_all()
                if self.responder:
                    for out in self.responder(self, msg) or []:
                        FakeBroker.send(self, msg.ident, *out)
        self.router.close(0)

    def _heartbeat(self, new=None):
        """HEARTBEAT each worker peer we sent nothing for heartbeat_ms
        (the socket thread only)."""
        if not self.heartbeat_ms or self.quiet:
            return
        now = time.monotonic()
        for ident in [new] if new else list(self.peers):
            if new or now - self._last_sent.get(ident, 0) >= self.heartbeat_ms / 1000.0:
                self.router.send_multipart([ident, WORKER, bytes([HEARTBEAT]), pack({})])
                self._last_sent[ident] = now

    def send(self, ident, *parts, header=None):
        """send(ident, cmd, body) with `header` (default self.header),
        send(ident, header, cmd, body), or send(ident, [raw frames])."""
        if len(parts) == 1:
            frames = list(parts[0])
        elif len(parts) == 2:
            frames = [header or self.header, bytes([parts[0]]), pack(parts[1])]
        else:
            frames = [parts[0], bytes([parts[1]]), pack(parts[2])]
        self.outq.put((ident, frames))

    def send_raw(self, ident, frames):
        """Send these frames after the identity, as they are."""
        self.outq.put((ident, list(frames)))

    def got(self, cmd=None, ident=None):
        with self.lock:
            return [m for m in self.messages
                    if (cmd is None or m.cmd == cmd) and (ident is None or m.ident == ident)]

    def _await(self, pool, pred, remove, timeout, what):
        """The first message of pool (a list guarded by self.lock) that
        matches pred, taken out of it if remove; waits at most timeout."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for i, m in enumerate(pool):
                    if pred is None or pred(m):
                        if remove:
                            del pool[i]
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FakeBrokerTimeout("fake broker: timed out after %ss waiting for %s; got %r"
                                            % (timeout, what, pool[-10:]))
                self.lock.wait(left)

    def wait_for(self, pred, timeout=5.0, what="a message"):
        """The first message ever received that matches pred (not consumed)."""
        return self._await(self.messages, pred, False, timeout, what)

    def take(self, pred=None, timeout=5.0, what="a message"):
        """Remove and return the oldest unread message that matches pred
        (any, without), waiting at most timeout seconds."""
        return self._await(self.unread, pred, True, timeout, what)

    def close(self):
        self._stop.set()
        self.thread.join(5)

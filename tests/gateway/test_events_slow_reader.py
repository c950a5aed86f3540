"""A client that stopped reading its GET /events never holds up the other
streams (gateway/README.md, "Live events"): when the gateway subscribes
anew and the broker replays the events in between, a stream whose queue
is full and whose client does not read is not waited for; it loses that
replay (a `gap` with reason `slow_reader` once it reads again) while the
streams that read get it at once.

A fake broker answers SUBSCRIBE (sub-1).  Two streams open: R, read by
the test, and S, from a socket with a small receive buffer that the test
does not read.  LIVE events follow, the first BIG of 64 KiB each: R gets
them all, S's socket and queue (1024 events) fill and it loses the rest.  That broker
goes away and another binds its endpoint: the gateway subscribes since
its last event (sub-2), the broker replays REPLAY events and sends a live
one, all before its answer.  R must get them within 2.5 s of the answer, in order, no reset, no
gap (the gateway before waited 5 s for S at each new subscription, every
stream getting nothing meanwhile).  S, read at last: what its queue
held, then a `gap` `slow_reader`.

Real gateway and sockets; the brokers are tests/lib/fakebroker.py.
"""
import queue
import socket
import threading
import time

import zmq

import fakebroker
import harness
from gwtest import check, gateway, stop_clean
from test_events import KEY, Stream

SUBSCRIBE, UNSUBSCRIBE, PING = 0x0F, 0x10, 0x08
REPLY, EVENT = 0x83, 0x87
BIG, LIVE = 120, 1620                   # the first BIG live events carry PAD
REPLAY = 5
PAD = "x" * 65536


def event(sub, seq, number, pad=""):
    body = {"subscription": sub, "seq": seq, "id": "1-%d" % number, "event": "completed",
            "jobId": "job-%d" % number, "botType": "python",
            "timestamp": 1700000000000 + number}
    if pad:
        body["returnvalue"] = pad
    return body


def responder(sub, first, replay, answered, subscribes):
    """A broker's answers: SUBSCRIBE makes `sub`, its `replay` events
    numbered from `first` and one live one sent first (the race made
    certain: the gateway holds them until it has the answer), then the
    REPLY, at answered[-1]."""
    def respond(fb, m):
        body = m.body if isinstance(m.body, dict) else {}
        req = body.get("req")
        if m.cmd == SUBSCRIBE and "subscription" not in body:
            subscribes.append(body)
            for k in range(replay + 1):
                fb.send(m.ident, EVENT, event(sub, k + 1, first + k))
            answered.append(time.monotonic())
            return [(REPLY, {"req": req, "subscription": sub, "ttlMs": 30000, "seq": 0,
                             "dropped": 0, "eventId": "1-%d" % (first - 1), "reset": False,
                             "replayed": replay})]
        if m.cmd == SUBSCRIBE:
            return [(REPLY, {"req": req, "subscription": sub, "ttlMs": 30000, "seq": 0,
                             "dropped": 0, "eventId": "1-1"})]
        if m.cmd == UNSUBSCRIBE:
            return [(REPLY, {"req": req})]
        if m.cmd == PING:
            return [(REPLY, {"req": req, "redis": "ok", "uptimeMs": 1000})]
        return []
    return respond


def stuck_stream(port, rcvbuf=4096):
    """GET /events from a socket with a small receive buffer (rcvbuf bytes),
    its head read; returns (socket, the bytes read past the head)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(("GET /events HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n"
                  "Accept: text/event-stream\r\n\r\n" % KEY).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(1)                 # no further: the rest stays unread
        if not data:
            break
        buf += data
    check(buf.startswith(b"HTTP/1.1 200") and buf.endswith(b"\r\n\r\n"),
          "the stuck stream's head: 200", buf)
    return sock, b""


def reader(sock, buf):
    """A Stream reading an open socket from here on."""
    stream = Stream.__new__(Stream)
    stream.sock, stream.buf = sock, buf
    stream.items, stream.closed = queue.Queue(), threading.Event()
    threading.Thread(target=stream._read, daemon=True).start()
    return stream


def rebind(endpoint, respond):
    """A fake broker on the endpoint another just closed (libzmq lets it go
    in the background: a few tries, 10 s at the most)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            return fakebroker.FakeBroker(respond, endpoint=endpoint, sndhwm=0)
        except zmq.ZMQError as e:
            if e.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def main():
    subscribes, answered = [], []
    fake = fakebroker.FakeBroker(responder("sub-1", 1, 0, answered, subscribes), sndhwm=0)
    endpoint = fake.endpoint
    second = None
    try:
        with harness.Stack("gw-events-slow-reader") as s:
            # civetweb's write timeout well past the test: S stays open
            g = gateway(s, endpoint=endpoint,
                        env={"API_KEYS": KEY, "GATEWAY_REQUEST_TIMEOUT_MS": "120000"})
            r = Stream(g.port)
            check(r.status == 200, "the reading stream: 200", r.headers)
            sock, buf = stuck_stream(g.port)
            harness.wait_until(lambda: len(answered) == 1, 10, "the gateway's SUBSCRIBE")
            # The first live event of sub-1, number 1, came with the answer
            check(r.next(15)[1] == "1-1", "the reading stream gets sub-1's first event")
            # In bursts of 500 that R reads before the next (its queue holds
            # 1024).  S's socket takes at most 4 MiB (tcp_wmem's maximum), its
            # queue the next 1024: full then, losing the rest, its thread in
            # the write of a 64 KiB event that the kernel's trickle to a
            # reader that reads nothing does not complete for seconds
            ident = fake.got(SUBSCRIBE)[0].ident
            for first in range(2, LIVE + 2, 500):
                numbers = range(first, min(first + 500, LIVE + 2))
                for k in numbers:
                    fake.send(ident, EVENT, event("sub-1", k, k, PAD if k < BIG + 2 else ""))
                got = [r.next(15)[:2] for _ in numbers]
                check(got == [("completed", "1-%d" % k) for k in numbers],
                      "the reading stream gets live events %d-%d in order"
                      % (numbers[0], numbers[-1]), [i for i in got if i[0] != "completed"][:3])

            fake.close()
            fake = None
            second = rebind(endpoint, responder("sub-2", LIVE + 2, REPLAY, answered, subscribes))
            harness.wait_until(lambda: len(answered) == 2, 15,
                               "the gateway's SUBSCRIBE to the second broker")
            check(subscribes[1].get("since") == "1-%d" % (LIVE + 1),
                  "SUBSCRIBE since the last event the gateway got", subscribes[1])
            for k in range(LIVE + 2, LIVE + 2 + REPLAY + 1):
                item = r.next(15)
                check(item[0] == "completed" and item[1] == "1-%d" % k,
                      "the reading stream gets the replay then the live event, in order, "
                      "no reset or gap", item[:2])
                if k == LIVE + 2:
                    took = time.monotonic() - answered[1]
                    check(took < 2.5, "the replay's first event reaches the reading stream "
                          "%.2f s after the broker's answer, under 2.5 s: the stuck stream "
                          "is not waited for" % took)

            s_stream = reader(sock, buf)
            sock.settimeout(None)
            gap = None
            for _ in range(LIVE + REPLAY + 4):
                item = s_stream.next(15)
                if item[0] == "gap":
                    gap = item
                    break
            check(gap and gap[2].get("reason") == "slow_reader" and gap[2].get("missed", 0) > 0,
                  "the stuck stream, read at last: a gap slow_reader", gap)
            sock.close()
            r.sock.close()
            stop_clean(g)
    finally:
        if fake:
            fake.close()
        if second:
            second.close()


if __name__ == "__main__":
    harness.main(main)

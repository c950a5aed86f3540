"""A client that asks and never reads: the broker's memory must stay bounded.

One DEALER sends 10,000 METRICS requests (each answer is ~12 KB of
Prometheus text) and never reads an answer, then stays connected.  ZeroMQ
queues what the broker sends to that peer in the broker's memory, up to the
ROUTER's send high-water mark; with a mark of 1,000,000 messages a single
such client can make the broker hold gigabytes (~116 MB here, ~11 GB at the
mark) until it disconnects: one misbehaving client can get the broker
OOM-killed, and every job with it.  Every queue must be bounded.

Checks: another client is answered meanwhile; the broker's resident memory
grows by less than 64 MB for the 10,000 unread answers (a bound that the
default HWM of 1,000 messages per peer, or dropping answers to a peer whose
queue is full, would meet; the broker drops them past BROKER_PEER_HWM, set
to 2,000 here).  What is left after the client goes is only
logged (glibc keeps freed memory)."""
import os
import sys
import time

import zmq

import harness as h
from harness import check, log, wait_until

N = 10000
BOUND_MB = 64


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main():
    with h.Stack("slow-reader") as s:
        # BROKER_PEER_HWM bounds what the broker queues for one peer (default
        # 10,000 messages: room for pipelining clients); the memory bound is
        # that many answers.  With ~12 KB METRICS answers, 2,000 keep the
        # growth far under 64 MB.
        # Under ASan, freed memory sits in its quarantine (256 MB): answers
        # the broker dropped would still count.  Measure without it.
        asan = ":".join(x for x in (os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=0") if x)
        broker = s.broker(redis=False, env={"BROKER_PEER_HWM": "2000", "ASAN_OPTIONS": asan})
        c = s.client()
        cmd, r = c.request(h.METRICS)
        reply_size = len(h.pack(r))
        base = rss_mb(broker.pid)
        reader = zmq.Context.instance().socket(zmq.DEALER)
        reader.setsockopt(zmq.LINGER, 0)
        reader.setsockopt(zmq.SNDHWM, 0)
        reader.setsockopt(zmq.RCVHWM, 1)
        reader.setsockopt(zmq.RCVBUF, 4096)
        reader.connect(s.endpoint)
        for i in range(N):
            reader.send_multipart([h.CLIENT, bytes([h.METRICS]), h.pack({"req": i})])
        t = time.monotonic()
        cmd, _ = c.request(h.PING, timeout=60)
        check(cmd == h.REPLY, "another client is answered while the reader reads nothing "
              "(%.2fs)" % (time.monotonic() - t))
        # The requests reach the broker over a while; its memory is what we
        # measure, so wait until it stops changing (one reading every
        # 0.5 s, stable for 2 s, at most 30 s).
        readings = []

        def settled():
            readings.append(rss_mb(broker.pid))
            last = readings[-5:]
            return len(last) == 5 and max(last) - min(last) < 1.0
        wait_until(settled, 30, "the broker's memory to settle", interval=0.5)
        grown = rss_mb(broker.pid) - base
        log("METRICS answer: %d bytes; %d unread answers (%.0f MB of answers): the broker's RSS "
            "grew by %.1f MB" % (reply_size, N, reply_size * N / 1e6, grown))
        reader.close()
        wait_until(lambda: c.request(h.PING)[0] == h.REPLY, 5, "the broker to answer after the reader left")
        after = rss_mb(broker.pid) - base
        log("after the reader disconnected: %.1f MB above the start" % after)
        c.close()
        check(broker.alive(), "the broker is up")
        check(grown < BOUND_MB, "the broker's memory stays bounded with a client that never reads: "
              "%.0f MB grown for %d unread answers (bound %d MB)" % (grown, N, BOUND_MB))


if __name__ == "__main__":
    h.main(main)

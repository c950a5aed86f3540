"""A Redis host name whose DNS server never answers does not stop the
broker: it resolves the name off its event loop, and gives up on a try
after a few seconds.

- REDIS_URL names redis-silent, which no hosts file knows; the broker's
  resolv.conf names a DNS server on 127.0.0.1:53 that swallows every
  query (timeout:3 attempts:2: a lookup in the broker's loop would hold
  it 6 s and more at each try).
- For 8 s a client PINGs the broker and a worker heartbeats: every PING
  is answered within 300 ms, and the broker's own HEARTBEATs keep coming
  (never more than 300 ms late).  The broker logs one ERROR, "name not
  resolved after N ms; reconnecting with backoff".
- A second broker, stopped (SIGTERM) while a resolution is in flight,
  exits at once and cleanly (and, under the sanitizers, with no report:
  the resolution left running frees its own memory).
- Once the name resolves (it appears in the broker's /etc/hosts), the
  broker connects by itself ("available again"), and a job submitted
  then is in that Redis.

The brokers run in a user and mount namespace of their own (unshare -Urm)
whose /etc/hosts, /etc/resolv.conf and /etc/nsswitch.conf are files the
test writes; the DNS server is a UDP socket of the test's.  A real
redis-server; the broker's log as an operator reads it.
"""
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zmq
import harness as h
from fakeworker import FakeWorker
from test_redis_dns import ready        # /ready as (status, error code)

NAME = "redis-silent"
INTERVAL_MS = 200           # the broker's heartbeat interval here
LATE_MS = 300               # how late an answer may be
MEASURE_S = 8.0


class SilentDns:
    """A DNS server on addr:53 that reads every query and answers none;
    counts them."""

    def __init__(self, addr):
        self.addr = addr
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, 53))
        self.sock.settimeout(0.2)
        self.queries = 0
        self.running = True
        self.thread = threading.Thread(target=self._swallow, daemon=True)
        self.thread.start()

    def _swallow(self):
        while self.running:
            try:
                self.sock.recvfrom(4096)
                self.queries += 1
            except socket.timeout:
                pass

    def close(self):
        self.running = False
        self.thread.join()
        self.sock.close()


def silent_dns_or_skip(addr="127.0.0.1"):
    """The silent DNS server on addr (a test of its own on each, so that
    they may run at once), or exit 77 (skipped) where this machine has no
    user and mount namespaces or port 53 cannot be bound."""
    probe = subprocess.run(["unshare", "-Urm", "true"], capture_output=True)
    if probe.returncode != 0:
        print("SKIP: no user and mount namespaces here (unshare -Urm: %s)" % probe.stderr.decode().strip())
        sys.exit(77)
    try:
        return SilentDns(addr)
    except OSError as e:
        print("SKIP: cannot bind a DNS server on %s:53 (%s)" % (addr, e))
        sys.exit(77)


def resolver_files(s, dns):
    """The hosts (this host's), resolv.conf (the silent server, which a
    resolver asks for 3 s, twice) and nsswitch.conf (files, then DNS) the
    namespaces use, written in the test's directory."""
    files = {k: os.path.join(s.dir, k) for k in ("hosts", "resolv", "nsswitch")}
    with open("/etc/hosts") as f, open(files["hosts"], "w") as out:
        out.write(f.read())
    with open(files["resolv"], "w") as out:
        out.write("nameserver %s\noptions timeout:3 attempts:2\n" % dns.addr)
    with open(files["nsswitch"], "w") as out:
        out.write("hosts: files dns\n")
    return files


def spawn_resolving(s, name, files, binary, env):
    """binary (botmesh-broker, botmesh-gateway) in a user and mount
    namespace of its own, with the test's hosts, resolv.conf and
    nsswitch.conf."""
    script = ('mount --bind "$0" /etc/hosts && mount --bind "$1" /etc/resolv.conf'
              ' && mount --bind "$2" /etc/nsswitch.conf && exec "$3"')
    return s.spawn(name, ["unshare", "-Urm", "sh", "-c", script, files["hosts"],
                          files["resolv"], files["nsswitch"], s.bin(binary)], env)


def spawn_broker(s, name, files, port, env=None):
    """A broker resolving through the silent server (REDIS_URL names
    NAME unless env says otherwise)."""
    e = dict(s.env, REDIS_URL="redis://%s:%d/0" % (NAME, s.redis_port),
             BROKER_ENDPOINT="tcp://127.0.0.1:%d" % port, BROKER_METRICS_PORT="-1",
             HEARTBEAT_INTERVAL_MS=str(INTERVAL_MS))
    e.update(env or {})
    return spawn_resolving(s, name, files, "botmesh-broker", e)


def measure(endpoint, seconds, interval_ms=INTERVAL_MS, ping_every=0.1, pipelined=False):
    """PING the broker every ping_every seconds (after the previous answer,
    or, pipelined, without waiting for answers) and heartbeat as a worker
    (the broker's interval_ms apart), for seconds; returns (the slowest
    PING's round trip, the longest gap between the broker's HEARTBEATs,
    PINGs answered), in ms."""
    c = h.Client(endpoint)
    w = FakeWorker(endpoint, "measure-w1", ["python"], 0)
    poller = zmq.Poller()
    poller.register(c.sock, zmq.POLLIN)
    poller.register(w.sock, zmq.POLLIN)
    start = time.monotonic()
    sent, worst_ping, answered = {}, 0.0, 0     # sent: req -> when, unanswered
    beats, next_ping, next_beat = [], start, start
    while True:
        now = time.monotonic()
        if now - start >= seconds:
            break
        if now >= next_ping and (pipelined or not sent):
            c.req += 1
            c.send(h.PING, {"req": c.req})
            sent[c.req] = now
            next_ping = now + ping_every
        if now >= next_beat:
            w.heartbeat()
            next_beat = now + interval_ms / 1000.0
        for sock, _ in poller.poll(5 if pipelined else 10):
            frames = sock.recv_multipart()
            cmd, body = frames[1][0], h.unpack(frames[2])
            at = time.monotonic()
            if sock is c.sock and cmd == h.REPLY and body.get("req") in sent:
                worst_ping = max(worst_ping, at - sent.pop(body["req"]))
                answered += 1
                if not pipelined:
                    next_ping = at + ping_every
            elif sock is w.sock and cmd == h.HEARTBEAT:
                beats.append(at)
    end = time.monotonic()
    for at in sent.values():        # unanswered so far: as late as that
        worst_ping = max(worst_ping, end - at)
    marks = [start] + beats + [end]
    worst_gap = max(b - a for a, b in zip(marks, marks[1:]))
    c.close()
    w.close()
    return worst_ping * 1000, worst_gap * 1000, answered


def check_serving(endpoint, broker, dns, name):
    """For MEASURE_S, while the broker cannot resolve name: every PING
    answered within LATE_MS, and its HEARTBEATs kept coming."""
    worst_ping, worst_gap, answered = measure(endpoint, MEASURE_S)
    h.log("over %.0f s: %d PINGs answered, the slowest in %.0f ms; the broker's "
          "heartbeats at most %.0f ms apart; %d DNS queries swallowed"
          % (MEASURE_S, answered, worst_ping, worst_gap, dns.queries))
    h.check(dns.queries > 0, "the broker asked the silent DNS server for %s" % name)
    h.check(worst_ping < LATE_MS, "every PING answered within %d ms" % LATE_MS,
            "%.0f ms" % worst_ping, broker.output()[-1500:])
    h.check(worst_gap < INTERVAL_MS + LATE_MS,
            "the broker's heartbeats kept coming, every %d ms" % INTERVAL_MS,
            "%.0f ms gap" % worst_gap)


def check_quick_stop(proc, who):
    """SIGTERM to proc, resolving a name meanwhile: it exits at once (well
    before the resolver's 6 s would end) and cleanly (rc 0)."""
    t0 = time.monotonic()
    proc.signal(signal.SIGTERM)
    h.wait_until(lambda: not proc.alive(), 15, "%s to exit on SIGTERM" % who)
    took = time.monotonic() - t0
    h.log("%s exited %.0f ms after SIGTERM, rc %s" % (who, took * 1000, proc.p.returncode))
    h.check(proc.p.returncode == 0 and took < 3,
            "at once (< 3 s, well before the resolver would give up) and cleanly (rc 0)",
            proc.output()[-1500:])


def test():
    dns = silent_dns_or_skip()
    try:
        with h.Stack("redis-dns-silent") as s:
            s.redis()
            files = resolver_files(s, dns)

            port = h.free_port()
            broker = spawn_broker(s, "broker", files, port)
            broker.metrics_port = broker.listening("metrics")
            s.endpoint = "tcp://127.0.0.1:%d" % port
            s.wait_ping(recovered=False)   # its Redis name does not resolve: no recovery

            check_serving(s.endpoint, broker, dns, NAME)
            lines = [l for l in broker.output().splitlines() if NAME in l and " ERROR " in l]
            h.log("the broker said:", *lines)
            h.check(len(lines) == 1 and "name not resolved after" in lines[0]
                    and "reconnecting with backoff" in lines[0],
                    "one ERROR for the outage: the name not resolved in time, "
                    "reconnecting with backoff", lines)

            # A broker stopped while it waits for the DNS server stops at once.
            other = spawn_broker(s, "broker-stopped", files, h.free_port())
            other.listening("metrics")
            # Its first resolution, begun as it started, has a few seconds
            # before it is given up on.
            h.check("not resolved" not in other.output(),
                    "the second broker is still resolving %s" % NAME, other.output()[-1500:])
            check_quick_stop(other, "the second broker")

            # The name appears: the broker connects without being told.
            with open(files["hosts"], "a") as out:
                out.write("127.0.0.1 %s\n" % NAME)
            h.wait_until(lambda: ready(broker) == (200, None), 15,
                         "the broker to connect (and be ready) once %s resolves" % NAME)
            h.check("redis %s:%d available again" % (NAME, s.redis_port) in broker.output(),
                    "and say Redis is available again", broker.output()[-1500:])
            c = s.client()
            jid = c.submit("python", {"n": 1})
            h.check(s.redis_cli("HGET", "botmesh:{bm}:job:" + jid, "state") == "queued",
                    "a job submitted now is in that Redis")
            c.close()
    finally:
        dns.close()


if __name__ == "__main__":
    h.main(test)

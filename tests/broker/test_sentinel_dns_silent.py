"""A sentinel named by a host name whose DNS server never answers stops
neither the broker nor the gateway: both follow the sentinels'
+switch-master on an event loop, and resolve the name off it.

- REDIS_SENTINELS names sentinel-silent, which no hosts file knows; the
  services' resolv.conf names a DNS server on 127.0.0.2:53 that swallows
  every query (timeout:3 attempts:2: a lookup in a loop's thread would
  hold it 6 s and more at each try).  REDIS_URL names a port where
  nothing listens: only the sentinels say where Redis is.
- The broker: for 8 s a client PINGs it and a worker heartbeats: every
  PING is answered within 300 ms and the broker's HEARTBEATs keep coming.
  Its +switch-master watch logs one WARN for the outage, "sentinel
  sentinel-silent:PORT: cannot connect (name not resolved after 3000 ms)",
  and its master lookup one ERROR, "no master from the sentinels
  (sentinel sentinel-silent:PORT: name not resolved after 3000 ms)".
- The gateway (its watch on a thread of its own): it reports its HTTP
  port at once (within 5 s of starting: not after the resolver gave up, 6 s
  for each address family hiredis asks), answers every GET /health of 4 s
  within 300 ms, logs the same WARN, and stops at once and cleanly on
  SIGTERM while it resolves the name again.  A GET /api/history, which
  reads Redis on its request's thread, waits for the name no longer than
  REDIS_TIMEOUT_MS, and answers 503.
- Once the name resolves (to a real redis-sentinel watching the Redis),
  the broker follows that sentinel's +switch-master and connects to the
  master it names ("available again"), by itself.

The services run in a user and mount namespace of their own (unshare
-Urm) with the test's /etc/hosts, /etc/resolv.conf and
/etc/nsswitch.conf (test_redis_dns_silent's); a real redis-server.
"""
import os
import socket
import time
import harness as h
from test_redis_dns_silent import (check_quick_stop, check_serving, resolver_files,
                                   silent_dns_or_skip, spawn_broker, spawn_resolving)

NAME = "sentinel-silent"
LATE_MS = 300               # how late an answer may be
HEALTH_S = 4.0


def health_ms(port):
    """One GET /health: its round trip in ms, or None if not answered 200
    within 2 s."""
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            ok = c.recv(100).startswith(b"HTTP/1.1 200")
    except OSError:
        ok = False
    return (time.monotonic() - t0) * 1000 if ok else None


def test():
    dns = silent_dns_or_skip("127.0.0.2")
    try:
        with h.Stack("sentinel-dns-silent") as s:
            s.redis(appendonly=False)
            files = resolver_files(s, dns)
            sentinel_port = h.free_port()
            sentinels = {"REDIS_URL": "redis://127.0.0.1:1/0",
                         "REDIS_SENTINELS": "%s:%d" % (NAME, sentinel_port),
                         "REDIS_MASTER_NAME": "mymaster"}

            # The broker.
            port = h.free_port()
            broker = spawn_broker(s, "broker", files, port, env=sentinels)
            broker.listening("metrics")
            s.endpoint = "tcp://127.0.0.1:%d" % port
            s.wait_ping(recovered=False)   # its Redis name does not resolve: no recovery
            check_serving(s.endpoint, broker, dns, NAME)
            out = broker.output()
            named = "sentinel %s:%d: " % (NAME, sentinel_port)
            lines = [l for l in out.splitlines() if named in l]
            h.log("the broker said:", *lines)
            h.check(sum(named + "cannot connect (name not resolved after 3000 ms); trying the "
                        "next sentinel with backoff" in l and " WARN " in l for l in lines) == 1,
                    "the watch: one WARN for the outage, the name not resolved in time", lines)
            h.check(sum("no master from the sentinels (%sname not resolved after 3000 ms)"
                        % named in l and " ERROR " in l for l in lines) == 1,
                    "the lookup: one ERROR for the outage, the same reason", lines)

            # The gateway, its watch on a thread of its own.
            t0 = time.monotonic()
            gateway = spawn_resolving(s, "gateway", files, "botmesh-gateway",
                                      dict(s.env, API_GATEWAY_PORT=str(h.free_port()),
                                           GATEWAY_LISTEN="127.0.0.1", BROKER_ENDPOINT=s.endpoint,
                                           **sentinels))
            http = gateway.listening("http", timeout=20)
            took = time.monotonic() - t0
            h.log("the gateway reported its HTTP port %.0f ms after it started" % (took * 1000))
            h.check(took < 5, "the gateway serves at once, not after the resolver's 6 s",
                    "%.0f ms" % (took * 1000), gateway.output()[-1500:])
            times, end = [], time.monotonic() + HEALTH_S
            while time.monotonic() < end:
                times.append(health_ms(http))
                time.sleep(0.1)         # the pace of the requests, not a wait for an event
            worst = max(t if t is not None else float("inf") for t in times)
            h.log("over %.0f s: %d GET /health, the slowest in %.0f ms"
                  % (HEALTH_S, len(times), worst))
            h.check(worst < LATE_MS, "every GET /health answered 200 within %d ms" % LATE_MS,
                    times, gateway.output()[-1500:])
            h.check(named + "cannot connect (name not resolved after 3000 ms)" in gateway.output(),
                    "the gateway's watch gave up on the name after 3 s, and went on",
                    gateway.output()[-1500:])
            # GET /api/history reads Redis on the request's own thread: it
            # waits for the sentinel's name no longer than the gateway's
            # REDIS_TIMEOUT_MS (1 s by default), then answers 503.
            t0 = time.monotonic()
            status, _, body = h.http("GET", "http://127.0.0.1:%d/api/history" % http, timeout=20)
            took = time.monotonic() - t0
            h.log("GET /api/history: %d %s in %.0f ms" % (status, body, took * 1000))
            h.check(status == 503 and isinstance(body, dict)
                    and body.get("error", {}).get("code") == "redis_unavailable",
                    "GET /api/history answers 503 redis_unavailable", status, body)
            h.check(took < 3, "in about REDIS_TIMEOUT_MS, not after the resolver's 6 s",
                    "%.0f ms" % (took * 1000))
            h.check(named + "name not resolved after 1000 ms" in gateway.output(),
                    "the gateway says the sentinel's name was not resolved in time",
                    gateway.output()[-1500:])
            check_quick_stop(gateway, "the gateway")

            # The name resolves, to a real sentinel: the broker follows it.
            conf = os.path.join(s.dir, "sentinel.conf")
            with open(conf, "w") as f:
                f.write("port %d\nbind 127.0.0.1\ndir %s\n" % (sentinel_port, s.dir))
                f.write("sentinel monitor mymaster 127.0.0.1 %d 1\n" % s.redis_port)
            s.spawn("sentinel", ["redis-server", conf, "--sentinel"])
            with open(files["hosts"], "a") as out:
                out.write("127.0.0.1 %s\n" % NAME)
            following = named + "following +switch-master for 'mymaster'"
            h.wait_until(lambda: following in broker.output(), 20,
                         "the broker to follow +switch-master on %s" % NAME)
            master = "redis: sentinels name master 'mymaster' at 127.0.0.1:%d" % s.redis_port
            h.wait_until(lambda: master in broker.output(), 20,
                         "the broker to hear from %s where the master is" % NAME)
            again = "redis 127.0.0.1:%d available again" % s.redis_port
            h.wait_until(lambda: again in broker.output(), 20,
                         "the broker to connect to that master")
            h.log("the broker said:", following, master, again)
    finally:
        dns.close()


if __name__ == "__main__":
    h.main(test)

"""A sentinel that takes the connection and never answers does not stop
the broker: it asks the sentinels where the Redis master is on its event
loop, without blocking it, and moves on to the next sentinel after a
bounded wait.

- REDIS_SENTINELS lists first a silent sentinel (the test's own TCP
  listener: it accepts, reads, never answers), then a real one
  (redis-server --sentinel) that is not started yet; REDIS_URL names a
  port where nothing listens.  So each reconnect of the broker asks the
  silent one, waits for it, and finds the other refused.
- For 4 s a client PINGs the broker every 20 ms (not waiting for the
  answers) and a worker heartbeats: every PING is answered within
  LATE_MS, and the broker's own HEARTBEATs keep coming.  A lookup that
  held the loop for the silent sentinel's 300 ms would delay the PING
  sent just as it began by nearly that much.  The silent sentinel was
  asked where the master is several times meanwhile, and the broker
  logged one ERROR for the outage, "redis: no master from the sentinels
  (...)", naming the last sentinel's reason.
- The real sentinel starts (watching a real master with a replica): at
  its next reconnect the broker hears nothing from the silent one, asks
  the real one, logs "sentinels name master 'mymaster' at HOST:PORT" and
  "available again", and a job submitted then is in that master.
"""
import os
import selectors
import socket
import threading
import harness as h
from test_redis_dns_silent import measure      # PINGs and heartbeats, timed

INTERVAL_MS = 200           # the broker's heartbeat interval here
LATE_MS = 200               # how late an answer may be
PING_EVERY_S = 0.02
MEASURE_S = 4.0
ASK = b"get-master-addr-by-name"


class SilentSentinel:
    """A listener on 127.0.0.1 that accepts every connection, reads what
    comes and answers nothing; counts the connections that asked where
    the master is (the broker's +switch-master subscription also comes
    here, and is not counted)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.asked = 0
        self.conns = []
        self.running = True
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        while self.running:
            for key, _ in sel.select(0.2):
                if key.fileobj is self.sock:
                    conn, _ = self.sock.accept()
                    self.conns.append(conn)
                    sel.register(conn, selectors.EVENT_READ)
                    continue
                data = key.fileobj.recv(4096)
                if not data:            # the broker gave up on it
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                elif ASK in data:
                    self.asked += 1
        sel.close()

    def close(self):
        self.running = False
        self.thread.join()
        for c in self.conns:
            c.close()
        self.sock.close()


def test():
    silent = SilentSentinel()
    try:
        with h.Stack("sentinel-lookup") as s:
            # (Its replica syncs at once, not after the default 5 s.)
            s.redis(appendonly=False, args=("--repl-diskless-sync-delay", "0"))
            master = s.redis_port
            # With sentinels the broker waits for a replica to hold each write.
            replica = h.free_port()
            s.spawn("replica", ["redis-server", "--port", str(replica), "--bind", "127.0.0.1",
                                "--dir", s.dir, "--save", "", "--appendonly", "no",
                                "--dbfilename", "replica.rdb", "--replicaof", "127.0.0.1",
                                str(master)])
            h.wait_until(lambda: b"master_link_status:up" in
                         h.redis_pipeline(replica, [["INFO", "replication"]])[0], 15,
                         "the replica to sync")
            good = h.free_port()
            sentinels = "127.0.0.1:%d,127.0.0.1:%d" % (silent.port, good)
            broker = s.broker(env={"REDIS_URL": "redis://127.0.0.1:1/0",
                                   "REDIS_SENTINELS": sentinels,
                                   "REDIS_MASTER_NAME": "mymaster",
                                   "HEARTBEAT_INTERVAL_MS": str(INTERVAL_MS)},
                              wait_recovered=False)     # no sentinel names the master yet

            asked_before = silent.asked
            worst_ping, worst_gap, answered = measure(s.endpoint, MEASURE_S, INTERVAL_MS,
                                                      PING_EVERY_S, pipelined=True)
            asked = silent.asked - asked_before
            h.log("over %.0f s, the silent sentinel asked %d times: %d PINGs answered, the "
                  "slowest in %.0f ms; the broker's heartbeats at most %.0f ms apart"
                  % (MEASURE_S, asked, answered, worst_ping, worst_gap))
            h.check(asked >= 2, "the broker asked the silent sentinel where the master is at "
                    "each reconnect (twice or more in %.0f s)" % MEASURE_S, asked,
                    broker.output()[-1500:])
            h.check(worst_ping < LATE_MS, "every PING answered within %d ms" % LATE_MS,
                    "%.0f ms" % worst_ping, broker.output()[-1500:])
            h.check(worst_gap < INTERVAL_MS + LATE_MS,
                    "the broker's heartbeats kept coming, every %d ms" % INTERVAL_MS,
                    "%.0f ms gap" % worst_gap)
            lines = [l for l in broker.output().splitlines() if "no master from the sentinels" in l]
            h.log("the broker said:", *lines)
            h.check(len(lines) == 1 and " ERROR " in lines[0]
                    and "(sentinel 127.0.0.1:%d: " % good in lines[0],
                    "one ERROR for the outage, with the last sentinel's reason", lines)

            # The real sentinel comes up: the broker reaches the master through it.
            conf = os.path.join(s.dir, "sentinel.conf")
            with open(conf, "w") as f:
                f.write("port %d\nbind 127.0.0.1\ndir %s\n" % (good, s.dir))
                f.write("sentinel monitor mymaster 127.0.0.1 %d 1\n" % master)
            s.spawn("sentinel", ["redis-server", conf, "--sentinel"])
            c = s.client()
            h.wait_until(lambda: c.request(h.PING)[1]["redis"] is True, 15,
                         "the broker to reach Redis through the real sentinel")
            out = broker.output()
            h.check("redis: sentinels name master 'mymaster' at 127.0.0.1:%d" % master in out,
                    "the broker logged the master the sentinel named", out[-1500:])
            h.check("redis 127.0.0.1:%d available again" % master in out,
                    "and that Redis is available again", out[-1500:])
            jid = c.submit("python", {"n": 1})
            h.check(s.redis_cli("HGET", "botmesh:{bm}:job:" + jid, "state") == "queued",
                    "the job is in the master the sentinel named")
            c.close()
    finally:
        silent.close()


if __name__ == "__main__":
    h.main(test)

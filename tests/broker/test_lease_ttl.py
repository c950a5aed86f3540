"""A broker judges another broker's lease by its real remaining time in
Redis (its PTTL), not by its own BROKER_LEASE_MS.

Real redis-server, real brokers without BROKER_HA (solo), leases of another
host planted in Redis (a broker this one cannot judge by its pid).

1. A dead broker that used a longer lease (5000 ms, never renewed) beside
   a solo broker with BROKER_LEASE_MS=1000: the solo broker waits for that
   lease to run out in Redis (its log names the time left, above its own
   lease), then leads; it does not exit.  (Before: it saw the lease still
   there after 1.1 of its own leases, took it for renewed, and exited 2.)
2. A live broker with a short lease (1000 ms, renewed by the test every
   200 ms) beside a solo broker with BROKER_LEASE_MS=8000: the solo broker
   names the lease's real remaining time (at most 1000 ms) when it starts
   to wait, and exits 2 once it saw it renewed, never leading.  (Before:
   it said it would wait 8800 ms, its own lease and a tenth.)
"""
import re
import threading
import time
import harness as h
import hatest

LEASE_KEY = "botmesh:{bm}:leader"


def start(s, name, lease_ms):
    env = {"BROKER_LEASE_MS": str(lease_ms), "BROKER_ENDPOINT": "tcp://127.0.0.1:%d" % h.free_port(),
           "BROKER_METRICS_PORT": str(h.free_port())}
    p = s.spawn(name, [s.bin("botmesh-broker")], env)
    p.endpoint = env["BROKER_ENDPOINT"]
    return p


def waited_ms(p):
    """The time the broker said it would wait for the other lease."""
    m = re.search(r"waiting up to (\d+) ms", p.output())
    return int(m.group(1)) if m else None


def test():
    with h.Stack("lease-ttl") as s:
        s.redis()

        # 1. A dead broker's longer lease: wait for it, then lead.
        s.redis_cli("SET", LEASE_KEY, "9 elsewhere:4242:abcd:x tcp://10.9.9.9:5555", "PX", "5000")
        solo = start(s, "solo-1", 1000)
        h.wait_until(lambda: waited_ms(solo) is not None or not solo.alive(), 15,
                     "the solo broker to say it waits for the other lease")
        h.wait_until(lambda: hatest.leads(solo.endpoint) or not solo.alive(), 15,
                     "the solo broker to lead once the dead lease ran out")
        out = solo.output()
        h.check(solo.alive() and "another broker leads on this Redis" not in out,
                "it leads, not exits (the lease was never renewed)", solo.p.returncode, out[-1500:])
        left = waited_ms(solo)
        h.log("the solo broker waited up to %s ms" % left)
        h.check(left is not None and 1100 < left <= 5000, "it named the lease's real remaining "
                "time (above its own lease, at most 5000 ms)", left, out[-800:])
        h.check(s.redis_cli("GET", LEASE_KEY).endswith(solo.endpoint), "it holds the lease",
                s.redis_cli("GET", LEASE_KEY))
        h.check(solo.stop() == 0, "the solo broker stops on SIGTERM")

        # 2. A live broker's shorter lease, renewed: named as it is, and the
        #    solo broker exits 2.
        s.redis_cli("SET", LEASE_KEY, "12 elsewhere:4243:abcd:x tcp://10.9.9.8:5555", "PX", "1000")
        done = threading.Event()

        def renew():
            while not done.wait(0.2):       # the live broker's renewal pace
                s.redis_cli("PEXPIRE", LEASE_KEY, "1000")
        renewer = threading.Thread(target=renew, daemon=True)
        renewer.start()
        try:
            solo = start(s, "solo-2", 8000)
            h.wait_until(lambda: not solo.alive(), 30, "the solo broker to exit")
        finally:
            done.set()
            renewer.join()
        out = solo.output()
        h.check(solo.p.returncode == 2, "it exits with status 2", solo.p.returncode, out[-1500:])
        h.check("tcp://10.9.9.8:5555" in out and "renews its lease" in out,
                "its log names the live broker and its renewal", out[-1500:])
        left = waited_ms(solo)
        h.check(left is not None and left <= 1000,
                "it named the lease's real remaining time (at most 1000 ms), not its own lease",
                left, out[-1500:])
        h.check("leader now" not in out and "taken" not in out, "it never led", out[-1500:])


if __name__ == "__main__":
    h.main(test)

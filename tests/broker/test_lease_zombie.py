"""A killed broker that its parent has not reaped yet does not hold up its successor.

Real redis-server, real brokers.  The first broker (no BROKER_HA) runs
under a parent that never reaps it (sh, which execs sleep after starting
it).  It leads; it is killed with SIGKILL and stays a zombie (state Z in
/proc/<pid>/stat), its lease left in Redis.  A broker started then on the
same Redis reads the lease's owner as a process of this host that is gone
and takes the lease at once (log "a broker of this host that is gone"),
without "waiting up to ... for it to run out".  Before, the zombie's pid
answered kill(pid, 0), so it counted as alive and the new broker waited
for the lease to run out.
"""
import os
import re
import signal
import harness as h
import hatest

ENV = {"BROKER_LEASE_MS": "10000", "HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5",
       "BROKER_METRICS_PORT": "0"}


def state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def test():
    with h.Stack("lease-zombie") as s:
        s.redis()
        port = h.free_port()
        endpoint = "tcp://127.0.0.1:%d" % port
        env = dict(ENV, BROKER_ENDPOINT=endpoint)
        parent = s.spawn("parent", ["sh", "-c", '"$0" & echo "broker pid $!"; exec sleep 600',
                                    s.bin("botmesh-broker")], env)
        m = h.wait_until(lambda: re.search(r"^broker pid (\d+)$", parent.output(), re.M), 10,
                         "the parent to say its broker's pid")
        pid = int(m.group(1))
        h.wait_until(lambda: hatest.leads(endpoint), 15, "the first broker to lead")
        os.kill(pid, signal.SIGKILL)
        h.wait_until(lambda: state(pid) == "Z", 10, "the killed broker to be a zombie")
        h.check(s.redis_cli("EXISTS", "botmesh:{bm}:leader") == "1", "its lease is left in Redis")

        second = s.spawn("second", [s.bin("botmesh-broker")], env)
        h.wait_until(lambda: hatest.leads(endpoint), 15, "the second broker to lead")
        out = second.output()
        h.check(state(pid) == "Z", "the first broker was still a zombie", state(pid))
        h.check("a broker of this host that is gone" in out and "waiting up to" not in out,
                "the second broker took the zombie's lease at once", out[-1500:])
        h.check(s.redis_cli("GET", "botmesh:{bm}:epoch") == "2", "a second reign: epoch 2")


if __name__ == "__main__":
    h.main(test)

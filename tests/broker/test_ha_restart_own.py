"""An HA broker (BROKER_HA=redis) restarted on its endpoint after its
predecessor there ended without releasing the lease.

Real redis-server, real brokers, BROKER_LEASE_MS=4000.

1. The leader (3 queued jobs, no worker) is killed with SIGKILL; started
   again on the same endpoint, it finds the lease of a process of this
   host and pid namespace that is gone, takes it over at once (a new
   epoch) and leads: from its start, no answer of it names its own
   endpoint as the leader, and its log says it took the gone broker's
   lease.  A worker then gets each queued job once.  (Before: it stood by
   for the rest of the dead lease, up to 4 s, answering not_leader naming
   itself as the leader: peers told to go there came back to it.)
2. A lease naming this endpoint that it cannot judge (an owner of another
   pid namespace: a container started again), planted: the broker stands
   by until it runs out, answering not_leader with no leader (leader "")
   and a message that names the earlier broker at this endpoint, then
   leads.  (Before: not_leader naming itself.)
"""
import time
import harness as h
import hatest

LEASE_MS = 4000
LEASE_KEY = "botmesh:{bm}:leader"


def start(s, name, port):
    env = dict(hatest.HA_ENV, BROKER_LEASE_MS=str(LEASE_MS),
               BROKER_ENDPOINT="tcp://127.0.0.1:%d" % port, BROKER_METRICS_PORT=str(h.free_port()))
    return s.spawn(name, [s.bin("botmesh-broker")], env)


def watch_until_leads(endpoint, timeout):
    """PING every 20 ms until the broker leads; the not_leader answers seen."""
    refusals = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = hatest.ping(endpoint)
        if r and r[0] == h.REPLY and r[1].get("redis"):
            return refusals
        if r and r[0] == h.REJECTED:
            refusals.append(r[1])
        time.sleep(0.02)            # polling pace
    h.check(False, "the broker to lead within %d s" % timeout, refusals[-3:])


def test():
    with h.Stack("ha-restart-own") as s:
        s.redis()
        port = h.free_port()
        endpoint = "tcp://127.0.0.1:%d" % port

        # 1. Killed and started again: it takes its predecessor's lease.
        broker = start(s, "broker-1", port)
        h.wait_until(lambda: hatest.leads(endpoint), 15, "the broker to lead")
        c = h.Client(endpoint)
        ids = [c.submit("python", {"i": i}) for i in range(3)]
        c.close()
        h.check(s.redis_cli("GET", "botmesh:{bm}:epoch") == "1", "epoch 1")
        broker.kill()
        h.check(s.redis_cli("EXISTS", LEASE_KEY) == "1", "the dead broker's lease is in Redis")
        broker = start(s, "broker-2", port)
        refusals = watch_until_leads(endpoint, 15)
        out = broker.output()
        h.log("%d not_leader answers before it led" % len(refusals))
        h.check(not [r for r in refusals if r.get("leader") == endpoint],
                "no answer names the broker itself as the leader", refusals[:3])
        h.check("a broker of this host that is gone" in out, "it took the gone broker's lease over",
                out[-1500:])
        h.check(s.redis_cli("GET", "botmesh:{bm}:epoch") == "2", "a new epoch",
                s.redis_cli("GET", "botmesh:{bm}:epoch"))
        hatest.run_jobs(endpoint, "w1", ids)
        h.check(broker.stop() == 0, "the broker stops on SIGTERM")

        # 2. A lease naming this endpoint that it cannot judge: no leader
        #    named until it runs out.
        s.redis_cli("SET", LEASE_KEY, "7 %s:1:abcd:otherns %s" % ("elsewhere", endpoint),
                    "PX", "3000")
        broker = start(s, "broker-3", port)
        refusals = watch_until_leads(endpoint, 15)
        h.check(refusals, "it stood by first (the lease was not its own to take)")
        h.check(all(r.get("code") == "not_leader" and r.get("leader") == "" for r in refusals),
                "its not_leader answers name no leader (not itself)", refusals[:3])
        h.check("earlier broker at this endpoint" in refusals[0].get("message", ""),
                "the message says the lease is an earlier broker's at this endpoint", refusals[0])
        h.check(s.redis_cli("GET", LEASE_KEY).endswith(endpoint) and
                s.redis_cli("GET", "botmesh:{bm}:epoch") == "3", "it leads at epoch 3",
                s.redis_cli("GET", LEASE_KEY))


if __name__ == "__main__":
    h.main(test)

"""A broker without BROKER_HA never leads beside another broker on one Redis.

Real redis-server, real brokers.  Every broker with Redis takes the lease
(<prefix>{bm}:leader); one without BROKER_HA=redis ("solo") does not stand
by: it exits.

1. An HA broker leads and holds 5 queued jobs (no worker yet).  A solo
   broker started on the same Redis sees the leader's lease, waits about a
   lease for it to lapse, finds it renewed and exits with status 2, its
   log naming BROKER_HA and the leader's endpoint; it never recovers the
   jobs.  A worker of the leader then gets each job once.  (Before: the
   solo broker recovered the 5 jobs and ran them too, each job twice.)
2. The reverse: the HA broker stopped, the solo broker leads (5 more jobs);
   an HA broker started then stands by, naming the solo broker as the
   leader, and its redis_up gauge is 1 (it reaches Redis: it could take
   over), its /ready 503 standby.
3. The solo broker killed with SIGKILL (its lease left in Redis), the HA
   broker stopped: the solo broker started again sees that the lease's
   owner is a process of this host that is gone, takes the lease at once,
   leads and runs the 5 jobs; nothing is run twice.
4. A lease left by a broker of another host (planted): the solo broker
   waits for it to run out, then leads.
"""
import re
import time
import harness as h
import hatest

LEASE_MS = 2000
SOLO_ENV = {"BROKER_LEASE_MS": str(LEASE_MS), "HEARTBEAT_INTERVAL_MS": "200",
            "HEARTBEAT_LIVENESS": "5"}


def start(s, name, port, ha):
    env = dict(SOLO_ENV, BROKER_ENDPOINT="tcp://127.0.0.1:%d" % port,
               BROKER_METRICS_PORT=str(h.free_port()))
    if ha:
        env["BROKER_HA"] = "redis"
    p = s.spawn(name, [s.bin("botmesh-broker")], env)
    p.metrics_port = int(env["BROKER_METRICS_PORT"])
    p.endpoint = env["BROKER_ENDPOINT"]
    return p


def metric(p, name):
    text = h.http("GET", "http://127.0.0.1:%d/metrics" % p.metrics_port)[2]
    m = re.search(r"^%s (\S+)$" % name, text, re.M)
    return float(m.group(1)) if m else None


def test():
    with h.Stack("solo-lease") as s:
        s.redis()
        ha_port, solo_port = h.free_port(), h.free_port()

        # 1. An HA leader with 5 queued jobs; a solo broker must not join it.
        ha = start(s, "ha", ha_port, ha=True)
        h.wait_until(lambda: hatest.leads(ha.endpoint), 15, "the HA broker to lead")
        c = h.Client(ha.endpoint)
        first = [c.submit("python", {"i": i}) for i in range(5)]
        c.close()
        solo = start(s, "solo", solo_port, ha=False)
        began = time.monotonic()
        h.wait_until(lambda: not solo.alive(), 15, "the solo broker to exit")
        took = time.monotonic() - began
        out = solo.output()
        h.log("solo broker exited after %.2f s, rc=%s" % (took, solo.p.returncode))
        h.check(solo.p.returncode == 2, "the solo broker exits with status 2", solo.p.returncode)
        h.check("BROKER_HA=redis" in out and ha.endpoint in out,
                "its log names BROKER_HA and the leader's endpoint", out[-1500:])
        h.check("recovered" not in out and "leader now" not in out,
                "it never led nor recovered jobs", out[-1500:])
        h.check(s.redis_cli("GET", "botmesh:{bm}:epoch") == "1", "no second reign: epoch 1")
        hatest.run_jobs(ha.endpoint, "w-ha", first)

        # 2. The solo broker leads; an HA broker stands by beside it.
        h.check(ha.stop() == 0, "the HA broker stops on SIGTERM (releasing its lease)")
        solo = start(s, "solo-2", solo_port, ha=False)
        h.wait_until(lambda: hatest.leads(solo.endpoint), 15, "the solo broker to lead")
        h.check(s.redis_cli("GET", "botmesh:{bm}:leader").endswith(solo.endpoint),
                "the solo broker holds the lease", s.redis_cli("GET", "botmesh:{bm}:leader"))
        c = h.Client(solo.endpoint)
        second = [c.submit("python", {"j": i}) for i in range(5)]
        h.check(c.stats()["leader"]["ha"] == "off", "STATS names HA off")
        c.close()
        ha = start(s, "ha-2", ha_port, ha=True)
        cmd, r = h.wait_until(lambda: (lambda x: x if x and x[1].get("leader") else None)(
            hatest.ping(ha.endpoint)), 10, "the HA broker to name the leader")
        h.check(cmd == h.REJECTED and r["code"] == "not_leader" and r["leader"] == solo.endpoint,
                "the HA broker stands by, naming the solo broker", r)
        h.check(hatest.leads(solo.endpoint), "the solo broker still leads")
        h.wait_until(lambda: metric(ha, "redis_up") == 1, 10,
                     "the standby's redis_up to be 1 (it reaches Redis)")
        h.check(metric(ha, "broker_leader") == 0, "the standby's broker_leader is 0")
        st, _, body = h.http("GET", "http://127.0.0.1:%d/ready" % ha.metrics_port)
        h.check(st == 503 and body["error"]["code"] == "standby", "the standby's /ready: 503 standby",
                (st, body))

        # 3. A crash of the solo broker: started again, it leads after its
        #    dead lease lapsed, and runs the jobs.
        h.check(ha.stop() == 0, "the HA standby stops")
        solo.kill()
        killed = time.monotonic()
        solo = start(s, "solo-3", solo_port, ha=False)
        h.wait_until(lambda: hatest.leads(solo.endpoint), 15, "the restarted solo broker to lead")
        took = time.monotonic() - killed
        h.log("the restarted solo broker leads %.2f s after the kill" % took)
        out = solo.output()
        h.check(solo.alive(), "the restarted solo broker runs")
        h.check("a broker of this host that is gone" in out and "waiting up to" not in out,
                "it took the lease its killed predecessor (this host, pid gone) left at once",
                out[-1500:])
        hatest.run_jobs(solo.endpoint, "w-solo", second)

        # 4. A lease left by a broker it cannot judge (another host): the
        #    solo broker waits for it to run out, then leads.
        h.check(solo.stop() == 0, "the solo broker stops on SIGTERM")
        h.check(s.redis_cli("EXISTS", "botmesh:{bm}:leader") == "0", "and releases its lease")
        s.redis_cli("SET", "botmesh:{bm}:leader", "9 elsewhere:4242:abcd:x tcp://10.9.9.9:5555",
                    "PX", str(LEASE_MS))
        solo = start(s, "solo-4", solo_port, ha=False)
        h.wait_until(lambda: hatest.leads(solo.endpoint), 15, "the solo broker to lead")
        out = solo.output()
        h.check("waiting up to" in out and "tcp://10.9.9.9:5555" in out,
                "it waited for the other host's lease to run out", out[-1500:])
        c = h.Client(solo.endpoint)
        h.check(c.stats()["types"].get("python", {}).get("waiting", 0) == 0, "no job left over")
        c.close()


if __name__ == "__main__":
    h.main(test)

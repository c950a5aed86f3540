"""Redis through Sentinel: a failover of Redis mid-run loses nothing accepted.

A real Redis master, a replica (--replicaof) and a sentinel (redis-server
--sentinel) watching them as "mymaster".  The broker gets REDIS_SENTINELS
and REDIS_MASTER_NAME (its REDIS_URL names a port where nothing listens:
only the sentinel can tell it where Redis is); a simulated worker runs the
jobs.  A client submits jobs steadily over ZeroMQ, and another through a
gateway (POST /invoke), each retrying a submission refused with
store_unavailable.  Midway, SENTINEL FAILOVER promotes the replica.  What
must hold: the broker and the gateway subscribe to the sentinel's
+switch-master and log the switch (old -> new master) when it comes; the
broker reconnects to the new master;
every submission is answered within ANSWER_BOUND_S, during the switch too
(ACCEPTED, or REJECTED store_unavailable / HTTP 503 with a JSON error
naming it, never a wait for Redis to come back); some submissions are
refused during the switch and their retries succeed after it; every
accepted job reaches a terminal state in the new master, once (the broker
counts as many terminal jobs as it accepted); a refused submission leaves
no trace (the job records in the new master are exactly the accepted
ones) and the live set empties.  Printed: how many submissions were
refused, and the slowest answer.
"""
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "gateway"))
import harness as h                 # noqa: E402
import gwtest                       # noqa: E402

# A submission's answer, whatever Redis is doing: a group's answer comes
# after one WAIT for a replica (1 s at most), a refusal sooner.
ANSWER_BOUND_S = 2.0


def test():
    with h.Stack("sentinel") as s:
        s.redis(appendonly=False)
        master = s.redis_port
        # A master that has lost its replica (it was promoted) refuses writes
        # (NOREPLICAS) instead of taking writes the new master never sees.
        s.redis_cli("CONFIG", "SET", "min-replicas-to-write", "1")
        s.redis_cli("CONFIG", "SET", "min-replicas-max-lag", "5")
        replica = h.free_port()
        s.spawn("replica", ["redis-server", "--port", str(replica), "--bind", "127.0.0.1",
                            "--dir", s.dir, "--save", "", "--appendonly", "no",
                            "--dbfilename", "replica.rdb", "--replicaof", "127.0.0.1", str(master),
                            "--min-replicas-to-write", "1", "--min-replicas-max-lag", "5"])
        sport = h.free_port()
        conf = os.path.join(s.dir, "sentinel.conf")
        with open(conf, "w") as f:
            f.write("port %d\nbind 127.0.0.1\ndir %s\n" % (sport, s.dir))
            f.write("sentinel monitor mymaster 127.0.0.1 %d 1\n" % master)
            f.write("sentinel down-after-milliseconds mymaster 1000\n")
            f.write("sentinel failover-timeout mymaster 5000\n")
        s.spawn("sentinel", ["redis-server", conf, "--sentinel"])

        def cli(port, *args):
            s.redis_port, saved = port, s.redis_port
            try:
                return s.redis_cli(*args)
            finally:
                s.redis_port = saved
        h.wait_until(lambda: "master_link_status:up" in cli(replica, "INFO", "replication"), 15,
                     "the replica to sync")
        h.wait_until(lambda: "127.0.0.1" in cli(sport, "SENTINEL", "replicas", "mymaster"), 20,
                     "the sentinel to know the replica")

        broker = s.broker(env={"REDIS_URL": "redis://127.0.0.1:1/0",
                               "REDIS_SENTINELS": "127.0.0.1:%d" % sport,
                               "REDIS_MASTER_NAME": "mymaster"})
        s.worker("--simulate", "--type", "python", "--concurrency", "20",
                 env={"SIM_DURATION_MS": "5-20"})
        s.wait_workers(1)
        h.check("sentinels name master 'mymaster' at 127.0.0.1:%d" % master in broker.output(),
                "the broker asked the sentinel where the master is")
        gw = gwtest.gateway(s, env={"REDIS_URL": "redis://127.0.0.1:1/0",
                                    "REDIS_SENTINELS": "127.0.0.1:%d" % sport,
                                    "REDIS_MASTER_NAME": "mymaster"})
        following = "sentinel 127.0.0.1:%d: following +switch-master for 'mymaster'" % sport
        h.wait_until(lambda: following in broker.output(), 10,
                     "the broker to subscribe to +switch-master")
        h.wait_until(lambda: following in gw.output(), 10,
                     "the gateway to subscribe to +switch-master")
        status, _, body = h.http("GET", gw.url + "/api/history?limit=5", timeout=10)
        h.check(status == 200, "GET /api/history answers through the sentinel", status, body)

        accepted, gw_accepted, stop = [], [], threading.Event()
        refused, gw_refused = [0], [0]
        slowest = {"zmq": 0.0, "http": 0.0}
        errors = []
        # Refusals since the switch began whose retry was accepted later.
        switching = threading.Event()
        retried_ok = {"zmq": 0, "http": 0}

        def answered(kind, t0, what):
            took = time.monotonic() - t0
            slowest[kind] = max(slowest[kind], took)
            if took >= ANSWER_BOUND_S:
                errors.append("%s answered after %.2f s (bound %.1f s): %s"
                              % (kind, took, ANSWER_BOUND_S, what))

        def load():
            c = s.client()
            i = 0
            try:
                while not stop.is_set():
                    i += 1
                    was_refused = False
                    while not stop.is_set():
                        t0 = time.monotonic()
                        cmd, r = c.request(h.SUBMIT, {"botType": "python", "payload": {"i": i},
                                                      "idempotencyKey": "k%d" % i}, timeout=30)
                        answered("zmq", t0, r)
                        if cmd == h.ACCEPTED:
                            if r.get("duplicate"):
                                errors.append("SUBMIT k%d after a refusal answered duplicate %r"
                                              % (i, r))
                            accepted.append(r["jobId"])
                            if was_refused and switching.is_set():
                                retried_ok["zmq"] += 1
                            break
                        if r.get("code") != "store_unavailable":
                            errors.append("SUBMIT refused %r" % (r,))
                            return
                        refused[0] += 1
                        was_refused = True
                        time.sleep(0.05)        # the client's retry pace
                    time.sleep(0.005)           # the load's pace
            except Exception as exc:            # noqa: BLE001 (reported below)
                errors.append("zmq load: %r" % (exc,))
            finally:
                c.close()

        def gw_load():
            i = 0
            try:
                while not stop.is_set():
                    i += 1
                    was_refused = False
                    while not stop.is_set():
                        t0 = time.monotonic()
                        status, _, body = h.http("POST", gw.url + "/invoke",
                                                 {"botType": "python", "payload": {"g": i},
                                                  "idempotencyKey": "g%d" % i}, timeout=30)
                        answered("http", t0, (status, body))
                        if status in (200, 202) and isinstance(body, dict) and body.get("jobId"):
                            gw_accepted.append(body["jobId"])
                            if was_refused and switching.is_set():
                                retried_ok["http"] += 1
                            break
                        code = body.get("error", {}).get("code") if isinstance(body, dict) else None
                        if status != 503 or code != "store_unavailable":
                            errors.append("POST /invoke answered %r %r" % (status, body))
                            return
                        gw_refused[0] += 1
                        was_refused = True
                        time.sleep(0.05)
                    time.sleep(0.02)
            except Exception as exc:            # noqa: BLE001 (reported below)
                errors.append("http load: %r" % (exc,))

        t = threading.Thread(target=load, daemon=True)
        t.start()
        tg = threading.Thread(target=gw_load, daemon=True)
        tg.start()
        h.wait_until(lambda: len(accepted) >= 200 and len(gw_accepted) >= 20, 30,
                     "200 jobs accepted before the switch (20 through the gateway)")
        switching.set()
        h.check(cli(sport, "SENTINEL", "FAILOVER", "mymaster") == "OK", "SENTINEL FAILOVER started")
        h.wait_until(lambda: str(replica) in cli(sport, "SENTINEL", "get-master-addr-by-name", "mymaster"),
                     20, "the sentinel to name the replica as master")
        switch_line = "+switch-master 'mymaster' 127.0.0.1:%d -> 127.0.0.1:%d" % (master, replica)
        h.wait_until(lambda: switch_line in broker.output(), 20,
                     "the broker to log the +switch-master message")
        h.wait_until(lambda: switch_line in gw.output(), 20,
                     "the gateway to log the +switch-master message")
        # The new master may refuse writes (NOREPLICAS) until its replica has
        # synced, many seconds on a loaded machine: the broker then keeps its
        # writes and says "takes writes again" once they land.
        h.wait_until(lambda: any(("redis 127.0.0.1:%d %s" % (replica, said)) in broker.output()
                                 for said in ("available again", "connected", "takes writes again")),
                     40, "the broker to reconnect to the new master")
        for line in broker.output().splitlines():
            if "+switch-master" in line or "redis" in line and str(replica) in line:
                h.log("broker: " + line.strip())
        before, gw_before = len(accepted), len(gw_accepted)
        h.wait_until(lambda: errors or (len(accepted) >= before + 200
                                        and len(gw_accepted) >= gw_before + 20), 60,
                     "200 more jobs accepted after the switch (20 through the gateway)")
        stop.set()
        t.join(40)
        tg.join(40)
        h.check(not t.is_alive() and not tg.is_alive(), "the load ended")
        h.log("accepted %d jobs over ZeroMQ, %d through the gateway; refused store_unavailable "
              "(then retried): %d and %d; slowest answer %.3f s (ZeroMQ), %.3f s (HTTP)"
              % (len(accepted), len(gw_accepted), refused[0], gw_refused[0],
                 slowest["zmq"], slowest["http"]))
        h.check(not errors, "every submission answered within %.1f s, ACCEPTED or "
                "store_unavailable (503 through the gateway)" % ANSWER_BOUND_S, errors[:10])
        h.check(refused[0] + gw_refused[0] > 0, "submissions were refused during the switch",
                refused[0], gw_refused[0])
        h.check(retried_ok["zmq"] + retried_ok["http"] > 0,
                "a submission refused during the switch was accepted on retry", retried_ok)
        everything = accepted + gw_accepted
        h.check(len(set(everything)) == len(everything), "no job id accepted twice")

        def unfinished():
            return int(cli(replica, "SCARD", "botmesh:{bm}:unfinished"))
        h.wait_until(lambda: unfinished() == 0, 60, "every job terminal in the new master")
        missing = [j for j in accepted if cli(replica, "HGET", "botmesh:{bm}:job:" + j, "state")
                   not in h.TERMINAL]
        h.check(not missing, "every accepted job is terminal in the new master (%d)" % len(accepted),
                missing[:10])
        missing = [j for j in gw_accepted if cli(replica, "HGET", "botmesh:{bm}:job:" + j, "state")
                   not in h.TERMINAL]
        h.check(not missing, "every job accepted through the gateway is terminal in the new master "
                "(%d)" % len(gw_accepted), missing[:10])
        # A refused submission leaves no record behind (undone if its write
        # had reached Redis): the records are the accepted jobs.
        keys = set()
        cursor = "0"
        while True:
            out = cli(replica, "SCAN", cursor, "MATCH", "botmesh:{bm}:job:*", "COUNT", "1000").split()
            cursor, keys = out[0], keys | set(k[len("botmesh:{bm}:job:"):] for k in out[1:])
            if cursor == "0":
                break
        extra = keys - set(everything)
        h.check(not extra, "no job record beyond the accepted ones (%d records)" % len(keys),
                sorted(extra)[:10])
        status, _, body = h.http("GET", gw.url + "/api/history?limit=5", timeout=10)
        h.check(status == 200, "GET /api/history answers after the switch", status, body)
        c = s.client()
        try:
            totals = c.stats()["totals"]
        finally:
            c.close()
        ended = totals.get("completed", 0) + totals.get("failed", 0) + totals.get("cancelled", 0)
        h.check(ended == len(everything), "the broker ended each accepted job once (%d ended, %d "
                "accepted)" % (ended, len(everything)), totals)


if __name__ == "__main__":
    h.main(test)

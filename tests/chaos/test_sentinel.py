"""Redis through Sentinel: a failover of Redis mid-run loses nothing accepted.

A real Redis master, a replica (--replicaof) and a sentinel (redis-server
--sentinel) watching them as "mymaster".  The broker gets REDIS_SENTINELS
and REDIS_MASTER_NAME (its REDIS_URL names a port where nothing listens:
only the sentinel can tell it where Redis is); a simulated worker runs the
jobs.  A client submits jobs steadily, retrying a submission refused with
store_unavailable.  Midway, SENTINEL FAILOVER promotes the replica.  What
must hold: the broker follows the switch (its log names the new master),
every submission was accepted in the end, every accepted job reaches a
terminal state in the new master, and its live set empties.  Printed: how
many submissions were refused store_unavailable during the switch.
"""
import os
import threading
import time

import harness as h


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

        accepted, refused, stop = [], [0], threading.Event()

        def load():
            c = s.client()
            i = 0
            while not stop.is_set():
                i += 1
                while not stop.is_set():
                    # While the new master has no replica yet it refuses writes
                    # (min-replicas-to-write): an answer may take that long.
                    cmd, r = c.request(h.SUBMIT, {"botType": "python", "payload": {"i": i},
                                                  "idempotencyKey": "k%d" % i}, timeout=60)
                    if cmd == h.ACCEPTED:
                        accepted.append(r["jobId"])
                        break
                    if r.get("code") != "store_unavailable":
                        raise h.TestFailure("SUBMIT refused %r" % (r,))
                    refused[0] += 1
                    time.sleep(0.05)        # the client's retry pace
                time.sleep(0.005)           # the load's pace
            c.close()
        t = threading.Thread(target=load, daemon=True)
        t.start()
        h.wait_until(lambda: len(accepted) >= 200, 30, "200 jobs accepted before the switch")
        h.check(cli(sport, "SENTINEL", "FAILOVER", "mymaster") == "OK", "SENTINEL FAILOVER started")
        h.wait_until(lambda: str(replica) in cli(sport, "SENTINEL", "get-master-addr-by-name", "mymaster"),
                     20, "the sentinel to name the replica as master")
        h.wait_until(lambda: "127.0.0.1:%d" % replica in broker.output(), 20,
                     "the broker to follow the switch to the new master")
        before = len(accepted)
        h.wait_until(lambda: len(accepted) >= before + 200, 60, "200 more jobs accepted after the switch")
        stop.set()
        t.join(70)
        h.check(not t.is_alive(), "the load ended")
        h.log("accepted %d jobs; %d submissions refused store_unavailable during the switch (retried)"
              % (len(accepted), refused[0]))

        def unfinished():
            return int(cli(replica, "ZCARD", "botmesh:{bm}:live"))
        h.wait_until(lambda: unfinished() == 0, 60, "every job terminal in the new master")
        missing = [j for j in accepted if cli(replica, "HGET", "botmesh:{bm}:job:" + j, "state")
                   not in h.TERMINAL]
        h.check(not missing, "every accepted job is terminal in the new master (%d)" % len(accepted),
                missing[:10])


if __name__ == "__main__":
    h.main(test)

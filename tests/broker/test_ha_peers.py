"""Peers with a list of brokers follow the leader (BROKER_ENDPOINT a list).

Two real brokers with BROKER_HA=redis; a real botmesh-worker (--simulate)
and botmesh-client, both given "standby,leader" (the standby first, so
that each must get not_leader and move on).  Jobs submitted through
botmesh-client complete.  Then the leader is killed with SIGKILL: the
worker finds the new leader by itself (READY again), botmesh-client with
the same list reaches it, and every job accepted before and after the
failover completes.
"""
import json
import subprocess
import time
import harness as h
import hatest


def cli(s, endpoints, *args, timeout=30):
    out = subprocess.run([s.bin("botmesh-client"), "--endpoint", endpoints] + list(args),
                         capture_output=True, text=True, timeout=timeout)
    return out.returncode, out.stdout, out.stderr


def test():
    with h.Stack("ha-peers") as s:
        s.redis()
        pair = hatest.HaPair(s)
        first = pair.wait_leader()
        second = pair.other(first)
        h.wait_until(lambda: (lambda x: x and x[1].get("leader"))(hatest.ping(pair.endpoint(second))),
                     10, "the standby to learn the leader")
        endpoints = pair.endpoint(second) + "," + pair.endpoint(first)
        s.spawn("worker", [s.bin("botmesh-worker"), "--simulate", "--type", "python",
                           "--concurrency", "4", "--name", "w1"],
                {"BROKER_ENDPOINT": endpoints, "SIM_DURATION_MS": "10-30",
                 "HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5"})
        c = h.Client(pair.endpoint(first))
        h.wait_until(lambda: len(c.stats()["workers"]) == 1, 15,
                     "the worker to register with the leader through the standby")
        h.check("is a standby" in s.procs[-1].output(), "the worker was told not_leader and moved on")

        rc, out, err = cli(s, endpoints, "submit", "python", '{"n": 1}', "--wait")
        h.check(rc == 0 and json.loads(out)["state"] == "completed",
                "botmesh-client with the list submits through the standby and waits", out, err)
        before = [c.submit("python", {"i": i}) for i in range(50)]
        c.close()

        pair.procs[first].kill()
        killed = time.monotonic()
        pair.wait_leader(timeout=10, other_than=first)
        h.log("new leader after %.2f s" % (time.monotonic() - killed))
        c = h.Client(pair.endpoint(second))
        h.wait_until(lambda: len(c.stats()["workers"]) == 1, 15,
                     "the worker to find the new leader by itself")
        h.log("worker registered with the new leader %.2f s after the kill" % (time.monotonic() - killed))

        rc, out, err = cli(s, pair.endpoint(first) + "," + pair.endpoint(second),
                           "submit", "python", '{"n": 2}', "--wait")
        h.check(rc == 0 and json.loads(out)["state"] == "completed",
                "botmesh-client with the list reaches the new leader past the dead one", out, err)
        for job_id in before:
            rec = c.wait(job_id, timeout=30)
            h.check(rec["state"] == "completed", "job accepted before the failover completed", rec)
        c.close()


if __name__ == "__main__":
    h.main(test)

"""The Python and Node clients and workers follow the leader (BROKER_ENDPOINT a list).

Two real brokers with BROKER_HA=redis on one real redis-server.  A Python
worker (pyworker.py) and a Node worker (nodeworker.js, when Node and its
modules are there) get "standby,leader": each must be told not_leader and
move on.  The Python client with the same list submits jobs of both types;
the Node client too.  The leader is killed with SIGKILL: both workers find
the new leader by themselves, and jobs submitted through the list after
the failover (the dead broker first) complete.  The workers hear the
leader's connection close (a socket monitor) and move at once, not after
their heartbeat window (10 s here).  Then the old leader comes back as a
standby and the leader gets SIGTERM: both workers are told DISCONNECT
shutting_down and move to the next leader at once.
"""
import os
import signal
import subprocess
import sys
import time

import harness as h

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "broker"))
sys.path.insert(0, os.path.join(h.ROOT, "clients", "python"))
import hatest  # noqa: E402
import botmesh  # noqa: E402


def node_ok():
    return subprocess.run(["sh", os.path.join(HERE, "run_node.sh"), "--check"],
                          capture_output=True).returncode == 0


def test():
    with h.Stack("clients-ha") as s:
        s.redis()
        pair = hatest.HaPair(s, env={"MAX_PYWORK_BOTS": "10", "MAX_NODEWORK_BOTS": "10"})
        first = pair.wait_leader()
        second = pair.other(first)
        h.wait_until(lambda: (lambda x: x and x[1].get("leader"))(hatest.ping(pair.endpoint(second))),
                     10, "the standby to learn the leader")
        standby_first = pair.endpoint(second) + "," + pair.endpoint(first)
        pyworker = s.spawn("pyworker", ["/usr/bin/python3", os.path.join(HERE, "pyworker.py"), "--types", "pywork",
                             "--credit", "4", "--name", "py-1", "--endpoint", standby_first],
                           {"HEARTBEAT_INTERVAL_MS": "1000", "HEARTBEAT_LIVENESS": "10"})
        types = ["pywork"]
        if node_ok():
            nodeworker = s.spawn("nodeworker", ["sh", os.path.join(HERE, "run_node.sh"), os.path.join(HERE, "nodeworker.js"),
                                   "--types", "nodework", "--credit", "4", "--name", "node-1",
                                   "--endpoint", standby_first],
                                 {"HEARTBEAT_INTERVAL_MS": "1000", "HEARTBEAT_LIVENESS": "10"})
            types.append("nodework")
        else:
            h.log("Node client not available: its part is skipped")
        c = botmesh.Client(standby_first, timeout=8)
        h.wait_until(lambda: len(c.stats()["workers"]) == len(types), 30,
                     "the workers to register with the leader through the standby")

        for t in types:
            rec = c.wait(c.submit(t, {"sleepMs": 5}), timeout=30)
            h.check(rec["state"] == "completed", "a %s job through the list (standby first) completed" % t, rec)
        if "nodework" in types:
            out = subprocess.run(["sh", os.path.join(HERE, "run_node.sh"), os.path.join(HERE, "e2e_node_ha.js"),
                                  standby_first], capture_output=True, text=True, timeout=60, env=s.env)
            h.check(out.returncode == 0, "the Node client with the list: standby first", out.stdout, out.stderr)

        pair.procs[first].kill()
        killed = time.monotonic()
        pair.wait_leader(timeout=10, other_than=first)
        h.log("new leader after %.2f s" % (time.monotonic() - killed))
        dead_first = pair.endpoint(first) + "," + pair.endpoint(second)
        c.close()
        c = botmesh.Client(pair.endpoint(second), timeout=8)
        h.wait_until(lambda: len(c.stats()["workers"]) == len(types), 30,
                     "both workers to find the new leader by themselves")
        h.log("workers registered with the new leader %.2f s after the kill" % (time.monotonic() - killed))
        h.check("the broker closed the connection" in pyworker.output(),
                "the Python worker heard the leader's connection close (not its 10 s heartbeat window)",
                pyworker.output()[-2000:])
        if "nodework" in types:
            h.check("the broker closed the connection" in nodeworker.output(),
                    "the Node worker heard it too", nodeworker.output()[-2000:])
        c.close()
        c = botmesh.Client(dead_first, timeout=8)
        for t in types:
            rec = c.wait(c.submit(t, {"sleepMs": 5}, idempotency_key="after-%s" % t), timeout=30)
            h.check(rec["state"] == "completed", "a %s job through the list (dead broker first) completed" % t, rec)
        if "nodework" in types:
            out = subprocess.run(["sh", os.path.join(HERE, "run_node.sh"), os.path.join(HERE, "e2e_node_ha.js"),
                                  dead_first], capture_output=True, text=True, timeout=60, env=s.env)
            h.check(out.returncode == 0, "the Node client with the list: dead broker first", out.stdout, out.stderr)
        c.close()

        # A planned restart: the old leader back as a standby, the leader
        # given SIGTERM.  It tells its workers DISCONNECT shutting_down at
        # once: each moves to the standby about to lead and registers there.
        pair.start(first)
        h.wait_until(lambda: (lambda x: x and x[1].get("leader"))(hatest.ping(pair.endpoint(first))),
                     10, "the restarted broker to learn the leader")
        pair.procs[second].signal(signal.SIGTERM)
        termed = time.monotonic()
        pair.wait_leader(timeout=10, other_than=second)
        c = botmesh.Client(pair.endpoint(first), timeout=8)
        h.wait_until(lambda: len(c.stats()["workers"]) == len(types), 30,
                     "both workers to register with the next leader after the SIGTERM")
        h.log("workers registered with the next leader %.2f s after the SIGTERM" % (time.monotonic() - termed))
        h.check("the broker is shutting down" in pyworker.output(),
                "the Python worker was told DISCONNECT shutting_down and moved on",
                pyworker.output()[-2000:])
        if "nodework" in types:
            h.check("is shutting down; moving on" in nodeworker.output(),
                    "the Node worker too", nodeworker.output()[-2000:])
        for t in types:
            rec = c.wait(c.submit(t, {"sleepMs": 5}), timeout=30)
            h.check(rec["state"] == "completed", "a %s job after the SIGTERM completed" % t, rec)
        c.close()


if __name__ == "__main__":
    h.main(test)

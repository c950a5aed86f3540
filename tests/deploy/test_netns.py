"""deploy.netns - workers on another host join the broker over TCP.

Two network namespaces joined by a veth pair stand for two hosts: the broker
in one (bound to its veth address only, no Redis), two workers in the other
pointing BROKER_ENDPOINT at it.  Jobs submitted with botmesh-client in the
broker's namespace run on the remote workers.  Then the link goes down long
enough for both sides to declare the other dead, comes back, the workers
register again by themselves, and jobs flow again.  Needs root and
iproute2's `ip netns`; otherwise the test prints SKIP and exits 77.
"""
import json
import os
import subprocess
import time

import deploylib as d
from harness import Stack, check, log, main, wait_until

PID = os.getpid()
NS_BROKER, NS_WORKERS = "bmb%d" % PID, "bmw%d" % PID
VETH_B, VETH_W = "vb%d" % PID, "vw%d" % PID
# A /30 in 10.200.0.0/16 picked from the pid, so parallel runs do not clash.
NET = "10.%d.%d" % (200 + (PID >> 14) % 50, (PID >> 6) % 256)
OFF = (PID % 64) * 4
IP_B, IP_W = "%s.%d" % (NET, OFF + 1), "%s.%d" % (NET, OFF + 2)
HB = "200"      # heartbeat interval ms: a dead peer is noticed in 0.6 s


ip = d.ip


def setup():
    # Namespaces left by an earlier run that was killed (its pid is gone) go.
    d.netns_add(NS_BROKER, r"bm[bw](\d+)")
    ip("netns", "add", NS_WORKERS)
    ip("link", "add", VETH_B, "type", "veth", "peer", "name", VETH_W)
    ip("link", "set", VETH_B, "netns", NS_BROKER)
    ip("link", "set", VETH_W, "netns", NS_WORKERS)
    for ns, dev, addr in ((NS_BROKER, VETH_B, IP_B), (NS_WORKERS, VETH_W, IP_W)):
        ip("-n", ns, "addr", "add", addr + "/30", "dev", dev)
        ip("-n", ns, "link", "set", dev, "up")
        ip("-n", ns, "link", "set", "lo", "up")
    log("namespaces %s (broker %s) and %s (workers %s)" % (NS_BROKER, IP_B, NS_WORKERS, IP_W))


def teardown():
    for ns in (NS_BROKER, NS_WORKERS):
        ip("netns", "del", ns, check_rc=False)


def client(endpoint, *args, timeout=60):
    """botmesh-client inside the broker's namespace; returns parsed JSON."""
    p = subprocess.run(["ip", "netns", "exec", NS_BROKER, d.binary("botmesh-client"),
                        "--endpoint", endpoint] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("botmesh-client %s: rc %d %s %s" % (" ".join(args), p.returncode, p.stdout, p.stderr))
    return json.loads(p.stdout)


BATCH = """
import json, sys
import harness
c = harness.Client(sys.argv[1])
ids = [c.submit("python", {"task": "data_analysis", "n": i, "tag": sys.argv[3]}) for i in range(int(sys.argv[2]))]
print(json.dumps([c.wait(i, timeout=30) for i in ids]))
"""


def run_jobs(endpoint, n, tag):
    """Submit n jobs from the broker's namespace and wait for them all."""
    p = subprocess.run(["ip", "netns", "exec", NS_BROKER, "/usr/bin/python3", "-c", BATCH, endpoint, str(n), tag],
                       capture_output=True, text=True, timeout=90)
    if p.returncode != 0:
        raise RuntimeError("batch of %d jobs: rc %d %s %s" % (n, p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
    return json.loads(p.stdout.splitlines()[-1])


def test():
    for b in ("botmesh-broker", "botmesh-worker", "botmesh-client"):
        if not d.binary(b):
            d.skip("%s is not built yet" % b)
    setup()
    try:
        with Stack("netns") as s:
            endpoint = "tcp://%s:5555" % IP_B
            env = {"BROKER_ENDPOINT": endpoint, "REDIS_URL": "none", "BROKER_METRICS_PORT": "0",
                   "HEARTBEAT_INTERVAL_MS": HB, "HEARTBEAT_LIVENESS": "3"}
            broker = s.spawn("broker", ["ip", "netns", "exec", NS_BROKER, d.binary("botmesh-broker")], env)
            wait_until(lambda: client(endpoint, "--timeout-ms", "500", "ping"), 15, "the broker to answer PING")
            # Not reachable from this (the root) namespace: the mesh really is
            # only what the veth carries.
            p = subprocess.run([d.binary("botmesh-client"), "--endpoint", endpoint, "--timeout-ms", "300", "ping"],
                               capture_output=True, text=True, timeout=20)
            check(p.returncode != 0, "the broker is unreachable outside the two namespaces", p.stdout)
            wenv = dict(env, WORKER_MODE="simulate", SIM_DURATION_MS="10-30")
            workers = [s.spawn("worker-%d" % i, ["ip", "netns", "exec", NS_WORKERS, d.binary("botmesh-worker"),
                                                 "--type", "python", "--concurrency", "3",
                                                 "--name", "remote-%d" % i], wenv)
                       for i in range(2)]

            def remote_workers():
                ws = client(endpoint, "stats")["workers"]
                return sorted(w["name"] for w in ws if w["name"].startswith("remote-"))
            wait_until(lambda: remote_workers() == ["remote-0", "remote-1"], 20,
                       "both remote workers to register across the veth")

            recs = run_jobs(endpoint, 20, "first")
            check(all(r["state"] == "completed" for r in recs), "20 jobs completed on the remote workers",
                  [r["state"] for r in recs])
            ran_on = sorted({r.get("worker") for r in recs})
            check(set(ran_on) <= {"remote-0", "remote-1"} and ran_on, "they ran on the remote workers", ran_on)

            # Cut the wire: the broker drops the workers, the workers give up
            # on the broker; on repair they come back by themselves.
            ip("-n", NS_WORKERS, "link", "set", VETH_W, "down")
            wait_until(lambda: remote_workers() == [], 15, "the broker to declare the workers dead")
            ip("-n", NS_WORKERS, "link", "set", VETH_W, "up")
            wait_until(lambda: remote_workers() == ["remote-0", "remote-1"], 30,
                       "both workers to register again after the link came back")
            recs = run_jobs(endpoint, 10, "after")
            check(all(r["state"] == "completed" for r in recs), "jobs flow again after the partition",
                  [r["state"] for r in recs])
            check(all(w.alive() for w in workers) and broker.alive(), "no process died on the way")
    finally:
        teardown()


if __name__ == "__main__":
    main(test)

"""deploy.netns_ha - the leader cut off from Redis: the standby takes over, the old leader stops.

Two brokers with BROKER_HA=redis (lease 2000 ms).  Broker A runs in a network
namespace of its own, joined to this one by a veth pair; Redis and broker B
run here.  A leads; 100 jobs are accepted through it (no worker yet, so they
stay queued).  Then the veth goes down: A can no longer reach Redis (its
clients, in its namespace, still reach it).  Checked:

  - B leads within 6 s of the cut (the lease runs out, B takes it, epoch 2;
    a liveness bound with room for a loaded machine: the failover time
    itself is measured by bench/failover.py);
  - A stops serving within its lease: its log says it steps down, at most
    BROKER_LEASE_MS after the cut and before B's first moment as leader
    (no split brain), and a client beside it gets not_leader from then on;
  - a worker at B runs every accepted job exactly once; Redis has them all
    completed; A, back on the network, stays a standby naming nobody else
    as leader but B.

Needs root and iproute2's `ip netns`; otherwise SKIP (exit 77).
"""
import datetime
import json
import os
import re
import subprocess
import time

import deploylib as d
import harness as h
from harness import Stack, check, log, main, wait_until

PID = os.getpid()
NS_A = "bma%d" % PID
VETH_R, VETH_A = "vr%d" % PID, "va%d" % PID
# A /30 in 10.150.0.0/16 from the pid, apart from deploy.netns's 10.200+ nets.
NET = "10.%d.%d" % (150 + (PID >> 14) % 40, (PID >> 6) % 256)
OFF = (PID % 64) * 4
IP_R, IP_A = "%s.%d" % (NET, OFF + 1), "%s.%d" % (NET, OFF + 2)
LEASE_MS = 2000
N = 100
HA = {"BROKER_HA": "redis", "BROKER_LEASE_MS": str(LEASE_MS), "BROKER_METRICS_PORT": "0",
      "HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5"}


ip = d.ip


def setup():
    d.netns_add(NS_A, r"bma(\d+)")
    ip("link", "add", VETH_R, "type", "veth", "peer", "name", VETH_A)
    ip("link", "set", VETH_A, "netns", NS_A)
    ip("addr", "add", IP_R + "/30", "dev", VETH_R)
    ip("link", "set", VETH_R, "up")
    ip("-n", NS_A, "addr", "add", IP_A + "/30", "dev", VETH_A)
    ip("-n", NS_A, "link", "set", VETH_A, "up")
    ip("-n", NS_A, "link", "set", "lo", "up")
    log("namespace %s (broker A at %s), Redis and broker B here (%s)" % (NS_A, IP_A, IP_R))


def teardown():
    ip("link", "del", VETH_R, check_rc=False)
    ip("netns", "del", NS_A, check_rc=False)


PING_A = """
import sys, harness
c = harness.Client(sys.argv[1])
c.req += 1
c.send(harness.PING, {"req": c.req})
if not c.sock.poll(int(float(sys.argv[2]) * 1000)):
    print("none")
else:
    cmd, r = c.recv(0.1)
    print("serves" if cmd == harness.REPLY else r.get("code", "?"))
"""

SUBMIT_A = """
import json, sys, harness
c = harness.Client(sys.argv[1])
print(json.dumps([c.submit("python", {"n": i}) for i in range(int(sys.argv[2]))]))
"""


def in_a(script, *args, timeout=30):
    """A Python snippet run beside broker A (in its namespace)."""
    p = subprocess.run(["ip", "netns", "exec", NS_A, "/usr/bin/python3", "-c", script] + list(args),
                       capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, PYTHONPATH=os.path.join(d.ROOT, "tests", "lib")))
    if p.returncode != 0:
        raise RuntimeError("in %s: rc %d %s %s" % (NS_A, p.returncode, p.stdout[-1000:], p.stderr[-1000:]))
    return p.stdout.strip().splitlines()[-1]


def log_time(text, pattern):
    """The time of the first log line matching pattern (lines start with an ISO time)."""
    for line in text.splitlines():
        if re.search(pattern, line):
            stamp = line.split()[0].rstrip("Z")
            return datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc).timestamp()
    return None


def leads(endpoint):
    c = h.Client(endpoint)
    try:
        c.req += 1
        c.send(h.PING, {"req": c.req})
        if not c.sock.poll(300):
            return False
        cmd, r = c.recv(0.1)
        return cmd == h.REPLY and r.get("redis")
    finally:
        c.close()


def test():
    for b in ("botmesh-broker", "botmesh-worker"):
        if not d.binary(b):
            d.skip("%s is not built yet" % b)
    setup()
    try:
        with Stack("netns-ha") as s:
            rport = h.free_port()
            s.spawn("redis", ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", IP_R,
                              "--save", "", "--appendonly", "no", "--protected-mode", "no"])
            s.redis_port = rport
            wait_until(lambda: s.redis_cli("PING") == "PONG", 10, "redis to answer PING")
            pa, pb = h.free_port(), h.free_port()
            ep_a, ep_b = "tcp://127.0.0.1:%d" % pa, "tcp://127.0.0.1:%d" % pb
            a = s.spawn("broker-a", ["ip", "netns", "exec", NS_A, d.binary("botmesh-broker")], dict(
                HA, BROKER_ENDPOINT="tcp://*:%d" % pa, BROKER_ADVERTISE_ENDPOINT="tcp://%s:%d" % (IP_A, pa),
                REDIS_URL="redis://%s:%d/0" % (IP_R, rport)))
            wait_until(lambda: in_a(PING_A, ep_a, "0.5") == "serves", 15, "broker A to lead")
            b = s.spawn("broker-b", [d.binary("botmesh-broker")], dict(
                HA, BROKER_ENDPOINT=ep_b, REDIS_URL="redis://127.0.0.1:%d/0" % rport))
            wait_until(lambda: b.output().count("waiting for the lease") >= 1, 15, "broker B to stand by")
            check(not leads(ep_b), "B is a standby while A leads")
            check(s.redis_cli("GET", "botmesh:{bm}:epoch") == "1", "A's reign is epoch 1")

            ids = json.loads(in_a(SUBMIT_A, ep_a, str(N)))
            check(len(set(ids)) == N, "%d jobs accepted by A" % N)
            check(int(s.redis_cli("SCARD", "botmesh:{bm}:unfinished")) == N, "all %d are in Redis" % N)

            # The cut: A keeps its clients (they are beside it) but loses Redis.
            ip("link", "set", VETH_R, "down")
            cut = time.time()
            log("veth down: broker A is cut off from Redis")
            wait_until(lambda: leads(ep_b), 10, "broker B to lead", interval=0.02)
            took = time.time() - cut
            log("B leads %.2f s after the cut" % took)
            check(took <= 6.0, "the standby leads within 6 s of the cut (%.2f s)" % took)
            check(s.redis_cli("GET", "botmesh:{bm}:epoch") == "2", "B's reign is epoch 2")

            wait_until(lambda: "stepping down" in a.output(), 10, "A to say it steps down")
            down_at = log_time(a.output(), r"stepping down")
            lead_at = log_time(b.output(), r"leader now")
            log("A steps down %.0f ms after the cut; B leads %.0f ms after it"
                % ((down_at - cut) * 1000, (lead_at - cut) * 1000))
            check(down_at - cut <= LEASE_MS / 1000.0 + 0.2,
                  "A stops serving within its lease (%.0f ms after the cut)" % ((down_at - cut) * 1000))
            check(down_at < lead_at, "A stopped before B's first moment as leader (no split brain)",
                  down_at, lead_at)
            check(re.search(r"stepping down: the lease ran out|stepping down: lost the lease", a.output()),
                  "A's log names why it steps down")
            answer = in_a(PING_A, ep_a, "1")
            check(answer in ("not_leader", "none"), "a client beside A no longer gets service from it", answer)

            # Every accepted job runs once, at B.
            w = s.spawn("worker", [d.binary("botmesh-worker"), "--type", "python", "--concurrency", "20"],
                        {"BROKER_ENDPOINT": ep_b, "WORKER_MODE": "simulate", "SIM_DURATION_MS": "1-5",
                         "HEARTBEAT_INTERVAL_MS": "200"})
            wait_until(lambda: int(s.redis_cli("SCARD", "botmesh:{bm}:unfinished")) == 0, 60,
                       "every accepted job to end at B")
            c = h.Client(ep_b)
            states = [c.status(i)["state"] for i in ids]
            check(states.count("completed") == N, "all %d jobs completed" % N, sorted(set(states)))
            totals = c.stats()["totals"]
            check(totals["completed"] == N, "B completed each exactly once", totals)
            c.close()

            # The wire comes back: A stays a standby.
            ip("link", "set", VETH_R, "up")
            wait_until(lambda: in_a(PING_A, ep_a, "0.5") == "not_leader", 20, "A to answer as a standby")
            check(leads(ep_b), "B still leads after the wire is back")
            check(s.redis_cli("GET", "botmesh:{bm}:epoch") == "2", "no new reign when A comes back")
            check(a.alive() and b.alive() and w.alive(), "no process died on the way")
    finally:
        teardown()


if __name__ == "__main__":
    main(test)

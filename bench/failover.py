#!/usr/bin/env python3
"""failover.py - broker failover time, N leader kills in a row (./botmesh bench, group ha).

Two botmesh-broker processes with BROKER_HA=redis on one redis-server, one
no-op botmesh-worker given both endpoints.  N times: find the leader, kill
it with SIGKILL, then measure

  lead   kill -> the other broker answers PING as the leader (Redis up),
  serve  kill -> a job submitted to it has completed (the worker followed
         it, re-registered and ran the job),

and start the killed broker again as the standby (same port and settings).
Each kill comes at a random point of the leader's lease renewal period.
Prints one line: RESULT kills=N lead_median_ms= lead_max_ms= serve_median_ms=
serve_max_ms= lease_ms=.

    failover.py --bin BIN --redis-port PORT [--kills 10] [--lease-ms 2000]
"""
import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "tests", "lib"), os.path.join(HERE, "..", "tests", "broker")]
import harness as h  # noqa: E402
from harness import free_port  # noqa: E402
from hatest import leads, ping  # noqa: E402


def until(fn, timeout, what, interval=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    raise SystemExit("failover: %s: not within %ss" % (what, timeout))


def job_done(endpoint, timeout):
    """Submit one job to endpoint and wait until it completed (True) or the
    broker refused it (False: not leading yet)."""
    c = h.Client(endpoint)
    try:
        cmd, r = c.request(h.SUBMIT, {"botType": "python", "payload": {"n": 1}}, timeout=timeout)
        if cmd != h.ACCEPTED:
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rec = c.status(r["jobId"])
            if rec and rec["state"] == "completed":
                return True
            time.sleep(0.005)
        return False
    except h.TestFailure:
        return False
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--lease-ms", type=int, default=2000)
    a = ap.parse_args()
    logs = tempfile.mkdtemp(prefix="botmesh-failover-")
    ports = {"a": free_port(), "b": free_port()}
    ep = {n: "tcp://127.0.0.1:%d" % p for n, p in ports.items()}
    procs = {}
    base = dict(os.environ, REDIS_URL="redis://127.0.0.1:%d/0" % a.redis_port, BROKER_HA="redis",
                BROKER_LEASE_MS=str(a.lease_ms), BROKER_METRICS_PORT="0", LOG_LEVEL="warn",
                HEARTBEAT_INTERVAL_MS="200", HEARTBEAT_LIVENESS="5")

    def start(name):
        env = dict(base, BROKER_ENDPOINT=ep[name])
        out = open(os.path.join(logs, "broker-%s.log" % name), "ab")
        procs[name] = subprocess.Popen([os.path.join(a.bin, "botmesh-broker")], env=env, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        until(lambda: ping(ep[name]), 15, "broker %s to answer" % name)

    worker = None
    try:
        for n in ("a", "b"):
            start(n)
        wenv = dict(os.environ, BROKER_ENDPOINT="%s,%s" % (ep["a"], ep["b"]), LOG_LEVEL="warn")
        worker = subprocess.Popen([os.path.join(a.bin, "botmesh-worker"), "--type", "python", "--noop",
                                   "--concurrency", "10"], env=wenv, start_new_session=True,
                                  stdout=open(os.path.join(logs, "worker.log"), "ab"), stderr=subprocess.STDOUT)
        lead, serve = [], []
        for i in range(a.kills):
            leader = until(lambda: next((n for n in ("a", "b") if leads(ep[n])), None), 15, "a leader")
            other = "b" if leader == "a" else "a"
            until(lambda: job_done(ep[leader], 5), 20, "a job to run on the leader %s" % leader)
            # The kill at a random point of the lease's renewal period (a
            # quarter lease): the loop's own rhythm would otherwise put every
            # kill at about the same point and bias the time to lead.
            time.sleep(random.uniform(0, a.lease_ms / 4000.0))
            procs[leader].send_signal(signal.SIGKILL)
            t0 = time.monotonic()
            procs[leader].wait()
            until(lambda: leads(ep[other]), 20, "broker %s to lead" % other, interval=0.005)
            lead.append((time.monotonic() - t0) * 1000)
            until(lambda: job_done(ep[other], 2), 30, "a job to run on the new leader %s" % other, interval=0.005)
            serve.append((time.monotonic() - t0) * 1000)
            print("kill %d: %s -> %s: leads after %.0f ms, a job done after %.0f ms"
                  % (i + 1, leader, other, lead[-1], serve[-1]), file=sys.stderr, flush=True)
            start(leader)
        print("RESULT kills=%d lead_median_ms=%.0f lead_max_ms=%.0f serve_median_ms=%.0f serve_max_ms=%.0f lease_ms=%d"
              % (a.kills, statistics.median(lead), max(lead), statistics.median(serve), max(serve), a.lease_ms),
              flush=True)
    finally:
        for p in list(procs.values()) + ([worker] if worker else []):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in list(procs.values()) + ([worker] if worker else []):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()

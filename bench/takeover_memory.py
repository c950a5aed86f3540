#!/usr/bin/env python3
"""takeover_memory.py - a new leader's resident memory after each takeover.

Two botmesh-broker processes with BROKER_HA=redis on a redis-server of
their own, one botmesh-worker --simulate (50 at a time, 1-2 ms a job)
given both endpoints.  CYCLES times: the leader runs PER jobs submitted
with idempotency keys (33 characters), then is killed (SIGKILL); the
standby takes over and recovers every key so far (the keys' TTL is 24 h)
and the newest KEEP_FINISHED_JOBS finished jobs of the listings; the
killed broker comes back as the standby.  Prints per takeover the new
leader's VmRSS 3 s after it leads, its VmHWM (the peak, during the
recovery), the DONEs the worker sent again that the recovery kept, and
the broker's own "memory:" log lines; then one RESULT line.

    PER=15000 CYCLES=3 BOTMESH_BIN=build/bin bench/takeover_memory.py

Figures (2 cores, loaded, PER=15000, 3 takeovers; bench/findings.md):
before the recovery gave its memory back, 73.7 / 79.1 / 84.9 MB VmRSS
after recovering 15k / 30k / 45k keys (VmHWM the same: nothing given
back), 39 MB in runs where the worker sent no DONE again; after,
23.7 / 29.3 / 35.1 MB (the recovery logs "50.6 MB of its reads given
back"); with the index's entries sized to their job id (~290 B a key, not
~390), 22.3 / 26.6 / 30.9 MB.  The standby before the takeover: 8.4 MB.
"""
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, "..", "tests", "lib"), os.path.join(HERE, "..", "tests", "broker")]
import harness as h     # noqa: E402
import hatest           # noqa: E402

PER = int(os.environ.get("PER", "15000"))
CYCLES = int(os.environ.get("CYCLES", "3"))


def status_mb(pid, field):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def submit(c, start, n):
    for first in range(start, start + n, 2000):
        count = min(2000, start + n - first)
        for i in range(first, first + count):
            c.send_request(h.SUBMIT, {"botType": "sim", "payload": {"i": i},
                                      "idempotencyKey": "key-%08d-%s" % (i, "x" * 20)})
        for _ in range(count):
            cmd, r = c.recv(30)
            h.check(cmd == h.ACCEPTED, "each job accepted", r)


def main():
    results = []
    with h.Stack("takeover-memory") as s:
        s.redis()
        pair = hatest.HaPair(s)
        leader = pair.wait_leader()
        s.worker("--simulate", "--type", "sim", "--concurrency", "50",
                 env={"BROKER_ENDPOINT": pair.endpoints(), "SIM_DURATION_MS": "1-2",
                      "WORKER_NAME": "w0", "HEARTBEAT_INTERVAL_MS": "200",
                      "HEARTBEAT_LIVENESS": "5"}, name="w0")
        total = 0
        for cycle in range(CYCLES):
            c = h.Client(pair.endpoint(leader))
            h.wait_until(lambda: c.stats()["workers"], 20, "the worker to register")
            submit(c, total, PER)
            total += PER
            h.wait_until(lambda: (lambda t: t["waiting"] == 0 and t["running"] == 0)(
                c.stats()["types"]["sim"]), 300, "the jobs to end", interval=0.5)
            c.close()
            old = leader
            standby = pair.procs[pair.other(old)].pid
            standby_mb = status_mb(standby, "VmRSS")
            pair.procs[old].signal(signal.SIGKILL)
            pair.procs[old].p.wait(15)
            leader = pair.wait_leader(timeout=30, other_than=old)
            time.sleep(3)           # a figure, not a synchronisation
            proc = pair.procs[leader]
            out = proc.output()
            kept = out.count("before the recovery reached the job: kept")
            rss, hwm = status_mb(proc.pid, "VmRSS"), status_mb(proc.pid, "VmHWM")
            print("takeover %d: %d keys recovered, %d DONEs kept; standby %.1f MB before, "
                  "leader VmRSS %.1f MB, VmHWM %.1f MB" % (cycle + 1, total, kept, standby_mb,
                                                           rss, hwm), flush=True)
            for line in out.splitlines():
                if "memory:" in line:
                    print("   ", line[25:], flush=True)
            results.append("%.1f" % rss)
            pair.start(old)
    print("RESULT per=%d cycles=%d leader_rss_mb=%s" % (PER, CYCLES, ",".join(results)))


if __name__ == "__main__":
    main()

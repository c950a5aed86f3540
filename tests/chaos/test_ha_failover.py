"""Failover under load: kill -9 the leading broker, a standby takes over.

The stack of the chaos test, with two brokers (BROKER_HA=redis,
BROKER_LEASE_MS 2000) instead of one: Redis (AOF), two simulated workers,
the webhook manager, two gateways and the mock receiver, every peer given
both brokers in BROKER_ENDPOINT.  A steady load (HA_RATE jobs/s, default
200; 100 with ASan) of webhook jobs through the two gateways; HA_KILLS
times (default 1; CTest runs 10 kills 5 s apart, the bench 10) the leader is
killed with SIGKILL and started again (as a standby).

What must hold: after each kill the other broker leads, at the latest
FAILOVER_BOUND_S (6 s) after the kill: the lease is 2 s and a standby tries
for it every eighth of a lease, so a bound well past that catches a standby that missed
the expiry or a recovery that stalls, without failing on a slow machine (the
failover time itself is a benchmark: bench/failover.py); every
job that got a 202 is in Redis, terminal, with its webhook delivered to the
mock; Redis's live set is empty.  Printed: each failover time (kill to the
new leader answering PING), jobs run more than once, extra webhook
deliveries.  `./botmesh bench` runs the same with HA_KILLS=10 for the
median and maximum failover time.
"""
import collections
import os
import signal
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "webhook"))
sys.path.insert(0, os.path.join(HERE, "..", "gateway"))
sys.path.insert(0, os.path.join(HERE, "..", "broker"))
import harness                      # noqa: E402
from harness import check, log, wait_until  # noqa: E402
import gwtest                       # noqa: E402
import hatest                       # noqa: E402
import whlib                        # noqa: E402
import test_chaos as chaos          # noqa: E402

HA_ENV = dict(chaos.BROKER_ENV, BROKER_HA="redis", BROKER_LEASE_MS="2000")
GATEWAY_ENV = dict(chaos.GATEWAY_ENV, BROKER_CONNECT_TIMEOUT_MS="3000")
FAILOVER_BOUND_S = 6.0


def main():
    bin_asan = chaos.asan_build(os.path.join(harness.BIN, "botmesh-broker"))
    rate = float(os.environ.get("HA_RATE", "100" if bin_asan else "200"))
    kills = int(os.environ.get("HA_KILLS", "1"))
    seconds = float(os.environ.get("HA_SECONDS", str(max(20, 8 * kills + 8))))
    with harness.Stack("ha-failover") as s:
        s.redis()
        pair = hatest.HaPair(s, env=HA_ENV)
        leader = pair.wait_leader()
        eps = pair.endpoints()
        s.endpoint = eps
        workers = [s.worker("--simulate", "--type", ",".join(chaos.TYPES), "--concurrency", "30",
                            env=dict(chaos.WORKER_ENV, BROKER_ENDPOINT=eps), name="worker-%s" % n)
                   for n in "ab"]
        mock = whlib.mock(s, env={"MOCK_THREADS": "64"})
        wh = whlib.manager(s, dict(chaos.WEBHOOK_ENV, BROKER_ENDPOINT=eps), name="webhook")
        gws = [gwtest.gateway(s, env=GATEWAY_ENV, name="gateway-%s" % n, endpoint=eps) for n in "ab"]
        c = harness.Client(pair.endpoint(leader))
        wait_until(lambda: len(c.stats()["workers"]) >= 3, 20, "workers and webhook manager registered")
        c.close()
        log("stack up; load %g jobs/s for %gs; %d leader kill(s)" % (rate, seconds, kills))

        load = chaos.Load([g.port for g in gws], mock.url + "/ha", rate, seconds)
        load.start()
        failovers = []
        for k in range(kills):
            due = load.t0 + seconds * (k + 1) / (kills + 1)
            if due > time.monotonic():
                time.sleep(due - time.monotonic())        # the load's schedule, not a sync
            pair.procs[leader].kill()
            killed = time.monotonic()
            new = pair.wait_leader(timeout=15, other_than=leader)
            took = time.monotonic() - killed
            failovers.append(took)
            log("kill -9 leader %s at t=%.1fs: %s leads after %.2f s"
                % (leader, killed - load.t0, new, took))
            pair.start(leader)                # back, as a standby
            leader = new
        load.join()

        accepted = [r[4] for r in load.records if r[3] == 202]
        not_accepted = collections.Counter(str(r[3]) for r in load.records if r[3] != 202)
        check(len(accepted) == len(set(accepted)), "every 202 carried a distinct jobId")
        check(len(accepted) > rate * seconds * 0.5, "most requests were accepted (%d of %d)"
              % (len(accepted), len(load.records)), dict(not_accepted))

        def drained():
            recs = chaos.redis_jobs(s.redis_port, accepted)
            got = whlib.get_json(mock.url + "/deliveries?limit=100000")["deliveries"]
            ok = {d["jobId"] for d in got if 200 <= d["status"] < 300}
            return all(r and r["state"] in harness.TERMINAL for r in recs.values()) \
                and all(j in ok for j in accepted)
        wait_until(drained, 60, "every accepted job terminal with its webhook at the mock", interval=1)

        recs = chaos.redis_jobs(s.redis_port, accepted)
        got = whlib.get_json(mock.url + "/deliveries?limit=100000")["deliveries"]
        ok = collections.Counter(d["jobId"] for d in got if 200 <= d["status"] < 300)
        reruns = sum(1 for r in recs.values() if r and r["attempts"] > 1)
        live = chaos.redis_pipeline(s.redis_port, [["SCARD", chaos.PREFIX + "unfinished"]])[0]
        print("\n===== HA failover figures =====")
        print("load               %d requests, %d accepted (202), not accepted %s"
              % (len(load.records), len(accepted), dict(not_accepted)))
        print("failovers          %d: %s s" % (len(failovers), " ".join("%.2f" % f for f in failovers)))
        print("failover time      median %.2f s, max %.2f s"
              % (statistics.median(failovers), max(failovers)))
        print("run more than once %d jobs (attempts > 1)" % reruns)
        print("webhooks           %d delivered; %d extra 2xx deliveries"
              % (len(ok), sum(n - 1 for n in ok.values() if n > 1)))
        print("LOST               0 (checked below)")
        print("===============================\n", flush=True)
        check(all(r is not None for r in recs.values()), "LOST: no accepted job missing from Redis")
        check(all(f <= FAILOVER_BOUND_S for f in failovers),
              "every failover within %g s" % FAILOVER_BOUND_S, failovers)
        check(live == 0, "Redis's live set (unfinished jobs) is empty", live)
        for p in workers + [wh] + gws:
            check(p.alive(), "%s is still running" % p.name)


if __name__ == "__main__":
    harness.main(main)

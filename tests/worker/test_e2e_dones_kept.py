"""The DONEs a worker makes while it has no broker connection are kept and
sent again, and its log says that, not that they could not be sent.

Two real brokers with BROKER_HA=redis on one real redis-server; a real
botmesh-worker (--simulate, 20 jobs at a time, 20-100 ms a job) given both
runs a queue of jobs.  The leader gets SIGTERM: it tells the worker
DISCONNECT shutting_down, and the worker has no socket until it tries the
other broker, 100 ms later (and again while that one is still a standby):
the jobs ending meanwhile have no connection to send their DONE on.

What must hold: the worker's log has no WARN "could not send DONE"; it
says at INFO that a DONE is kept and sent again after READY, and, once
connected, how many were kept; the new leader takes them ("DONE from
<worker>, which ran attempt 1 ... taken"), and every job is completed at
its first attempt.  (Before: one WARN "job=... could not send DONE to the
broker (no socket)" per such DONE, which reads like a lost result.)
"""
import os
import re
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "broker"))
import harness as h             # noqa: E402
import hatest                   # noqa: E402

JOBS = 1200


def test():
    with h.Stack("worker-dones-kept") as s:
        s.redis()
        pair = hatest.HaPair(s)
        leader = pair.wait_leader()
        w = s.worker("--simulate", "--type", "sim", "--concurrency", "20",
                     env={"BROKER_ENDPOINT": pair.endpoints(), "SIM_DURATION_MS": "20-100",
                          "WORKER_NAME": "wk", "HEARTBEAT_INTERVAL_MS": "200",
                          "HEARTBEAT_LIVENESS": "5"}, name="worker")
        c = h.Client(pair.endpoint(leader))
        h.wait_until(lambda: c.stats()["workers"], 15, "the worker to register")
        ids = hatest.submit_queue(c, "sim", JOBS)
        h.wait_until(lambda: w.output().count(" completed in ") >= 100, 20,
                     "the worker to be running the queue")
        c.close()
        pair.procs[leader].signal(signal.SIGTERM)
        new = pair.wait_leader(timeout=15, other_than=leader)
        h.check(pair.procs[leader].p.wait(15) == 0, "the old leader exits 0")

        h.wait_until(lambda: hatest.all_completed(s.redis_port, ids), 60,
                     "every job completed in Redis", interval=0.2)
        out = w.output()
        warned = [l for l in out.splitlines() if "could not send DONE" in l]
        kept = [l for l in out.splitlines() if "is kept and sent again after READY" in l]
        counted = re.findall(r"INFO  worker (\d+) DONEs? kept while no broker was connected", out)
        taken = pair.procs[new].output().count("which ran attempt 1 before it was lost: taken")
        h.log("DONEs with no socket: %d told at INFO, %s counted at the reconnect; %d taken "
              "by the new leader as kept DONEs; %d WARN lines" % (len(kept), counted, taken,
                                                                   len(warned)))
        h.check(not warned, "no WARN that a DONE could not be sent", warned[:3])
        h.check(kept and all(" INFO " in l for l in kept),
                "a DONE with no socket said kept, at INFO", kept[:2])
        h.check(counted and sum(int(n) for n in counted) >= 1,
                "the count of kept DONEs said at the reconnect")
        twice = [j for j in ids if int(h.job_record(s.redis_port, j)["attempts"]) != 1]
        h.check(not twice, "every job completed at its first attempt", twice[:5])


if __name__ == "__main__":
    h.main(test)

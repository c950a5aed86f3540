"""The broker stops (SIGTERM) while a Python or Node worker's handlers run,
and comes back only after longer than the replay window (2 x
HEARTBEAT_INTERVAL_MS x HEARTBEAT_LIVENESS), as tests/worker/
test_e2e_broker_away.py shows for the C worker.

    test_e2e_broker_away.py python|node

The runs end while no broker is there; the worker keeps their DONEs (they
age only while a broker connection is up) and sends them to the restarted
broker, which recovered the jobs from Redis: every job ends completed with
attempts 1 and its own run's result, and each handler ran once.  Nothing is
dropped, so the worker logs no warning about a dropped DONE.  (A DONE no
socket took waits in the worker's outbox across reconnects, so this part
holds under the older rule too, which counted from the run's end alone.)

Then the same with two brokers (BROKER_HA=redis) and the worker given both:
the leader is killed while the handlers run, and the standby takes over
only when the lease runs out, longer than the window after the runs ended.
Meanwhile the worker keeps asking the standby, which answers not_leader:
the DONEs it sends there are not taken (a DONE goes on each new socket,
and a socket to the standby is a live connection), so only DONEs that
age from the last READY, not from the run's end, are still there for the
new leader.
"""
import os
import signal
import sys
import threading
import time

from e2elib import HERE, ClientLog, harness, botmesh, client_side, nodeworker, wait_worker
from harness import check, log, wait_until

sys.path.insert(0, os.path.join(HERE, "..", "broker"))
import hatest  # noqa: E402

HEARTBEAT_MS, LIVENESS = 100, 3
WINDOW_S = 2 * HEARTBEAT_MS * LIVENESS / 1000.0
HB = {"HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_MS), "HEARTBEAT_LIVENESS": str(LIVENESS)}
JOBS = 3
DROPPED = "its DONE is dropped"


class PythonSide:
    """A botmesh.Worker in this process; its handler records each run and
    its log lines are kept."""
    bot_type = "pyaway"

    def __init__(self, stack, endpoint):
        self.lock = threading.Lock()
        self.starts, self.ends = [], []
        self.log = ClientLog()

        def handle(payload, job):
            with self.lock:
                self.starts.append(job.id)
            job.cancelled.wait(payload["sleepMs"] / 1000.0)
            with self.lock:
                self.ends.append(job.id)
            return {"attempt": job.attempt, "echo": payload}      # as nodeworker.js does

        self.name = "py-away"
        self.w = botmesh.Worker([self.bot_type], handle, credit=JOBS, endpoint=endpoint, name=self.name,
                                heartbeat_ms=HEARTBEAT_MS, liveness=LIVENESS).start()

    def runs(self, what):
        with self.lock:
            return list(self.starts if what == "start" else self.ends)

    def output(self):
        return "\n".join(self.log.lines())

    def close(self):
        check(self.w.stop(timeout=15), "the Python worker stops")
        self.log.close()


class NodeSide:
    """tests/clients/nodeworker.js: START/END lines and its log on its output."""
    bot_type = "nodeaway"

    def __init__(self, stack, endpoint):
        self.name = "node-away"
        self.p = nodeworker(stack, self.name, types=self.bot_type, credit=JOBS, env=HB, endpoint=endpoint)

    def runs(self, what):
        tag = "START " if what == "start" else "END "
        return [line.split()[1] for line in self.p.output().splitlines() if line.startswith(tag)]

    def output(self):
        return self.p.output()

    def close(self):
        pass


BENV = dict(HB, BROKER_SAVE_RUNNING_MS="0", MAX_PYAWAY_BOTS="4", MAX_NODEAWAY_BOTS="4")


def start_jobs(s, c, side):
    """JOBS jobs of a second each, running on the worker (and so in Redis)."""
    wait_worker(c, side.name)
    jobs = [c.submit(side.bot_type, {"sleepMs": 1000, "n": i}) for i in range(JOBS)]
    wait_until(lambda: len(side.runs("start")) == JOBS, 15, "the %d handlers to start" % JOBS)
    wait_until(lambda: all((harness.job_record(s.redis_port, j) or {}).get("state") == "running"
                           for j in jobs), 10, "Redis to hold the jobs as running")
    c.close()
    return jobs


def check_once(c, side, jobs):
    """Each job completed with attempts 1 and its own run's result; each
    handler ran once; no DONE dropped; the worker serves a new job."""
    for n, j in enumerate(jobs):
        rec = c.wait(j, timeout=30)
        log("job %s: state %s, attempts %s, worker %s" % (j, rec["state"], rec["attempts"], rec.get("worker")))
        check(rec["state"] == "completed" and rec["attempts"] == 1,
              "a job that ended while no broker took it completed with attempts 1",
              rec.get("state"), rec.get("attempts"), rec.get("error"))
        check(rec["result"]["echo"] == {"sleepMs": 1000, "n": n} and rec["result"]["attempt"] == 1,
              "with its own run's result", rec["result"])
    starts = side.runs("start")
    check(sorted(starts) == sorted(jobs), "each handler ran once", starts)
    dropped = [line for line in side.output().splitlines() if DROPPED in line]
    check(not dropped, "the worker dropped no DONE", dropped)
    rec = c.wait(c.submit(side.bot_type, {"sleepMs": 0, "n": "after"}), timeout=20)
    check(rec["state"] == "completed" and rec["worker"] == side.name,
          "the worker serves new jobs after it", rec.get("state"), rec.get("worker"))


def scenario_restart(which):
    with harness.Stack("clients-broker-away-" + which) as s:
        s.redis()
        broker = s.broker(env=BENV)
        side = (PythonSide if which == "python" else NodeSide)(s, s.endpoint)
        jobs = start_jobs(s, botmesh.Client(s.endpoint, timeout=5), side)

        broker.signal(signal.SIGTERM)
        broker.p.wait(timeout=15)
        log("broker stopped (SIGTERM) with %d jobs running" % JOBS)
        wait_until(lambda: len(side.runs("end")) == JOBS, 15,
                   "the %d handlers to end while no broker is there" % JOBS)
        # The outage itself is what this test is about: it must outlast the
        # replay window by far, counted from the runs' end.
        away = 4 * WINDOW_S
        log("broker away for another %.1f s (the replay window is %.1f s)" % (away, WINDOW_S))
        time.sleep(away)

        s.broker(env=BENV, name="broker-2")
        c = botmesh.Client(s.endpoint, timeout=5)
        check_once(c, side, jobs)
        c.close()
        side.close()


def scenario_standby(which):
    with harness.Stack("clients-broker-away-standby-" + which) as s:
        s.redis()
        pair = hatest.HaPair(s, env=BENV)
        first = pair.wait_leader()
        second = pair.other(first)
        wait_until(lambda: (lambda x: x and x[1].get("leader"))(hatest.ping(pair.endpoint(second))),
                   10, "the standby to learn the leader")
        side = (PythonSide if which == "python" else NodeSide)(s, pair.endpoint(first) + "," + pair.endpoint(second))
        jobs = start_jobs(s, botmesh.Client(pair.endpoint(first), timeout=5), side)

        pair.procs[first].kill()
        killed = time.monotonic()
        log("leader killed (SIGKILL) with %d jobs running" % JOBS)
        wait_until(lambda: len(side.runs("end")) == JOBS, 15, "the %d handlers to end while no broker leads" % JOBS)
        ended = time.monotonic()
        pair.wait_leader(timeout=15, other_than=first)
        led = time.monotonic()
        log("runs ended %.2f s after the kill; the standby led %.2f s after the runs ended (the window is %.1f s)"
            % (ended - killed, led - ended, WINDOW_S))
        check(led - ended > WINDOW_S, "no broker led for longer than the window after the runs ended",
              led - ended)
        c = botmesh.Client(pair.endpoint(second), timeout=5)
        check_once(c, side, jobs)
        c.close()
        side.close()


def main():
    which = client_side()
    scenario_restart(which)
    scenario_standby(which)


if __name__ == "__main__":
    harness.main(main)

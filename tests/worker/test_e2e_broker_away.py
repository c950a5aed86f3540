"""The broker stops (SIGTERM) while bots run and comes back only after
longer than the replay window (2 x HEARTBEAT_INTERVAL_MS x
HEARTBEAT_LIVENESS).  The runs end while no broker is there; the worker
keeps their DONEs (they age only while a broker connection is up) and
sends them to the restarted broker, which recovered the jobs from Redis:
every job ends completed with attempts 1, and each bot ran once (the bot
appends its pid to a file at each start).  Nothing is dropped, so the
worker logs no WARN about a dropped DONE.
"""
import os
import signal
import time

import harness
from harness import check, log, wait_until
from wlib import testbot_cmd

HEARTBEAT_MS, LIVENESS = 100, 3
WINDOW_S = 2 * HEARTBEAT_MS * LIVENESS / 1000.0
ENV = {"HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_MS), "HEARTBEAT_LIVENESS": str(LIVENESS),
       "BROKER_SAVE_RUNNING_MS": "0"}
JOBS = 4


def runs(path):
    try:
        with open(path) as f:
            return len(f.read().split())
    except FileNotFoundError:
        return 0


def main():
    with harness.Stack("worker-e2e-broker-away") as s:
        s.redis()
        broker = s.broker(env=ENV)
        pidfile = os.path.join(s.dir, "runs.txt")
        w = s.worker("--type", "python", "--concurrency", str(JOBS), "--name", "w-away",
                     env=dict(ENV, BOT_PYTHON_CMD=testbot_cmd("--pidfile", pidfile)))
        s.wait_workers(1, "python")
        c = s.client()
        ids = [c.submit("python", {"sleepMs": 1000, "n": i}) for i in range(JOBS)]
        wait_until(lambda: runs(pidfile) == JOBS, 15, "the %d bots to start" % JOBS)
        wait_until(lambda: all((harness.job_record(s.redis_port, j) or {}).get("state") == "running"
                               for j in ids), 10, "Redis to hold the jobs as running")
        c.close()

        broker.signal(signal.SIGTERM)
        broker.p.wait(timeout=15)
        log("broker stopped (SIGTERM) with %d jobs running" % JOBS)
        wait_until(lambda: w.output().count("completed in") == JOBS, 15,
                   "the %d runs to end while no broker is there" % JOBS)
        # The outage itself is what this test is about: it must outlast the
        # replay window by far, counted from the runs' end.
        away = 4 * WINDOW_S
        log("broker away for another %.1f s (the replay window is %.1f s)" % (away, WINDOW_S))
        time.sleep(away)

        s.broker(env=ENV, name="broker-2")
        c = s.client()
        for j in ids:
            rec = c.wait(j, timeout=30)
            log("job %s: state %s, attempts %s, worker %s" % (j, rec["state"], rec["attempts"],
                                                            rec.get("worker")))
            check(rec["state"] == "completed" and rec["attempts"] == 1,
                  "a job that ended while the broker was away completed with attempts 1",
                  rec.get("state"), rec.get("attempts"), rec.get("error"))
            check(rec["result"]["jobId"] == j, "with its own run's result", rec["result"])
        check(runs(pidfile) == JOBS, "each bot ran once", runs(pidfile))
        out = w.output()
        check("its DONE is dropped" not in out, "the worker dropped no DONE",
              [l for l in out.splitlines() if "dropped" in l])

        rec = c.wait(c.submit("python", {"n": "after"}), timeout=20)
        check(rec["state"] == "completed" and rec["worker"] == "w-away",
              "the worker serves new jobs after the restart", rec.get("state"))
        c.close()


if __name__ == "__main__":
    harness.main(main)

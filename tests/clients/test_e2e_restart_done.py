"""Jobs that end on a Python or Node worker while the broker is down are
taken once, not run again (as tests/broker/test_restart_done.py shows for
the C worker).

    test_e2e_restart_done.py python|node

Real redis-server (AOF), a real broker, and the client library's worker:
the Python one in this process (its handler counts its runs), or the Node
one as a process (tests/clients/nodeworker.js prints START and END lines).

Three jobs start; the broker is killed (SIGKILL) while they run.  They end
while it is down: the worker keeps their DONEs.  A new broker recovers them
from Redis as running and queues them again; the worker comes back (READY
with nothing running) and sends the kept DONEs again, each with the attempt
it ends.  The broker may have dispatched a job again meanwhile (attempt 2):
the DONE of attempt 1 is then the job's result, and the worker answers the
JOB of attempt 2 with that DONE instead of running the handler again.  So
each job completes with attempt 1's result and the handler runs exactly once
per job; the worker's slots stay right (new jobs run once, nothing is left
counted as running).
"""
import threading

from e2elib import ClientLog, harness, botmesh, client_side, nodeworker, wait_worker
from harness import check, wait_until

HB = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "10"}
CREDIT = 3


class PythonSide:
    """A botmesh.Worker in this process; its handler records each run."""
    bot_type = "pydone"

    def __init__(self, stack):
        self.lock = threading.Lock()
        self.starts, self.ends = [], []
        self.released = ClientLog(holding="beyond credit")

        def handle(payload, job):
            with self.lock:
                self.starts.append((job.id, job.attempt))
            job.cancelled.wait(payload.get("sleepMs", 0) / 1000.0)
            with self.lock:
                self.ends.append((job.id, job.attempt))
            return {"ran": job.id, "attempt": job.attempt}

        self.name = "py-done"
        self.w = botmesh.Worker([self.bot_type], handle, credit=CREDIT, endpoint=stack.endpoint, name=self.name,
                                heartbeat_ms=200, liveness=10).start()

    def runs(self, what):
        with self.lock:
            return [j for j, _ in (self.starts if what == "start" else self.ends)]

    def summary(self):
        return ("the worker sent %d kept DONE(s) again after READY and answered %d JOB(s) of a job "
                "it had completed with its DONE" % (self.w.dones_sent_again, self.w.jobs_answered_again))

    def no_overcommit(self):
        released = self.released.lines()
        check(not released, "the broker never sent the worker a job it had no room for", released[:5])

    def close(self):
        check(self.w.stop(timeout=15), "the Python worker stops")
        self.released.close()


class NodeSide:
    """tests/clients/nodeworker.js: START/END/ANSWERED lines on its output."""
    bot_type = "nodedone"

    def __init__(self, stack):
        self.name = "node-done"
        self.p = nodeworker(stack, self.name, types=self.bot_type, credit=CREDIT, env=HB)

    def runs(self, what):
        tag = "START " if what == "start" else "END "
        return [line.split()[1] for line in self.p.output().splitlines() if line.startswith(tag)]

    def summary(self):
        out = self.p.output().splitlines()
        return ("the worker answered %d JOB(s) of a job it had completed with its DONE"
                % sum(1 for line in out if line.startswith("ANSWERED ")))

    def no_overcommit(self):
        out = [line for line in self.p.output().splitlines() if line.startswith("RELEASED ")]
        check(not out, "the broker never sent the worker a job it had no room for", out[:5])

    def close(self):
        pass


def main():
    which = client_side()
    benv = dict(HB, BROKER_SAVE_RUNNING_MS="0", MAX_PYDONE_BOTS="4", MAX_NODEDONE_BOTS="4")
    with harness.Stack("clients-restart-done-" + which) as s:
        s.redis()
        broker = s.broker(env=benv)
        side = PythonSide(s) if which == "python" else NodeSide(s)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, side.name)

        jobs = [c.submit(side.bot_type, {"sleepMs": 1500}) for _ in range(CREDIT)]
        wait_until(lambda: len(side.runs("start")) == CREDIT, 15, "the three handlers to start")
        wait_until(lambda: all(s.redis_cli("HGET", "botmesh:{bm}:job:" + j, "state") == "running" for j in jobs),
                   5, "the jobs' running state in Redis")
        c.close()
        broker.kill()
        harness.log("broker killed with SIGKILL, three jobs running")
        wait_until(lambda: len(side.runs("end")) == CREDIT, 15, "the three handlers to end while the broker is down")
        broker = s.broker(env=benv)
        c = botmesh.Client(s.endpoint, timeout=5)
        recs = [c.wait(j, timeout=30) for j in jobs]
        for rec in recs:
            check(rec["state"] == "completed" and rec["result"]["attempt"] == 1,
                  "job %s completed with the result of attempt 1" % rec["jobId"], rec)
        wait_until(lambda: c.stats()["types"][side.bot_type]["running"] == 0, 15,
                   "no job of the worker left running")
        starts, ends = side.runs("start"), side.runs("end")
        harness.log("handler runs started: %s, ended: %s" % (starts, ends))
        check(sorted(starts) == sorted(jobs), "each job's handler started once", starts)
        check(sorted(ends) == sorted(jobs), "each job's handler ended once", ends)
        harness.log("broker took %d result(s) of attempt 1 while attempt 2 was dispatched; %s"
                    % (broker.output().count("which completed: taken"), side.summary()))
        side.no_overcommit()

        # The worker takes new jobs as before, all its slots.
        more = [c.submit(side.bot_type, {"sleepMs": 300}) for _ in range(CREDIT)]
        for j in more:
            rec = c.wait(j, timeout=20)
            check(rec["state"] == "completed" and rec["attempts"] == 1 and rec["result"]["attempt"] == 1,
                  "a new job runs once after the restart", rec)
        check(sorted(side.runs("start")) == sorted(jobs + more), "and its handler ran once",
              side.runs("start"))
        wait_until(lambda: c.stats()["types"][side.bot_type]["running"] == 0, 15,
                   "no job of the worker left running at the end")
        side.no_overcommit()
        c.close()
        side.close()


if __name__ == "__main__":
    harness.main(main)

"""A Python worker with isolation="process" runs each job in a process of
its own, so what a thread cannot do, it can: a job that hangs past its
timeout is killed and its credit comes back at once (the next job runs on
the same worker of credit 1); a job whose process dies fails with
bot_crashed; a job's progress still reaches the broker.  The job in its
process has job.cancelled as in a thread (the hanging job waits on it).
A job whose process is killed from outside (kill -9, as the OOM killer
does) is no failure of the job: the worker hands it back (RELEASE lost,
signal 9) and the broker counts a lost dispatch; past its maxAttempts it
fails worker_lost naming the signal.
"""
import os
import signal

from e2elib import harness, botmesh, pyworker, wait_worker
from harness import check, wait_until


def main():
    with harness.Stack("clients-isolation") as s:
        s.redis()
        s.broker(env={"MAX_PYWORK_BOTS": "1"})
        w = pyworker(s, "py-iso", credit=1, isolation="process")
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-iso")

        # A timeout the job's process surely starts within, even on a loaded
        # machine (a fresh interpreter per job): the test needs its pid.
        hung = c.submit("pywork", {"hang": True}, timeout_ms=4000, max_attempts=1, notify=True)
        pid = int(wait_until(lambda: (lambda line: line[0].rsplit(" ", 1)[1] if line else None)(
            [l for l in w.output().splitlines() if l.startswith("START " + hung)]), 20,
            "the hanging job to start in its own process"))
        check(pid != w.p.pid, "the job runs in a process other than the worker's", pid)
        rec = c.wait(hung, timeout=20)
        check(rec["state"] == "failed" and rec["error"]["code"] == "timeout",
              "the hanging job fails with timeout", rec)
        wait_until(lambda: not os.path.exists("/proc/%d" % pid), 5, "the hung job's process to be killed")

        # Credit 1: this job can only run once the hung one's slot came back.
        nxt = c.submit("pywork", {"n": 1, "progress": True}, notify=True)
        rec = c.wait(nxt, timeout=10)
        check(rec["state"] == "completed" and rec["result"]["echo"]["n"] == 1,
              "the next job completes on the same worker (its credit came back)", rec)
        check(rec["result"]["worker"] == "py-iso" and rec["result"]["pid"] not in (w.p.pid, pid),
              "it ran in a new process of py-iso", rec["result"])
        check(rec["progress"] == 100, "progress reached the broker", rec)
        check(rec["result"]["cancelled"] is False, "job.cancelled is there in the job's process, not set",
              rec["result"])

        crash = c.submit("pywork", {"crash": 3}, max_attempts=1, notify=True)
        rec = c.wait(crash, timeout=10)
        check(rec["state"] == "failed" and rec["error"]["code"] == "bot_crashed"
              and "exit code 3" in rec["error"]["message"], "a process that dies fails the job with bot_crashed",
              rec)
        check(w.alive(), "the worker itself is still running")

        # kill -9 of the job's process, from outside the worker.
        killed = c.submit("pywork", {"hang": True}, timeout_ms=60000, max_attempts=1, notify=True)
        pid = int(wait_until(lambda: (lambda line: line[0].rsplit(" ", 1)[1] if line else None)(
            [l for l in w.output().splitlines() if l.startswith("START " + killed)]), 20,
            "the job to start in its own process"))
        os.kill(pid, signal.SIGKILL)
        rec = c.wait(killed, timeout=15)
        check(rec["state"] == "failed" and rec["error"]["code"] == "worker_lost"
              and "killed by signal 9 (SIGKILL) from outside the worker" in rec["error"]["message"],
              "a job process killed from outside: a lost dispatch (RELEASE lost), worker_lost past "
              "maxAttempts 1, naming the signal", rec)
        check([e["code"] for e in rec.get("attemptErrors", [])] == ["worker_lost"],
              "no bot_crashed run: its one dispatch is the lost one", rec.get("attemptErrors"))
        check("killed by signal 9 from outside the worker: handed back to the broker" in w.output(),
              "the worker logs it", w.output()[-800:])
        after = c.submit("pywork", {"n": 2}, notify=True)
        check(c.wait(after, timeout=10)["state"] == "completed", "its credit came back: the next job runs")
        check(w.alive(), "the worker itself is still running")
        c.close()


if __name__ == "__main__":
    harness.main(main)

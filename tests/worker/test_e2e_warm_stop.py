"""A stopping worker starts no warm bot process, and leaves none behind.

A worker runs python in fork mode with two fork servers kept warm
(BOT_PYTHON_MIN_PROCS=2).  One runs a long job when the worker gets
SIGTERM; during the grace period the idle fork server dies (kill -9 from
outside).  A running worker would start another to keep two warm; a
stopping one must not: no process is started after "SIGTERM: stopping",
the job still completes, the worker exits 0, and no fork server or bot
process it started is left alive.

A real broker (no Redis), a real worker, the default python bot.
"""
import os
import re
import signal

import harness
from harness import check, log, wait_until
from wlib import alive, children, wait_exit

ENV = {"BOT_PYTHON_MODE": "fork", "BOT_PYTHON_MIN_PROCS": "2", "BOT_PYTHON_MAX_PROCS": "2",
       "LOG_LEVEL": "debug"}
STARTED = re.compile(r"python: started fork server process pid=(\d+)")
READY = re.compile(r"python fork server process pid=\d+ ready")


def main():
    with harness.Stack("worker-warm-stop") as s:
        s.broker(redis=False)
        w = s.worker("--type", "python", "--concurrency", "1", "--grace-ms", "20000",
                     "--name", "w-stop", env=ENV)
        s.wait_workers(1, "python")
        wait_until(lambda: w.output().count("fork server process pid=") >= 4, 30,
                   "two fork servers started and ready")
        servers = [int(p) for p in STARTED.findall(w.output())]
        check(len(servers) == 2, "two fork servers kept warm", servers)

        c = s.client()
        job = c.submit("python", {"dataset": "long", "sleepMs": 3000})
        # A fork server always has one spare child; the one running the job
        # has two: the child that took the job and the next spare it forked.
        busy = wait_until(lambda: next((p for p in servers if len(children(p)) >= 2), None), 10,
                          "a fork server to run the job in a child (its spare and the runner)")
        idle = next(p for p in servers if p != busy)

        w.signal(signal.SIGTERM)
        wait_until(lambda: "SIGTERM: stopping" in w.output(), 5, "the worker to start stopping")
        mark = w.output().index("SIGTERM: stopping")
        os.kill(idle, signal.SIGKILL)
        wait_until(lambda: "pid=%d killed by signal SIGKILL while idle" % idle in w.output(), 5,
                   "the worker to see the idle fork server die")
        rc = wait_exit(w, 30)
        after = w.output()[mark:]
        log("the worker after SIGTERM:\n" + "\n".join(
            l for l in after.splitlines() if "fork server" in l or "disconnected" in l))
        check(rc == 0, "the worker exits 0", rc)
        check(not STARTED.search(after), "no fork server started once stopping", after[-2000:])
        check(not READY.search(after), "nor any got ready", after[-2000:])
        check(c.status(job)["state"] == "completed", "the long job completed in the grace period")
        started = [int(p) for p in STARTED.findall(w.output())]
        wait_until(lambda: not any(alive(p) for p in started), 5,
                   "every fork server the worker started to be gone", interval=0.1)
        c.close()


if __name__ == "__main__":
    harness.main(main)

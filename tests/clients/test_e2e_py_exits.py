"""A Python worker's jobs end whatever way their handler leaves.

A handler that calls sys.exit() (SystemExit, not an Exception) in a
thread fails its job bot_failed naming it, and the worker's slot is free:
the next job on the same worker of credit 1 completes.

Ctrl-C (SIGINT to the whole process group) stops a worker with
isolation="process" gracefully: its job's process, in that group too,
does not die of KeyboardInterrupt; the job completes in the grace and the
worker exits 0.

Real redis-server and broker; the worker is tests/clients/pyworker.py as a
process.
"""
import os
import signal

from e2elib import harness, botmesh, pyworker, wait_worker
from harness import check, wait_until


def running(c, name):
    return [w["running"] for w in c.stats()["workers"] if w["name"] == name]


def main():
    with harness.Stack("clients-py-exits") as s:
        s.redis()
        s.broker()
        pyworker(s, "py-exit", credit=1)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-exit")

        jid = c.submit("pywork", {"exit": "giving up"}, attempts=1)
        job = c.wait(jid, timeout=15)
        check(job["state"] == "failed" and job["error"]["code"] == "bot_failed"
              and job["error"]["message"] == "SystemExit: giving up",
              "a handler calling sys.exit('giving up') fails its job bot_failed naming SystemExit", job)
        jid = c.submit("pywork", {"plain": 1}, attempts=1)
        check(c.wait(jid, timeout=15)["state"] == "completed", "the next job on the worker of credit 1 completes")
        wait_until(lambda: running(c, "py-exit") == [0], 10, "the worker's running count back to 0")

        w = pyworker(s, "py-ctrl-c", types="pyproc", credit=1, isolation="process")
        wait_worker(c, "py-ctrl-c")
        jid = c.submit("pyproc", {"sleepMs": 1500}, attempts=1)
        wait_until(lambda: "START %s" % jid in w.output(), 15, "the job's process to start")
        os.killpg(w.pid, signal.SIGINT)                # Ctrl-C in the worker's terminal
        job = c.wait(jid, timeout=15)
        check(job["state"] == "completed" and job["result"]["echo"] == {"sleepMs": 1500},
              "the job running at Ctrl-C completes in the grace", job)
        wait_until(lambda: not w.alive(), 10, "the worker to exit after its job")
        check(w.p.returncode == 0 and "KeyboardInterrupt" not in w.output(),
              "it exits 0, no KeyboardInterrupt anywhere", w.p.returncode, w.output()[-2000:])
        c.close()


if __name__ == "__main__":
    harness.main(main)

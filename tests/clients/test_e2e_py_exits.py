"""A Python worker's jobs end whatever way their handler leaves.

A handler that calls sys.exit() (SystemExit, not an Exception) in a
thread fails its job bot_failed naming it, and the worker's slot is free:
the next job on the same worker of credit 1 completes.

Real redis-server and broker; the worker is tests/clients/pyworker.py as a
process.
"""
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
        c.close()


if __name__ == "__main__":
    harness.main(main)

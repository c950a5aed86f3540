"""The fork server without pidfds (a kernel before 5.3, Python before
3.9): a child that dies without an answer while processes it forked hold
its notice pipe open fails its job at once.

A real broker (no Redis), a real worker, tests/worker/bots/warmbot.py under
workers/bots/python/forkserver.py in fork mode, run by
tests/worker/bots/nopidfd.py (os.pidfd_open removed).  The job forks a
child that sleeps 60 s (it inherits the notice pipe) and kills itself with
SIGKILL: the job fails within seconds, not at its 10 s timeout (before:
the server waited for end of file on the pipe, which the sleeper held),
and the same fork server runs the next job.
"""
import os
import time

import harness
import wlib
from harness import check, log

SERVER = os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py")
NOPIDFD = os.path.join(wlib.HERE, "bots", "nopidfd.py")
BOT = os.path.join(wlib.HERE, "bots", "warmbot.py")


def main():
    with harness.Stack("worker-e2e-warm-nopidfd") as s:
        s.broker(redis=False)
        env = {"BOT_OLD_CMD": "%s %s %s %s" % (wlib.PY, NOPIDFD, SERVER, BOT), "BOT_OLD_MODE": "fork",
               "BOT_OLD_MAX_PROCS": "1"}
        w = s.worker("--type", "old", "--concurrency", "1", env=env)
        s.wait_workers(1)
        c = s.client()
        rec = wlib.run_job(c, "old", {})
        check(rec["state"] == "completed", "a fork job without pidfds completes", rec.get("error"))

        started = time.monotonic()
        rec = wlib.run_job(c, "old", {"forkKids": 1, "kidSleep": 60, "crash": "SIGKILL"}, attempts=1,
                           timeoutMs=10000)
        took = time.monotonic() - started
        log("the crashed job: %s %r after %.1f s" % (rec["state"], rec.get("error"), took))
        check(rec["state"] == "failed" and rec["error"]["code"] != "timeout",
              "a child killed while its own child holds the notice pipe: its job fails", rec.get("error"))
        check(took < 5, "at once, not at its 10 s timeout", took)

        rec = wlib.run_job(c, "old", {})
        check(rec["state"] == "completed", "the fork server runs the next job", rec.get("error"))
        check(w.output().count("old fork server process pid=") == 1, "the one fork server of the run",
              [l for l in w.output().splitlines() if "old " in l and "pid=" in l])
        c.close()


if __name__ == "__main__":
    harness.main(main)

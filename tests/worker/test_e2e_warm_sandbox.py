"""Warm bots under BOT_<TYPE>_SANDBOX=bwrap: the worker reaches the bot
inside the sandbox, not bwrap around it.

A real broker (no Redis), a real worker, tests/worker/bots/warmbot.py
under workers/bots/python/forkserver.py, real bubblewrap (skipped, naming
why, where bwrap cannot run):

- pool mode, BOT_<TYPE>_MAX_RSS_MB=60: a job that leaves the bot holding
  100 MiB gets its process recycled (max_rss) after the job, as it would
  unsandboxed: the next job runs in a fresh process (its job count is 1).
  The worker measured bwrap's few MiB before, and never recycled it;
- fork mode: the server has a PID namespace of its own, so the pid in its
  {"started": PID} is the child's pid in there.  A job past its timeout,
  and a cancelled one, are stopped by SIGTERM to that child, at once, with
  BOT_KILL_GRACE_MS=20000: the fork server lives on (one server ready in
  the whole run) and runs the next job.  Before, the worker did not know
  the child, waited the grace and killed the whole server.

The bot and the fork server are copies everyone may read: a root worker
runs sandboxed bots as nobody.
"""
import os
import subprocess
import sys
import time

import harness
import wlib
from harness import CANCEL, check, log, wait_until

GRACE_MS = 20000
READY = "bx-fork fork server process pid="


def bwrap_works():
    """'' if bubblewrap runs here, else why not."""
    try:
        out = subprocess.run(["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                              "--unshare-all", "true"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if out.returncode == 0 else "bwrap exits %d: %s" % (out.returncode, out.stderr.strip())


def require_bwrap():
    """Skip the test (exit) where bubblewrap cannot run."""
    why = bwrap_works()
    if why:
        print("SKIP: bubblewrap cannot run on this machine: %s" % why)
        sys.exit(harness.SKIP)


def wait_started(c, job_id, what):
    wait_until(lambda: (c.status(job_id) or {}).get("progress", 0) >= 10, 20, what)


def next_job_at_once(c, when):
    """The fork server runs the next job now: the job's child was stopped
    (SIGTERM), the server was not waited on for the grace and killed."""
    started = time.monotonic()
    rec = wlib.run_job(c, "bx-fork", {}, timeout=GRACE_MS / 1000.0 + 20)
    took = time.monotonic() - started
    log("the next fork job %s: %s in %.1f s" % (when, rec["state"], took))
    check(rec["state"] == "completed", "%s: the next fork job completes" % when, rec.get("error"))
    check(took < GRACE_MS / 2000.0, "%s: at once, not after the %d ms kill grace" % (when, GRACE_MS), took)


def sandboxed_warmbot():
    """Skip the test (exit) where bubblewrap cannot run; else copies of
    forkserver.py and warmbot.py a sandboxed bot may read: (server, bot)."""
    require_bwrap()
    return (wlib.readable_by_all(os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py")),
            wlib.readable_by_all(os.path.join(wlib.HERE, "bots", "warmbot.py")))


def main():
    server, bot = sandboxed_warmbot()
    with harness.Stack("worker-e2e-warm-sandbox") as s:
        s.broker(redis=False)
        env = {"BOT_BX_POOL_CMD": "%s %s --pool %s" % (wlib.PY, server, bot), "BOT_BX_POOL_MODE": "pool",
               "BOT_BX_POOL_MAX_PROCS": "1", "BOT_BX_POOL_MAX_RSS_MB": "60",
               "BOT_BX_POOL_SANDBOX": "bwrap",
               "BOT_BX_FORK_CMD": "%s %s %s" % (wlib.PY, server, bot), "BOT_BX_FORK_MODE": "fork",
               "BOT_BX_FORK_MAX_PROCS": "1", "BOT_BX_FORK_SANDBOX": "bwrap",
               "BOT_KILL_GRACE_MS": str(GRACE_MS)}
        w = s.worker("--type", "bx-pool,bx-fork", "--concurrency", "2", env=env)
        s.wait_workers(1)
        c = s.client()

        # Pool: MAX_RSS_MB is the bot's resident memory, inside the sandbox.
        rec = wlib.run_job(c, "bx-pool", {"leakMb": 100})
        check(rec["state"] == "completed" and rec["result"]["heldMb"] == 100,
              "a sandboxed pool job leaves its process holding 100 MiB", rec.get("result"), rec.get("error"))
        wait_until(lambda: "over BOT_BX_POOL_MAX_RSS_MB=60" in w.output(), 10,
                   "the worker to log the process over BOT_BX_POOL_MAX_RSS_MB=60")
        line = next(l for l in w.output().splitlines() if "over BOT_BX_POOL_MAX_RSS_MB=60" in l)
        log("worker: " + line)
        check("(max_rss, 1 job run)" in w.output(), "the process is retired as max_rss", w.output()[-1500:])
        rec = wlib.run_job(c, "bx-pool", {})
        check(rec["state"] == "completed" and rec["result"]["jobs"] == 1 and rec["result"]["heldMb"] == 0,
              "the next job runs in a fresh process (its first job, nothing held)", rec.get("result"))

        # Fork: the worker stops the job's child, not the server.
        rec = wlib.run_job(c, "bx-fork", {})
        check(rec["state"] == "completed", "a sandboxed fork job completes", rec.get("error"))
        rec = wlib.run_job(c, "bx-fork", {"sleepMs": 60000}, attempts=1, timeoutMs=1500)
        check(rec["state"] == "failed" and rec["error"]["code"] == "timeout", "past its timeout: timeout",
              rec.get("error"))
        next_job_at_once(c, "after the timeout")

        victim = c.submit("bx-fork", {"sleepMs": 60000}, attempts=1)
        wait_started(c, victim, "the job to cancel to start in its child")
        c.request(CANCEL, {"jobId": victim})
        rec = c.wait(victim, timeout=GRACE_MS / 1000.0 + 10)
        check(rec["state"] == "cancelled", "a sandboxed fork job cancelled", rec)
        next_job_at_once(c, "after the cancel")

        lines = [l for l in w.output().splitlines() if "bx-fork" in l and "pid=" in l]
        log("the worker on its fork server:\n" + "\n".join(lines))
        check(w.output().count(READY) == 1 and not [l for l in lines if "killed" in l],
              "one fork server in the whole run, never killed", lines)
        c.close()


if __name__ == "__main__":
    harness.main(main)

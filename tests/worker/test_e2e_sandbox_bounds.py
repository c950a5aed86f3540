"""BOT_<TYPE>_SANDBOX=bwrap: what a sandboxed bot can reach of the host's
memory and of the worker's files, one scenario a test (argv[1]), with a
real worker, real bubblewrap and tests/worker/bots/spy.py (skipped,
naming why, where bwrap cannot run):

- shm: /dev is read-only and /dev/shm a tmpfs of BOT_<TYPE>_TMP_MB, like
  /tmp: with BOT_<TYPE>_TMP_MB=16 a bot writing 40 MiB to /dev/shm gets
  ENOSPC after at most 16, a file made in /dev fails (read-only), and
  /dev/null and a multiprocessing lock (a semaphore in /dev/shm) still
  work.  Before, /dev/shm and /dev were tmpfs without a size (half the
  host's memory).

The bots are copies everyone may read: a root worker runs sandboxed bots
as nobody.
"""
import os
import re
import sys

import harness
import wlib
from harness import check, log
from test_e2e_warm_sandbox import bwrap_works

SPY = os.path.join(wlib.HERE, "bots", "spy.py")


def scenario_shm(s):
    spy = wlib.readable_by_all(SPY)
    s.broker(redis=False)
    s.worker("--type", "shm", "--concurrency", "1",
             env={"BOT_SHM_CMD": "%s %s" % (wlib.PY, spy), "BOT_SHM_SANDBOX": "bwrap",
                  "BOT_SHM_TMP_MB": "16"})
    s.wait_workers(1)
    c = s.client()
    rec = wlib.run_job(c, "shm", {"fill": 40, "fillDir": "/dev/shm", "create": ["/dev/x", "/dev/null"],
                                  "semaphore": True}, attempts=1)
    check(rec["state"] == "completed", "the sandboxed spy bot ran", rec.get("error"))
    seen = rec["result"]
    log("the bot sees:", {k: seen.get(k) for k in ("fill", "create", "semaphore")})
    check(seen["fill"].startswith("error: OSError: [Errno 28]"),
          "BOT_<TYPE>_TMP_MB=16: a bot filling /dev/shm gets ENOSPC", seen["fill"])
    m = re.search(r"after (\d+) MiB", seen["fill"])
    check(m is not None and int(m.group(1)) <= 16, "after at most 16 MiB", seen["fill"])
    check(seen["create"]["/dev/x"].startswith("error: OSError: [Errno 30]"),
          "a file made in /dev: read-only file system", seen["create"])
    check(seen["create"]["/dev/null"] == "ok", "/dev/null is still writable", seen["create"])
    check(seen["semaphore"] == "ok", "a multiprocessing lock (in /dev/shm) still works", seen["semaphore"])
    c.close()


SCENARIOS = {"shm": scenario_shm}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        sys.exit("usage: test_e2e_sandbox_bounds.py %s" % "|".join(SCENARIOS))
    why = bwrap_works()
    if why:
        print("SKIP: bubblewrap cannot run on this machine: %s" % why)
        sys.exit(harness.SKIP)
    with harness.Stack("worker-sandbox-%s" % sys.argv[1]) as s:
        SCENARIOS[sys.argv[1]](s)


if __name__ == "__main__":
    harness.main(main)

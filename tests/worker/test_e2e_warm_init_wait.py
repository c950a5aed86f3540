"""A job that comes while a pool's next start is backed off, after a failed
one, waits for that start and fails only with its error.  A real broker
(no Redis), a real worker and a pool bot that fails while loading as long
as a file "broken" exists, and writes the number of its load on stderr
("load N: cannot load the model").  MAX_PROCS=1, MIN_PROCS=1: its
restarts back off, 100 ms, 200 ms, 400 ms, ...

- A job with attempts 2 submitted during a back-off waits in the worker
  for the next start and fails with that start's error: each of its two
  runs quotes a load made after it was submitted, a different one each.
- The bot is fixed (the file removed) during a 3.2 s back-off, and a job
  with attempts 3 and 500 ms between runs is submitted: it waits for the
  next start (its record running without a startedAt, counted prefetched
  in STATS, as a job waiting for a busy process is) and completes on its
  first run, on the new load.

Before, a job submitted while no process was ready after a failed start
failed at once with the cached error of the start before it: the runs of
the first job quoted a load made before it was submitted (failed at "run
1 quotes a load made after the job was submitted"), and the job for the
fixed bot burned its 3 runs in about a second on the stale error (failed
at "the job to count running, without a startedAt, while it waits": it
had failed already).
"""
import os
import re

import harness
from harness import check, log, wait_until
import wlib

LOADY = """import json, os, sys
d = os.environ["LOADY_DIR"]
with open(os.path.join(d, "loads"), "a") as f:
    f.write("x\\n")
with open(os.path.join(d, "loads")) as f:
    n = len(f.read().split())
if os.path.exists(os.path.join(d, "broken")):
    sys.stderr.write("load %d: cannot load the model\\n" % n)
    sys.stderr.flush()
    sys.exit(3)
sys.stdout.write('{"ready": true}\\n')
sys.stdout.flush()
for line in sys.stdin:
    frame = json.loads(line)
    sys.stdout.write(json.dumps({"result": {"load": n}, "job": frame["job"]}) + "\\n")
    sys.stdout.flush()
"""

def write(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def loads(directory):
    with open(os.path.join(directory, "loads")) as f:
        return len(f.read().split())


def load_quoted(message):
    m = re.search(r"load (\d+): cannot load the model", message or "")
    return int(m.group(1)) if m else None


def failed_with_backoff(w, ms):
    """The worker's line of an init failure whose next start is in ms."""
    return [line for line in w.output().splitlines()
            if "failed at init" in line and "next start in %d ms" % ms in line]


def scenario_wait(s, bots):
    bot = write(bots, "loady.py", LOADY)
    broken = write(bots, "broken", "")
    env = {"BOT_LOADY_CMD": "%s %s" % (wlib.PY, bot), "BOT_LOADY_MODE": "pool",
           "BOT_LOADY_MAX_PROCS": "1", "BOT_LOADY_MIN_PROCS": "1", "LOADY_DIR": bots}
    w = s.worker("--type", "loady", "--concurrency", "1", env=env)
    s.wait_workers(1)
    c = s.client()
    wait_until(lambda: failed_with_backoff(w, 400), 15, "the third failed start (next in 400 ms)")
    before = loads(bots)
    log("%d loads failed so far; the next start is backed off" % before)
    rec = wlib.run_job(c, "loady", {}, attempts=2, backoff={"type": "fixed", "delayMs": 100},
                       timeout=30)
    errors = rec.get("attemptErrors") or []
    log("job 1: %s %r" % (rec["state"], errors))
    check(rec["state"] == "failed" and (rec.get("error") or {}).get("code") == "bot_init_failed"
          and len(errors) == 2 and all(e.get("code") == "bot_init_failed" for e in errors),
          "the job with the broken bot fails both runs with bot_init_failed", rec)
    quoted = [load_quoted(e.get("message")) for e in errors]
    for n, load in enumerate(quoted, 1):
        check(load is not None and load > before,
              "run %d quotes a load made after the job was submitted (load %s, %d before)"
              % (n, load, before), errors)
    check(quoted[0] != quoted[1], "each run quotes a start of its own", quoted)

    #  The bot fixed during a long back-off: the next job waits for the
    #  next start and runs.
    wait_until(lambda: failed_with_backoff(w, 3200), 15, "a failed start backed off 3.2 s")
    os.unlink(broken)
    before = loads(bots)
    log("the bot is fixed after %d loads; the next start is 3.2 s away" % before)
    job = c.submit("loady", {}, attempts=3, backoff={"type": "fixed", "delayMs": 500})
    rec = wait_until(lambda: (lambda r: r if r and "startedAt" not in r and r["state"] == "running"
                              else None)(c.status(job)),
                     2.5, "the job to count running, without a startedAt, while it waits")
    stats = wait_until(lambda: (lambda t: t if t.get("prefetched") == 1 else None)(
        c.stats()["types"]["loady"]), 2.5, "STATS to count the waiting job prefetched")
    check(stats.get("running") == 1, "STATS: prefetched 1 within running 1", stats)
    rec = c.wait(job, timeout=30)
    log("job 2: %s attempts=%s result=%r errors=%r" % (rec["state"], rec.get("attempts"),
                                                     rec.get("result"), rec.get("attemptErrors")))
    check(rec["state"] == "completed", "the job for the fixed bot completes", rec)
    check(rec.get("attempts") == 1 and not rec.get("attemptErrors"),
          "on its first run, none burned on the failure before it came", rec)
    check(rec["result"]["load"] > before, "on a process loaded after the fix", rec, before)
    c.close()
    check(w.alive(), "worker still running")


def main():
    bots = harness.tempdir("warm-init-wait-")
    with harness.Stack("worker-e2e-warm-init-wait") as s:
        s.broker(redis=False)
        scenario_wait(s, bots)


if __name__ == "__main__":
    harness.main(main)

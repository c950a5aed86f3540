"""BOT_<TYPE>_MIN_PROCS above BOT_<TYPE>_MAX_PROCS is clamped to it, and the
worker says so at start: one WARN line naming the type, both variables with
their values and what it does.

A real broker (no Redis), a real worker and a pool bot written by hand.
Type "over" asks for 3 processes kept warm and at most 2 (the worker starts
with one WARN line, its pool is 2-2 processes and runs a job); type "under"
(1 and 2) and a spawn type with MIN_PROCS 3 (no pool: nothing is clamped
that matters) get no such line.  Before, the clamp was silent: no WARN line.
"""
import os

import harness
from harness import check
import wlib

POOLBOT = """import json, sys
sys.stdout.write('{"ready": true}\\n')
sys.stdout.flush()
for line in sys.stdin:
    frame = json.loads(line)
    sys.stdout.write(json.dumps({"result": {"ok": True}, "job": frame["job"]}) + "\\n")
    sys.stdout.flush()
"""


def main():
    bots = harness.tempdir("warm-min-procs-")
    bot = os.path.join(bots, "poolbot.py")
    with open(bot, "w") as f:
        f.write(POOLBOT)
    with harness.Stack("worker-e2e-warm-min-procs") as s:
        s.broker(redis=False)
        cmd = "%s %s" % (wlib.PY, bot)
        env = {"BOT_OVER_CMD": cmd, "BOT_OVER_MODE": "pool", "BOT_OVER_MIN_PROCS": "3", "BOT_OVER_MAX_PROCS": "2",
               "BOT_UNDER_CMD": cmd, "BOT_UNDER_MODE": "pool", "BOT_UNDER_MIN_PROCS": "1",
               "BOT_UNDER_MAX_PROCS": "2",
               "BOT_SPAWNED_CMD": "/bin/true", "BOT_SPAWNED_MIN_PROCS": "3", "BOT_SPAWNED_MAX_PROCS": "1"}
        w = s.worker("--type", "over,under,spawned", "--concurrency", "2", env=env)
        s.wait_workers(1)
        c = s.client()
        rec = wlib.run_job(c, "over", {}, attempts=1)
        check(rec["state"] == "completed", "a job of the clamped type completes", rec)
        c.close()
        lines = [l for l in w.output().splitlines() if "MIN_PROCS" in l and " WARN " in l]
        check(len(lines) == 1, "one WARN line about MIN_PROCS", lines, w.output()[-2000:])
        line = lines[0]
        check("BOT_OVER_MIN_PROCS=3" in line and "BOT_OVER_MAX_PROCS=2" in line
              and "over bots keep 2 processes warm" in line and "clamped" in line,
              "it names the type, both variables with their values and the clamp", line)
        check("over bots in pool mode: 2-2 processes" in w.output(),
              "the pool of type over is 2-2 processes", w.output()[-2000:])
        check(w.alive(), "worker still running")


if __name__ == "__main__":
    harness.main(main)

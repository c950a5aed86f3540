"""A bot run in a mode it was not written for, or a fork server's setting
on a type that runs none: the worker says so rather than running it
anyway.  A real broker (no Redis), a real worker and real bots.  One
scenario per run (the argument):

- fork: a pooled bot (it answers each job itself and writes a plain
  {"ready": true}) under BOT_<TYPE>_MODE=fork, with MEMORY_MB and
  MAX_FILES: its ready frame has no "mode": "fork", so it is no fork
  server and each child's limits would never be applied.  The job fails
  bot_init_failed, "BOT_NOTFORK_MODE=fork but the program is not a fork
  server ...", with a WARN that the process was killed; the same bot
  under MODE=pool runs the job.  Before, the worker logged "fork server
  process ready" and the job completed, with no limit applied.
"""
import os
import sys

import harness
from harness import check, log
import wlib
from test_e2e_warm_mistakes import warn_lines, write

PY = "/usr/bin/python3"

POOLBOT = """import json, sys
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    frame = json.loads(line)
    print(json.dumps({"job": frame["job"], "result": {"ran": True}}), flush=True)
"""


def scenario_fork(s, bots):
    bot = write(bots, "poolbot.py", POOLBOT)
    env = {"BOT_NOTFORK_CMD": "%s %s" % (PY, bot), "BOT_NOTFORK_MODE": "fork",
           "BOT_NOTFORK_MAX_PROCS": "1", "BOT_NOTFORK_MEMORY_MB": "200", "BOT_NOTFORK_MAX_FILES": "64",
           "BOT_ASPOOL_CMD": "%s %s" % (PY, bot), "BOT_ASPOOL_MODE": "pool", "BOT_ASPOOL_MAX_PROCS": "1"}
    w = s.worker("--type", "notfork,aspool", "--concurrency", "2", env=env)
    s.wait_workers(1)
    c = s.client()
    rec = wlib.run_job(c, "notfork", {}, attempts=1, timeout=30)
    err = rec.get("error") or {}
    log("notfork: %s %r %r" % (rec["state"], rec.get("result"), err))
    check(rec["state"] == "failed" and err.get("code") == "bot_init_failed",
          "a pooled bot under MODE=fork -> bot_init_failed", rec.get("result"), err)
    check("BOT_NOTFORK_MODE=fork but the program is not a fork server" in err.get("message", "")
          and '"mode": "fork"' in err.get("message", "") and "BOT_NOTFORK_MODE=pool" in err.get("message", ""),
          "the message says the program is no fork server and points to MODE=pool", err)
    check(warn_lines(w, "notfork", "is not a fork server", "killed"),
          "a WARN line says the process is no fork server and was killed", w.output()[-2000:])
    check(not [line for line in w.output().splitlines()
               if "notfork fork server process pid=" in line and line.endswith(" ready")],
          "never logged as a ready fork server", w.output()[-2000:])
    rec = wlib.run_job(c, "aspool", {}, attempts=1, timeout=30)
    check(rec["state"] == "completed" and rec.get("result") == {"ran": True},
          "the same bot under MODE=pool runs the job", rec)
    c.close()


SCENARIOS = {"fork": scenario_fork}


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        sys.exit("usage: test_e2e_warm_wrong_mode.py %s" % "|".join(SCENARIOS))
    bots = harness.tempdir("warm-wrong-mode-")
    os.chmod(bots, 0o755)
    with harness.Stack("worker-e2e-warm-wrong-mode-" + sys.argv[1]) as s:
        s.broker(redis=False)
        SCENARIOS[sys.argv[1]](s, bots)


if __name__ == "__main__":
    harness.main(main)

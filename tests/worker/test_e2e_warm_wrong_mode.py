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
  process ready" and the job completed, with no limit applied;
- spawn: pooled bots with no BOT_<TYPE>_MODE (spawn): the docs' greet.sh,
  whose only output in spawn mode is its ready line, and a bot that also
  answers the payload it reads (its ready line, then an answer frame).
  Both jobs fail bad_output pointing to BOT_<TYPE>_MODE=pool.  Before,
  they completed with the result {"ready": true} and the whole answer
  frame.  A spawned bot whose result merely has a "ready" key among
  others completes;
- settings: BOT_<TYPE>_PRELOAD and BOT_<TYPE>_FORK_WARMUP, which only
  forkserver.py reads, on types that do not run it: one WARN at start for
  each, naming the setting and the mode (spawn; pool with a program of its
  own), and none for the types that do read them (fork mode; PRELOAD in
  pool mode under forkserver.py --pool).  Before, they were ignored
  without a word.
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

GREET = """#!/bin/sh
echo '{"ready": true}'
while IFS= read -r frame; do
    printf '%s\\n' "$frame" | jq -c '{result: {hello: (.payload.name? // "world")}, job: .job}'
done
"""

ANSWERS = """import json, sys
print(json.dumps({"ready": True, "pid": 1}), flush=True)
for line in sys.stdin:
    print(json.dumps({"job": None, "result": {"read": json.loads(line)}}), flush=True)
"""

SPAWNBOT = """import json, sys
json.load(sys.stdin)
print(json.dumps({"ready": True, "rows": 3}))
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


def scenario_spawn(s, bots):
    env = {"BOT_GREET_CMD": "/bin/sh %s" % write(bots, "greet.sh", GREET),
           "BOT_ANSWERS_CMD": "%s %s" % (PY, write(bots, "answers.py", ANSWERS)),
           "BOT_REAL_CMD": "%s %s" % (PY, write(bots, "spawnbot.py", SPAWNBOT))}
    s.worker("--type", "greet,answers,real", "--concurrency", "3", env=env)
    s.wait_workers(1)
    c = s.client()
    for bot_type in ("greet", "answers"):
        rec = wlib.run_job(c, bot_type, {"name": "Ada"}, attempts=1, timeout=30)
        err = rec.get("error") or {}
        log("%s: %s %r %r" % (bot_type, rec["state"], rec.get("result"), err))
        check(rec["state"] == "failed" and err.get("code") == "bad_output",
              "%s: a pooled bot in spawn mode -> bad_output" % bot_type, rec.get("result"), err)
        check("ready frame" in err.get("message", "")
              and "BOT_%s_MODE=pool" % bot_type.upper() in err.get("message", ""),
              "%s: the message names the ready frame and BOT_%s_MODE=pool" % (bot_type, bot_type.upper()),
              err)
    rec = wlib.run_job(c, "real", {}, attempts=1, timeout=30)
    check(rec["state"] == "completed" and rec.get("result") == {"ready": True, "rows": 3},
          "a spawned bot's result with a \"ready\" key among others completes", rec)
    c.close()


def scenario_settings(s, bots):
    bot = write(bots, "poolbot.py", POOLBOT)
    server = os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py")
    warm = os.path.join(wlib.HERE, "bots", "warmbot.py")
    env = {"BOT_SPAWNED_CMD": "%s %s" % (PY, bot), "BOT_SPAWNED_PRELOAD": "numpy",
           "BOT_SPAWNED_FORK_WARMUP": "1",
           "BOT_POOLED_CMD": "%s %s" % (PY, bot), "BOT_POOLED_MODE": "pool", "BOT_POOLED_PRELOAD": "numpy",
           "BOT_POOLED_FORK_WARMUP": "1",
           "BOT_FSPOOL_CMD": "%s %s --pool %s" % (PY, server, warm), "BOT_FSPOOL_MODE": "pool",
           "BOT_FSPOOL_PRELOAD": "json",
           "BOT_FORKED_CMD": "%s %s %s" % (PY, server, warm), "BOT_FORKED_MODE": "fork",
           "BOT_FORKED_PRELOAD": "json", "BOT_FORKED_FORK_WARMUP": "1"}
    w = s.worker("--type", "spawned,pooled,fspool,forked", "--concurrency", "4", env=env)
    s.wait_workers(1)
    expected = (("BOT_SPAWNED_FORK_WARMUP=1 is ignored", "spawn mode"),
                ("BOT_SPAWNED_PRELOAD=numpy is ignored", "spawn mode"),
                ("BOT_POOLED_FORK_WARMUP=1 is ignored", "pool mode"),
                ("BOT_POOLED_PRELOAD=numpy is ignored", "pool mode with a program that is not forkserver.py"))
    for setting, mode in expected:
        lines = warn_lines(w, setting, mode)
        check(len(lines) == 1, "one WARN: %s, naming %s" % (setting, mode), lines, w.output()[-3000:])
    check(not warn_lines(w, "BOT_FSPOOL_", "is ignored") and not warn_lines(w, "BOT_FORKED_", "is ignored"),
          "no WARN for the types whose forkserver.py reads them", warn_lines(w, "is ignored"))
    c = s.client()
    for bot_type in ("pooled", "fspool", "forked"):
        rec = wlib.run_job(c, bot_type, {}, attempts=1, timeout=30)
        check(rec["state"] == "completed", "%s: its job completes" % bot_type, rec)
    c.close()


SCENARIOS = {"fork": scenario_fork, "spawn": scenario_spawn, "settings": scenario_settings}


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

"""A pooled process that dies by a crash signal while it loads, under an
address-space limit: the error names the limit as a likely cause.

A JVM under BOT_JAVA_MEMORY_MB=200 dies by SIGSEGV at start: it reserves
address space for its heap and more at once.  A real broker (no Redis), a
real worker, tests/worker/bots/crashbot.py --crash-at-load (SIGSEGV before
its ready frame), in pool mode:

- BOT_LOWMEM_MEMORY_MB=200: the job fails bot_init_failed "the lowmem bot
  failed while loading (killed by signal SIGSEGV); BOT_LOWMEM_MEMORY_MB=200
  may be too low for it to start (...)", with the bot's stderr.  Before:
  "(killed by signal SIGSEGV): crashbot: crashing at load", no hint;
- BOT_NOMEM_MEMORY_MB=0 (no limit): no such hint;
- BOT_DEFMEM_MEMORY_MB unset: the default 4096 applies, and the hint says
  so, "the default BOT_DEFMEM_MEMORY_MB=4096 may be too low for it to start
  (...): set it higher".  Before: "BOT_DEFMEM_MEMORY_MB=4096 may be too
  low ...: raise it", as if it had been set;
- a fork server dying at load under BOT_LOWFORK_MEMORY_MB=200: no hint (a
  fork server has no memory limit of its own, its children do).  Before:
  the hint, naming a limit that did not apply to it;
- a spawned bot killed by SIGSEGV before it wrote anything, under
  BOT_LOWSPAWN_MEMORY_MB=200: bot_failed "the bot was killed by signal
  SIGSEGV (11); if it died at start, BOT_LOWSPAWN_MEMORY_MB=200 may be too
  low for it to start (...)".  Before: no hint.
"""
import harness
import wlib
from harness import check, log

import os

HINT = "BOT_LOWMEM_MEMORY_MB=200 may be too low for it to start"


def init_error(c, bot_type):
    rec = wlib.run_job(c, bot_type, {}, attempts=1)
    log("%s: %s %s" % (bot_type, rec["state"], rec.get("error")))
    check(rec["state"] == "failed" and rec["error"]["code"] == "bot_init_failed",
          "%s fails bot_init_failed" % bot_type, rec.get("error"))
    return rec["error"]["message"]


def main():
    bot = "%s %s --crash-at-load" % (wlib.PY, os.path.join(wlib.HERE, "bots", "crashbot.py"))
    with harness.Stack("worker-e2e-warm-load-crash") as s:
        s.broker(redis=False)
        env = {"BOT_LOWMEM_CMD": bot, "BOT_LOWMEM_MODE": "pool", "BOT_LOWMEM_MAX_PROCS": "1",
               "BOT_LOWMEM_MEMORY_MB": "200",
               "BOT_NOMEM_CMD": bot, "BOT_NOMEM_MODE": "pool", "BOT_NOMEM_MAX_PROCS": "1",
               "BOT_NOMEM_MEMORY_MB": "0",
               "BOT_DEFMEM_CMD": bot, "BOT_DEFMEM_MODE": "pool", "BOT_DEFMEM_MAX_PROCS": "1",
               "BOT_LOWFORK_CMD": bot, "BOT_LOWFORK_MODE": "fork", "BOT_LOWFORK_MEMORY_MB": "200",
               "BOT_LOWSPAWN_CMD": "%s %s" % (wlib.PY, os.path.join(wlib.HERE, "bots", "crashbot.py")),
               "BOT_LOWSPAWN_MODE": "spawn", "BOT_LOWSPAWN_MEMORY_MB": "200"}
        w = s.worker("--type", "lowmem,nomem,defmem,lowfork,lowspawn", "--concurrency", "2", env=env)
        s.wait_workers(1)
        c = s.client()

        message = init_error(c, "lowmem")
        check(message.startswith("the lowmem bot failed while loading (killed by signal SIGSEGV); " + HINT),
              "the error names BOT_LOWMEM_MEMORY_MB=200 as a likely cause", message)
        check(message.endswith("crashbot: crashing at load"), "with the bot's stderr", message)
        check(HINT in w.output(), "the worker's log line says it too", w.output()[-2000:])

        message = init_error(c, "nomem")
        check("may be too low" not in message and "killed by signal SIGSEGV" in message,
              "no memory limit: no hint", message)

        message = init_error(c, "defmem")
        check(message.startswith("the defmem bot failed while loading (killed by signal SIGSEGV); "
                                 "the default BOT_DEFMEM_MEMORY_MB=4096 may be too low for it to "
                                 "start") and "set it higher" in message,
              "with the variable unset, the hint names its default as the default", message)

        message = init_error(c, "lowfork")
        check("may be too low" not in message and "killed by signal SIGSEGV" in message,
              "a fork server, which runs without the memory limit: no hint", message)

        rec = wlib.run_job(c, "lowspawn", {"crash": True}, attempts=1)
        log("lowspawn: %s %s" % (rec["state"], rec.get("error")))
        check(rec["state"] == "failed" and rec["error"]["code"] == "bot_failed"
              and rec["error"]["message"].startswith(
                  "the bot was killed by signal SIGSEGV (11); if it died at start, "
                  "BOT_LOWSPAWN_MEMORY_MB=200 may be too low for it to start"),
              "a spawned bot's SIGSEGV before any output names the limit, as a maybe", rec.get("error"))
        c.close()


if __name__ == "__main__":
    harness.main(main)

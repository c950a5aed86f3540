"""A spawn-mode Python bot's subprocesses under forkserver.py: fd 0 and
fd 1 are the job's, never the worker protocol's pipes.

A real broker (no Redis), a real worker, tests/worker/bots/warmbot.py
three ways: spawned (the control), under workers/bots/python/forkserver.py
--pool and under forkserver.py (fork mode).  Each job runs a shell command
with os.system, which inherits the bot's fd 0 and fd 1:

- a command that writes the whole result ({"by": "shell"}) on its stdout,
  the bot writing nothing: the job's result, as in spawn mode (before: in
  pool mode a line on the protocol pipe, bad_output and the process
  killed; in fork mode a line of the server, ignored, the job failing with
  "the bot wrote nothing");
- a command that writes a line before the bot's result: the job completes
  (its stdout's last line is the result), and the pool process runs on;
- a command that reads its stdin to the end (cat): end of file at once,
  the job completes well within its 30 s timeout (before: pool and fork
  jobs hung on the protocol pipe until their timeout);
- then one more job each: the pool process ran every job (nothing broke its
  protocol), the fork server's next job completes;
- three jobs that write their result through the sys.stdout of the bot's
  import (`from sys import stdout` at its top; under a fork server the
  server's, not the job's), buffered and never flushed: each job's result
  is its own (before: the text waited in that buffer, the job failed for
  want of output, and the buffer went out later into another job's).

- a fork server whose bot printed a line while it loaded: that line is not
  in a job's stderr (before: each child inherited it in the buffer and
  wrote it out into its job's stderr, the tail that a failed job's error
  message is).

The bots run with PYTHONUNBUFFERED empty (unset for Python), so that
their stdout is block-buffered as it is for a bot in production.
"""
import os
import time

import harness
import wlib
from harness import check, log

SERVER = os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py")
BOT = os.path.join(wlib.HERE, "bots", "warmbot.py")
MODES = (("sp", "spawn"), ("pl", "pool"), ("fk", "fork"))


def main():
    with harness.Stack("worker-e2e-warm-stdio") as s:
        s.broker(redis=False)
        env = {"BOT_SP_CMD": "%s %s" % (wlib.PY, BOT),
               "BOT_PL_CMD": "%s %s --pool %s" % (wlib.PY, SERVER, BOT), "BOT_PL_MODE": "pool",
               "BOT_PL_MAX_PROCS": "1",
               "BOT_FK_CMD": "%s %s %s" % (wlib.PY, SERVER, BOT), "BOT_FK_MODE": "fork",
               "BOT_FK_MAX_PROCS": "1", "PYTHONUNBUFFERED": ""}
        w = s.worker("--type", "sp,pl,fk", "--concurrency", "3", env=env)
        s.wait_workers(1)
        c = s.client()
        for bot_type, mode in MODES:
            log("=== %s mode" % mode)
            rec = wlib.run_job(c, bot_type, {"shell": "printf '{\"by\": \"shell\"}\\n'", "quiet": True},
                               attempts=1)
            check(rec["state"] == "completed" and rec["result"] == {"by": "shell"},
                  "%s: a subprocess's stdout is the job's stdout" % mode, rec.get("result"), rec.get("error"))

            rec = wlib.run_job(c, bot_type, {"shell": "echo a line of a subprocess"}, attempts=1)
            check(rec["state"] == "completed" and rec["result"]["shellStatus"] == 0,
                  "%s: a subprocess's line before the result: the job completes" % mode,
                  rec.get("result"), rec.get("error"))

            started = time.monotonic()
            rec = wlib.run_job(c, bot_type, {"shell": "cat"}, attempts=1, timeoutMs=30000,
                               timeout=45)
            took = time.monotonic() - started
            check(rec["state"] == "completed" and rec["result"]["shellStatus"] == 0,
                  "%s: a subprocess reading its stdin gets end of file; the job completes" % mode,
                  rec.get("result"), rec.get("error"))
            check(took < 15, "%s: at once, not at its 30 s timeout" % mode, took)

            rec = wlib.run_job(c, bot_type, {}, attempts=1)
            check(rec["state"] == "completed", "%s: the next job completes" % mode, rec.get("error"))
            if mode == "pool":
                check(rec["result"]["jobs"] == 4, "pool: the one process ran all 4 jobs", rec["result"])

            for n in range(3):
                rec = wlib.run_job(c, bot_type, {"importStdout": True}, attempts=1)
                check(rec["state"] == "completed" and rec["result"]["jobId"] == rec["jobId"],
                      "%s: a result written through the import's stdout, unflushed, is the job's own "
                      "(job %d of 3)" % (mode, n + 1), rec.get("result"), rec.get("error"))
        log("=== fork mode, a line printed at import")
        s.worker("--type", "fi", "--concurrency", "1",
                 env={"BOT_FI_CMD": "%s %s %s" % (wlib.PY, SERVER, BOT), "BOT_FI_MODE": "fork",
                      "BOT_FI_MAX_PROCS": "1", "PYTHONUNBUFFERED": "",
                      "WARMBOT_IMPORT_PRINT": "a line printed at import"})
        s.wait_workers(2)
        for n in range(2):
            rec = wlib.run_job(c, "fi", {"crash": "SIGSEGV"}, attempts=1)
            message = (rec.get("error") or {}).get("message", "")
            check(rec["state"] == "failed" and "about to crash" in message,
                  "fork: a job that crashes fails with its stderr's tail (job %d of 2)" % (n + 1), rec.get("error"))
            check("printed at import" not in message,
                  "fork: the line the bot printed at import is not in the job's stderr", message)
        check("a line of a subprocess" not in w.output(),
              "no subprocess's line reached the worker's protocol (nor its log)")
        check("killed" not in w.output(), "no bot process was killed", w.output()[-2000:])
        c.close()


if __name__ == "__main__":
    harness.main(main)

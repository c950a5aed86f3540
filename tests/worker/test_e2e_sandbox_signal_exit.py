"""A sandboxed bot killed by a signal: bwrap passes on its child's death by
signal N as exit 128 + N, and the job's error says what that means.

A real broker (no Redis), a real worker, tests/worker/bots/crashbot.py,
real bubblewrap (skipped, naming why, where bwrap cannot run):

- spawn mode, BOT_<TYPE>_SANDBOX=bwrap: a bot that kills itself with
  SIGSEGV fails bot_failed "the bot exited with status 139 (128+11: killed
  by SIGSEGV inside the sandbox)", exitCode 139.  Before: "the bot exited
  with status 139", no word of a signal;
- pool mode under bwrap, a process that dies by SIGSEGV while loading:
  bot_init_failed "... failed while loading (exited with status 139
  (128+11: killed by SIGSEGV inside the sandbox))";
- unsandboxed, a bot that exits 139 itself reads "the bot exited with
  status 139", with no word of a sandbox or a signal.
"""
import harness
import wlib
from harness import check, log
from test_e2e_warm_sandbox import require_bwrap

import os

SEGV = "exited with status 139 (128+11: killed by SIGSEGV inside the sandbox)"


def failed(c, bot_type, payload, code):
    rec = wlib.run_job(c, bot_type, payload, attempts=1)
    log("%s %s: %s %s" % (bot_type, payload, rec["state"], rec.get("error")))
    check(rec["state"] == "failed" and rec["error"]["code"] == code,
          "%s fails %s" % (bot_type, code), rec.get("error"))
    return rec["error"]


def main():
    require_bwrap()
    bot = wlib.readable_by_all(os.path.join(wlib.HERE, "bots", "crashbot.py"))
    with harness.Stack("worker-e2e-sandbox-signal-exit") as s:
        s.broker(redis=False)
        env = {"BOT_SBSPAWN_CMD": "%s %s" % (wlib.PY, bot), "BOT_SBSPAWN_MODE": "spawn",
               "BOT_SBSPAWN_SANDBOX": "bwrap",
               "BOT_SBPOOL_CMD": "%s %s --crash-at-load" % (wlib.PY, bot), "BOT_SBPOOL_MODE": "pool",
               "BOT_SBPOOL_SANDBOX": "bwrap", "BOT_SBPOOL_MAX_PROCS": "1",
               "BOT_PLAIN_CMD": "%s %s" % (wlib.PY, bot), "BOT_PLAIN_MODE": "spawn"}
        s.worker("--type", "sbspawn,sbpool,plain", "--concurrency", "2", env=env)
        s.wait_workers(1)
        c = s.client()

        error = failed(c, "sbspawn", {"crash": True}, "bot_failed")
        check(error["message"].startswith("the bot " + SEGV), "a sandboxed spawned bot's SIGSEGV is named",
              error["message"])
        check(error.get("exitCode") == 139, "its exitCode is bwrap's status, 139", error)

        error = failed(c, "sbpool", {}, "bot_init_failed")
        check("failed while loading (%s)" % SEGV in error["message"],
              "a sandboxed pool process's SIGSEGV at load is named", error["message"])
        check("crashbot: crashing at load" in error["message"], "with its stderr", error["message"])

        error = failed(c, "plain", {"exit": 139}, "bot_failed")
        check(error["message"] == "the bot exited with status 139",
              "an unsandboxed bot's own exit 139 is an exit 139", error["message"])
        c.close()


if __name__ == "__main__":
    harness.main(main)

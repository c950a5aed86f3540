"""A fork server under BOT_<TYPE>_SANDBOX=bwrap gets its type's start-up
settings: BOT_<TYPE>_PRELOAD and BOT_<TYPE>_FORK_WARMUP.

A real broker (no Redis), a real worker, tests/worker/bots/warmbot.py
under workers/bots/python/forkserver.py in fork mode, real bubblewrap
(skipped, naming why, where bwrap cannot run):

- sb-bad: BOT_SB_BAD_PRELOAD names a module that does not exist: the job
  fails bot_init_failed naming the variable and the module, as it does
  unsandboxed.  Before, the sandbox's cut-down environment dropped the
  variable: the server imported nothing and the job completed;
- sb-warm: BOT_SB_WARM_FORK_WARMUP=1: the job's child was forked after the
  warm-up run (its result's warmedUp), and BOT_SB_WARM_PRELOAD=decimal
  loads.  Before, the warm-up never ran (warmedUp false).
"""
import harness
import wlib
from harness import check, log
from test_e2e_warm_sandbox import sandboxed_warmbot


def main():
    server, bot = sandboxed_warmbot()
    with harness.Stack("worker-e2e-sandbox-fork-settings") as s:
        s.broker(redis=False)
        env = {"WORKER_METRICS_PORT": "-1"}
        for name, extra in (("SB_BAD", {"PRELOAD": "json,no_such_module_for_the_test"}),
                            ("SB_WARM", {"PRELOAD": "decimal", "FORK_WARMUP": "1"})):
            env.update({"BOT_%s_CMD" % name: "%s %s %s" % (wlib.PY, server, bot),
                        "BOT_%s_MODE" % name: "fork", "BOT_%s_MAX_PROCS" % name: "1",
                        "BOT_%s_SANDBOX" % name: "bwrap"})
            env.update({"BOT_%s_%s" % (name, k): v for k, v in extra.items()})
        s.worker("--type", "sb-bad,sb-warm", "--concurrency", "2", env=env)
        s.wait_workers(1)
        c = s.client()

        rec = wlib.run_job(c, "sb-bad", {}, attempts=1, timeout=30)
        err = rec.get("error") or {}
        log("sb-bad: %s %r" % (rec["state"], err))
        check(rec["state"] == "failed" and err.get("code") == "bot_init_failed"
              and "BOT_SB_BAD_PRELOAD" in err.get("message", "")
              and "no_such_module_for_the_test" in err.get("message", ""),
              "sandboxed: a bad BOT_<TYPE>_PRELOAD -> bot_init_failed naming the variable and "
              "the module", rec.get("result"), err)

        rec = wlib.run_job(c, "sb-warm", {}, attempts=1, timeout=30)
        log("sb-warm: %s %r" % (rec["state"], rec.get("result")))
        check(rec["state"] == "completed" and (rec.get("result") or {}).get("warmedUp") is True,
              "sandboxed: BOT_<TYPE>_FORK_WARMUP=1 runs the warm-up in the fork server",
              rec.get("result"), rec.get("error"))
        c.close()


if __name__ == "__main__":
    harness.main(main)

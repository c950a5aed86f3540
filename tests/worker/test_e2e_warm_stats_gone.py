"""STATS on a warm bot type after its last worker left: no mode, and the
recycles and init failures its workers counted.

A real broker (no Redis), real workers, tests/worker/bots/warmbot.py under
workers/bots/python/forkserver.py --pool (BOT_<TYPE>_MAX_JOBS=1: each job
recycles its process) and tests/worker/bots/crashbot.py --crash-at-load (a
pool process that dies while loading: an init failure):

- while worker "ws" serves them: mode "pool", recycles >= 2, initFailures
  >= 1 (the pool starts wsinit again after a back-off: more may come);
- "ws" stops: with no worker, the types' mode is null (nobody runs them),
  and their recycles and initFailures stay what they were.  Before: mode
  "spawn" (false: they ran in pool mode), recycles and initFailures 0;
- "ws" back (a new process of that name, counting from 0): the counts of
  the one that left and the new one's add up (mode "pool" again).
"""
import os

import harness
import wlib
from harness import check, log, wait_until

SERVER = os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py")
WARMBOT = os.path.join(wlib.HERE, "bots", "warmbot.py")
CRASHBOT = os.path.join(wlib.HERE, "bots", "crashbot.py")


def types(c):
    t = c.stats()["types"]
    return t.get("wsrec", {}), t.get("wsinit", {})


def start(s):
    env = {"BOT_WSREC_CMD": "%s %s --pool %s" % (wlib.PY, SERVER, WARMBOT), "BOT_WSREC_MODE": "pool",
           "BOT_WSREC_MAX_PROCS": "1", "BOT_WSREC_MAX_JOBS": "1",
           "BOT_WSINIT_CMD": "%s %s --crash-at-load" % (wlib.PY, CRASHBOT), "BOT_WSINIT_MODE": "pool",
           "BOT_WSINIT_MAX_PROCS": "1", "HEARTBEAT_INTERVAL_MS": "200"}
    w = s.worker("--type", "wsrec,wsinit", "--name", "ws", env=env)
    s.wait_workers(1)
    return w


def main():
    with harness.Stack("worker-e2e-warm-stats-gone") as s:
        s.broker(redis=False, env={"HEARTBEAT_INTERVAL_MS": "200"})
        c = s.client()
        w = start(s)
        for _ in range(2):
            rec = wlib.run_job(c, "wsrec", {})
            check(rec["state"] == "completed", "a wsrec job completes", rec.get("error"))
        rec = wlib.run_job(c, "wsinit", {}, attempts=1)
        check(rec["state"] == "failed" and rec["error"]["code"] == "bot_init_failed",
              "a wsinit job fails bot_init_failed", rec.get("error"))
        wait_until(lambda: types(c)[0].get("recycles", 0) >= 2 and types(c)[1].get("initFailures", 0) >= 1,
                   15, "the worker's HEARTBEATs to report 2 recycles of wsrec and 1 init failure of wsinit")
        rec_t, init_t = types(c)
        log("served: wsrec %s, wsinit %s" % (rec_t, init_t))
        check(rec_t["mode"] == "pool" and init_t["mode"] == "pool", "both run in pool mode", rec_t, init_t)
        recycles, failures = rec_t["recycles"], init_t["initFailures"]

        w.stop()
        wait_until(lambda: types(c)[0].get("workers") == 0 and types(c)[1].get("workers") == 0, 15,
                   "the broker to see the worker gone")
        rec_t, init_t = types(c)
        log("no worker: wsrec %s, wsinit %s" % (rec_t, init_t))
        check(rec_t["mode"] is None and init_t["mode"] is None,
              "no worker serves them: no mode (not \"spawn\")", rec_t.get("mode"), init_t.get("mode"))
        check(rec_t["recycles"] >= recycles and init_t["initFailures"] >= failures,
              "their recycles and init failures are kept", rec_t, init_t)
        check(rec_t["warmProcesses"] == 0, "no warm process", rec_t)

        start(s)
        rec = wlib.run_job(c, "wsrec", {})
        check(rec["state"] == "completed", "a wsrec job completes on the new worker", rec.get("error"))
        wait_until(lambda: types(c)[0].get("mode") == "pool" and types(c)[0].get("recycles", 0) >= recycles + 1,
                   15, "the new worker's recycle to add to the %d of the one that left" % recycles)
        rec_t, init_t = types(c)
        log("back: wsrec %s, wsinit %s" % (rec_t, init_t))
        check(init_t["initFailures"] >= failures, "the init failures of the one that left still count", init_t)
        c.close()


if __name__ == "__main__":
    harness.main(main)

"""STATS names a warm type's mode from its worker's READY on.

A real broker (no Redis) and a real worker that runs type "wsready" in
pool mode (tests/worker/bots/warmbot.py under
workers/bots/python/forkserver.py --pool), both with a heartbeat interval
of 5 s, so that the worker's first HEARTBEAT comes seconds after its READY.
The first STATS that lists the worker already says mode "pool" (its READY
carries its warm bots, protocol.md section 5).  Before, the mode came only
with the worker's first HEARTBEAT: "the first STATS that lists the worker
says pool" failed with "spawn" (and warmProcesses 0) while the worker ran
its jobs in pool mode.
"""
import os
import time

import harness
import wlib
from harness import check, log

SERVER = os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py")
WARMBOT = os.path.join(wlib.HERE, "bots", "warmbot.py")
HEARTBEAT_MS = "5000"       # the first HEARTBEAT comes 5 s after the READY


def main():
    with harness.Stack("worker-e2e-warm-stats-ready") as s:
        s.broker(redis=False, env={"HEARTBEAT_INTERVAL_MS": HEARTBEAT_MS})
        c = s.client()
        env = {"BOT_WSREADY_CMD": "%s %s --pool %s" % (wlib.PY, SERVER, WARMBOT), "BOT_WSREADY_MODE": "pool",
               "BOT_WSREADY_MAX_PROCS": "1", "HEARTBEAT_INTERVAL_MS": HEARTBEAT_MS}
        s.worker("--type", "wsready", "--name", "wready", env=env)
        started = time.monotonic()
        deadline = started + 15
        first = None
        while first is None:
            stats = c.stats()
            if any(w["name"] == "wready" for w in stats["workers"]):
                first = stats["types"].get("wsready", {})
                break
            check(time.monotonic() < deadline, "the worker registers within 15 s")
            time.sleep(0.005)   # a poll, not a synchronisation: each STATS is checked
        log("first STATS listing the worker (%.2f s after its start): %s" % (time.monotonic() - started, first))
        check(first.get("mode") == "pool", "the first STATS that lists the worker says pool", first.get("mode"))
        rec = wlib.run_job(c, "wsready", {})
        check(rec["state"] == "completed", "a wsready job completes", rec.get("error"))
        mode = c.stats()["types"]["wsready"]["mode"]
        check(mode == "pool", "still pool after a job", mode)
        c.close()


if __name__ == "__main__":
    harness.main(main)

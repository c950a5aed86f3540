"""A worker takes no more jobs than its warm bots can run: when every type it
serves runs in pool or fork mode, its credit is at most the sum of their
BOT_<TYPE>_MAX_PROCS, with one WARN line at start naming the clamp; with
spawn types besides, the credit stays, and one WARN line names the warm type
whose MAX_PROCS is below it.

A real broker (no Redis), real workers and a pool bot written by hand that
sleeps the payload's "ms".  Type "one" has MAX_PROCS=1 under --concurrency 3:
two jobs of 1.5 s, then a job of no time with timeoutMs 2000.  The third job
completes: it stays queued at the broker until the process is free, its
timeout counted from its dispatch.  The broker's STATS give the worker credit
1.  A second worker serving a pool type with MAX_PROCS=1 and a spawn type
under --concurrency 3 keeps credit 3 and names BOT_HALF_MAX_PROCS=1, saying
that a job of it past that waits in the worker, counted as running, and
what to do: raise BOT_HALF_MAX_PROCS to 3, or a worker of its own.  It
also has WORKER_PREFETCH=2, which it ignores: one WARN line names the spawn
type and the warm one and says what to run instead (a worker with --type
half and WORKER_PREFETCH=2, another with --type spawned); and
BOT_HALF_READY_TIMEOUT_MS=0: its start line for half says "no ready
deadline" (the first worker's, with the default, does not).  A third worker
whose only type runs in spawn mode, with WORKER_PREFETCH=1, says in its WARN
that every type it serves runs in spawn mode.  A fourth, a pool type with
MAX_PROCS=1 and no --concurrency (the default credit, the type's
MAX_<TYPE>_BOTS), logs the clamp as an INFO line: nothing was asked that
it did not do.

Before, the worker took all three jobs and held the third waiting for the
process while its timeout ran: it failed with timeout without ever running
(the worker announced credit 3, no WARN).  And the mixed worker's WARN
said its jobs "may wait", advising "a credit no larger", not raising
MAX_PROCS.  Before, the WARN for the ignored prefetch named no type ("this
worker serves spawn types too ... serve the warm types from a worker of
their own"), the same for a worker with no warm type at all, and the start
line of a type with no ready deadline did not say so.
"""
import os

import harness
from harness import check
import wlib

SLEEPBOT = """import json, sys, time
sys.stdout.write('{"ready": true}\\n')
sys.stdout.flush()
for line in sys.stdin:
    frame = json.loads(line)
    time.sleep(frame["payload"].get("ms", 0) / 1000.0)
    sys.stdout.write(json.dumps({"result": {"slept": frame["payload"].get("ms", 0)},
                                 "job": frame["job"]}) + "\\n")
    sys.stdout.flush()
"""


def main():
    bots = harness.tempdir("warm-credit-")
    bot = os.path.join(bots, "sleepbot.py")
    with open(bot, "w") as f:
        f.write(SLEEPBOT)
    cmd = "%s %s" % (wlib.PY, bot)
    with harness.Stack("worker-e2e-warm-credit") as s:
        s.broker(redis=False)
        w = s.worker("--type", "one", "--concurrency", "3", name="worker-one",
                     env={"BOT_ONE_CMD": cmd, "BOT_ONE_MODE": "pool", "BOT_ONE_MAX_PROCS": "1"})
        s.wait_workers(1, "one")
        c = s.client()
        workers = [x for x in c.stats()["workers"] if "one" in x["types"]]
        check(len(workers) == 1 and workers[0]["credit"] == 1,
              "the broker gives the worker of type one credit 1 (its MAX_PROCS), not 3", workers)
        lines = [l for l in w.output().splitlines() if " WARN " in l and "credit" in l]
        check(len(lines) == 1 and "credit 1 instead of 3 (--concurrency)" in lines[0]
              and "BOT_ONE_MAX_PROCS=1" in lines[0],
              "one WARN line names the clamp and the variable behind it", lines, w.output()[-2000:])

        first = c.submit("one", {"ms": 1500}, attempts=1)
        second = c.submit("one", {"ms": 1500}, attempts=1)
        third = c.submit("one", {"ms": 0}, attempts=1, timeoutMs=2000)
        rec = c.wait(third, timeout=30)
        check(rec["state"] == "completed",
              "the short job behind two 1.5 s jobs on the one process completes (timeoutMs 2000 "
              "counted from its dispatch, not from a wait in the worker)", rec)
        for job_id in (first, second):
            other = c.wait(job_id, timeout=30)
            check(other["state"] == "completed", "the 1.5 s jobs complete", other)

        mixed = s.worker("--type", "half,spawned", "--concurrency", "3", name="worker-mixed",
                         env={"BOT_HALF_CMD": cmd, "BOT_HALF_MODE": "pool", "BOT_HALF_MAX_PROCS": "1",
                              "BOT_HALF_READY_TIMEOUT_MS": "0", "WORKER_PREFETCH": "2",
                              "BOT_SPAWNED_CMD": "/bin/true"})
        s.wait_workers(1, "half")
        workers = [x for x in c.stats()["workers"] if "half" in x["types"]]
        check(len(workers) == 1 and workers[0]["credit"] == 3,
              "a worker with a spawn type besides keeps its credit 3", workers)
        lines = [l for l in mixed.output().splitlines() if " WARN " in l and "credit" in l]
        check(len(lines) == 1 and "BOT_HALF_MAX_PROCS=1" in lines[0]
              and "credit of 3 (--concurrency)" in lines[0],
              "one WARN line names the warm type below the credit", lines, mixed.output()[-2000:])
        check("a job of a warm type past its MAX_PROCS waits in this worker for a process" in lines[0]
              and "counted as running" in lines[0],
              "the WARN says a job past the warm type's processes waits in the worker, counted "
              "as running", lines[0])
        check("raise BOT_HALF_MAX_PROCS to 3, or serve the warm types from a worker of their own"
              in lines[0], "the WARN says what to do: raise MAX_PROCS to the credit, or a worker "
              "of their own for the warm types", lines[0])

        lines = [l for l in mixed.output().splitlines() if " WARN " in l and "WORKER_PREFETCH" in l]
        check(len(lines) == 1 and "WORKER_PREFETCH=2 ignored" in lines[0],
              "one WARN line says WORKER_PREFETCH=2 is ignored", lines, mixed.output()[-2000:])
        check("spawn types (spawned) besides warm ones (half)" in lines[0],
              "the WARN names the spawn type and the warm one", lines[0])
        check("run a worker with --type half and WORKER_PREFETCH=2, and another with --type spawned"
              in lines[0], "the WARN says what to run to prefetch for the warm type", lines[0])
        lines = [l for l in mixed.output().splitlines() if "half bots in pool mode" in l]
        check(len(lines) == 1 and " INFO " in lines[0]
              and "no ready deadline (BOT_HALF_READY_TIMEOUT_MS=0)" in lines[0],
              "the start line of half says it has no ready deadline", lines, mixed.output()[-2000:])
        lines = [l for l in w.output().splitlines() if "one bots in pool mode" in l]
        check(len(lines) == 1 and "ready deadline" not in lines[0],
              "with the default READY_TIMEOUT_MS the start line says nothing of it", lines)

        spawn_only = s.worker("--type", "spawnonly", "--concurrency", "1", name="worker-spawn",
                              env={"BOT_SPAWNONLY_CMD": "/bin/true", "WORKER_PREFETCH": "1"})
        s.wait_workers(1, "spawnonly")
        lines = [l for l in spawn_only.output().splitlines() if " WARN " in l and "WORKER_PREFETCH" in l]
        check(len(lines) == 1 and "WORKER_PREFETCH=1 ignored: every type this worker serves "
              "(spawnonly) runs in spawn mode" in lines[0],
              "a worker with no warm type says its types all run in spawn mode", lines,
              spawn_only.output()[-2000:])

        dflt = s.worker("--type", "dflt", name="worker-dflt",
                        env={"BOT_DFLT_CMD": cmd, "BOT_DFLT_MODE": "pool", "BOT_DFLT_MAX_PROCS": "1"})
        s.wait_workers(1, "dflt")
        out = dflt.output()
        lines = [l for l in out.splitlines() if "credit 1 instead of" in l]
        check(len(lines) == 1 and " INFO " in lines[0] and "the sum of MAX_<TYPE>_BOTS" in lines[0],
              "with the default credit, the clamp to MAX_PROCS is an INFO line, not a WARN",
              lines, out[-2000:])
        c.close()
        check(w.alive() and mixed.alive() and spawn_only.alive() and dflt.alive(),
              "workers still running")


if __name__ == "__main__":
    harness.main(main)

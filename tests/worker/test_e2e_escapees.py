"""Spawn and pool modes: processes that leave a job's process group (a
`sleep 302` started with start_new_session=True, a double-forked `sleep
303` daemon) do not outlive their run, end to end with the real broker (no
Redis), a real worker and tests/worker/bots/warmbot.py.

- spawn mode, where the worker makes a per-run pids cgroup (the default
  BOT_<TYPE>_MAX_PIDS): both are
  killed when the job completes, when it times out and when it is
  cancelled (the cgroup is emptied before it is removed), and when the
  worker shuts down (SIGTERM) with the job still running;
- pool mode: they live on after the job (they are the pool process's
  business) and are killed with the process's cgroup when the process is
  stopped for a timeout, and when it is killed with -9 from outside.
Where the worker cannot make a cgroup (it logs that MAX_PIDS is not
enforced), or for a type with BOT_<TYPE>_MAX_PIDS=0 (no cgroup: the
control), only the process group is killed and the escapees live on
(docs/bots.md); the test kills what survives.
"""
import json
import os
import signal
import time

import harness
from harness import CANCEL, check, log, wait_until
import wlib

ROOT = harness.ROOT
WARMBOT = os.path.join(ROOT, "tests/worker/bots/warmbot.py")
SERVER = os.path.join(ROOT, "workers/bots/python/forkserver.py")
KEYS = ("sessionPid", "daemonPid")
ESCAPE = {"session": True, "daemon": True}


def gone(pid):
    return not wlib.alive(pid)


def check_gone(pids, what):
    for key in KEYS:
        pid = pids[key]
        wait_until(lambda: gone(pid), 10, "%s: the job's %s (pid %d, out of its process group) to be killed"
                   % (what, key, pid))


def read_pids(path, what):
    wait_until(lambda: os.path.exists(path), 15, "%s: the bot to write its escapees' pids" % what)
    with open(path) as f:
        pids = json.load(f)
    for key in KEYS:
        check(not gone(pids[key]), "%s: %s is running while the job runs" % (what, key), pids)
    return pids


def wait_progress(c, job_id, what):
    wait_until(lambda: (c.status(job_id) or {}).get("progress", 0) >= 10, 15, what)


def kill_all(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def main():
    tmp = harness.tempdir("bm-escapees-")
    survivors = []
    try:
        run(tmp, survivors)
    finally:
        kill_all(survivors)


def run(tmp, survivors):
    with harness.Stack("worker-e2e-escapees") as s:
        s.broker(redis=False)
        env = {"BOT_ESC_CMD": "/usr/bin/python3 %s" % WARMBOT, "BOT_ESC_MODE": "spawn",
               "BOT_NOCG_CMD": "/usr/bin/python3 %s" % WARMBOT, "BOT_NOCG_MAX_PIDS": "0",
               "BOT_ESCPOOL_CMD": "/usr/bin/python3 %s --pool %s" % (SERVER, WARMBOT),
               "BOT_ESCPOOL_MODE": "pool", "BOT_ESCPOOL_MIN_PROCS": "1", "BOT_ESCPOOL_MAX_PROCS": "1",
               "BOT_KILL_GRACE_MS": "500", "WORKER_GRACE_MS": "500"}
        w = s.worker("--type", "esc,nocg,escpool", "--concurrency", "2", env=env)
        s.wait_workers(1)
        c = s.client()
        cgroup = "MAX_PIDS is not enforced" not in w.output()

        # Spawn mode, the job completes.
        rec = wlib.run_job(c, "esc", ESCAPE)
        check(rec["state"] == "completed", "spawn: a job that starts a setsid sleep and a daemon completes", rec)
        pids = {key: rec["result"][key] for key in KEYS}
        if not cgroup:
            survivors.extend(pids.values())
            log("no per-run cgroup here (MAX_PIDS not enforced): escapees are not killed; rest skipped")
            return
        check_gone(pids, "spawn, completed")
        # The control: a type with no MAX_PIDS gets no cgroup, and only the
        # job's process group is killed (docs/bots.md).
        rec = wlib.run_job(c, "nocg", ESCAPE)
        check(rec["state"] == "completed", "spawn without a cgroup: the job completes", rec)
        control = {key: rec["result"][key] for key in KEYS}
        survivors.extend(control.values())

        # Spawn mode, the job times out while its escapees run.
        path = os.path.join(tmp, "timeout.json")
        job = c.submit("esc", dict(ESCAPE, sleepMs=60000, extraFile=path), timeoutMs=3000, attempts=1)
        pids = read_pids(path, "spawn, timeout")
        rec = c.wait(job, timeout=20)
        check(rec["state"] == "failed" and (rec.get("error") or {}).get("code") == "timeout",
              "spawn: the job times out", rec)
        check_gone(pids, "spawn, timeout")
        for key in KEYS:
            check(not gone(control[key]), "spawn without a cgroup: %s is still running 3 s after its job"
                  % key, control)
        kill_all(control.values())

        # Spawn mode, the job is cancelled.
        path = os.path.join(tmp, "cancel.json")
        job = c.submit("esc", dict(ESCAPE, sleepMs=60000, extraFile=path))
        wait_progress(c, job, "spawn: the job to cancel to start")
        pids = read_pids(path, "spawn, cancel")
        c.request(CANCEL, {"jobId": job})
        rec = c.wait(job, timeout=20)
        check(rec["state"] == "cancelled", "spawn: the job is cancelled", rec)
        check_gone(pids, "spawn, cancel")

        # Pool mode: escapees outlive the job, not the process's cgroup.
        rec = wlib.run_job(c, "escpool", ESCAPE)
        check(rec["state"] == "completed", "pool: a job that starts a setsid sleep and a daemon completes", rec)
        pids = {key: rec["result"][key] for key in KEYS}
        survivors.extend(pids.values())
        for key in KEYS:
            check(not gone(pids[key]), "pool: %s lives on after the job (its process runs on)" % key)
        rec = wlib.run_job(c, "escpool", {"sleepMs": 60000}, timeoutMs=1000, attempts=1)
        check(rec["state"] == "failed" and (rec.get("error") or {}).get("code") == "timeout",
              "pool: a later job on that process times out (the process is stopped)", rec)
        check_gone(pids, "pool, process stopped for a timeout")

        rec = wlib.run_job(c, "escpool", ESCAPE)
        check(rec["state"] == "completed", "pool: the replacement process runs a job with escapees", rec)
        pids = {key: rec["result"][key] for key in KEYS}
        survivors.extend(pids.values())
        os.kill(rec["result"]["pid"], signal.SIGKILL)
        check_gone(pids, "pool, process killed with -9")
        check(wlib.run_job(c, "escpool", {})["state"] == "completed", "pool: the next job completes")

        # Worker shutdown with a spawned job (and its escapees) running.
        path = os.path.join(tmp, "shutdown.json")
        job = c.submit("esc", dict(ESCAPE, sleepMs=60000, extraFile=path))
        pids = read_pids(path, "spawn, worker shutdown")
        survivors.extend(pids.values())
        started = time.monotonic()
        check(w.stop() == 0, "the worker exits 0 on SIGTERM")
        check_gone(pids, "spawn, worker shutdown")
        log("worker stopped in %.1f s" % (time.monotonic() - started))
        c.close()
        log("ok")


if __name__ == "__main__":
    harness.main(main)

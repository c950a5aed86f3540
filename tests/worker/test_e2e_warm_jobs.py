"""Pool and fork modes: what a job leaves behind and what its answer may
be, end to end with the real broker (no Redis), a real worker and
tests/worker/bots/warmbot.py under workers/bots/python/forkserver.py.

- fork mode: the processes a job starts (os.fork children, a Popen'd
  `sleep 301`, and those that left its process group: a sleep started
  with start_new_session=True, a daemonised one) end with the job; under BOT_<TYPE>_MAX_PIDS=10 a job that
  forked 6 sleepers does not make the next job that forks 3 fail on pids;
  a child that crashes while a process it forked lives fails its job at
  once;
- fork and pool mode: a child's sys.stdin and sys.stdout have a .buffer as
  in spawn mode; binary output that is JSON completes, output that is not
  UTF-8 fails with bad_output;
- pool mode: an answer frame with no known key ({"results": ...}) fails
  its job with bad_output naming the key, at once (not at the timeout);
- pool mode: a job whose output is over BOT_OUTPUT_MAX_BYTES fails with
  bad_output and its process is replaced (bot_recycles_total reason
  "output"); the next job runs in another process.
"""
import os
import time

import harness
from harness import check, log, wait_until
import wlib

ROOT = harness.ROOT
WARMBOT = os.path.join(ROOT, "tests/worker/bots/warmbot.py")
SERVER = os.path.join(ROOT, "workers/bots/python/forkserver.py")
TYPO = """echo '{"ready": true}'
while read -r frame; do
    echo '{"results": {"ok": true}, "note": 1}'
done
"""


def gone(pid):
    return not wlib.alive(pid)


def main():
    typo = os.path.join(harness.tempdir("bm-typo-"), "typo.sh")
    with open(typo, "w") as f:
        f.write(TYPO)
    with harness.Stack("worker-e2e-warm-jobs") as s:
        s.broker(redis=False)
        env = {"BOT_FKIDS_CMD": "/usr/bin/python3 %s %s" % (SERVER, WARMBOT),
               "BOT_FKIDS_MODE": "fork", "BOT_FKIDS_MAX_PROCS": "1", "BOT_FKIDS_MAX_PIDS": "10",
               "BOT_WARM_CMD": "/usr/bin/python3 %s --pool %s" % (SERVER, WARMBOT),
               "BOT_WARM_MODE": "pool", "BOT_WARM_MIN_PROCS": "1", "BOT_WARM_MAX_PROCS": "1",
               "BOT_TYPO_CMD": "/bin/sh %s" % typo, "BOT_TYPO_MODE": "pool",
               "BOT_TYPO_MAX_PROCS": "1",
               "BOT_OUTPUT_MAX_BYTES": "100000",
               "BOT_KILL_GRACE_MS": "500", "WORKER_METRICS_PORT": "-1"}
        w = s.worker("--type", "fkids,warm,typo", "--concurrency", "3", env=env)
        port = w.listening("metrics")
        s.wait_workers(1)
        c = s.client()
        enforced = "MAX_PIDS is not enforced" not in w.output()

        # 1. Fork mode: a job's processes end with it.
        rec = wlib.run_job(c, "fkids", {"forkKids": 6, "kidSleep": 5})
        check(rec["state"] == "completed", "fork: a job that forks 6 sleepers completes", rec)
        started = time.monotonic()
        rec = wlib.run_job(c, "fkids", {"forkKids": 3, "kidSleep": 0})
        check(rec["state"] == "completed",
              "fork: the next job forks 3 under MAX_PIDS=10 (the 6 sleepers went with their job)"
              + ("" if enforced else " [MAX_PIDS not enforced here]"), rec)
        check(time.monotonic() - started < 4.5, "fork: and did not wait for the sleepers")
        rec = wlib.run_job(c, "fkids", {"popen": True})
        check(rec["state"] == "completed", "fork: a job that Popens sleep 301 completes", rec)
        sleeper = rec["result"]["popenPid"]
        wait_until(lambda: gone(sleeper), 10, "the job's sleep 301 (pid %d) is killed with its job" % sleeper)
        # Processes that left the job's process group go too: one started
        # in a session of its own, one daemonised (its parent gone at once).
        rec = wlib.run_job(c, "fkids", {"session": True, "daemon": True})
        check(rec["state"] == "completed", "fork: a job that starts a setsid sleep and a daemon completes", rec)
        for key in ("sessionPid", "daemonPid"):
            pid = rec["result"][key]
            wait_until(lambda: gone(pid), 10, "the job's %s (pid %d, out of its process group) to be killed "
                       "with its job" % (key, pid))
        check(wlib.run_job(c, "fkids", {})["state"] == "completed", "fork: the next job completes")
        # A child that crashes while a process it forked holds on: its job
        # fails at once (the server does not wait for that process).
        started = time.monotonic()
        rec = wlib.run_job(c, "fkids", {"forkKids": 1, "kidSleep": 60, "crash": "SIGSEGV"}, timeoutMs=20000,
                           attempts=1)
        err = rec.get("error") or {}
        check(rec["state"] == "failed" and err.get("code") == "bot_failed"
              and "SIGSEGV" in err.get("message", ""),
              "fork: a child that crashes with a forked sleeper alive fails bot_failed", rec)
        check(time.monotonic() - started < 10, "fork: at once, not at its 20 s timeout",
              time.monotonic() - started)
        check(wlib.run_job(c, "fkids", {})["state"] == "completed", "fork: the next job completes")

        # 3. A .buffer on stdin and stdout, in fork and pool mode.
        for bot_type in ("fkids", "warm"):
            rec = wlib.run_job(c, bot_type, {"binary": b'{"bin": "\xc3\x9f"}\n'.hex()})
            check(rec["state"] == "completed" and rec["result"] == {"bin": "\u00df"},
                  "%s: sys.stdout.buffer.write of JSON completes" % bot_type, rec)
            rec = wlib.run_job(c, bot_type, {"binary": b'{"bin": "\xff"}\n'.hex()})
            err = rec.get("error") or {}
            check(rec["state"] == "failed" and err.get("code") == "bad_output"
                  and "not UTF-8" in err.get("message", ""),
                  "%s: output that is not UTF-8 fails with bad_output" % bot_type, rec)

        # 2. An answer with no known key fails at once, naming it.
        started = time.monotonic()
        rec = wlib.run_job(c, "typo", {}, timeoutMs=20000)
        err = rec.get("error") or {}
        check(rec["state"] == "failed" and err.get("code") == "bad_output"
              and '"results"' in err.get("message", "") and '"result"' in err.get("message", ""),
              "typo: {\"results\": ...} fails with bad_output naming the keys", rec)
        check(time.monotonic() - started < 10, "typo: at once, not at its 20 s timeout")
        check("unknown keys" in w.output(), "typo: the worker logs it")

        # 4. Pool mode: output over the cap replaces the process.
        first = wlib.run_job(c, "warm", {})
        check(first["state"] == "completed", "warm: a job completes", first)
        rec = wlib.run_job(c, "warm", {"bigBytes": 150000})
        err = rec.get("error") or {}
        check(rec["state"] == "failed" and err.get("code") == "bad_output"
              and "more than 100000 bytes" in err.get("message", ""),
              "warm: output over the cap fails with bad_output", rec)
        after = wlib.run_job(c, "warm", {})
        check(after["state"] == "completed" and after["result"]["pid"] != first["result"]["pid"],
              "warm: the next job runs in a new process (the one over the cap was killed)",
              first["result"]["pid"], after)
        check(gone(first["result"]["pid"]), "warm: the old process is gone")
        # The pool exports its counters at its tick, not as a process retires.
        wait_until(lambda: wlib.metric(port, "bot_recycles_total", bot_type="warm", reason="output") >= 1,
                   10, "bot_recycles_total{reason=\"output\"} to count it")
        check(w.alive(), "worker still running")
        log("ok")


if __name__ == "__main__":
    harness.main(main)

"""Pool and fork modes: what must hold in every mode, end to end with the
real broker (no Redis), a real worker and tests/worker/bots/warmbot.py run
under workers/bots/python/forkserver.py.

- state: a pooled process keeps module state across jobs (documented), a
  forked child never does; os.environ changes never reach the next job;
- a bot that leaks memory is recycled at BOT_<TYPE>_MAX_RSS_MB;
- kill -9 of a pool process mid-job: the worker hands the job back as a
  lost attempt (RELEASE lost), it runs again as attempt 2 (BOT_ATTEMPT and
  the broker's attempts agree) and the pool refills; on the job's last
  allowed dispatch (maxAttempts 1) it fails worker_lost, the message naming
  the signal and that it came from outside the worker (RELEASE signal);
- a bot that kills itself with a crash signal (SIGSEGV, SIGABRT) in pool or
  fork mode fails its job as in spawn mode: one run, bot_failed naming the
  signal with the stderr tail; attempts 2 runs it twice; the pool refills;
- timeout and cancel of a pooled job kill only that job's process; in fork
  mode only that job's child (the fork server lives on);
- a bot that crashes while loading: its jobs fail with bot_init_failed and
  the load error, never more than MAX_PROCS processes, restarts back off;
- the worker's GET /metrics (WORKER_METRICS_PORT) shows bot_processes,
  bot_recycles_total{reason} (killed: stopped by the worker; died: on its
  own) and bot_init_failures_total.
"""
import os
import time

import harness
from harness import CANCEL, check, log, wait_until
import wlib

ROOT = harness.ROOT
WARMBOT = os.path.join(ROOT, "tests/worker/bots/warmbot.py")
SERVER = os.path.join(ROOT, "workers/bots/python/forkserver.py")


def pool_pids(worker_pid, bot_type):
    """Live processes the worker runs for bot_type (their BOT_TYPE)."""
    out = []
    for pid in wlib.children(worker_pid):
        try:
            with open("/proc/%d/environ" % pid, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if ("BOT_TYPE=%s" % bot_type).encode() in env and wlib.alive(pid):
            out.append(pid)
    return sorted(out)


def wait_progress(c, job_id, what):
    wait_until(lambda: (c.status(job_id) or {}).get("progress", 0) >= 10, 15, what)


def main():
    with harness.Stack("worker-e2e-warm-pool") as s:
        s.broker(redis=False)
        env = {"BOT_WARM_CMD": "/usr/bin/python3 %s --pool %s" % (SERVER, WARMBOT),
               "BOT_WARM_MODE": "pool", "BOT_WARM_MIN_PROCS": "2", "BOT_WARM_MAX_PROCS": "2",
               "BOT_FORKED_CMD": "/usr/bin/python3 %s %s" % (SERVER, WARMBOT),
               "BOT_FORKED_MODE": "fork", "BOT_FORKED_MAX_PROCS": "1",
               "BOT_PRIMED_CMD": "/usr/bin/python3 %s %s" % (SERVER, WARMBOT),
               "BOT_PRIMED_MODE": "fork", "BOT_PRIMED_MAX_PROCS": "1",
               "BOT_PRIMED_FORK_WARMUP": '{"sleepMs": 1}',
               "BOT_LEAK_CMD": "/usr/bin/python3 %s --pool %s" % (SERVER, WARMBOT),
               "BOT_LEAK_MODE": "pool", "BOT_LEAK_MAX_PROCS": "1", "BOT_LEAK_MAX_RSS_MB": "100",
               "BOT_KILL_GRACE_MS": "500", "WORKER_METRICS_PORT": "-1"}
        w = s.worker("--type", "warm,forked,primed,leak", "--concurrency", "4", env=env)
        port = w.listening("metrics")
        s.wait_workers(1)
        c = s.client()
        wait_until(lambda: len(pool_pids(w.pid, "warm")) == 2, 15, "MIN_PROCS=2 warm processes")

        # State: pool keeps module state, fork never; the environment never leaks.
        first = wlib.run_job(c, "warm", {"setEnv": True})["result"]
        seen = [first]
        for _ in range(3):
            seen.append(wlib.run_job(c, "warm", {})["result"])
        by_pid = {}
        for r in seen:
            by_pid.setdefault(r["pid"], []).append(r["jobs"])
        check(any(jobs[-1] >= 2 for jobs in by_pid.values()),
              "pool mode: a process counts the jobs it ran (module state persists)", by_pid)
        check(all(r["leakedEnv"] is None for r in seen),
              "pool mode: os.environ set by a job does not reach the next job", seen)
        forked = [wlib.run_job(c, "forked", {"setEnv": True})["result"] for _ in range(3)]
        check([r["jobs"] for r in forked] == [1, 1, 1], "fork mode: no state across jobs", forked)
        check(len({r["pid"] for r in forked}) == 3, "fork mode: a process per job", forked)
        check(all(r["leakedEnv"] is None for r in forked), "fork mode: no environment leak", forked)
        check(len({r["random"] for r in forked}) == 3,
              "fork mode: each child draws its own random numbers (the after-fork reseed ran)", forked)
        check(not any(r["warmedUp"] for r in forked), "fork mode: no warm-up run unless asked", forked)
        # BOT_<TYPE>_FORK_WARMUP: main() ran once in the server on that
        # payload before the first fork; every child starts from there.
        primed = [wlib.run_job(c, "primed", {})["result"] for _ in range(3)]
        check(all(r["warmedUp"] and r["jobs"] == 2 for r in primed),
              "FORK_WARMUP: each child inherits the server's warm-up run (its count 1, the job's 2)", primed)
        check(len({r["pid"] for r in primed}) == 3 and len({r["random"] for r in primed}) == 3,
              "FORK_WARMUP: still a process and a random draw of its own per job", primed)
        check(all(r["jobId"] != "warmup" and r["jobId"] for r in primed),
              "FORK_WARMUP: the job's own variables, not the warm-up's", primed)

        # A leaking bot is recycled at MAX_RSS_MB (100): it holds 40 MiB more per job.
        leak = [wlib.run_job(c, "leak", {"leakMb": 40})["result"] for _ in range(5)]
        log("leak: (pid, heldMb) per job:", [(r["pid"], r["heldMb"]) for r in leak])
        check(len({r["pid"] for r in leak}) >= 2, "the leaking process was replaced", leak)
        check(max(r["heldMb"] for r in leak) <= 120, "it never held much more than the limit", leak)
        wait_until(lambda: wlib.metric(port, "bot_recycles_total", bot_type="leak", reason="max_rss") >= 1,
                   5, "bot_recycles_total{reason=max_rss} on the worker's /metrics")

        # kill -9 of a pool process mid-job: attempt 2 on a new process; pool refills.
        pid_file = os.path.join(harness.tempdir("warm-kill-"), "pid")
        job = c.submit("warm", {"sleepMs": 1500, "pidFile": pid_file})
        wait_progress(c, job, "the job to start")
        target = int(open(pid_file).read())
        os.kill(target, 9)
        rec = c.wait(job, timeout=30)
        check(rec["state"] == "completed" and rec["result"]["pid"] != target,
              "the job completed on another process", rec)
        check(rec["state"] == "completed" and rec["result"]["attempt"] == 2,
              "kill -9 of the pool process mid-job -> the job ran again as attempt 2", rec)
        check(rec.get("attempts") == 2,
              "the broker's record counts that attempt too (attempts 2, as BOT_ATTEMPT said)", rec)
        wait_until(lambda: len(pool_pids(w.pid, "warm")) == 2, 15, "the pool to refill to 2")
        pid_file = os.path.join(harness.tempdir("warm-kill-last-"), "pid")
        job = c.submit("warm", {"sleepMs": 1500, "pidFile": pid_file}, maxAttempts=1)
        wait_progress(c, job, "the job with maxAttempts 1 to start")
        os.kill(int(open(pid_file).read()), 9)
        rec = c.wait(job, timeout=30)
        err = rec.get("error") or {}
        check(rec["state"] == "failed" and err.get("code") == "worker_lost",
              "kill -9 of the pool process on the last allowed dispatch -> worker_lost", rec)
        check(err.get("message") == "the bot process running the job was killed by signal 9 (SIGKILL) "
              "from outside the worker (kill -9, the OOM killer) on dispatch 1 of 1",
              "worker_lost names the signal and says the worker itself was fine", err)
        wait_until(lambda: len(pool_pids(w.pid, "warm")) == 2, 15, "the pool to refill to 2 again")

        # A crash of the bot's own making is the job's failure, not a lost
        # attempt: one run (attempts 1), bot_failed, signal and stderr tail.
        tmp = harness.tempdir("warm-crash-")
        for bot_type, sig, num, attempts in (("warm", "SIGSEGV", 11, 1), ("warm", "SIGABRT", 6, 2),
                                             ("forked", "SIGSEGV", 11, 1)):
            runs = os.path.join(tmp, "%s-%s-%d" % (bot_type, sig, attempts))
            rec = wlib.run_job(c, bot_type, {"crash": sig, "runLog": runs}, attempts=attempts,
                               backoff={"type": "fixed", "delayMs": 100})
            what = "%s mode, %s, attempts %d" % (bot_type, sig, attempts)
            err = rec.get("error") or {}
            check(rec["state"] == "failed" and err.get("code") == "bot_failed",
                  "%s: the job fails with bot_failed" % what, rec)
            check("killed by signal %s (%d)" % (sig, num) in err.get("message", ""),
                  "%s: the message names the signal" % what, err)
            check("report: about to crash" in err.get("message", ""),
                  "%s: the message holds the bot's stderr tail" % what, err)
            with open(runs) as f:
                count = len(f.read().split())
            check(count == attempts, "%s: the bot ran %d time(s), not retried as lost"
                  % (what, attempts), count)
            check(rec.get("attempts") == attempts, "%s: the record's attempts" % what, rec)
        wait_until(lambda: len(pool_pids(w.pid, "warm")) == 2, 15, "the pool to refill after the crashes")
        check(len(pool_pids(w.pid, "forked")) == 1, "the fork server survived its child's crash")
        check(wlib.run_job(c, "warm", {})["state"] == "completed", "the next pooled job completes")
        check(wlib.run_job(c, "forked", {})["state"] == "completed", "the next forked job completes")

        # Timeout and cancel of a pooled job kill only that job's process.
        slow = c.submit("warm", {"sleepMs": 4000})
        doomed = c.submit("warm", {"sleepMs": 60000}, timeoutMs=1500)
        rec = c.wait(doomed, timeout=20)
        check(rec["state"] == "failed" and rec["error"]["code"] == "timeout"
              and rec["error"]["message"] == "the job ran longer than its timeout of 1500 ms",
              "a pooled job past its timeout -> timeout, worded as in spawn mode", rec.get("error"))
        rec = c.wait(slow, timeout=20)
        check(rec["state"] == "completed", "the other pooled job ran on, untouched", rec)
        wait_until(lambda: len(pool_pids(w.pid, "warm")) == 2, 15, "the pool to refill after timeout")
        slow = c.submit("warm", {"sleepMs": 3000})
        victim = c.submit("warm", {"sleepMs": 60000})
        wait_progress(c, victim, "the job to cancel to start")
        c.request(CANCEL, {"jobId": victim})
        rec = c.wait(victim, timeout=20)
        check(rec["state"] == "cancelled", "a pooled job cancelled", rec)
        rec = c.wait(slow, timeout=20)
        check(rec["state"] == "completed", "the other pooled job survived the cancel", rec)

        # Fork mode: a timeout kills the job's child, not the fork server.
        server = pool_pids(w.pid, "forked")
        check(len(server) == 1, "one fork server", server)
        rec = wlib.run_job(c, "forked", {"sleepMs": 60000}, timeoutMs=1000)
        check(rec["state"] == "failed" and rec["error"]["code"] == "timeout",
              "fork mode: timeout", rec.get("error"))
        check(pool_pids(w.pid, "forked") == server, "the fork server lives on", server)
        check(wlib.run_job(c, "forked", {})["state"] == "completed", "and runs the next job")
        wait_until(lambda: wlib.metric(port, "bot_processes", bot_type="warm", mode="pool") == 2
                   and wlib.metric(port, "bot_processes", bot_type="forked", mode="fork") == 1,
                   10, "bot_processes on /metrics: 2 pooled warm processes, 1 fork server")
        check(wlib.metric(port, "bot_recycles_total", bot_type="warm", reason="killed") >= 2,
              "bot_recycles_total{reason=killed}: the processes the worker stopped (timeout, cancel)")
        check(wlib.metric(port, "bot_recycles_total", bot_type="warm", reason="died") >= 4,
              "bot_recycles_total{reason=died}: those that died on their own (kill -9, 3 crashes)")
        check("stopped by the worker for its job" in w.output(),
              "a pool process stopped for a timeout or cancel is logged as such")
        check("SIGTERM while running a job" not in w.output(),
              "and not as a WARN 'killed by signal SIGTERM while running a job'")
        c.close()
        check(w.alive(), "worker still running")

    # A bot that crashes while loading.
    with harness.Stack("worker-e2e-warm-init") as s:
        s.broker(redis=False)
        load_log = os.path.join(harness.tempdir("warm-init-"), "loads")
        env = {"BOT_CRASH_CMD": "/usr/bin/python3 %s --pool %s" % (SERVER, WARMBOT),
               "BOT_CRASH_MODE": "pool", "BOT_CRASH_MAX_PROCS": "2", "BOT_CRASH_MIN_PROCS": "1",
               "WARMBOT_CRASH_AT_LOAD": "1", "WARMBOT_LOAD_LOG": load_log,
               "WORKER_METRICS_PORT": "-1"}
        w = s.worker("--type", "crash", "--concurrency", "4", env=env)
        port = w.listening("metrics")
        s.wait_workers(1)
        c = s.client()
        ids = [c.submit("crash", {}) for _ in range(6)]
        most = 0
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            most = max(most, len(pool_pids(w.pid, "crash")))
            time.sleep(0.01)
        for job_id in ids:
            rec = c.wait(job_id, timeout=10)
            check(rec["state"] == "failed" and rec["error"]["code"] == "bot_init_failed"
                  and "cannot load the model" in rec["error"]["message"],
                  "a job of a bot that cannot load -> bot_init_failed with the load error",
                  rec.get("error"))
        check(most <= 2, "never more than MAX_PROCS=2 processes", most)
        with open(load_log) as f:
            starts = [float(line.split()[0]) for line in f]
        gaps = [round(b - a, 3) for a, b in zip(starts, starts[1:])]
        log("loads: %d, gaps (s): %s" % (len(starts), gaps))
        check(4 <= len(starts) <= 10, "a few restarts in 4 s, no spawn storm", len(starts))
        check(wlib.metric(port, "bot_init_failures_total", bot_type="crash") >= 4,
              "bot_init_failures_total on the worker's /metrics")
        check(gaps[-1] > 2 * gaps[0] and gaps[-1] >= 0.35, "restart intervals grow", gaps)
        c.close()
        check(w.alive(), "worker still running")


if __name__ == "__main__":
    harness.main(main)

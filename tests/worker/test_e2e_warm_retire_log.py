"""Every retirement of a pool process is one log line that says
"retired (<reason>, N jobs run)" ("1 job run"), the reason as the worker's
bot_recycles_total{reason} counts it.  A real broker (no Redis), a real
worker, and a working pool bot whose processes retire for every reason a
test can cause: idle past BOT_<TYPE>_IDLE_MS, a job that exits 3 (died),
a bad line on stdout (killed), a job past its timeout (killed), a death
while idle (died).  For every reason the metric equals the count of such
lines.

Before, only the retirements by max_jobs, max_rss, idle, limit and output
(and a stop that the bot answered) logged "retired (...)": a death, a
kill for a bad line or a process stopped for its job's timeout did not
(failed at "a retired (died) line: a process that exited 3 in its job").
A process retired after one job said "1 jobs run" (failed at "a retired
(idle) line: ... 1 job run").
"""
import os
import re

import harness
from harness import check, log, wait_until
import wlib

RETIRING = """import json, os, signal, sys, time
sys.stdout.write('{"ready": true}\\n')
sys.stdout.flush()
for line in sys.stdin:
    frame = json.loads(line)
    how = frame["payload"].get("how")
    if how == "die":
        sys.stderr.write("fatal: the disk is on fire\\n")
        sys.stderr.flush()
        os._exit(3)
    if how == "junk":
        sys.stdout.write("this is not JSON\\n")
        sys.stdout.flush()
        continue
    if how == "sleep":
        time.sleep(60)
    sys.stdout.write(json.dumps({"result": {"pid": os.getpid()}, "job": frame["job"]}) + "\\n")
    sys.stdout.flush()
    if how == "idle":
        time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGABRT)
"""

REASONS = ("max_jobs", "max_rss", "idle", "killed", "limit", "output", "died")


def write(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def scenario_retire(s, bots):
    bot = write(bots, "retiring.py", RETIRING)
    env = {"BOT_RT_CMD": "%s %s" % (wlib.PY, bot), "BOT_RT_MODE": "pool",
           "BOT_RT_MAX_PROCS": "1", "BOT_RT_MIN_PROCS": "0", "BOT_RT_IDLE_MS": "300",
           "WORKER_METRICS_PORT": "-1"}
    w = s.worker("--type", "rt", "--concurrency", "1", env=env)
    port = w.listening("metrics")
    s.wait_workers(1)
    c = s.client()

    def retired(reason):
        return [line for line in w.output().splitlines()
                if re.search(r"rt (pool )?process pid=\d+.* retired \(%s, (1 job|\d+ jobs) run\)" % reason, line)]

    def expect(reason, what, *words):
        line = wait_until(lambda: next((l for l in retired(reason) if all(x in l for x in words)),
                                       None), 10, "a retired (%s) line: %s" % (reason, what))
        log("%s: %s" % (what, line))

    check(wlib.run_job(c, "rt", {})["state"] == "completed", "a job completes")
    expect("idle", "its process idle past BOT_RT_IDLE_MS, after its one job", "(idle, 1 job run)")
    rec = wlib.run_job(c, "rt", {"how": "die"}, attempts=1)
    check(rec["state"] == "failed", "the job whose process exited 3 fails", rec)
    expect("died", "a process that exited 3 in its job", "exited with status 3 while running a job",
           "it wrote 27 bytes on stderr in the job")
    rec = wlib.run_job(c, "rt", {"how": "junk"}, attempts=1)
    check(rec["state"] == "failed" and rec["error"]["code"] == "bad_output",
          "the job whose bot wrote a line that is not JSON fails with bad_output", rec)
    expect("killed", "a process killed for a bad line", "not a JSON object")
    rec = wlib.run_job(c, "rt", {"how": "sleep"}, attempts=1, timeoutMs=1000)
    check(rec["state"] == "failed" and rec["error"]["code"] == "timeout", "a job past its timeout", rec)
    expect("killed", "a process stopped for its job's timeout", "stopped by the worker for its job")
    rec = wlib.run_job(c, "rt", {"how": "idle"}, attempts=1)
    check(rec["state"] == "completed", "the job answered before its process died completes", rec)
    expect("died", "a process that died while idle", "killed by signal SIGABRT while idle")
    for reason in REASONS:
        wait_until(lambda: wlib.metric(port, "bot_recycles_total", bot_type="rt", reason=reason)
                   == len(retired(reason)), 10,
                   "bot_recycles_total{reason=%s} equals the retired (%s, ...) lines (%d)"
                   % (reason, reason, len(retired(reason))))
    c.close()
    check(w.alive(), "worker still running")


def main():
    bots = harness.tempdir("warm-retire-log-")
    with harness.Stack("worker-e2e-warm-retire-log") as s:
        s.broker(redis=False)
        scenario_retire(s, bots)


if __name__ == "__main__":
    harness.main(main)

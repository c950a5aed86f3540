"""A pool's processes over their lives: starts that fail while others
serve, a process that never gets ready, a process the hard CPU limit
kills.  End to end with the real broker (no Redis), a real worker and real
pool bots (scripts below, speaking docs/bots.md's protocol).  One scenario
per run (the argument):

- ready: MIN_PROCS=MAX_PROCS=2, MAX_JOBS=1, a bot whose third load fails.
  After the first job its process retires and the replacement fails at
  init, while the other process sits ready: the next job runs on that one
  (it is not failed with bot_init_failed); once no process is ready, a job
  fails with bot_init_failed naming the load error;
- timeout: a bot that never writes its ready line, READY_TIMEOUT_MS=1000:
  the job waiting for it fails with bot_init_failed, and so does the next
  one, which waits for the next start and fails with its error (not
  spawn_failed), both naming the deadline and its variable;
- launch: two ready processes, then the bot's program is gone, so a
  process that replaces one cannot even be executed.  One process crashes
  under its job while the other is busy; a third job, queued at the broker
  until then (the worker's credit is its two processes), comes to the
  worker and waits: it is not failed, it runs on the busy process once
  that one is free;
- cpu: a pool bot that ignores SIGXCPU under CPU_SECONDS=1 is killed by
  the kernel's SIGKILL at its hard CPU limit, a second past its budget.
  Its job fails once with resource_limit (cpu), naming the CPU time used;
  it is not taken for a process killed from outside and run again as a
  lost attempt.  The worker sets that hard limit itself only where it may
  raise it again (CAP_SYS_RESOURCE), which a container often lacks: the
  bot lowers its own hard limit to the budget plus one second, as the
  worker would have set it, so the kernel's kill happens on any machine.
- cpu_fork: the same bot's main() under forkserver.py in fork mode (each
  job in a child of its own, whose hard limit the child sets itself from
  the job frame: the budget plus a second).  The server reports the
  child's death with the CPU time it used, and the job fails once with
  resource_limit (cpu), not bot_failed "killed by signal SIGKILL"; and
  so under BOT_<TYPE>_SANDBOX=bwrap too, where bubblewrap runs.
- cpu_watch: a pool bot that ignores SIGXCPU and leaves its hard limit
  alone, CPU_SECONDS=1, plain and under bwrap (where bubblewrap runs).
  Where the worker cannot raise a hard limit again (no CAP_SYS_RESOURCE:
  a container's root, a worker not root) it sets none, and checks the
  job's CPU time itself: the worker logs so at start, and kills the
  process past the budget plus a second of grace.  The job fails once
  with resource_limit (cpu), the message saying the worker killed it and
  the CPU time used, long before its 20 s timeout; the sandboxed one too
  (not bot_failed for bwrap's exit 137); the broker counts the kill
  (bot_limit_kills_total{limit="cpu"}), the process is replaced (recycle
  reason limit), and jobs that stay within the budget complete, two of
  700 ms of CPU on one process (the budget is per job), before and after.
  Where the hard limit does follow each job, the kernel kills the
  unsandboxed bot (resource_limit as well), and the sandboxed case is
  skipped (bwrap reports that kill as exit 137: bot_failed, documented).
"""
import os
import resource
import sys

import harness
from harness import check, log, wait_until
import wlib
from test_e2e_warm_sandbox import bwrap_works

PY = "/usr/bin/python3"
SERVER = os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py")

#  Loads twice (two mkdirs succeed), then every load fails.
FLAKY = """#!/bin/sh
if mkdir "$FLAKY_DIR/a" 2>/dev/null || mkdir "$FLAKY_DIR/b" 2>/dev/null; then
  echo '{"ready": true}'
  while read -r line; do echo "{\\"result\\": {\\"pid\\": $$}}"; done
else
  echo "flaky: cannot load the model (load 3)" >&2; exit 3
fi
"""

#  A spawn-mode bot: waits for end of file on stdin, never ready.
STUCK = """#!/bin/sh
echo "stuck: reading the payload until end of file" >&2
cat > /dev/null
"""

#  Payload: mark (a file written as the job starts), go (a file it waits
#  for), crash (then exit 1 instead of answering).
LAZY = """#!/usr/bin/python3
import json, os, sys, time
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    payload = json.loads(line).get("payload") or {}
    if payload.get("mark"):
        open(payload["mark"], "w").close()
    while payload.get("go") and not os.path.exists(payload["go"]):
        time.sleep(0.02)
    if payload.get("crash"):
        sys.stderr.write("lazy: crashing as asked\\n")
        sys.exit(1)
    print(json.dumps({"result": {"pid": os.getpid()}}), flush=True)
"""

#  Ignores SIGXCPU and spins; its hard RLIMIT_CPU a second above the soft
#  limit the worker set for the job (payload: runLog, a file it appends
#  its pid to).
SPIN = """import json, os, resource, signal, sys
signal.signal(signal.SIGXCPU, signal.SIG_IGN)
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    payload = json.loads(line).get("payload") or {}
    with open(payload["runLog"], "a") as f:
        f.write("%d\\n" % os.getpid())
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft + 1):
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))
    sys.stderr.write("spin: RLIMIT_CPU %s/%s, spinning past SIGXCPU\\n"
                     % resource.getrlimit(resource.RLIMIT_CPU))
    sys.stderr.flush()
    while True:
        pass
"""

#  A bot for forkserver.py: main() ignores SIGXCPU and spins (payload:
#  runLog, as SPIN's).
SPIN_MAIN = """import json, os, resource, signal, sys


def main():
    payload = json.load(sys.stdin)
    with open(payload["runLog"], "a") as f:
        f.write("%d\\n" % os.getpid())
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)
    sys.stderr.write("spin: RLIMIT_CPU %s/%s, spinning past SIGXCPU\\n"
                     % resource.getrlimit(resource.RLIMIT_CPU))
    sys.stderr.flush()
    while True:
        pass
"""


#  Ignores SIGXCPU and leaves its CPU limits as the worker set them.
#  Payload: runLog (a file it appends its pid to), spinMs (the CPU time of
#  its own to use, then it answers with a name of its process: under bwrap
#  every pool process has the same pid), or forever (spins until killed).
SPIN_FREE = """import json, os, signal, sys, time
signal.signal(signal.SIGXCPU, signal.SIG_IGN)
name = os.urandom(8).hex()
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    payload = json.loads(line).get("payload") or {}
    with open(payload["runLog"], "a") as f:
        f.write("%d\\n" % os.getpid())
    start = time.process_time()
    while payload.get("forever") or time.process_time() - start < payload["spinMs"] / 1000.0:
        pass
    print(json.dumps({"result": {"process": name}}), flush=True)
"""


def hard_limit_follows():
    """Whether this process may raise a hard limit it lowered (what the
    worker probes before it moves a pool process's hard RLIMIT_CPU)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            resource.setrlimit(resource.RLIMIT_CPU, (100000, 100000))
            resource.setrlimit(resource.RLIMIT_CPU, (100001, 100001))
            code = 0
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1] == 0


def write(directory, name, text, mode=0o644):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def lines(w, *words):
    return [line for line in w.output().splitlines() if all(word in line for word in words)]


def error_of(rec):
    return rec.get("error") or {}


def scenario_ready(s, bots):
    flaky = write(bots, "flaky.sh", FLAKY)
    env = {"BOT_FLAKY_CMD": "/bin/sh %s" % flaky, "BOT_FLAKY_MODE": "pool", "FLAKY_DIR": bots,
           "BOT_FLAKY_MIN_PROCS": "2", "BOT_FLAKY_MAX_PROCS": "2", "BOT_FLAKY_MAX_JOBS": "1"}
    w = s.worker("--type", "flaky", "--concurrency", "2", env=env)
    s.wait_workers(1)
    c = s.client()
    wait_until(lambda: len(lines(w, "flaky pool process", "ready")) == 2, 15, "two ready processes")
    first = wlib.run_job(c, "flaky", {}, attempts=1)
    check(first["state"] == "completed", "job 1 completes", first)
    wait_until(lambda: lines(w, "flaky process", "failed at init"), 15,
               "the replacement of job 1's process to fail at init")
    log("worker: %s" % lines(w, "failed at init")[0])
    second = wlib.run_job(c, "flaky", {}, attempts=1)
    check(second["state"] == "completed",
          "job 2, submitted after the failed start while the other process was ready, completes",
          second)
    check(second["state"] == "completed" and second["result"]["pid"] != first["result"]["pid"],
          "on the other process", first.get("result"), second.get("result"))
    wait_until(lambda: len(lines(w, "flaky pool process", "retired (max_jobs")) == 2, 15,
               "job 2's process to retire too")
    third = wlib.run_job(c, "flaky", {}, attempts=1)
    check(third["state"] == "failed" and error_of(third).get("code") == "bot_init_failed"
          and "cannot load the model" in error_of(third).get("message", ""),
          "job 3, with no process ready, fails with bot_init_failed naming the load error", third)
    c.close()
    check(w.alive(), "worker still running")


def scenario_timeout(s, bots):
    stuck = write(bots, "stuck.sh", STUCK)
    env = {"BOT_STUCK_CMD": "/bin/sh %s" % stuck, "BOT_STUCK_MODE": "pool",
           "BOT_STUCK_MAX_PROCS": "1", "BOT_STUCK_READY_TIMEOUT_MS": "1000"}
    w = s.worker("--type", "stuck", "--concurrency", "2", env=env)
    s.wait_workers(1)
    c = s.client()
    want = "did not get ready within BOT_STUCK_READY_TIMEOUT_MS=1000 ms"
    for n in (1, 2):
        rec = wlib.run_job(c, "stuck", {}, attempts=1)
        log("job %d: %s %s" % (n, rec["state"], error_of(rec)))
        check(rec["state"] == "failed" and error_of(rec).get("code") == "bot_init_failed",
              "job %d fails with bot_init_failed" % n, rec)
        check(want in error_of(rec).get("message", "")
              and "reading the payload until end of file" in error_of(rec).get("message", ""),
              "job %d's message names the deadline, its variable and the stderr tail" % n, rec)
        check("without flushing" in error_of(rec).get("message", ""),
              "job %d's message says a ready line not flushed is not written" % n, rec)
        if n == 1:
            check(lines(w, "WARN", "is not ready after 1000 ms"), "a WARN line says it was killed")
            check(lines(w, "WARN", "or not flushed"), "the WARN line hints at flushing")
    c.close()
    check(w.alive(), "worker still running")


def scenario_launch(s, bots):
    lazy = write(bots, "lazy.py", LAZY, 0o755)
    env = {"BOT_LAZY_CMD": lazy, "BOT_LAZY_MODE": "pool",
           "BOT_LAZY_MIN_PROCS": "2", "BOT_LAZY_MAX_PROCS": "2"}
    w = s.worker("--type", "lazy", "--concurrency", "4", env=env)
    s.wait_workers(1)
    c = s.client()
    wait_until(lambda: len(lines(w, "lazy pool process", "ready")) == 2, 15, "two ready processes")
    os.rename(lazy, lazy + ".gone")
    log("the bot's program is gone: a new process cannot be executed")
    mark = {n: os.path.join(bots, "started-%d" % n) for n in (1, 2)}
    go = {n: os.path.join(bots, "go-%d" % n) for n in (1, 2)}
    slow = c.submit("lazy", {"mark": mark[1], "go": go[1]}, attempts=1)
    doomed = c.submit("lazy", {"mark": mark[2], "go": go[2], "crash": True}, attempts=1)
    wait_until(lambda: os.path.exists(mark[1]) and os.path.exists(mark[2]), 15,
               "jobs 1 and 2 running, one on each process")
    #  Job 3 stays queued at the broker: the worker's credit is its two
    #  processes.  Job 2's end frees it, and job 3 comes to the worker
    #  while the process replacing job 2's cannot be started.
    waiting = c.submit("lazy", {}, attempts=1)
    open(go[2], "w").close()
    rec = c.wait(doomed, timeout=15)
    check(rec["state"] == "failed" and error_of(rec).get("code") == "bot_failed",
          "job 2's process exited under it: bot_failed", rec)
    wait_until(lambda: lines(w, "cannot start a process", "cannot execute"), 15,
               "the worker's attempt to replace it to fail")
    log("worker: %s" % lines(w, "cannot start a process")[0])
    wait_until(lambda: (c.status(waiting) or {}).get("state") != "queued", 15,
               "job 3 dispatched to the worker")
    rec = c.status(waiting)
    check(rec["state"] == "running",
          "job 3 waits at the worker: the busy process can take it (it is not failed)", rec)
    open(go[1], "w").close()
    first = c.wait(slow, timeout=15)
    check(first["state"] == "completed", "job 1 completes", first)
    rec = c.wait(waiting, timeout=15)
    check(rec["state"] == "completed" and rec["result"]["pid"] == first["result"]["pid"],
          "job 3 completes, on job 1's process", rec, first.get("result"))
    c.close()
    check(w.alive(), "worker still running")


def scenario_cpu(s, bots):
    spin = write(bots, "spin.py", SPIN)
    runs = os.path.join(bots, "runs")
    env = {"BOT_SPIN_CMD": "%s %s" % (PY, spin), "BOT_SPIN_MODE": "pool",
           "BOT_SPIN_MAX_PROCS": "1", "BOT_SPIN_CPU_SECONDS": "1", "WORKER_METRICS_PORT": "-1"}
    w = s.worker("--type", "spin", "--concurrency", "2", env=env)
    port = w.listening("metrics")
    s.wait_workers(1)
    c = s.client()
    rec = wlib.run_job(c, "spin", {"runLog": runs}, timeout=90, timeoutMs=60000)
    err = error_of(rec)
    log("job: %s attempts=%s %s" % (rec["state"], rec.get("attempts"), err))
    log("worker: %s" % lines(w, "spin process", "while running a job"))
    with open(runs) as f:
        count = len(f.read().split())
    check(count == 1, "the bot ran once: its kill was not taken for a lost attempt", count)
    check(rec["state"] == "failed" and err.get("code") == "resource_limit"
          and err.get("message", "").startswith("resource limit hit: cpu (CPU time limit of 1 s)"),
          "the job fails with resource_limit, naming cpu and its limit", rec)
    check("killed by SIGKILL with" in err.get("message", ""), "and the CPU time it used", err)
    check(not lines(w, "lost attempt"), "the worker handed nothing back as lost",
          lines(w, "lost attempt"))
    wait_until(lambda: wlib.metric(port, "bot_recycles_total", bot_type="spin", reason="limit") == 1,
               5, "bot_recycles_total{reason=limit} 1 on the worker's /metrics")
    c.close()
    check(w.alive(), "worker still running")


def scenario_cpu_fork(s, bots):
    spin = write(bots, "spin_main.py", SPIN_MAIN)
    runs = os.path.join(bots, "runs")
    env = {"BOT_SPIN_CMD": "%s %s %s" % (PY, SERVER, spin), "BOT_SPIN_MODE": "fork",
           "BOT_SPIN_CPU_SECONDS": "1"}
    why = bwrap_works()
    if not why:
        #  The same under bwrap: the server reads its child's CPU time in
        #  the sandbox's pid namespace (runLog in the sandbox's own /tmp).
        #  The server and the bot are copies everyone may read: a root
        #  worker runs sandboxed bots as nobody, and a CI clone lies under
        #  a 0700 directory.
        boxed = "%s %s %s" % (PY, wlib.readable_by_all(SERVER), wlib.readable_by_all(spin))
        env.update({"BOT_SPINBX_CMD": boxed, "BOT_SPINBX_MODE": "fork",
                    "BOT_SPINBX_CPU_SECONDS": "1", "BOT_SPINBX_SANDBOX": "bwrap"})
    w = s.worker("--type", "spin,spinbx" if not why else "spin", "--concurrency", "2", env=env)
    s.wait_workers(1)
    c = s.client()
    for bot_type, run_log in (("spin", runs), ("spinbx", "/tmp/runs")):
        if bot_type == "spinbx" and why:
            log("SKIP the sandboxed case: bubblewrap cannot run here: %s" % why)
            continue
        for n in (1, 2):
            rec = wlib.run_job(c, bot_type, {"runLog": run_log}, timeout=90, timeoutMs=60000)
            err = error_of(rec)
            log("%s job %d: %s attempts=%s %s" % (bot_type, n, rec["state"], rec.get("attempts"), err))
            #  Job 2: the fork server serves on, and its next child is
            #  judged the same way.
            check(rec["state"] == "failed" and err.get("code") == "resource_limit"
                  and err.get("message", "").startswith("resource limit hit: cpu (CPU time limit of 1 s)"),
                  "%s job %d fails with resource_limit, naming cpu and its limit (not bot_failed)"
                  % (bot_type, n), rec)
            check("killed by SIGKILL with" in err.get("message", ""), "and the CPU time it used", err)
        check(len(lines(w, "WARN", "the %s bot hit its cpu limit" % bot_type)) == 2,
              "the worker logs each limit hit", lines(w, "hit its"))
    with open(runs) as f:
        count = len(f.read().split())
    check(count == 2, "the unsandboxed bot ran once a job", count)
    c.close()
    check(w.alive(), "worker still running")


def scenario_cpu_watch(s, bots):
    spin = write(bots, "spin_free.py", SPIN_FREE)
    follows = hard_limit_follows()
    why = bwrap_works()
    if follows:
        log("the hard CPU limit follows each job here: the kernel kills the bot")
    env = {"BOT_FREE_CMD": "%s %s" % (PY, spin), "BOT_FREE_MODE": "pool",
           "BOT_FREE_MAX_PROCS": "1", "BOT_FREE_CPU_SECONDS": "1", "WORKER_METRICS_PORT": "-1"}
    types = [("free", os.path.join(bots, "runs"))]
    if why or follows:
        log("SKIP the sandboxed case: %s" % (why or "its kill at the hard limit reads as bot_failed"))
    else:
        #  runLog in the sandbox's own /tmp; the bot a copy nobody may read.
        env.update({"BOT_FREEBX_CMD": "%s %s" % (PY, wlib.readable_by_all(spin)),
                    "BOT_FREEBX_MODE": "pool", "BOT_FREEBX_MAX_PROCS": "1",
                    "BOT_FREEBX_CPU_SECONDS": "1", "BOT_FREEBX_SANDBOX": "bwrap"})
        types.append(("freebx", "/tmp/runs"))
    w = s.worker("--type", ",".join(t for t, _ in types), "--concurrency", "2", env=env)
    port = w.listening("metrics")
    s.wait_workers(1)
    c = s.client()
    for bot_type, run_log in types:
        if not follows:
            check(lines(w, "INFO", "%s pool processes: the CPU time limit of 1 s per job is held by "
                        "the worker" % bot_type),
                  "the worker says at start that it holds %s's CPU limit itself" % bot_type,
                  lines(w, "pool processes"))
        pids = set()
        for n in (1, 2):
            rec = wlib.run_job(c, bot_type, {"runLog": run_log, "spinMs": 700}, timeout=30)
            check(rec["state"] == "completed", "%s: job %d of 700 ms of CPU completes (the budget "
                  "is per job)" % (bot_type, n), rec.get("error"))
            pids.add(rec["result"]["process"])
        check(len(pids) == 1, "%s: both on one process" % bot_type, pids)
        rec = wlib.run_job(c, bot_type, {"runLog": run_log, "forever": True}, timeout=60,
                           timeoutMs=20000)
        err = error_of(rec)
        log("%s spinner: %s attempts=%s %s" % (bot_type, rec["state"], rec.get("attempts"), err))
        check(rec["state"] == "failed" and err.get("code") == "resource_limit"
              and err.get("message", "").startswith("resource limit hit: cpu (CPU time limit of 1 s)"),
              "%s: the spinner fails with resource_limit, naming cpu and its limit (not timeout)"
              % bot_type, rec)
        check("killed by SIGKILL with" in err.get("message", ""), "%s: and the CPU time it used"
              % bot_type, err)
        if not follows:
            check("by the worker at the limit plus 1000 ms of grace" in err.get("message", ""),
                  "%s: the message says the worker killed it" % bot_type, err)
        check(rec.get("attempts") == 1, "%s: once, not run again as a lost attempt" % bot_type, rec)
        wait_until(lambda: wlib.metric(port, "bot_recycles_total", bot_type=bot_type,
                                       reason="limit") == 1,
                   5, "bot_recycles_total{bot_type=%s,reason=limit} 1 on the worker's /metrics" % bot_type)
        rec = wlib.run_job(c, bot_type, {"runLog": run_log, "spinMs": 100}, timeout=30)
        check(rec["state"] == "completed" and rec["result"]["process"] not in pids,
              "%s: the next job completes, on a new process" % bot_type, rec)
        _, _, text = harness.http("GET", "http://127.0.0.1:%d/metrics" % s.main_broker.metrics_port)
        check('bot_limit_kills_total{bot_type="%s",limit="cpu"} 1' % bot_type in text,
              "%s: the broker counts the kill in bot_limit_kills_total" % bot_type,
              [line for line in text.splitlines() if "limit_kills" in line and bot_type in line])
    with open(types[0][1]) as f:
        count = len(f.read().split())
    check(count == 4, "the unsandboxed bot ran each of its four jobs once", count)
    c.close()
    check(w.alive(), "worker still running")


SCENARIOS = {"ready": scenario_ready, "timeout": scenario_timeout, "launch": scenario_launch,
             "cpu": scenario_cpu, "cpu_fork": scenario_cpu_fork, "cpu_watch": scenario_cpu_watch}


def main():
    which = sys.argv[1]
    bots = harness.tempdir("warm-life-")
    os.chmod(bots, 0o755)
    with harness.Stack("worker-e2e-warm-life-" + which) as s:
        s.main_broker = s.broker(redis=False)
        SCENARIOS[which](s, bots)


if __name__ == "__main__":
    harness.main(main)

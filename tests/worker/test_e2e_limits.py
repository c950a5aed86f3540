"""Resource limits per bot type (BOT_<TYPE>_MEMORY_MB, _CPU_SECONDS,
_MAX_PIDS, _MAX_FILES), transcript style against a fake broker, with real
bots that run into each limit (tests/worker/bots/hog.py):

- a memory hog (4 GiB) under MEMORY_MB=256, a bounded fork bomb under
  MAX_PIDS=16, a CPU spinner under CPU_SECONDS=1, an fd hog under
  MAX_FILES=64: each job ends with DONE error code resource_limit, the
  limit named in error.limit and in the message;
- a job of the default Python bot running at the same time completes, and
  the worker runs the next job after each hog;
- no core dump is left; the per-run pids cgroups are removed; the
  worker's /metrics has no bot_limit_kills_total (the broker alone counts
  limit kills, so a sum() over every scraped job counts each once);
- pool and fork modes (forkserver.py running hog.py): the memory hog and
  the CPU spinner fail with resource_limit, a pool process that hit a
  limit is replaced (bot_recycles_total{reason="limit"}), the worker runs
  the next job; a pool process's CPU limit is per job (two jobs of 600 ms
  of CPU on one process under CPU_SECONDS=1 both complete);
- a worker killed with -9 leaves its per-run cgroups; the next worker to
  start removes them and leaves a live worker's alone;
- through the real broker: the job's record fails with resource_limit, and
  the broker counts it per type (STATS types.<type>.limitKills, which the
  dashboard shows, and bot_limit_kills_total{bot_type,limit} on /metrics).
"""
import glob
import os
import re
import shutil
import signal
import time

import harness
import wlib
from harness import check, log, wait_until
from wlib import (JOB, DONE, PY, FakeBroker, job, worker_env, start_worker, wait_exit, sigterm,
                  HERE)

HOG = os.path.join(HERE, "bots", "hog.py")
# Heartbeats the loaded machine cannot miss: these tests are not about the link.
HEARTBEAT_MS = 500
RELAXED = {"HEARTBEAT_INTERVAL_MS": str(HEARTBEAT_MS), "HEARTBEAT_LIVENESS": "10"}

# type -> (hog argument, limit variable suffix, value, limit name in the verdict)
HOGS = {
    "hog-memory": ("memory", "MEMORY_MB", "256", "memory"),
    "hog-fork": ("fork", "MAX_PIDS", "16", "pids"),
    "hog-cpu": ("cpu", "CPU_SECONDS", "1", "cpu"),
    "hog-files": ("files", "MAX_FILES", "64", "files"),
    # The same spinner under bwrap (it reports death by signal N as exit 128+N).
    "hog-boxed-cpu": ("cpu", "CPU_SECONDS", "1", "cpu"),
}


def env_name(bot_type, suffix):
    return "BOT_%s_%s" % (bot_type.upper().replace("-", "_"), suffix)


def scenario_each_limit(s):
    env = worker_env(RELAXED)
    for bot_type, (arg, suffix, value, _) in HOGS.items():
        env[env_name(bot_type, "CMD")] = "%s %s %s" % (PY, HOG, arg)
        env[env_name(bot_type, suffix)] = value
    env[env_name("hog-boxed-cpu", "SANDBOX")] = "bwrap"
    env[env_name("hog-boxed-cpu", "CMD")] = "%s %s cpu" % (PY, wlib.readable_by_all(HOG))
    env["WORKER_METRICS_PORT"] = "-1"          # any free port, read from its log
    fb = FakeBroker(heartbeat_ms=HEARTBEAT_MS)
    types = ",".join(["python"] + list(HOGS))
    w = start_worker(s, fb.endpoint, "--type", types, "--concurrency", "2", "--name", "w-limits",
                     env=env)
    ident, _ = fb.ready()
    metrics_port = w.listening("metrics")
    check("hog-fork bots: limits" in w.output() and "pids 16 (" in w.output(),
          "the worker logs each type's limits")
    enforced = "MAX_PIDS is not enforced" not in w.output()

    for bot_type, (arg, suffix, value, limit) in HOGS.items():
        log("--- %s (%s=%s)" % (bot_type, env_name(bot_type, suffix), value))
        # A Python job alongside the hog: it must complete.
        fb.send(ident, JOB, job("py-with-" + bot_type, payload={"size": 50, "sleepMs": 300}))
        t0 = time.monotonic()
        fb.send(ident, JOB, job("hog-" + bot_type, bot_type=bot_type, payload={}, timeout_ms=20000))
        got = {}
        while len(got) < 2:
            _, _, body = fb.recv(25, want=DONE)
            got[body["jobId"]] = body
        hog = got["hog-" + bot_type]
        took = time.monotonic() - t0
        log("hog DONE after %.2f s:" % took, hog)
        if limit == "pids" and not enforced:
            check(hog["ok"] is True, "root without a pids cgroup: MAX_PIDS is not enforced, and the "
                  "worker said so at start (the bounded bomb ends on its own)", hog)
        else:
            err = hog.get("error") or {}
            check(hog["ok"] is False and err.get("code") == "resource_limit",
                  "%s: the job fails with resource_limit" % bot_type, hog)
            check(err.get("limit") == limit and ("resource limit hit: %s" % limit) in err.get("message", ""),
                  "%s: the %s limit is named in error.limit and in the message" % (bot_type, limit), err)
        alongside = got["py-with-" + bot_type]
        check(alongside["ok"] is True and alongside["result"]["stats"]["count"] == 50,
              "the Python job that ran alongside completed", alongside)
        # The next job runs.
        fb.send(ident, JOB, job("after-" + bot_type, payload={"size": 3}))
        _, _, body = fb.recv(10, want=DONE)
        check(body["ok"] is True and w.alive(), "after the %s hog the worker runs the next job" % bot_type, body)

    check("hit its memory limit" in w.output(), "a limit kill is logged (warn, with the job id)")
    status, _, text = harness.http("GET", "http://127.0.0.1:%d/metrics" % metrics_port)
    kills = [line for line in str(text).splitlines() if "bot_limit_kills_total" in line]
    check(status == 200 and not kills,
          "the worker's /metrics has no bot_limit_kills_total: the broker counts limit kills", kills)
    check(not glob.glob(os.path.join(s.dir, "core*")) and not glob.glob("core*"), "no core dump")
    sigterm(w)
    check(wait_exit(w, 10) == 0, "the worker stops cleanly")
    left = glob.glob("/sys/fs/cgroup/pids/botmesh-%d-*" % w.pid) + \
        glob.glob("/sys/fs/cgroup/unified/**/botmesh-%d-*" % w.pid, recursive=True)
    check(not left, "the per-run cgroups are gone", left)
    fb.close()


SERVER = os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py")


def boxed_pool_spinner(env, bot_type):
    """bot_type: the hog under the fork server in pool mode, one process,
    CPU_SECONDS=1, under bwrap (from copies everyone may read)."""
    env[env_name(bot_type, "CMD")] = "%s %s --pool %s" % (PY, wlib.readable_by_all(SERVER), wlib.readable_by_all(HOG))
    env[env_name(bot_type, "MODE")] = "pool"
    env[env_name(bot_type, "MAX_PROCS")] = "1"
    env[env_name(bot_type, "CPU_SECONDS")] = "1"
    env[env_name(bot_type, "SANDBOX")] = "bwrap"


def scenario_warm_limits(s):
    """Pool and fork modes: a memory hog and a CPU spinner fail with
    resource_limit, a pool process that hit a limit is replaced, the worker
    runs the next job; a pool process's CPU limit is per job, under bwrap
    too; a fork child runs under its job's own limits."""
    env = worker_env(RELAXED)
    env["WORKER_METRICS_PORT"] = "-1"          # any free port, read from its log
    # One type per mode and limit (zeroing 256 MiB costs seconds of CPU on
    # a VM whose page faults are slow: not under a 1 s CPU budget).
    types = {}
    for mode, args in (("pool", "--pool "), ("fork", "")):
        for limit, suffix, value in (("memory", "MEMORY_MB", "256"), ("cpu", "CPU_SECONDS", "1")):
            bot_type = "hog%s-%s" % (mode, limit)
            types[(mode, limit)] = bot_type
            env[env_name(bot_type, "CMD")] = "%s %s %s%s" % (PY, SERVER, args, HOG)
            env[env_name(bot_type, "MODE")] = mode
            env[env_name(bot_type, "MAX_PROCS")] = "1"
            env[env_name(bot_type, suffix)] = value
    # A pool process under bwrap: its job's CPU budget goes to the bot
    # inside the sandbox (rlimits are per process; bwrap's own use none).
    boxed = "hogpool-boxed-cpu"
    types[("pool-bwrap", "cpu")] = boxed
    boxed_pool_spinner(env, boxed)
    fb = FakeBroker(heartbeat_ms=HEARTBEAT_MS)
    w = start_worker(s, fb.endpoint, "--type", ",".join(types.values()), "--concurrency", "2",
                     "--name", "w-warm-limits", env=env)
    ident, _ = fb.ready()
    metrics_port = w.listening("metrics")
    seq = iter(range(1000))

    def run(bot_type, payload):
        job_id = "%s-%d" % (bot_type, next(seq))
        fb.send(ident, JOB, job(job_id, bot_type=bot_type, payload=payload, timeout_ms=20000))
        while True:
            _, _, body = fb.recv(25, want=DONE)
            if body["jobId"] == job_id:
                return body

    # Per job, not per process: two jobs of 600 ms of CPU each on the same
    # pool process under CPU_SECONDS=1 (1.2 s in all) both complete.
    cpu_type = types[("pool", "cpu")]
    first, second = run(cpu_type, {"hog": "cpu", "cpuMs": 600}), run(cpu_type, {"hog": "cpu", "cpuMs": 600})
    check(first["ok"] and second["ok"] and first["result"]["pid"] == second["result"]["pid"],
          "pool: two jobs of 600 ms CPU each on one process under CPU_SECONDS=1 both complete "
          "(the CPU limit is per job)", [first, second])
    for (mode, limit), bot_type in types.items():
        before = run(bot_type, {"hog": "none"})
        body = run(bot_type, {"hog": limit})
        err = body.get("error") or {}
        log("%s hog:" % bot_type, body)
        check(body["ok"] is False and err.get("code") == "resource_limit" and err.get("limit") == limit,
              "%s: the %s hog fails with resource_limit (%s)" % (mode, limit, limit), body)
        after = run(bot_type, {"hog": "none"})
        check(before["ok"] and after["ok"] is True and w.alive(),
              "%s, %s: the worker runs the next job" % (mode, limit), after)
        if mode == "fork" and limit == "memory":
            # The child's own limits, from the job frame: the fork server
            # itself runs without the job's address-space and file limits.
            server = int(re.search(r"%s fork server process pid=(\d+) ready" % bot_type, w.output()).group(1))
            with open("/proc/%d/limits" % server) as f:
                server_as = [line for line in f if line.startswith("Max address space")][0]
            check(before["result"]["rlimitAs"] == 256 << 20 and "unlimited" in server_as,
                  "fork: the child runs under the job's MEMORY_MB=256 (RLIMIT_AS %d), set in the child; "
                  "the server has none of its own" % before["result"]["rlimitAs"], server_as)
            check(before["result"]["rlimitNofile"] == 1024,
                  "fork: the child has the job's MAX_FILES (default 1024)", before["result"])
        if mode == "pool":        # (under bwrap every bot is pid 2 of its sandbox)
            check(after["result"]["pid"] != before["result"]["pid"],
                  "pool: the process that hit the %s limit was replaced" % limit,
                  (before["result"]["pid"], after["result"]["pid"]))
    # The pool exports its counters on its tick (BM_POOL_TICK_MS): wait for
    # the last replacement to show rather than read /metrics once.
    wanted = ['bot_recycles_total{bot_type="%s",reason="limit"} 1' % types[key]
              for key in (("pool", "memory"), ("pool", "cpu"), ("pool-bwrap", "cpu"))]

    def recycle_lines():
        _, _, text = harness.http("GET", "http://127.0.0.1:%d/metrics" % metrics_port)
        lines = [line for line in text.splitlines() if line.startswith("bot_recycles_total")]
        return lines if all(want in lines for want in wanted) else None
    try:
        wait_until(recycle_lines, 5, "the three limit recycles on the worker's /metrics")
    except harness.TestFailure as exc:
        log(str(exc))
    _, _, text = harness.http("GET", "http://127.0.0.1:%d/metrics" % metrics_port)
    recycles = [line for line in text.splitlines() if line.startswith("bot_recycles_total")]
    for mode, limit in (("pool", "memory"), ("pool", "cpu"), ("pool-bwrap", "cpu")):
        check('bot_recycles_total{bot_type="%s",reason="limit"} 1' % types[(mode, limit)] in recycles,
              "the worker's /metrics: bot_recycles_total{reason=limit} counts the replaced pool process "
              "(%s)" % limit, recycles)
    sigterm(w)
    check(wait_exit(w, 10) == 0, "the worker stops cleanly")
    fb.close()


def scenario_pool_without_cap_sys_resource(s):
    """A root worker without CAP_SYS_RESOURCE (a container's default): its
    sandboxed pool type still runs as nobody, and each job still gets its
    own CPU budget (set with the bot's real ids, not the capability)."""
    if os.geteuid() != 0 or not shutil.which("capsh"):
        log("skipped: needs root and capsh (libcap2-bin)")
        return
    boxed = "hogpool-nocap"
    env = worker_env(RELAXED)
    boxed_pool_spinner(env, boxed)
    fb = FakeBroker(heartbeat_ms=HEARTBEAT_MS)
    env["BROKER_ENDPOINT"] = fb.endpoint
    # capsh drops the capability from the bounding set; bash's exec of the
    # worker then leaves it out of root's effective set.
    w = s.spawn("worker-nocap", ["capsh", "--drop=cap_sys_resource", "--", "-c", 'exec "$0" "$@"',
                                 s.bin("botmesh-worker"), "--type", boxed, "--name", "w-nocap"], env)
    ident, _ = fb.ready()
    with open("/proc/%d/status" % w.pid) as f:
        cap_eff = int([line for line in f if line.startswith("CapEff:")][0].split()[1], 16)
    check(not cap_eff & (1 << 24), "the worker runs without CAP_SYS_RESOURCE", hex(cap_eff))
    check("%s bots: sandboxed as uid 65534" % boxed in w.output(),
          "its sandboxed pool type runs as nobody all the same", w.output()[-2000:])
    seq = iter(range(100))

    def run(payload):
        job_id = "nocap-%d" % next(seq)
        fb.send(ident, JOB, job(job_id, bot_type=boxed, payload=payload, timeout_ms=20000))
        while True:
            _, _, body = fb.recv(25, want=DONE)
            if body["jobId"] == job_id:
                return body

    first, second = run({"hog": "cpu", "cpuMs": 600}), run({"hog": "cpu", "cpuMs": 600})
    check(first["ok"] and second["ok"] and first["result"]["pid"] == second["result"]["pid"],
          "two jobs of 600 ms CPU each on one pool process under CPU_SECONDS=1 both complete",
          [first, second])
    body = run({"hog": "cpu"})
    err = body.get("error") or {}
    check(body["ok"] is False and err.get("code") == "resource_limit" and err.get("limit") == "cpu",
          "a CPU spinner fails with resource_limit (cpu): its budget was set", body)
    check("cannot set the CPU limit" not in w.output(), "no job went without its CPU limit",
          w.output()[-2000:])
    sigterm(w)
    check(wait_exit(w, 10) == 0, "the worker stops cleanly")
    fb.close()


def run_cgroups(pid):
    """Per-run cgroup directories a worker made (botmesh-PID-SEQ-NAME)."""
    return glob.glob("/sys/fs/cgroup/**/botmesh-%d-*" % pid, recursive=True)


class PrivatePidsCgroup:
    """On cgroup v1, the workers started inside this block live in a pids
    cgroup of their own (as a worker under a service manager does), so their
    per-run cgroups are made there and only they sweep it: any worker that
    starts sweeps the stale ones of its place, and the tests that run beside
    this one start workers too.  Children inherit the cgroup of the process
    that forks them, so this process moves in for the block and back out.
    Elsewhere (cgroup v2, where a cgroup that delegates controllers holds no
    process) the workers share the machine's place and `private` is False."""

    ROOT = "/sys/fs/cgroup/pids"

    def __init__(self):
        self.dir = os.path.join(self.ROOT, "botmesh-test-%d" % os.getpid())
        self.home = None
        self.private = False

    def __enter__(self):
        try:
            with open("/proc/self/cgroup") as f:
                mine = [line.split(":", 2)[2].strip() for line in f if line.split(":")[1] == "pids"]
            if not mine:
                return self
            os.mkdir(self.dir)
            self.home = self.ROOT + mine[0].rstrip("/") if mine[0] != "/" else self.ROOT
            with open(os.path.join(self.dir, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            self.private = True
            log("the workers start in a pids cgroup of their own: %s" % self.dir)
        except OSError as exc:
            log("no private pids cgroup (%s): the workers share the machine's place" % exc)
        return self

    def leave(self):
        """Move this process back out (workers started later are not in it)."""
        if self.private and self.home:
            with open(os.path.join(self.home, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            self.home = None

    def __exit__(self, *exc):
        self.leave()
        if self.private:
            try:
                os.rmdir(self.dir)
            except OSError as err:
                log("cannot remove %s: %s" % (self.dir, err))


def scenario_stale_cgroups(s):
    """A worker killed with -9 leaves its per-run cgroups; the next worker
    to start removes them, and leaves a live worker's alone."""
    with PrivatePidsCgroup() as place:
        stale_cgroups(s, place)


def stale_cgroups(s, place):
    fb = FakeBroker(heartbeat_ms=HEARTBEAT_MS)
    env = worker_env(RELAXED)
    dead = start_worker(s, fb.endpoint, "--type", "python", "--name", "w-dead", env=env)
    ident_dead, _ = fb.ready()
    live = start_worker(s, fb.endpoint, "--type", "python", "--name", "w-live", env=env)
    ident_live, _ = fb.ready()
    if "MAX_PIDS is not enforced" in dead.output():
        log("no pids cgroup on this machine: nothing to sweep")
        fb.close()
        return
    long_job = {"sleepMs": 20000, "size": 3}
    fb.send(ident_dead, JOB, job("stale-dead", payload=long_job, timeout_ms=60000))
    fb.send(ident_live, JOB, job("stale-live", payload=long_job, timeout_ms=60000))
    left = wait_until(lambda: run_cgroups(dead.pid), 15, "the running job's cgroup of the doomed worker")
    kept = wait_until(lambda: run_cgroups(live.pid), 15, "the running job's cgroup of the live worker")
    dead.signal(signal.SIGKILL)
    wait_exit(dead, 10)
    check(all(os.path.isdir(d) for d in left), "kill -9 of a worker leaves its run's cgroup behind", left)
    fresh = start_worker(s, fb.endpoint, "--type", "python", "--name", "w-fresh", env=env)
    fb.ready()
    place.leave()
    wait_until(lambda: not any(os.path.isdir(d) for d in left), 15,
               "the next worker to remove the cgroup of the one killed with -9")
    if place.private:
        check("per-run cgroups left by workers that are gone" in fresh.output(),
              "the worker logs the sweep", fresh.output()[-400:])
    elif "per-run cgroups left by workers that are gone" not in fresh.output():
        log("the sweep was another worker's on this machine (shared cgroup place)")
    check(all(os.path.isdir(d) for d in kept), "the live worker's cgroup is left alone", kept)
    for w in (live, fresh):
        sigterm(w)
        check(wait_exit(w, 15) == 0, "%s stops cleanly" % w.name)
    check(not any(os.path.isdir(d) for d in kept), "the live worker removed its own at its end", kept)
    fb.close()


def scenario_bad_config(s):
    fb = FakeBroker(heartbeat_ms=HEARTBEAT_MS)
    w = start_worker(s, fb.endpoint, "--type", "python", name="w-badlimit",
                     env=worker_env({**RELAXED, "BOT_PYTHON_MEMORY_MB": "lots"}))
    check(wait_exit(w, 10) == 2, "a bad BOT_PYTHON_MEMORY_MB stops the worker at start (exit 2)")
    check("BOT_PYTHON_MEMORY_MB must be 0 (no limit) or an integer" in w.output(),
          "and names the variable and what it accepts", w.output()[-300:])
    fb.close()


def scenario_through_broker(s):
    env = {env_name("hog-files", "CMD"): "%s %s files" % (PY, HOG), env_name("hog-files", "MAX_FILES"): "32"}
    broker = s.broker(redis=False)
    s.worker("--type", "python,hog-files", "--concurrency", "2", env=env)
    s.wait_workers(1, "hog-files")
    c = s.client()
    rec = c.wait(c.submit("hog-files", {}), timeout=20)
    check(rec["state"] == "failed" and rec["error"]["code"] == "resource_limit"
          and "limit of 32 open files" in rec["error"]["message"],
          "the job's record: failed, resource_limit, the limit in the message", rec.get("error"))
    rec = c.wait(c.submit("python", {"size": 5}), timeout=20)
    check(rec["state"] == "completed", "the next job completes", rec.get("state"))
    types = c.stats()["types"]
    check(types["hog-files"].get("limitKills") == 1 and types["python"].get("limitKills") == 0,
          "STATS counts limit kills per type", {k: v.get("limitKills") for k, v in types.items()})
    _, _, text = harness.http("GET", "http://127.0.0.1:%d/metrics" % broker.metrics_port)
    check('bot_limit_kills_total{bot_type="hog-files",limit="files"} 1' in text,
          "/metrics: bot_limit_kills_total{bot_type,limit}",
          [line for line in text.splitlines() if "limit_kills" in line])
    c.close()


def main():
    with harness.Stack("worker-limits") as s:
        for scenario in (scenario_bad_config, scenario_each_limit, scenario_warm_limits,
                         scenario_pool_without_cap_sys_resource, scenario_stale_cgroups,
                         scenario_through_broker):
            log("=== %s" % scenario.__name__)
            scenario(s)


if __name__ == "__main__":
    harness.main(main)

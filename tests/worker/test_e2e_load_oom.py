"""A pool bot that runs out of memory WHILE LOADING, under its
BOT_<TYPE>_MEMORY_MB, end to end with the real broker (no Redis), a real
worker and real bots, for the two ways the worker can tell it from a bot
that cannot load:

    test_e2e_load_oom.py cgroup|v8

- cgroup: the worker holds each run to a cgroup v2 memory.max (it makes a
  cgroup per run, below its own, where that cgroup delegates the memory and
  pids controllers).  A Python pool bot fills 400 MiB before its ready line
  under BOT_HUNGRY_MEMORY_MB=100: the kernel's OOM killer of its cgroup
  kills it (SIGKILL, nothing on stderr) and the cgroup's memory.events
  counts an oom_kill: that count alone says it was the memory limit.
  Skipped, naming why, where the worker cannot hold a run to a memory.max
  (no cgroup2 with the memory and pids controllers, or not root to start
  the worker where they are delegated).
- v8: the default Node bot in pool mode under BOT_NODE_MEMORY_MB=200,
  held by RLIMIT_AS (BOT_NODE_MAX_PIDS=0: a run without a cgroup of its
  own, so on any machine): V8 cannot reserve its code range at start and
  dies by SIGTRAP with "Fatal process OOM" on stderr, before Node's own
  handler (which would print "JavaScript heap out of memory") is in place.

Each way: the job that waited for the process and one submitted while its
restarts back off (it waits for the next start, which fails alike) fail
with resource_limit, not bot_init_failed, the
message naming the variable and its value and what showed it, and the
broker counts them as memory limit kills
(bot_limit_kills_total{bot_type,limit="memory"}); the worker counts an init failure
(bot_init_failures_total{bot_type}) and still runs the jobs of its other
type (python).
"""
import glob
import os
import sys

import harness
from harness import check, log, wait_until
import wlib

PY = wlib.PY
HUNGRY = """import json, sys
BALLAST = b"\\x01" * (400 << 20)      # a model four times the memory limit, touched
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    print(json.dumps({"result": {}}), flush=True)
"""
RELAXED = {"HEARTBEAT_INTERVAL_MS": "500", "HEARTBEAT_LIVENESS": "10", "BOT_KILL_GRACE_MS": "500",
           "WORKER_METRICS_PORT": "-1"}


def words(path):
    """The words of a small file (a cgroup's controller list), [] if it does not read."""
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return []


def cgroup_mounts():
    """{fstype or controller: mount point}: the cgroup2 mount as "cgroup2",
    each cgroup v1 hierarchy under each of its controllers (the worker reads
    /proc/self/mountinfo the same way, the first of each)."""
    found = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, options = (right.split() + ["", "", ""])[:3]
            mount = left.split()[4]
            if fstype == "cgroup2":
                found.setdefault("cgroup2", mount)
            elif fstype == "cgroup":
                for option in options.split(","):
                    found.setdefault(option, mount)
    return found


class MemoryCgroupPlace:
    """Where a worker started inside this block can hold its runs to a
    memory.max.  The worker makes each run a cgroup below its own, so its
    own cgroup must delegate the memory and pids controllers
    (cgroup.subtree_control); a cgroup that delegates them holds no process
    unless it is the hierarchy's root, so as root the worker is started in
    the root cgroup (children inherit the cgroup of the process that forks
    them: this process moves in for the block, and back out at leave()),
    the two controllers enabled there if the hierarchy offers them.
    why_not: why this machine cannot, or None."""

    WANT = ("memory", "pids")

    def __init__(self):
        self.mounts = cgroup_mounts()
        self.root = self.mounts.get("cgroup2")
        self.home = None
        self.enabled = None     # "+memory +pids" as this test wrote them, or None
        self.why_not = None

    def _explain(self, offered):
        """Why the hierarchy does not offer the controllers."""
        missing = [c for c in self.WANT if c not in offered]
        bound = ["%s to the cgroup v1 hierarchy at %s" % (c, self.mounts[c]) for c in missing if c in self.mounts]
        return ("the cgroup2 at %s offers the controllers [%s], not %s%s: the worker holds memory with "
                "RLIMIT_AS here" % (self.root, " ".join(offered), " and ".join(missing),
                                    " (this machine binds %s)" % ", ".join(bound) if bound else ""))

    def __enter__(self):
        if not self.root:
            self.why_not = "no cgroup2 is mounted: the worker holds memory with RLIMIT_AS here"
            return self
        with open("/proc/self/cgroup") as f:
            own = [line.split(":", 2)[2].strip() for line in f if line.startswith("0::")]
        if not own:
            self.why_not = "this process is in no cgroup of the cgroup2 at %s" % self.root
            return self
        own_dir = self.root + (own[0] if own[0] != "/" else "")
        if all(c in words(os.path.join(own_dir, "cgroup.subtree_control")) for c in self.WANT):
            log("the worker's cgroup %s delegates memory and pids" % own_dir)
            return self
        offered = words(os.path.join(self.root, "cgroup.controllers"))
        if not all(c in offered for c in self.WANT):
            self.why_not = self._explain(offered)
            return self
        if os.geteuid() != 0:
            self.why_not = ("this process's cgroup %s does not delegate memory and pids, and only root may "
                            "start the worker in the root cgroup %s, where they are" % (own_dir, self.root))
            return self
        try:
            enabled = words(os.path.join(self.root, "cgroup.subtree_control"))
            wanted = " ".join("+" + c for c in self.WANT if c not in enabled)
            if wanted:
                with open(os.path.join(self.root, "cgroup.subtree_control"), "w") as f:
                    f.write(wanted)
                self.enabled = wanted
                log("enabled %s in %s/cgroup.subtree_control" % (wanted, self.root))
            if own_dir != self.root:
                with open(os.path.join(self.root, "cgroup.procs"), "w") as f:
                    f.write(str(os.getpid()))
                self.home = own_dir
                log("the worker starts in the root cgroup %s, which delegates memory and pids" % self.root)
        except OSError as exc:
            self.why_not = "cannot start the worker where memory and pids are delegated (%s)" % exc
        return self

    def leave(self):
        """Move this process back to its own cgroup (what it starts later stays there)."""
        if self.home:
            with open(os.path.join(self.home, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            self.home = None

    def __exit__(self, *exc):
        self.leave()
        if self.enabled:        # as the machine was: the controllers this test turned on, off
            undo = self.enabled.replace("+", "-")
            try:
                with open(os.path.join(self.root, "cgroup.subtree_control"), "w") as f:
                    f.write(undo)
                log("disabled %s in %s/cgroup.subtree_control again" % (undo, self.root))
            except OSError as exc:
                log("could not disable %s in %s/cgroup.subtree_control again (%s)" % (undo, self.root, exc))
            self.enabled = None


def out_of_memory_at_load(s, broker, w, bot_type, variable, value, shown_by):
    """Jobs of bot_type, whose pool process dies of its memory limit while
    loading: each fails with resource_limit naming the variable, its value
    and shown_by (what showed it), and the broker counts a memory limit
    kill for each (the DONE's error.limit); the worker counts the init
    failure and still runs python jobs."""
    port = w.listening("metrics")
    c = s.client()
    for when in ("the job that waited for the process",
                 "the next job (it waits for the next start, which fails alike)"):
        rec = wlib.run_job(c, bot_type, {}, attempts=1, timeout=30)
        err = rec.get("error") or {}
        log("%s (%s): %r" % (bot_type, when, err))
        check(rec["state"] == "failed" and err.get("code") == "resource_limit",
              "%s: out of memory while loading -> resource_limit, not bot_init_failed" % when, rec)
        message = err.get("message", "")
        check("ran out of memory while loading" in message and "%s=%s" % (variable, value) in message,
              "%s: the message says it ran out of memory while loading, under %s=%s"
              % (when, variable, value), message)
        check(shown_by in message, "%s: and what showed it: %r" % (when, shown_by), message)
    kills = wlib.metric(broker.metrics_port, "bot_limit_kills_total", bot_type=bot_type, limit="memory")
    check(kills == 2, "the broker's bot_limit_kills_total{bot_type=%s,limit=memory}: 2" % bot_type, kills)
    wait_until(lambda: wlib.metric(port, "bot_init_failures_total", bot_type=bot_type) >= 1, 15,
               "bot_init_failures_total{bot_type=%s} >= 1: it still counts as an init failure" % bot_type)
    rec = wlib.run_job(c, "python", {"size": 5}, timeout=30)
    check(rec["state"] == "completed", "the worker still runs its python jobs", rec.get("state"), rec.get("error"))
    c.close()
    check(w.alive(), "the worker is still running")


def limits_line(w, bot_type):
    """The worker's start line with the limits of bot_type."""
    lines = [line for line in w.output().splitlines() if "%s bots: limits" % bot_type in line]
    check(lines, "the worker logs the limits of its %s bots at start" % bot_type, w.output()[-1500:])
    return lines[0]


def scenario_cgroup():
    with MemoryCgroupPlace() as place:
        if place.why_not:
            print("SKIP: the cgroup OOM kill of a pool process cannot be shown on this machine: %s"
                  % place.why_not, flush=True)
            sys.exit(harness.SKIP)
        bots = harness.tempdir("load-oom-")
        hungry = os.path.join(bots, "hungry.py")
        with open(hungry, "w") as f:
            f.write(HUNGRY)
        with harness.Stack("worker-e2e-load-oom-cgroup") as s:
            broker = s.broker(redis=False)
            env = dict(RELAXED, BOT_HUNGRY_CMD="%s %s" % (PY, hungry), BOT_HUNGRY_MODE="pool",
                       BOT_HUNGRY_MAX_PROCS="1", BOT_HUNGRY_MIN_PROCS="0", BOT_HUNGRY_MEMORY_MB="100")
            w = s.worker("--type", "python,hungry", "--concurrency", "2", env=env)
            s.wait_workers(1, "hungry")
            place.leave()
            line = limits_line(w, "hungry")
            check("memory held by cgroup v2 memory.max" in line,
                  "where its cgroup delegates memory and pids, the worker holds the bot to a memory.max", line)
            out_of_memory_at_load(s, broker, w, "hungry", "BOT_HUNGRY_MEMORY_MB", 100,
                                  "killed by the OOM killer of its cgroup")
            check("killed by signal SIGKILL" in w.output(), "the worker logs the SIGKILL")
            wlib.sigterm(w)
            check(wlib.wait_exit(w, 15) == 0, "the worker stops cleanly")
            left = glob.glob(os.path.join(place.root, "**", "botmesh-%d-*" % w.pid), recursive=True)
            check(not left, "the per-run cgroups are gone", left)


def scenario_v8():
    with harness.Stack("worker-e2e-load-oom-v8") as s:
        broker = s.broker(redis=False)
        env = dict(RELAXED, BOT_NODE_MODE="pool", BOT_NODE_MAX_PROCS="1", BOT_NODE_MIN_PROCS="0",
                   BOT_NODE_MEMORY_MB="200", BOT_NODE_MAX_PIDS="0")
        w = s.worker("--type", "python,node", "--concurrency", "2", env=env)
        s.wait_workers(1, "node")
        line = limits_line(w, "node")
        check("memory 200 MiB" in line and "memory held by RLIMIT_AS" in line,
              "without a pids limit a run has no cgroup: the worker holds its memory with RLIMIT_AS", line)
        out_of_memory_at_load(s, broker, w, "node", "BOT_NODE_MEMORY_MB", 200, 'failed with "Fatal process OOM"')
        check("killed by signal SIGTRAP" in w.output(), "the worker logs V8's SIGTRAP")
        wlib.sigterm(w)
        check(wlib.wait_exit(w, 15) == 0, "the worker stops cleanly")


def main():
    how = sys.argv[1] if len(sys.argv) > 1 else ""
    scenarios = {"cgroup": scenario_cgroup, "v8": scenario_v8}
    if how not in scenarios:
        raise SystemExit("usage: test_e2e_load_oom.py cgroup|v8")
    scenarios[how]()


if __name__ == "__main__":
    harness.main(main)

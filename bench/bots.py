#!/usr/bin/python3
"""bots.py - `./botmesh bench --only bots`: the default bots end to end.

    bots.py --bin BIN [--jobs N] [--quick] [--cases A,B] [--write docs/benchmarks.md]

Each case: a fresh broker (no Redis) and one botmesh-worker serving one bot
type with concurrency 2 (the machine's 2 cores), the same payload for every
job; 10 warm-up jobs, then N jobs submitted at once (SUBMIT_MANY of up to
1,000 jobs, as the BullMQ driver's addBulk); the time until the last one
ended, and the CPU time of the broker and the worker with everything it ran
(its children's CPU, counted as they are reaped) per job.  Cases:

  spawn_<bot>              the default bots, a process per job (default limits)
  spawn_python_nolimits    all of BOT_PYTHON_* limits 0: what the limits cost
  spawn_python_bwrap       BOT_PYTHON_SANDBOX=bwrap: what the sandbox costs
  pool_<bot>, fork_python  BOT_<TYPE>_MODE=pool / fork, when the worker has
                           the modes (its --help names BOT_<TYPE>_MODE); the
                           pool cases with WORKER_PREFETCH=4 (credit 6: two
                           jobs wait in the worker for each of the two
                           processes, as Celery's prefork pool prefetches)
  pool_python_noprefetch   pool python with WORKER_PREFETCH=0, the default
  fork_python_warmup       fork with BOT_PYTHON_FORK_WARMUP=1 (main() run
                           once in the fork server before the first fork)
  spawn_python_again       spawn python once more after the fork cases: the
                           fork ratios are to the mean of the two
  celery_python            Celery prefork (Redis broker and backend,
                           concurrency 2), the Python bot's main() as the task
  bullmq_node              BullMQ sandboxed processors (child processes
                           reused, concurrency 2), the Node bot's function

--cases runs only the named cases (e.g. spawn_python,fork_python).
Prints the table; with --write, puts it in docs/benchmarks.md between the
"bots" markers (the rest of the page is bench/run.sh's), keeping the
hand-written findings between the "bots-findings" markers inside them.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = "/usr/bin/python3"
CLIENT = b"BMC01"
STATS, SUBMIT_MANY = 4, 0x0A
HZ = os.sysconf("SC_CLK_TCK")
PAYLOADS = {"python": {"dataset": "bench", "size": 1000}, "node": {"count": 10}, "java": {}}
BEGIN, END = "<!-- bots:begin -->", "<!-- bots:end -->"
# Written by hand inside the bots section, kept as it is by --write.
FINDINGS_BEGIN, FINDINGS_END = "<!-- bots-findings:begin -->", "<!-- bots-findings:end -->"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def cpu_own(pid):
    """CPU seconds of one process itself (utime + stime)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def cpu_tree(pids):
    """CPU seconds of these processes and all their descendants, alive or
    reaped by them (utime + stime + cutime + cstime of each live one)."""
    children = {}
    stats = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(d), int(fields[1])
        stats[pid] = sum(int(x) for x in fields[11:15])
        children.setdefault(ppid, []).append(pid)
    total, todo, seen = 0, list(pids), set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += stats.get(p, 0)
        todo += children.get(p, [])
    return total / HZ


def warm_cpu(worker_pid):
    """{pid: [utime, stime, cutime, cstime] in seconds} of the worker's
    direct children (its warm processes; spawned bots come and go)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == worker_pid:
            out[int(d)] = [int(x) / HZ for x in fields[11:15]]
    return out


class Stack:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []

    def spawn(self, name, args, env=None, cwd=None):
        e = dict(os.environ)
        e.update(env or {})
        log = open(os.path.join(self.tmp, name + ".log"), "ab")
        p = subprocess.Popen(args, env=e, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, cwd=cwd)
        self.procs.append(p)
        return p

    def stop(self):
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        self.procs = []


def wait_for(fn, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.02)
    raise RuntimeError("timed out waiting for " + what)


def wait_done(stats, base, count, timeout, what):
    """The type's stats once completed + failed reach base + count.  Polled
    every 20 ms while the end is far, then more often as it nears (half the
    time the rest should take at the pace the jobs ended so far, down to
    1 ms): the end is seen within ~1 ms of the last job's, not 10 ms late
    on average (1.4 % of a 0.7 s run of pool jobs), for a few more STATS."""
    deadline = t0 = time.monotonic()
    deadline += timeout
    while time.monotonic() < deadline:
        s = stats()
        done = (s["completed"] + s["failed"] - base) if s else 0
        if done >= count:
            return s
        gap = 0.02
        if done > 0:
            gap = min(gap, max(0.001, (time.monotonic() - t0) / done * (count - done) / 2))
        time.sleep(gap)
    raise RuntimeError("timed out waiting for " + what)


class Client:
    def __init__(self, endpoint):
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.req = 0

    def request(self, cmd, body, timeout=10):
        self.req += 1
        self.sock.send_multipart([CLIENT, bytes([cmd]), msgpack.packb(dict(body, req=self.req))])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.sock.poll(100):
                frames = self.sock.recv_multipart()
                reply = msgpack.unpackb(frames[2], raw=False, strict_map_key=False)
                if reply.get("req") == self.req:
                    return frames[1][0], reply
        raise RuntimeError("no reply from the broker")

    def type_stats(self, bot_type):
        _, reply = self.request(STATS, {})
        return reply.get("types", {}).get(bot_type), reply.get("workers", [])


def run_botmesh(bindir, tmp, bot, jobs, env):
    """One botmesh case: returns (seconds, cpu seconds, failed)."""
    st = Stack(tmp)
    try:
        port = free_port()
        ep = "tcp://127.0.0.1:%d" % port
        broker = st.spawn("broker", [os.path.join(bindir, "botmesh-broker")],
                          {"BROKER_ENDPOINT": ep, "REDIS_URL": "none", "LOG_LEVEL": "warn",
                           "BROKER_METRICS_PORT": str(free_port()), "MAX_%s_BOTS" % bot.upper(): "100"})
        e = {"BROKER_ENDPOINT": ep, "LOG_LEVEL": "warn", "BOTMESH_ROOT": ROOT}
        e.update(env)
        worker = st.spawn("worker-" + bot, [os.path.join(bindir, "botmesh-worker"), "--type", bot,
                                             "--concurrency", "2"], e)
        c = Client(ep)
        wait_for(lambda: c.type_stats(bot)[1], 30, "the worker to register")

        def batch(count):
            before = (c.type_stats(bot)[0] or {})
            base = before.get("completed", 0) + before.get("failed", 0)
            # SUBMIT_MANY of up to 1,000, as the BullMQ driver's addBulk: the
            # driver's own round trips stay off the 2 cores the jobs run on.
            job = {"botType": bot, "payload": PAYLOADS[bot], "timeoutMs": 120000}
            for k in range(0, count, 1000):
                _, reply = c.request(SUBMIT_MANY, {"jobs": [job] * min(1000, count - k)})
                refused = [j for j in reply.get("jobs", []) if "jobId" not in j]
                if refused:
                    raise RuntimeError("SUBMIT_MANY refused %d job(s): %r" % (len(refused), refused[0]))
            t = wait_done(lambda: c.type_stats(bot)[0], base, count, 600, "%d %s jobs" % (count, bot))
            return t["failed"] - before.get("failed", 0)
        batch(10)
        cpu0 = cpu_tree([broker.pid, worker.pid])
        own0 = [cpu_own(broker.pid), cpu_own(worker.pid)]
        warm0 = warm_cpu(worker.pid)
        t0 = time.monotonic()
        failed = batch(jobs)
        seconds = time.monotonic() - t0
        cpu = cpu_tree([broker.pid, worker.pid]) - cpu0
        own = [cpu_own(broker.pid) - own0[0], cpu_own(worker.pid) - own0[1]]
        warm = warm_cpu(worker.pid)
        split = ""
        if set(warm) & set(warm0):
            # Warm processes that lived through the run: their own CPU and
            # that of the children they reaped (a fork server's per-job
            # children), user and system apart.
            d = [sum(warm[p][i] - warm0[p][i] for p in set(warm) & set(warm0)) for i in range(4)]
            split = " (warm processes' own: user %.2f, system %.2f; their reaped children: user %.2f, " \
                    "system %.2f)" % tuple(1000 * x / jobs for x in d)
        print("  CPU ms/job: broker %.2f, worker %.2f, bots %.2f%s" % (
            1000 * own[0] / jobs, 1000 * own[1] / jobs, 1000 * (cpu - sum(own)) / jobs, split),
            file=sys.stderr, flush=True)
        return seconds, cpu, failed
    finally:
        st.stop()


def start_redis(st, tmp):
    port = free_port()
    st.spawn("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--dir", tmp])
    wait_for(lambda: subprocess.run(["redis-cli", "-p", str(port), "PING"], capture_output=True,
                                    text=True).stdout.strip() == "PONG", 15, "redis")
    return port


CELERY_APP = '''
import contextlib, importlib.util, io, json, sys
from celery import Celery
URL = "redis://127.0.0.1:%(port)d/0"
app = Celery("benchbots", broker=URL, backend=URL)
app.conf.worker_prefetch_multiplier = 4
spec = importlib.util.spec_from_file_location("bot", %(bot)r)
bot = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bot)

@app.task
def data_analysis(payload):
    """The Python bot's main(): the payload on its stdin, its stdout back."""
    sys.stdin = io.StringIO(json.dumps(payload))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        bot.main()
    return json.loads(out.getvalue())
'''

CELERY_DRIVER = '''
import sys, time
sys.path.insert(0, %(dir)r)
from benchbots import data_analysis
payload = %(payload)r
def batch(n):
    rs = [data_analysis.delay(payload) for _ in range(n)]
    failed = 0
    for r in rs:
        try:
            r.get(timeout=600)
        except Exception:
            failed += 1
    return failed
batch(10)
print("WARM", flush=True)
sys.stdin.readline()
t0 = time.monotonic()
failed = batch(%(jobs)d)
print("RESULT seconds=%%.3f failed=%%d" %% (time.monotonic() - t0, failed))
'''


def run_celery(tmp, jobs):
    st = Stack(tmp)
    try:
        port = start_redis(st, tmp)
        appdir = os.path.join(tmp, "celery")
        os.makedirs(appdir, exist_ok=True)
        with open(os.path.join(appdir, "benchbots.py"), "w") as f:
            f.write(CELERY_APP % {"port": port, "bot": os.path.join(ROOT, "workers", "bots", "python", "bot.py")})
        worker = st.spawn("celery", [PY, "-m", "celery", "-A", "benchbots", "worker", "-P", "prefork", "-c", "2",
                                     "--loglevel", "warning", "--without-gossip", "--without-mingle",
                                     "--without-heartbeat"], cwd=appdir)
        driver = os.path.join(appdir, "driver.py")
        with open(driver, "w") as f:
            f.write(CELERY_DRIVER % {"dir": appdir, "payload": PAYLOADS["python"], "jobs": jobs})
        redis_pid = st.procs[0].pid
        # CPU is counted from the worker's side (the prefork children stay
        # alive) once the driver's warm-up batch is through.
        p = subprocess.Popen([PY, driver], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, cwd=appdir)
        if p.stdout.readline().strip() != "WARM":
            raise RuntimeError("celery driver: no warm-up")
        cpu0 = cpu_tree([worker.pid, redis_pid])
        p.stdin.write("go\n")
        p.stdin.flush()
        out, err = p.communicate(timeout=900)
        cpu = cpu_tree([worker.pid, redis_pid]) - cpu0
        line = [l for l in out.splitlines() if l.startswith("RESULT ")]
        if p.returncode or not line:
            raise RuntimeError("celery driver failed: " + err[-500:])
        d = dict(kv.split("=") for kv in line[-1].split()[1:])
        return float(d["seconds"]), cpu, int(d["failed"])
    finally:
        st.stop()


def run_bullmq(tmp, jobs):
    st = Stack(tmp)
    try:
        port = start_redis(st, tmp)
        p = st.spawn("bullmq", ["node", os.path.join(HERE, "peers", "bullmq_bots.js"), "--redis", str(port),
                                "--jobs", str(jobs), "--concurrency", "2"])
        p.wait(900)
        with open(os.path.join(tmp, "bullmq.log")) as f:
            text = f.read()
        line = [l for l in text.splitlines() if l.startswith("RESULT ")]
        if p.returncode or not line:
            raise RuntimeError("bullmq driver failed: " + text[-500:])
        d = dict(kv.split("=") for kv in line[-1].split()[1:])
        # CPU: not sampled (the node process and its processor children are
        # gone when the figure is known).
        return float(d["seconds"]), None, int(d["failed"])
    finally:
        st.stop()


def main():
    args = sys.argv[1:]
    if "-h" in args or "--help" in args:
        print(__doc__.strip())
        return 0
    known = {"--bin", "--jobs", "--write", "--cases", "--quick"}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and arg not in known:
            print("bots.py: unknown option %s (--help lists them)" % arg, file=sys.stderr)
            return 2
        if arg in ("--bin", "--jobs", "--write", "--cases"):
            if i + 1 >= len(args):
                print("bots.py: %s needs a value" % arg, file=sys.stderr)
                return 2
            i += 1                      # its value, which may start with '-'
        i += 1
    bindir = args[args.index("--bin") + 1] if "--bin" in args else os.path.join(ROOT, "build", "bin")
    quick = "--quick" in args
    jobs = args[args.index("--jobs") + 1] if "--jobs" in args else (20 if quick else 100)
    if not str(jobs).isdigit() or int(jobs) < 1:
        print("bots.py: --jobs takes a whole number of 1 or more (got %s)" % jobs, file=sys.stderr)
        return 2
    jobs = int(jobs)
    write = args[args.index("--write") + 1] if "--write" in args else None
    worker = os.path.join(bindir, "botmesh-worker")
    if not os.access(worker, os.X_OK):
        print("bots.py: %s is not built (--bin names the directory of the botmesh binaries)" % worker,
              file=sys.stderr)
        return 2
    help_text = subprocess.run([worker, "--help"], capture_output=True, text=True).stdout
    has_modes = "BOT_<TYPE>_MODE" in help_text
    warm_jobs = jobs * 10
    nolimits = {"BOT_PYTHON_MEMORY_MB": "0", "BOT_PYTHON_CPU_SECONDS": "0", "BOT_PYTHON_MAX_PIDS": "0",
                "BOT_PYTHON_MAX_FILES": "0"}
    # fork python next to spawn python: their ratio is the target, and the
    # machine's load moves less between neighbours.
    cases = [("spawn_python", "python", jobs, {})]
    if has_modes:
        cases += [("fork_python", "python", warm_jobs, {"BOT_PYTHON_MODE": "fork"}),
                  ("fork_python_warmup", "python", warm_jobs,
                   {"BOT_PYTHON_MODE": "fork", "BOT_PYTHON_FORK_WARMUP": "1"}),
                  ("spawn_python_again", "python", jobs, {})]
    cases += [("spawn_python_nolimits", "python", jobs, nolimits),
              ("spawn_python_bwrap", "python", jobs, {"BOT_PYTHON_SANDBOX": "bwrap"}),
              ("spawn_node", "node", jobs, {}), ("spawn_java", "java", jobs // 2 or 1, {})]
    if has_modes:
        # The pool cases prefetch two jobs for each process (WORKER_PREFETCH=4:
        # a process that ends a job finds the next one in the worker, even
        # when the other one took one a moment before and the broker's next
        # JOBs are still on their way, which on a loaded host takes longer
        # than a job), as Celery's prefork pool prefetches (4 per process
        # here); pool_python_noprefetch is the default, 0.
        pf = {"WORKER_PREFETCH": "4"}
        cases += [("pool_python", "python", warm_jobs, dict(pf, BOT_PYTHON_MODE="pool")),
                  ("pool_python_noprefetch", "python", warm_jobs, {"BOT_PYTHON_MODE": "pool"}),
                  ("pool_node", "node", warm_jobs, dict(pf, BOT_NODE_MODE="pool")),
                  ("pool_java", "java", warm_jobs, dict(pf, BOT_JAVA_MODE="pool"))]
    peers = [("celery_python", run_celery, jobs * 4), ("bullmq_node", run_bullmq, jobs * 4)]
    if "--cases" in args:
        wanted = args[args.index("--cases") + 1].split(",")
        # A misspelt name would run nothing, and --write would empty the table.
        unknown = [w for w in wanted if w not in [c[0] for c in cases + peers]]
        if unknown:
            print("bots.py: --cases: no case %s (the cases: %s)" % (
                ", ".join(unknown), ", ".join(c[0] for c in cases + peers)), file=sys.stderr)
            return 2
        cases = [c for c in cases if c[0] in wanted]
        peers = [p for p in peers if p[0] in wanted]
    results = {}
    tmp = tempfile.mkdtemp(prefix="botmesh-bench-bots-")
    t_start = time.time()
    load_before = open("/proc/loadavg").read().split()[:3]
    try:
        for name, bot, n, env in cases:
            try:
                s, cpu, failed = run_botmesh(bindir, tmp, bot, n, env)
                results[name] = (n, s, cpu, failed)
            except Exception as e:  # noqa: BLE001 - reported in the table
                results[name] = (n, None, None, str(e)[:120])
            print("%s: %r" % (name, results[name]), file=sys.stderr, flush=True)
        for name, fn, n in peers:
            try:
                s, cpu, failed = fn(tmp, n)
                results[name] = (n, s, cpu, failed)
            except Exception as e:  # noqa: BLE001
                results[name] = (n, None, None, str(e)[:120])
            print("%s: %r" % (name, results[name]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for name, (n, s, cpu, failed) in results.items():
        if s is None:
            rows.append("| %s | %d | failed: %s | | |" % (name, n, failed))
        else:
            rows.append("| %s | %d | %.1f | %s | %s |" % (name, n, n / s,
                                                          "%.1f" % (1000 * cpu / n) if cpu is not None else "n/a",
                                                          failed))

    def rate(name):
        r = results.get(name)
        return r[0] / r[1] if r and r[1] else None

    load_after = open("/proc/loadavg").read().split()[:3]
    lines = [BEGIN, "## Bots end to end (`./botmesh bench --only bots`)", "",
             "Run %s UTC, load before %s, after %s, %d jobs per spawn case (java half), %d per warm case, "
             "concurrency 2 everywhere (the pool cases prefetch four jobs, WORKER_PREFETCH=4, but "
             "pool_python_noprefetch), one worker, broker without Redis; the time from the submit to "
             "the last job's end (STATS polled every 20 ms, down to 1 ms near the end); CPU per job = "
             "broker + worker + every bot process (Celery: its worker, prefork children and Redis; "
             "BullMQ: not sampled)." % (
                 time.strftime("%Y-%m-%d %H:%M", time.gmtime(t_start)), " ".join(load_before),
                 " ".join(load_after), jobs, warm_jobs),
             "", "| case | jobs | jobs/s | CPU ms/job | failed |", "| --- | ---: | ---: | ---: | ---: |"] + rows
    notes = []
    def cpu_ms(name):
        r = results.get(name)
        return 1000 * r[2] / r[0] if r and r[2] is not None else None
    a, b = rate("spawn_python"), rate("spawn_python_nolimits")
    if a and b:
        notes.append("- Cost of the limits: spawn python %.1f ms of CPU per job with the default limits "
                     "(rlimits and a pids cgroup per run: a mkdir, two writes, an rmdir), %.1f ms without "
                     "(%+.1f ms); %.1f vs %.1f jobs/s (wall-time rates on this shared machine move by "
                     "more than that from run to run)." % (cpu_ms("spawn_python"), cpu_ms("spawn_python_nolimits"),
                                                           cpu_ms("spawn_python") - cpu_ms("spawn_python_nolimits"),
                                                           a, b))
    c = rate("spawn_python_bwrap")
    if a and c:
        notes.append("- Cost of the bwrap sandbox: %.1f ms of CPU per job vs %.1f (%+.1f ms: bwrap's own "
                     "process, namespaces, mounts); %.1f vs %.1f jobs/s." % (
                         cpu_ms("spawn_python_bwrap"), cpu_ms("spawn_python"),
                         cpu_ms("spawn_python_bwrap") - cpu_ms("spawn_python"), c, a))
    if not has_modes:
        notes.append("- pool and fork: not in this build (the worker's --help names no BOT_<TYPE>_MODE); "
                     "the targets (pool >= 30x spawn, python fork >= 5x spawn, pool >= Celery and >= BullMQ) "
                     "cannot be checked from this run.")
    else:
        # Wall-time ratios move with the machine's load (the cases run one
        # after the other); CPU per job is the steadier figure.
        for bot in ("python", "node", "java"):
            p, s = rate("pool_" + bot), rate("spawn_" + bot)
            if p and s:
                notes.append("- pool %s: %.0fx spawn in jobs/s (target 30x), %.0fx less CPU per job"
                             % (bot, p / s, cpu_ms("spawn_" + bot) / cpu_ms("pool_" + bot)))
        # Against spawn python run just before and just after them (the
        # mean of the two: the load moves during the run).
        spawns = [rate(n) for n in ("spawn_python", "spawn_python_again") if rate(n)]
        spawn_cpu = [cpu_ms(n) for n in ("spawn_python", "spawn_python_again") if rate(n)]
        for case, what in (("fork_python", "fork python"),
                           ("fork_python_warmup", "fork python with BOT_PYTHON_FORK_WARMUP=1")):
            f = rate(case)
            if f and spawns:
                s = sum(spawns) / len(spawns)
                notes.append("- %s: %.1fx spawn in jobs/s (target 5x; spawn python %s jobs/s before and "
                             "after), %.1fx less CPU per job"
                             % (what, f / s, " and ".join("%.1f" % x for x in spawns),
                                sum(spawn_cpu) / len(spawn_cpu) / cpu_ms(case)))
    for peer, mine in (("celery_python", "pool_python"), ("bullmq_node", "pool_node")):
        if rate(peer):
            notes.append("- %s: %.0f jobs/s%s" % (peer, rate(peer), (" (botmesh %s: %.0f)" % (mine, rate(mine)))
                                                    if rate(mine) else ""))
    lines += [""] + notes
    old = open(write).read() if write and os.path.exists(write) else ""
    if FINDINGS_BEGIN in old and FINDINGS_END in old:
        lines += ["", old[old.index(FINDINGS_BEGIN):old.index(FINDINGS_END) + len(FINDINGS_END)]]
    lines += [END]
    text = "\n".join(lines) + "\n"
    print(text)
    if write:
        if BEGIN in old and END in old:
            new = old[:old.index(BEGIN)] + text.rstrip("\n") + old[old.index(END) + len(END):]
        else:
            new = old.rstrip("\n") + "\n\n" + text
        with open(write, "w") as f:
            f.write(new)
        print("wrote " + write)
    return 0 if all(r[1] is not None and r[3] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

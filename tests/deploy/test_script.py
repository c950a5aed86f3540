"""deploy.script - ./botmesh up / status / scale / invoke / logs / down, for real.

The whole local stack on ephemeral ports, in a private var directory, with
simulated bots: `up` starts what is built and answers its health checks,
reads the env file (the environment wins over it), is harmless the second
time, and its summary names every metrics address (each worker's too,
which serves /metrics there); `status` shows each service healthy; `scale` grows and shrinks the
workers of a type (checked in the broker's own list); `invoke --wait`
prints the completed record, and exits 1 for a job that did not complete
and 3 when its --timeout runs out; `logs` shows a service's log, by its name or
its Docker Compose name (orchestrator, api-gateway, workers); `down` stops
everything gracefully and leaves no process behind.  What up leaves to
other local users: var and all in it private (0700, 0600; a log an older
version left 0644 made private, a link never followed; Redis under umask
077, the workers under the user's own umask), one warning per up for an
env file others can read, the mock on 127.0.0.1 only, and the local Redis
without a password (a bare redis-cli is the contract).  Then the failures a
user meets: a bad value and a busy port make `up` fail naming the service,
the variable or the port (and the setting that moves it), with the tail of
the log; an `up` stopped by SIGTERM half-way says what it left running.
"""
import fcntl
import json
import os
import re
import select
import shutil
import socket
import stat
import subprocess
import time

import deploylib as d
from harness import check, free_port, http as http_plain, log, main, tempdir, wait_until

SCRIPT = os.path.join(d.ROOT, "botmesh")
# The env file turns API keys on, as README's Security section says a user
# may: up, status, scale and invoke must all still work.
API_KEY = "key-two"


def http(method, url, body=None):
    return http_plain(method, url, body, headers={"Authorization": "Bearer " + API_KEY})


class Env:
    def __init__(self):
        self.dir = tempdir("botmesh-script-")
        self.var = os.path.join(self.dir, "var")
        self.envfile = os.path.join(self.dir, "env")
        self.ports = {k: free_port() for k in
                      ("gw", "wh", "mock", "broker", "metrics", "redis", "envonly")}
        self.env = dict(os.environ)
        for k in list(self.env):
            if k.startswith(("BOTMESH_", "REDIS_", "BROKER_", "WEBHOOK_", "MOCK_", "API_", "MAX_", "WORKER_")):
                del self.env[k]
        self.env.update({
            "BOTMESH_NO_BUILD": "1",
            "BOTMESH_BUILD_DIR": os.path.dirname(d.BIN),
            "BOTMESH_VAR_DIR": self.var,
            "BOTMESH_ENV_FILE": self.envfile,
            "BOTMESH_REDIS_PORT": str(self.ports["redis"]),
            "BOTMESH_WORKER_ARGS": "--simulate",
            "SIM_DURATION_MS": "10-50",
            "BOTMESH_UP_TIMEOUT": "60",
            "BOTMESH_STOP_TIMEOUT": "30",
            "BROKER_ENDPOINT": "tcp://127.0.0.1:%d" % self.ports["broker"],
            "BROKER_METRICS_PORT": str(self.ports["metrics"]),
            "WEBHOOK_MANAGER_PORT": str(self.ports["wh"]),
            # In the environment and in the env file: the environment wins.
            "API_GATEWAY_PORT": str(self.ports["gw"]),
        })
        # The env file is env.example as a user copies it (a plain cp),
        # with two edits and a few lines of other shapes at the end.
        example = open(os.path.join(d.ROOT, "env.example")).read().splitlines()
        example = [l for l in example if not l.startswith(("API_GATEWAY_PORT=", "MOCK_WEBHOOK_PORT="))]
        with open(self.envfile, "w") as f:
            f.write("\n".join(example) + "\n")
            f.write("# written by deploy.script\n"
                    "API_GATEWAY_PORT=%d\n"
                    "export  MOCK_WEBHOOK_PORT='%d'\n"
                    "export\tLOG_LEVEL=info\n"
                    "API_KEYS=\"key-one,%s\"  # the second is the test's\n"
                    "WEBHOOK_MAX_RETRIES=5   # a comment after the value\n"
                    "\n"
                    "  MAX_JAVA_BOTS = \"2\"\n" % (self.ports["envonly"], self.ports["mock"], API_KEY))
        # As a plain cp leaves it under the usual umask 022 (README says install -m 600).
        os.chmod(self.envfile, 0o644)

    def run(self, *args, timeout=120, env=None):
        e = dict(self.env)
        e.update(env or {})
        p = subprocess.run([SCRIPT] + list(args), capture_output=True, text=True, timeout=timeout, env=e)
        log("$ ./botmesh %s -> rc %d" % (" ".join(args), p.returncode))
        return p

    def pids(self):
        run = os.path.join(self.var, "run")
        out = {}
        if os.path.isdir(run):
            for f in os.listdir(run):
                if f.endswith(".pid"):
                    out[f[:-4]] = int(open(os.path.join(run, f)).read())
        return out

    def cleanup(self):
        """Whatever happened, leave nothing running."""
        try:
            self.run("down", timeout=90)
        except Exception as exc:          # noqa: BLE001 - best effort
            log("down failed: %r" % exc)
        for name, pid in self.pids().items():
            try:
                os.kill(pid, 9)
                log("killed leftover %s" % name)
            except ProcessLookupError:
                pass


def check_wait_status(e, gw):
    """invoke --wait: exit 3 when --timeout runs out (a job delayed a
    minute, waited for 1 s), 1 for a job that ends without completing (one
    cancelled while the command waits)."""
    p = e.run("invoke", "python", '{"task":"data_analysis"}', "--delay-ms", "60000",
              "--wait", "--timeout", "1")
    check(p.returncode == 3 and "not finished after 1s (last known state: delayed)" in p.stderr,
          "invoke --wait --timeout 1 on a job delayed 60 s exits 3 (a timeout, not a failed job)", show(p))
    late = json.loads(p.stderr.strip().splitlines()[0]).get("jobId")
    st, _, body = http("POST", "%s/job/%s/cancel" % (gw, late))
    check(st == 200, "the delayed job is cancelled", st, body)

    proc = subprocess.Popen([SCRIPT, "invoke", "python", '{"task":"data_analysis"}', "--delay-ms", "60000",
                             "--wait", "--timeout", "60"], env=e.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # The gateway's answer (with the jobId) is its first line on stderr.
        ready, _, _ = select.select([proc.stderr], [], [], 30)
        check(ready, "invoke --wait prints the gateway's answer within 30 s")
        job = json.loads(proc.stderr.readline()).get("jobId")
        st, _, body = http("POST", "%s/job/%s/cancel" % (gw, job))
        check(st == 200, "a job invoke --wait waits for is cancelled", st, body)
        out, err = proc.communicate(timeout=30)
        check(proc.returncode == 1 and json.loads(out).get("state") == "cancelled",
              "invoke --wait exits 1 for a cancelled job", proc.returncode, out, err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def show(p):
    return (p.stdout + "\n" + p.stderr)[-3000:]


def run_try_it(stdout):
    """Run the curl example of up's "Try it" block (stdout: up's); check
    that it answers a jobId, and return that."""
    cmd = []
    for l in stdout.split("Try it:\n", 1)[-1].splitlines():
        cmd.append(l)
        if not l.rstrip().endswith("\\"):
            break
    out = subprocess.run(["bash", "-c", "\n".join(cmd)], capture_output=True, text=True, timeout=30)
    job = json.loads(out.stdout or "{}").get("jobId")
    check(out.returncode == 0 and job, "the printed curl example answers a jobId", cmd, out.stdout, out.stderr)
    return job


def test():
    if not d.binary("botmesh-broker") or not d.binary("botmesh-worker"):
        d.skip("botmesh-broker or botmesh-worker not built yet")
    for tool in ("redis-server", "redis-cli", "curl", "jq", "ss"):
        if not shutil.which(tool):
            d.skip("%s is not installed (bash deploy/install-deps.sh)" % tool)
    have_gw = bool(d.binary("botmesh-gateway"))
    # The usual umask: up must make var private whatever the user's is.
    os.umask(0o022)
    e = Env()
    try:
        run_stack(e, have_gw)
        run_failures(e)
        reports = sanitizer_reports(os.path.join(e.var, "log"))
        check(not reports, "no sanitizer report in any service's log", reports)
    finally:
        e.cleanup()


def sanitizer_reports(logdir):
    """Under ASan/UBSan a service that printed a report fails the test."""
    found = []
    for f in sorted(os.listdir(logdir)) if os.path.isdir(logdir) else []:
        text = open(os.path.join(logdir, f), errors="replace").read()
        for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            i = text.find(mark)
            if i >= 0:
                found.append((f, text[max(0, i - 200):i + 2000]))
                break
    return found


ENV_WARNING = "is readable by other users (mode 0644)"


def old_var(e):
    """var as an older version left it: readable by all, a log in it, and a
    link to a file of someone else's that up must not follow."""
    for sub in ("", "log", "run"):
        os.makedirs(os.path.join(e.var, sub), exist_ok=True)
        os.chmod(os.path.join(e.var, sub), 0o755)
    open(os.path.join(e.var, "run", ".lock"), "w").close()     # every up's lock file
    old_log = os.path.join(e.var, "log", "broker.log")
    with open(old_log, "w") as f:
        f.write("an older run's line\n")
    os.chmod(old_log, 0o644)
    outside = os.path.join(e.dir, "outside.txt")
    with open(outside, "w") as f:
        f.write("not botmesh's\n")
    os.chmod(outside, 0o644)
    os.symlink(outside, os.path.join(e.var, "log", "outside-link"))
    return outside


def not_private(var):
    """Every directory and file under var with a group or other bit, with
    its mode (links are not followed: their own mode means nothing)."""
    bad = []
    for top, dirs, files in os.walk(var):
        for name in [top] + [os.path.join(top, f) for f in files]:
            st = os.lstat(name)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o077:
                bad.append("%s %o" % (os.path.relpath(name, var), st.st_mode & 0o777))
    return bad


def umask_of(pid):
    with open("/proc/%d/status" % pid) as f:
        return next(l.split()[1] for l in f if l.startswith("Umask:"))


def listen_addrs(port):
    out = subprocess.run(["ss", "-ltnH", "( sport = :%d )" % port], capture_output=True, text=True).stdout
    return sorted({l.split()[3] for l in out.splitlines() if len(l.split()) > 3})


def check_private(e, p, out2, pids, outside):
    """What the first up leaves to other local users."""
    for who, text in (("up", p.stderr), ("the other up", out2)):
        check(text.count(ENV_WARNING) == 1 and "chmod 600 %s" % e.envfile in text,
              "%s warns once that the env file (0644) is readable by others, and says chmod 600" % who, text)
    check(not not_private(e.var), "var and every directory and file in it are private (0700, 0600)",
          not_private(e.var))
    aof = os.path.join(e.var, "redis", "appendonlydir")
    check(os.path.isdir(aof) and os.listdir(aof), "Redis wrote its AOF under var/redis (checked above)",
          os.path.isdir(aof) and os.listdir(aof))
    check(open(os.path.join(e.var, "log", "broker.log")).read().startswith("an older run's line"),
          "the older version's broker.log (0644, now private) is the one the broker appends to")
    check(stat.S_IMODE(os.stat(outside).st_mode) == 0o644, "up did not follow a link out of var/log",
          oct(os.stat(outside).st_mode))
    check(umask_of(pids["redis"]) == "0077", "Redis runs with umask 077 (its AOF files)",
          umask_of(pids["redis"]))
    check(umask_of(pids["worker-python-1"]) == "0022",
          "a worker (and its bots) keeps the user's umask, 022 here", umask_of(pids["worker-python-1"]))
    # The local Redis keeps no password: a bare redis-cli reads and writes it.
    rcli = lambda *a: subprocess.run(["redis-cli", "-p", str(e.ports["redis"])] + list(a),
                                     capture_output=True, text=True, env={"PATH": os.environ["PATH"]}).stdout.split()
    check(rcli("config", "get", "requirepass") == ["requirepass"] and rcli("ping") == ["PONG"],
          "the local Redis has no password: a bare redis-cli gets PONG (README says so)",
          rcli("config", "get", "requirepass"))
    if d.binary("botmesh-mock"):
        addrs = listen_addrs(e.ports["mock"])
        check(addrs == ["127.0.0.1:%d" % e.ports["mock"]],
              "the mock listens on 127.0.0.1 only (MOCK_LISTEN_ADDR not set)", addrs)


def run_stack(e, have_gw):
    gw = "http://127.0.0.1:%d" % e.ports["gw"]
    outside = old_var(e)
    # Two at once: the second waits for the first and finds everything up.
    other = subprocess.Popen([SCRIPT, "up"], env=e.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    p = e.run("up")
    out2 = other.communicate(timeout=120)[0]
    check(p.returncode == 0 and other.returncode == 0, "two ./botmesh up at once both succeed", show(p), out2)
    check("botmesh is up" in p.stdout and "botmesh is up" in out2, "up says the stack is up", show(p))
    check("already running" in p.stdout + out2, "one of them found the stack running", show(p), out2)
    check("ignoring" not in p.stderr + out2, "up takes every line of the env file (export and blanks, a "
          "quoted value and a comment)", show(p), out2)
    pids = e.pids()
    check({"redis", "broker"} <= set(pids), "up started redis and the broker", pids)
    # up's summary names every metrics address, the workers' too
    workers = re.findall(r"^  Worker +(worker-\S+) metrics (http://localhost:\d+/metrics)$", p.stdout, re.M)
    check(sorted(w for w, _ in workers) == sorted(n for n in pids if n.startswith("worker-")) and workers,
          "up's summary lists each worker's metrics address", show(p))
    for name, url in workers:
        status, headers, _ = http("GET", url.replace("localhost", "127.0.0.1"))
        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        check(status == 200 and "version=0.0.4" in ctype, "%s serves its /metrics at %s" % (name, url),
              status, ctype)
    for t in ("python", "node", "java"):
        check("worker-%s-1" % t in pids, "up started a %s worker" % t, pids)
    check(all(alive(p) for p in pids.values()), "every started process is alive", pids)
    check_private(e, p, out2, pids, outside)
    if "mock-webhook" in pids and "webhook-manager" in pids:
        def started(pid):
            with open("/proc/%d/stat" % pid) as f:
                return int(f.read().rsplit(")", 1)[1].split()[19])     # starttime, in clock ticks
        mock_t, wh_t = started(pids["mock-webhook"]), started(pids["webhook-manager"])
        check(mock_t < wh_t, "up starts mock-webhook (and waits for it) before the webhook manager, so "
              "the first deliveries find the mock listening", {"mock": mock_t, "webhook-manager": wh_t})
    # The service table's environment reaches the worker: warm bots.
    wenv = dict(kv.split("=", 1) for kv in
                open("/proc/%d/environ" % pids["worker-python-1"]).read().split("\0") if "=" in kv)
    check(wenv.get("BOT_PYTHON_MODE") == "fork" and wenv.get("BOT_PYTHON_FORK_WARMUP") == "1"
          and wenv.get("BOT_NODE_MODE") == "pool"
          and "WORKER_TYPES" not in wenv and wenv.get("BROKER_ENDPOINT") == e.env["BROKER_ENDPOINT"],
          "a worker gets the table's environment (warm modes, python's warm-up, no WORKER_TYPES, the broker's endpoint)",
          {k: v for k, v in wenv.items() if k.startswith(("BOT_", "WORKER_", "BROKER_"))})
    redis_cfg = subprocess.run(["redis-cli", "-p", str(e.ports["redis"]), "config", "get", "appendonly"],
                               capture_output=True, text=True).stdout.split()
    check(redis_cfg[-1:] == ["yes"], "the local Redis runs with AOF on", redis_cfg)
    redis_cfg = subprocess.run(["redis-cli", "-p", str(e.ports["redis"]), "config", "get", "hash-max-listpack-value"],
                               capture_output=True, text=True).stdout.split()
    check(redis_cfg[-1:] == ["1024"], "... and job records as listpacks (hash-max-listpack-value 1024)", redis_cfg)
    check(os.path.isdir(os.path.join(e.var, "redis")), "Redis keeps its data in var/redis")
    if have_gw:
        check("http://localhost:%d/admin/queues" % e.ports["gw"] in p.stdout, "up prints the dashboard URL",
              p.stdout)
        check("curl -X POST http://localhost:%d/invoke" % e.ports["gw"] in p.stdout,
              "up prints a curl example", p.stdout)
        st, _, body = http("GET", gw + "/health")
        check(st == 200, "the gateway listens on API_GATEWAY_PORT from the environment, not the env file",
              st, body)
        # Lines appended to the copy of env.example set names it sets
        # already (API_KEYS=, MAX_JAVA_BOTS=3): the last line wins.
        st, _, body = http_plain("GET", gw + "/stats")
        check(st == 401, "API_KEYS appended to the env file is in force: /stats without a key is 401",
              st, body)
        st, _, body = http("GET", gw + "/stats")
        limit = body["types"]["java"]["limit"] if st == 200 else None
        check(limit == 2, "MAX_JAVA_BOTS appended (2) wins over env.example's line (3)", st, limit)
        # The curl example up prints works as printed.
        printed_job = run_try_it(p.stdout)
    if d.binary("botmesh-mock"):
        st, _, _ = http("GET", "http://127.0.0.1:%d/health" % e.ports["mock"])
        check(st == 200, "the mock listens on MOCK_WEBHOOK_PORT from the env file", st)

    p = e.run("status")
    unbuilt = [l for l in p.stdout.splitlines() if l.endswith("not built")]
    check(p.returncode == (1 if unbuilt else 0), "status: everything built is healthy", show(p))
    check(ENV_WARNING not in p.stderr, "status does not warn of the env file's mode (up does)", show(p))
    for name, pid in pids.items():
        check(any(l.split()[:2] == [name, str(pid)] for l in p.stdout.splitlines()),
              "status lists %s with its pid" % name, p.stdout)

    # The original system's REDIS_HOST/REDIS_PORT (say, from its .env):
    # up keeps its own Redis and says how to use that server instead.
    # The env file a link (0777) to a file of mode 0600: the target's mode counts.
    real = e.envfile + ".real"
    os.rename(e.envfile, real)
    os.chmod(real, 0o600)
    os.symlink(real, e.envfile)
    p = e.run("up", env={"REDIS_HOST": "redis", "REDIS_PORT": "6380"})
    check(p.returncode == 0 and "already running" in p.stdout, "a second up is harmless", show(p))
    check("readable by other users" not in p.stderr,
          "an env file that links to a file of mode 0600: no warning", show(p))
    check("REDIS_HOST/REDIS_PORT are not used" in p.stdout and "REDIS_URL=redis://redis:6380/0" in p.stdout,
          "up says REDIS_HOST/REDIS_PORT are not used and names the REDIS_URL to set", show(p))
    check(e.pids() == pids, "a second up leaves the running services alone", e.pids(), pids)
    # Its stdout closed before it writes a line (./botmesh up | head): up
    # is not killed by SIGPIPE half-way, it runs to the end and exits 0.
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([SCRIPT, "up"], stdout=w, stderr=subprocess.PIPE, text=True, env=e.env,
                           timeout=120)
    finally:
        os.close(w)
    log("$ ./botmesh up >closed-pipe -> rc %d" % p.returncode)
    check(p.returncode == 0, "up with its stdout closed (./botmesh up | head) still succeeds",
          p.returncode, p.stderr[-2000:])
    check(e.pids() == pids, "... and leaves the services as they were", e.pids(), pids)

    if have_gw:
        def workers(t):
            st, _, body = http("GET", gw + "/stats")
            ws = body.get("workers", []) if isinstance(body, dict) else []
            return len([w for w in ws if t in w.get("types", [])])
        p = e.run("scale", "python=3", "node=2")
        check(p.returncode == 0, "scale python=3 node=2", show(p))
        wait_until(lambda: workers("python") == 3 and workers("node") == 2, 30,
                   "the broker to list 3 python and 2 node workers")
        check(len([n for n in e.pids() if n.startswith("worker-python-")]) == 3, "3 python worker processes")
        p = e.run("scale", "python=1", "node=1")
        check(p.returncode == 0, "scale python=1 node=1", show(p))
        check(len([n for n in e.pids() if n.startswith("worker-python-")]) == 1, "1 python worker process left")
        wait_until(lambda: workers("python") == 1 and workers("node") == 1, 30,
                   "the broker to list 1 python and 1 node worker")
        # A type whose name starts with another's: python-gpu's workers are
        # not python's, for scale, status and logs.
        p = e.run("scale", "python-gpu=1")
        check(p.returncode == 0, "scale python-gpu=1", show(p))
        before = e.pids()
        p = e.run("scale", "python=1")
        check(p.returncode == 0 and "worker-python: 1 process(es) running" in p.stdout,
              "scale python=1 with python-gpu running counts python's worker alone", show(p))
        check(e.pids() == before and all(alive(x) for x in before.values()),
              "... and stops nothing", before, e.pids())
        p = e.run("status")
        check("FEWER" not in p.stdout and re.search(r"^  python workers +1 registered", p.stdout, re.M)
              and re.search(r"^  python-gpu workers +1 registered", p.stdout, re.M),
              "status counts the python and python-gpu workers apart", show(p))
        check_log_aliases(e)
        p = e.run("scale", "python-gpu=0")
        check(p.returncode == 0 and "worker-python-1" in e.pids(), "scale python-gpu=0 leaves python's worker",
              show(p), e.pids())
        p = e.run("scale", "python=two")
        check(p.returncode != 0 and "python=two" in p.stderr, "scale rejects a bad count clearly", show(p))

        hook = "http://localhost:%d/hooks/script" % e.ports["mock"]
        p = e.run("invoke", "python", '{"task":"data_analysis","dataset":"sales_2024"}', "--wait",
                  "--webhook", hook, "--priority", "1")
        check(p.returncode == 0, "invoke --wait succeeds", show(p))
        job = json.loads(p.stderr.strip().splitlines()[0]).get("jobId")
        check(job, "invoke --wait prints the gateway's answer with the jobId on stderr", p.stderr)
        rec = json.loads(p.stdout)
        check(rec.get("state") == "completed" and rec.get("botType") == "python" and rec.get("priority") == 1,
              "invoke --wait prints the completed record", rec)
        if d.binary("botmesh-webhook") and d.binary("botmesh-mock"):
            wait_until(lambda: (http("GET", "%s/job/%s" % (gw, job))[2].get("webhook") or {}).get("state")
                       == "delivered", 30, "the webhook to localhost (allowed by up) to be delivered")
            # The seed's example verbatim: http://mock-webhook:5000 reaches the
            # local mock (up sets WEBHOOK_CONNECT_TO), as in Docker Compose.
            st, _, body = http("POST", gw + "/invoke", {
                "botType": "node", "payload": {"action": "process_api", "endpoint": "/users"},
                "webhookUrl": "http://mock-webhook:5000", "priority": 2})
            check(st == 202, "the seed's node example is accepted", st, body)
            wait_until(lambda: (http("GET", "%s/job/%s" % (gw, body["jobId"]))[2].get("webhook") or {})
                       .get("state") == "delivered", 30,
                       "the seed's webhookUrl http://mock-webhook:5000 to be delivered to the local mock")
            wait_until(lambda: (http("GET", "%s/job/%s" % (gw, printed_job))[2].get("webhook") or {})
                       .get("state") == "delivered", 30, "the printed example's job and webhook to complete")
        # A delayed job allowed one run: the gateway answers "delayed", the
        # record carries the options.
        p = e.run("invoke", "python", '{"task":"data_analysis"}', "--attempts", "1", "--delay-ms", "300",
                  "--wait")
        check(p.returncode == 0, "invoke --attempts 1 --delay-ms 300 --wait succeeds", show(p))
        check(json.loads(p.stderr.strip().splitlines()[0]).get("status") == "delayed",
              "invoke --delay-ms: the gateway answers status delayed", p.stderr)
        rec = json.loads(p.stdout)
        check(rec.get("state") == "completed" and rec.get("runAttempts") == 1,
              "invoke --attempts 1: the record allows one run", rec)
        check_wait_status(e, gw)
        p = e.run("invoke", "python", "--attempts", "0")
        check(p.returncode != 0 and "--attempts" in p.stderr, "invoke refuses --attempts 0", show(p))
        p = e.run("invoke", "python", "{not json")
        check(p.returncode != 0 and "not valid JSON" in p.stderr, "invoke rejects a bad payload", show(p))

    p = e.run("logs", "broker", "--no-follow", "-n", "5")
    check(p.returncode == 0 and p.stdout.strip(), "logs broker shows the broker's log", show(p))
    check(len(p.stdout.strip().splitlines()) <= 5, "logs -n 5 shows at most 5 lines", p.stdout)
    p = e.run("logs", "nosuchservice", "--no-follow")
    check(p.returncode != 0 and "broker" in p.stderr, "logs of an unknown service lists the known ones",
          show(p))
    check_log_aliases(e)

    check(os.path.exists(os.path.join(e.var, "scale")) or not have_gw, "scale wrote var/scale")
    check(not not_private(e.var), "after scale, invokes and logs, all in var is still private",
          not_private(e.var))
    if d.binary("botmesh-mock"):
        # A user who wants the mock on every interface says so.
        p = e.run("restart", "mock", env={"MOCK_LISTEN_ADDR": "0.0.0.0"})
        check(p.returncode == 0, "restart mock with MOCK_LISTEN_ADDR=0.0.0.0", show(p))
        check("WARNING: the mock webhook receiver listens on 0.0.0.0:%d" % e.ports["mock"] in p.stdout
              and "Unset MOCK_LISTEN_ADDR" in p.stdout,
              "the restart warns that every delivery is readable from the network", p.stdout)
        addrs = listen_addrs(e.ports["mock"])
        check(addrs == ["0.0.0.0:%d" % e.ports["mock"]], "MOCK_LISTEN_ADDR set: up binds the mock there", addrs)

    slow_job = start_slow_job(e, gw) if have_gw else None
    pids = e.pids()
    p = e.run("down", timeout=120)
    check(p.returncode == 0, "down succeeds", show(p))
    if slow_job:
        check("waiting for worker-slow-1 to exit" in p.stdout and "BOTMESH_STOP_TIMEOUT" in p.stdout,
              "down says it waits for the worker running a job", p.stdout)
    check("SIGKILL" not in p.stdout, "down needed no SIGKILL (every service stopped on SIGTERM)", p.stdout)
    wait_until(lambda: not any(alive(p) for p in pids.values()), 10, "every process to be gone")
    check(not e.pids(), "down removed the pid files", e.pids())
    p = e.run("status")
    check(p.returncode != 0 and "DOWN" in p.stdout, "status after down says DOWN and exits non-zero", show(p))
    if have_gw:
        p = e.run("invoke", "python")
        err = p.stderr.strip()
        check(p.returncode != 0 and "does not answer" in err and "./botmesh up" in err
              and len(err.splitlines()) == 1 and "000" not in err,
              "invoke with the stack down says so in one line and names ./botmesh up", show(p))


def start_slow_job(e, gw):
    """A worker of type slow running a job of a real bot that outlasts the
    worker's 6 s grace period at SIGTERM: `down` waits those 6 s (then the
    worker kills the bot and hands the job back), however long the
    services stopped before the workers took."""
    bot = os.path.join(e.dir, "slow.sh")
    with open(bot, "w") as f:
        f.write("#!/bin/sh\ncat >/dev/null\nsleep 120\necho '{}'\n")
    p = e.run("scale", "slow=1", env={"BOTMESH_WORKER_ARGS": "", "BOT_SLOW_CMD": "/bin/sh " + bot,
                                      "WORKER_GRACE_MS": "6000"})
    check(p.returncode == 0, "scale slow=1 (a real bot)", show(p))
    st, _, body = http("POST", gw + "/invoke", {"botType": "slow", "payload": {}})
    check(st == 202, "a slow job is accepted", st, body)
    job = body["jobId"]
    wait_until(lambda: http("GET", "%s/job/%s" % (gw, job))[2].get("state") == "running", 30,
               "the slow job to run")
    return job


def check_log_aliases(e):
    """`logs` takes the Docker Compose service names too: it shows the log
    files of that service, and only those."""
    logdir = os.path.join(e.var, "log")
    logs = sorted(f for f in os.listdir(logdir) if f.endswith(".log"))
    workers = [f for f in logs if f.startswith("worker-")]
    for name, want in (("orchestrator", ["broker.log"]), ("broker", ["broker.log"]),
                       ("api-gateway", ["gateway.log"]), ("workers", workers),
                       ("python", [f for f in workers if re.fullmatch(r"worker-python-\d+\.log", f)]),
                       ("python-gpu", [f for f in workers if re.fullmatch(r"worker-python-gpu-\d+\.log", f)]),
                       ("webhook-manager", ["webhook-manager.log"]), ("mock-webhook", ["mock-webhook.log"])):
        want = [f for f in want if f in logs]
        if not want:
            log("no log for %s (not built): skipped" % name)
            continue
        p = e.run("logs", name, "--no-follow", "-n", "2")
        check(p.returncode == 0, "logs %s succeeds" % name, show(p))
        if len(want) == 1:
            # The service may have logged a line since: the shown lines are
            # two consecutive lines of the file's end.
            shown = p.stdout.splitlines()
            tail = open(os.path.join(logdir, want[0]), errors="replace").read().splitlines()[-10:]
            check(len(shown) == 2 and any(tail[i:i + 2] == shown for i in range(len(tail) - 1)),
                  "logs %s shows the end of %s" % (name, want[0]), shown, tail)
        else:
            shown = sorted(os.path.basename(l[4:-4].strip()) for l in p.stdout.splitlines()
                           if l.startswith("==> ") and l.endswith(" <=="))
            check(shown == sorted(want), "logs %s shows exactly %s" % (name, want), shown)


def run_failures(e):
    # COMMAND --help prints the usage and does nothing else.
    for cmd in ("up", "down", "scale", "logs", "invoke", "status"):
        p = e.run(cmd, "--help")
        check(p.returncode == 0 and p.stdout.startswith("usage: ./botmesh") and not e.pids(),
              "%s --help: the usage, exit 0, nothing started" % cmd, show(p))
    # A bad value: the broker refuses to start; up names it and shows its log.
    p = e.run("up", env={"MAX_PYTHON_BOTS": "lots", "BOTMESH_UP_TIMEOUT": "20"})
    check(p.returncode != 0, "up fails when the broker cannot start", show(p))
    check("broker did not come up" in p.stderr and "MAX_PYTHON_BOTS" in p.stderr,
          "up names the broker and shows the log line naming MAX_PYTHON_BOTS", show(p))
    e.run("down", timeout=90)

    # A busy port: up says which one and who holds it.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", e.ports["broker"]))
        s.listen(1)
        p = e.run("up")
    check(p.returncode != 0 and "port %d is already in use" % e.ports["broker"] in p.stderr
          and "broker" in p.stderr, "up names the busy port and the service that needs it", show(p))
    check("BROKER_ENDPOINT" in p.stderr, "up names the setting that moves the busy port", show(p))
    check("MAX_PYTHON_BOTS" not in p.stderr and "last lines of" not in p.stderr,
          "... without the broker log's tail, which is the previous run's", show(p))
    e.run("down", timeout=90)
    run_lock_wait(e)

    run_interrupted_up(e)
    run_foreign_redis(e)
    run_outside_redis(e)

    # A bad port number in the env: refused before anything starts.
    p = e.run("up", env={"API_GATEWAY_PORT": "70000"})
    check(p.returncode != 0 and "API_GATEWAY_PORT" in p.stderr, "up refuses API_GATEWAY_PORT=70000", show(p))
    check(not e.pids(), "nothing was started", e.pids())

    # BOTMESH_JOBS (ninja -j) is checked before anything is built.
    p = e.run("build", env={"BOTMESH_JOBS": "two"})
    check(p.returncode != 0 and "BOTMESH_JOBS='two'" in p.stderr, "build refuses BOTMESH_JOBS=two", show(p))


def run_lock_wait(e):
    """down while another command holds var/run/.lock (here: this test)
    says whom it waits for, then runs once the lock is free."""
    lock = open(os.path.join(e.var, "run", ".lock"), "a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        p = subprocess.Popen([SCRIPT, "down"], env=e.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        ready = select.select([p.stderr], [], [], 30)[0]
        first = p.stderr.readline() if ready else "(nothing within 30 s)"
        check("waiting for pid %d" % os.getpid() in first and p.poll() is None,
              "down names the process holding the lock and waits", first)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    out, err = p.communicate(timeout=90)
    check(p.returncode == 0, "... and runs once the lock is free", out, err)


def run_interrupted_up(e):
    """SIGTERM to an `up` that is still waiting for its workers: it exits
    143 and lists the services it started, which run on."""
    # Workers that reach no broker stay up and never register: `up` waits
    # for them (BOTMESH_UP_TIMEOUT, 60 s here) until it is signalled.
    env = dict(e.env, BOTMESH_WORKER_ARGS="--simulate --endpoint tcp://127.0.0.1:%d" % free_port())
    p = subprocess.Popen([SCRIPT, "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = []
    try:
        for line in p.stdout:
            out.append(line)
            if line.startswith("worker-java-1: started"):
                break
        check(out and out[-1].startswith("worker-java-1: started"),
              "up started the workers and waits for them to register", out)
        p.send_signal(15)
        rest, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    log("up after SIGTERM: rc %d\n%s%s%s" % (p.returncode, "".join(out), rest, err))
    check(p.returncode == 143, "up exits 143 on SIGTERM", p.returncode, err)
    check("up interrupted" in err, "up says it was interrupted", err)
    listed = next((l for l in err.splitlines() if l.startswith("Started and still running:")), "").split()
    check({"redis", "broker", "worker-python-1"} <= set(listed),
          "up lists what it started and left running", err)
    check("./botmesh down" in err and "./botmesh up" in err, "up says how to stop them or start the rest", err)
    pids = e.pids()
    check("broker" in pids and alive(pids["broker"]), "the broker it started still runs", pids)
    p = e.run("down", timeout=90)
    check(p.returncode == 0, "down stops what the interrupted up started", show(p))
    wait_until(lambda: not any(alive(p) for p in pids.values()), 10, "every process to be gone")


def start_redis(e, name):
    """A redis-server of the test's own on a free port (no AOF, no RDB),
    its data in e.dir/NAME: (process, port)."""
    port = free_port()
    rdir = os.path.join(e.dir, name)
    os.makedirs(rdir)
    r = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", rdir,
                          "--appendonly", "no", "--save", ""],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return r, port


def run_foreign_redis(e):
    """A Redis up did not start already answers on BOTMESH_REDIS_PORT (a
    distribution's redis-server service): up uses it and warns that its AOF
    is off; status counts it as up."""
    r, port = start_redis(e, "foreign-redis")
    try:
        ping = lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True,
                                      text=True).stdout.strip() == "PONG"
        wait_until(ping, 20, "the foreign redis-server to answer PING")
        env = {"BOTMESH_REDIS_PORT": str(port)}
        # The broker's port is busy: up stops after Redis, which is enough.
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", e.ports["broker"]))
            s.listen(1)
            p = e.run("up", env=env)
        check("not started by botmesh answers on 127.0.0.1:%d: using it" % port in p.stdout,
              "up says it uses the Redis it found", show(p))
        check("appendonly no" in p.stdout, "up warns that this Redis runs without AOF", show(p))
        check("redis" not in e.pids(), "up started no Redis of its own", e.pids())
        p = e.run("status", env=env)
        line = next((l for l in p.stdout.splitlines() if l.startswith("redis ")), "")
        check("up (PING; not started by botmesh)" in line, "status shows the foreign Redis up", p.stdout)
        e.run("down", timeout=90, env=env)
        check(ping(), "down leaves the Redis it did not start alone")
    finally:
        r.terminate()
        r.wait(timeout=30)


def run_outside_redis(e):
    """A stack started with an outside REDIS_URL (with a password): `status`
    run without it (no env file naming it) checks that Redis, not a local
    one; the URL is recorded in var/run/redis.url with mode 0600, and the
    password is never printed."""
    port, password = free_port(), "pw-%d-secret" % os.getpid()
    rdir = os.path.join(e.dir, "outside-redis")
    os.makedirs(rdir)
    r = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", rdir,
                          "--requirepass", password, "--save", ""],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "redis://default:%s@127.0.0.1:%d/0" % (password, port)
    try:
        ping = lambda: subprocess.run(["redis-cli", "-u", url, "ping"], capture_output=True,
                                      text=True).stdout.strip() == "PONG"
        wait_until(ping, 20, "the outside redis-server to answer PING")
        # The gateway's port is busy: up stops after the broker, which runs
        # on, given that Redis.
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", e.ports["gw"]))
            s.listen(1)
            p = e.run("up", env={"REDIS_URL": url})
        check("broker" in e.pids() and alive(e.pids()["broker"]) and "redis" not in e.pids(),
              "up with REDIS_URL started the broker and no Redis of its own", e.pids(), show(p))
        check(password not in p.stdout + p.stderr and "redis://default:***@127.0.0.1:%d/0" % port in p.stdout,
              "up names the outside Redis with its password masked", show(p))
        rec = os.path.join(e.var, "run", "redis.url")
        check(os.path.exists(rec) and open(rec).read().strip() == url
              and (os.stat(rec).st_mode & 0o777) == 0o600,
              "up records the URL in var/run/redis.url, mode 0600",
              os.path.exists(rec) and oct(os.stat(rec).st_mode))
        for what, env in (("without REDIS_URL", {}), ("with another REDIS_URL", {"REDIS_URL": "redis://127.0.0.1:1/0"})):
            p = e.run("status", env=env)
            line = next((l for l in p.stdout.splitlines() if l.startswith("redis ")), "")
            check("external" in line and "up (PING redis://default:***@127.0.0.1:%d/0)" % port in line,
                  "status %s checks the Redis the stack was started with" % what, show(p))
            check("the running services use REDIS_URL=redis://default:***@127.0.0.1:%d/0" % port in p.stderr,
                  "status %s says it uses the recorded Redis" % what, show(p))
            check(password not in p.stdout + p.stderr, "status %s never prints the password" % what, show(p))
        p = e.run("down", timeout=90)
        check(p.returncode == 0 and not os.path.exists(rec), "down removes var/run/redis.url", show(p))
        check(ping(), "down leaves the outside Redis alone")
        # Nothing runs: status goes by this shell's settings again.
        p = e.run("status")
        line = next((l for l in p.stdout.splitlines() if l.startswith("redis ")), "")
        check("external" not in line, "status after down: no recorded Redis", show(p))
    finally:
        r.terminate()
        r.wait(timeout=30)


if __name__ == "__main__":
    main(test)

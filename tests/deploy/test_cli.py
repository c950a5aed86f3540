"""deploy.cli - what a new user meets at ./botmesh's edges, for real.

Usage errors exit 2 (./botmesh's and botmesh-client's, an extra word
included: status extra, stats extra), and scale workers=2 explains that
scale takes bot types.  On a second stack (BOTMESH_ENV_FILE and
BOTMESH_VAR_DIR set), up's summary prints its commands with those
variables, says what the broker binds and what clients use, and names
var/prometheus-targets.json, which lists every component's /metrics with
its job label (each answers there).  invoke --wait says within seconds
that the gateway stopped answering (its address, curl's error), waits on,
and says when it answers again; its timeout names the last known state.
A restart or scale whose workers' bots cannot load (a preload module that
is not there) exits 1 naming the worker and the bot's own error (the
missing module), and status then exits 1.  With the default
WORKER_METRICS_PORT=-1, a worker restarted keeps the metrics port it had,
where the targets file lists it.  The
down command as printed stops this stack, saying that a job running past
the workers' grace is handed back and runs again.
"""
import json
import os
import shlex
import subprocess
import threading
import time
import urllib.request

import deploylib as d
from harness import check, log, main, wait_until
from test_script import API_KEY, SCRIPT, Env, show

JOBS = {"orchestrator", "api-gateway", "workers", "webhook-manager", "mock-webhook"}


class Lines:
    """A process's stderr lines as they come, each with its arrival time."""

    def __init__(self, proc):
        self.lines = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc):
        for line in proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def first(self, text, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if text in line:
                    return at, line
            time.sleep(0.05)
        return None, None

    def text(self):
        return "\n".join(l for _, l in self.lines)


def usage_errors(e):
    for args in (("status", "extra"), ("down", "now"), ("up", "--bogus"), ("invoke",),
                 ("invoke", "python", "--bogus"), ("invoke", "python", "{not json"),
                 ("logs", "-n", "many"), ("scale", "python"), ("nosuchcommand",)):
        p = e.run(*args)
        check(p.returncode == 2 and p.stderr.strip(), "./botmesh %s: a usage error, exit 2" % " ".join(args),
              show(p))
    p = e.run("status", "extra")
    check("extra" in p.stderr, "status names the extra argument", show(p))
    p = e.run("scale", "workers=2")
    check(p.returncode == 2 and "bot types" in p.stderr and "python=2 node=1" in p.stderr
          and "BOT_WORKERS_CMD" not in p.stderr, "scale workers=2 explains that scale takes bot types", show(p))
    client = os.path.join(d.BIN, "botmesh-client")
    for args in (("stats", "extra"), ("ping", "x"), ("status", "a", "b"), ("nosuchcommand",)):
        p = subprocess.run([client, "--endpoint", "tcp://127.0.0.1:1"] + list(args),
                           capture_output=True, text=True, timeout=30)
        check(p.returncode == 2 and p.stderr.strip(), "botmesh-client %s: a usage error, exit 2" % " ".join(args),
              p.returncode, p.stderr)


def metrics_ok(target):
    req = urllib.request.Request("http://%s/metrics" % target, headers={"Authorization": "Bearer " + API_KEY})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status == 200
    except OSError as exc:
        log("GET %s/metrics: %r" % (target, exc))
        return False


def targets_file(e):
    with open(os.path.join(e.var, "prometheus-targets.json")) as f:
        return json.load(f)


def test():
    if not d.binary("botmesh-broker") or not d.binary("botmesh-worker"):
        d.skip("botmesh not built")
    e = Env()
    # Bound to every interface, as the default: the summary says so.
    e.env["BROKER_ENDPOINT"] = "tcp://*:%d" % e.ports["broker"]
    try:
        usage_errors(e)
        p = e.run("up")
        check(p.returncode == 0, "up", show(p))
        prefix = "BOTMESH_ENV_FILE=%s BOTMESH_VAR_DIR=%s ./botmesh" % (shlex.quote(e.envfile), shlex.quote(e.var))
        check("Stop it with %s down;" % prefix in p.stdout and "%s status" % prefix in p.stdout
              and "%s invoke " % prefix in p.stdout,
              "up's summary prints down, status and invoke with this stack's variables", show(p))
        broker = [l for l in p.stdout.splitlines() if l.startswith("  Broker ")]
        check(broker and "tcp://127.0.0.1:%d for clients on this host" % e.ports["broker"] in broker[0]
              and "binds tcp://*:%d" % e.ports["broker"] in broker[0]
              and "binds tcp://*:%d" % e.ports["broker"] in p.stdout.split("WARNING: the broker", 1)[-1],
              "the summary and the warning agree: it binds *, clients here use 127.0.0.1", broker, show(p))

        targets = targets_file(e)
        jobs = {t["labels"]["job"] for t in targets}
        services = {t["labels"]["service"] for t in targets}
        check(jobs == JOBS and {"broker", "gateway", "worker-python-1", "worker-node-1"} <= services,
              "var/prometheus-targets.json lists every component with its job", targets)
        for t in targets:
            check(metrics_ok(t["targets"][0]), "%s (%s) answers /metrics at %s"
                  % (t["labels"]["service"], t["labels"]["job"], t["targets"][0]))
        py_port = [t["targets"][0] for t in targets if t["labels"]["service"] == "worker-python-1"]
        p = e.run("scale", "python=2")
        check(p.returncode == 0, "scale python=2", show(p))
        check("worker-python-2" in {t["labels"]["service"] for t in targets_file(e)},
              "scale adds worker-python-2 to the targets file", targets_file(e))

        # invoke --wait across a gateway restart: said at once, and again
        # when it answers; the job completes.
        proc = subprocess.Popen([SCRIPT, "invoke", "python", '{"task":"data_analysis"}', "--delay-ms", "5000",
                                 "--wait", "--timeout", "60"], env=e.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = Lines(proc)
        check(lines.first('"jobId"', 20)[0], "invoke printed its job id", lines.text())
        # The gateway stays down until invoke has said so (a restart alone
        # can fall between two of its polls), then restart starts it.
        pid = e.pids()["gateway"]
        os.kill(pid, 15)
        wait_until(lambda: not os.path.exists("/proc/%d" % pid) or e.pids().get("gateway") != pid, 15,
                   "the gateway to exit on SIGTERM")
        at, line = lines.first("stopped answering", 10)
        # The state it last read: delayed, or none yet if the gateway went
        # before invoke's first poll (the timeout below checks the wording).
        check(line and "127.0.0.1:%d" % e.ports["gw"] in line and "curl: " in line
              and ("last known state: delayed" in line or "last known state: unknown" in line),
              "invoke --wait says the gateway stopped answering, with its address and the error", lines.text())
        r = e.run("restart", "gateway")
        check(r.returncode == 0, "restart gateway", show(r))
        at2, again = lines.first("answers again", 20)
        check(again, "... and says when it answers again", lines.text())
        out, _ = proc.communicate(timeout=60)
        check(proc.returncode == 0 and json.loads(out).get("state") == "completed",
              "... and the job completes", proc.returncode, out, lines.text())
        check(pid != e.pids()["gateway"], "the gateway was restarted")

        # Bots that cannot load: restart and scale say so, status exits 1.
        broken = {"BOTMESH_WORKER_ARGS": "", "BOT_PYTHON_PRELOAD": "pandass"}
        t0 = time.monotonic()
        p = e.run("restart", "worker-python-1", env=broken)
        check(p.returncode == 1 and "worker-python-1: its bots fail at init" in p.stderr,
              "restart with bots that cannot load exits 1 naming the worker", show(p))
        fail_line = [l for l in p.stderr.splitlines() if "worker-python-1: its bots fail at init" in l]
        check(fail_line and "pandass" in fail_line[0],
              "... with the bot's own error, which names the missing module", show(p))
        log("restart with a failing preload took %.1f s" % (time.monotonic() - t0))
        p = e.run("status")
        check(p.returncode == 1 and "BOTS FAIL AT INIT" in p.stdout, "status exits 1 on BOTS FAIL AT INIT", show(p))
        p = e.run("scale", "python=3", env=broken)
        check(p.returncode == 1 and "worker-python-3: its bots fail at init" in p.stderr,
              "scale whose new worker's bots cannot load exits 1 naming it", show(p))
        t0 = time.monotonic()
        p = e.run("restart", "python", env={"BOTMESH_WORKER_ARGS": ""})
        took = time.monotonic() - t0
        check(p.returncode == 0 and "fail at init" not in p.stderr,
              "restart python with loadable bots exits 0", show(p))
        # Restarted twice: worker-python-1 serves its metrics where it did,
        # and the targets file says so.
        now = [t["targets"][0] for t in targets_file(e) if t["labels"]["service"] == "worker-python-1"]
        check(py_port and now == py_port and metrics_ok(now[0]),
              "worker-python-1 keeps its metrics port (WORKER_METRICS_PORT=-1) across restarts", py_port, now)
        log("restart of 3 real python workers took %.1f s" % took)
        p = e.run("scale", "python=1")
        check(p.returncode == 0, "scale python=1", show(p))
        p = e.run("status")
        check(p.returncode == 0 and "FAIL AT INIT" not in p.stdout, "status exits 0 once every bot loads",
              show(p))

        # A job that outlasts the workers' grace: down says it is handed
        # back and runs again (not that workers finish their jobs).
        slow = {"SIM_DURATION_MS": "30000", "WORKER_GRACE_MS": "5000"}
        p = e.run("scale", "slow=1", env=slow)
        check(p.returncode == 0, "scale slow=1 (30 s simulated jobs, a 5 s grace)", show(p))
        p = e.run("invoke", "slow")
        check(p.returncode == 0, "invoke slow", show(p))
        slow_id = json.loads(p.stdout)["jobId"]

        def running():
            req = urllib.request.Request("http://127.0.0.1:%d/job/%s" % (e.ports["gw"], slow_id),
                                         headers={"Authorization": "Bearer " + API_KEY})
            with urllib.request.urlopen(req, timeout=5) as r:
                return json.load(r).get("state") == "running"
        wait_until(running, 30, "the slow job to run", interval=0.2)

        # The down command as printed stops this stack (not the default
        # one), run without the variables in the environment; an invoke
        # --wait meanwhile times out naming the last known state.
        proc = subprocess.Popen([SCRIPT, "invoke", "python", "{}", "--delay-ms", "60000", "--wait",
                                 "--timeout", "8"], env=e.env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = Lines(proc)
        check(lines.first('"jobId"', 20)[0], "invoke printed its job id", lines.text())
        bare = {k: v for k, v in e.env.items() if k not in ("BOTMESH_VAR_DIR", "BOTMESH_ENV_FILE")}
        words = shlex.split(prefix + " down")
        assigns = dict(w.split("=", 1) for w in words[:2])
        p = subprocess.run([SCRIPT, "down"], env=dict(bare, **assigns), capture_output=True, text=True,
                           timeout=120)
        check(p.returncode == 0 and not e.pids(), "the printed down command stops this stack", show(p), e.pids())
        check("hand back those still running, which run again" in p.stdout
              and "finish their running jobs" not in p.stdout,
              "down says a job past the grace is handed back and runs again", show(p))
        check(targets_file(e) == [], "down empties the targets file", targets_file(e))
        proc.wait(timeout=30)
        check(proc.returncode == 3 and "stopped answering" in lines.text()
              and "not finished after 8s (last known state: delayed;" in lines.text(),
              "invoke --wait times out with the last known state after the gateway went away",
              proc.returncode, lines.text())
    finally:
        e.cleanup()


if __name__ == "__main__":
    main(test)

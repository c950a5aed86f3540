"""deploy.restart - ./botmesh restart applies env file edits to a running stack.

The stack of deploy.script (ephemeral ports, a private var directory,
simulated bots, env.example as the env file), started by `up` with the
workers' metrics pinned (WORKER_METRICS_PORT a base: one port each, from it
up) and every metrics port kept local (BROKER_METRICS_ADDR and
WORKER_METRICS_ADDR 127.0.0.1).  Then the env file is edited and:
`restart gateway` makes the gateway take the new API_KEYS and leaves the
rest running, and names a misspelt setting of the env file as up does;
with MAX_BODY_BYTES=abc it is refused (exit 2, naming it) and the gateway
runs on; `restart mock` moves the mock to its new port;
`restart python` restarts that worker alone, on the metrics port it had;
`restart orchestrator` restarts the broker alone and returns once the
workers are back in its list, each under its name HOST-worker-TYPE-1 (the
name of status, after the host's), as after `restart` (all);
`restart` (all) stops intake first and the broker last, starts the broker
first, gives each worker the metrics port it had (it starts them in
another order than up: java first), which that worker then serves, and a
job accepted before it completes after it; an unknown name is
refused naming the services.  Then a REDIS_URL naming another Redis (a
redis-server started here): `restart gateway` is refused, naming those that
would keep the old Redis, and stops nothing; `restart` (all) moves the
services that use Redis (broker, gateway) to the new one, where the next job is written.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess

import deploylib as d
from harness import check, free_port, http as http_plain, log, main, wait_until
from test_script import Env, alive, show, start_redis

NEW_KEY = "key-three"


def set_env(e, key, value):
    """The env file with KEY=VALUE in place of its line for KEY (the first
    line of a name is the one read), or appended."""
    lines = open(e.envfile).read().splitlines()
    pat = re.compile(r"^\s*(export\s+)?%s\s*=" % key)
    out, done = [], False
    for l in lines:
        if pat.match(l):
            if not done:
                out.append("%s=%s" % (key, value))
            done = True
        else:
            out.append(l)
    if not done:
        out.append("%s=%s" % (key, value))
    with open(e.envfile, "w") as f:
        f.write("\n".join(out) + "\n")
    log("env file: %s=%s" % (key, value))


def http(method, url, key, body=None):
    return http_plain(method, url, body, headers={"Authorization": "Bearer " + key})


def listeners(port):
    out = subprocess.run(["ss", "-ltnH", "( sport = :%d )" % port], capture_output=True, text=True).stdout
    return sorted({l.split()[3].rsplit(":", 1)[0] for l in out.splitlines() if l.strip()})


def served_metrics(e, inst):
    """The metrics port a worker's last start serves, from its log (the
    part after the launcher's last start marker): "listening metrics=ADDR:PORT",
    or the line saying it cannot; None before either."""
    text = open(os.path.join(e.var, "log", inst + ".log"), errors="replace").read()
    text = text[text.rfind("botmesh: starting "):]
    m = re.search(r"listening metrics=\S+:(\d+)|(cannot serve metrics.*)", text)
    if not m:
        return None
    return int(m.group(1)) if m.group(1) else m.group(2)


def check_metrics_ports(e, ports, what):
    """Each worker has the metrics port of ports (its var/run file) and
    serves it."""
    run_dir = os.path.join(e.var, "run")
    now = {t: int(open(os.path.join(run_dir, "worker-%s-1.metrics-port" % t)).read()) for t in ports}
    check(now == ports, "%s: each worker keeps its metrics port" % what, ports, now)
    for t, port in sorted(ports.items()):
        wait_until(lambda: served_metrics(e, "worker-%s-1" % t) is not None, 30,
                   "worker-%s-1 to log its metrics port" % t)
        check(served_metrics(e, "worker-%s-1" % t) == port,
              "%s: worker-%s-1 serves its metrics on %d" % (what, t, port), served_metrics(e, "worker-%s-1" % t))


def worker_names(gw):
    """The names of the bot workers the broker lists (gateway /stats)."""
    st, _, body = http("GET", gw + "/stats", NEW_KEY)
    check(st == 200, "GET /stats", st, body)
    return sorted(w.get("name") for w in body.get("workers", []) if w.get("types") != ["webhook"])


def order(text, *marks):
    """The positions of marks in text (-1 when absent)."""
    return [text.find(m) for m in marks]


def test():
    if not d.binary("botmesh-broker") or not d.binary("botmesh-worker") or not d.binary("botmesh-gateway"):
        d.skip("botmesh-broker, botmesh-worker or botmesh-gateway not built yet")
    for tool in ("redis-server", "redis-cli", "curl", "jq", "ss"):
        if not shutil.which(tool):
            d.skip("%s is not installed (bash deploy/install-deps.sh)" % tool)
    e = Env()
    base = free_port(run=8)
    set_env(e, "WORKER_METRICS_PORT", base)
    set_env(e, "WORKER_METRICS_ADDR", "127.0.0.1")
    set_env(e, "BROKER_METRICS_ADDR", "127.0.0.1")
    try:
        run(e, base)
    finally:
        e.cleanup()


def run(e, base):
    gw = "http://127.0.0.1:%d" % e.ports["gw"]
    p = e.run("help")
    check(p.returncode == 0 and "restart [SERVICE...]" in p.stdout, "./botmesh help lists restart", show(p))
    p = e.run("restart")
    check(p.returncode != 0 and "nothing is running" in p.stderr, "restart with nothing running says so",
          show(p))

    p = e.run("up")
    check(p.returncode == 0, "up", show(p))
    pids = e.pids()
    run_dir = os.path.join(e.var, "run")
    ports = {t: int(open(os.path.join(run_dir, "worker-%s-1.metrics-port" % t)).read())
             for t in ("python", "node", "java")}
    check(sorted(ports.values()) == [base, base + 1, base + 2],
          "up gives the workers' metrics the ports from WORKER_METRICS_PORT up, one each", ports, base)
    for t, port in ports.items():
        check(listeners(port) == ["127.0.0.1"], "worker-%s-1's metrics listen on 127.0.0.1 only" % t,
              listeners(port))
    check(listeners(e.ports["metrics"]) == ["127.0.0.1"], "the broker's metrics listen on 127.0.0.1 only",
          listeners(e.ports["metrics"]))
    p = e.run("status")
    check(all("metrics %d" % port in p.stdout for port in ports.values()),
          "status shows each worker's metrics port", p.stdout)

    # A new API key in the env file: only the gateway restarts, and takes it.
    # A misspelt name there is named, as up names it.
    set_env(e, "API_KEYS", NEW_KEY)
    set_env(e, "GATEWAY_THREDS", "4")
    p = e.run("restart", "gateway")
    check(p.returncode == 0 and "gateway: stopped" in p.stdout and "gateway: up" in p.stdout,
          "restart gateway stops and starts it", show(p))
    check("botmesh: warning: unknown setting GATEWAY_THREDS (did you mean GATEWAY_THREADS?) (the environment "
          "or %s)" % e.envfile in p.stderr, "restart warns of the misspelt setting in the env file", show(p))
    now = e.pids()
    check(now["gateway"] != pids["gateway"] and alive(now["gateway"]), "the gateway runs as a new process",
          pids["gateway"], now["gateway"])
    check({k: v for k, v in now.items() if k != "gateway"} == {k: v for k, v in pids.items() if k != "gateway"},
          "every other service runs on untouched", pids, now)
    st, _, _ = http("GET", gw + "/stats", "key-two")
    check(st == 401, "the gateway refuses the old key", st)
    st, _, body = http("GET", gw + "/stats", NEW_KEY)
    check(st == 200, "the gateway takes the new key from the env file", st, body)
    e.env["BOTMESH_API_KEY"] = NEW_KEY

    # A bad value in the env file: the gateway's own check refuses it
    # before anything stops (exit 2, naming the variable).
    set_env(e, "MAX_BODY_BYTES", "abc")
    before = e.pids()
    p = e.run("restart", "gateway")
    check(p.returncode == 2 and "MAX_BODY_BYTES" in p.stderr and "nothing was stopped" in p.stderr
          and "gateway: stopped" not in p.stdout,
          "restart gateway with MAX_BODY_BYTES=abc is refused, naming it, before stopping", show(p))
    check(e.pids() == before and alive(before["gateway"]), "... and the gateway runs on", before, e.pids())
    st, _, _ = http("GET", gw + "/stats", NEW_KEY)
    check(st == 200, "... and answers", st)
    set_env(e, "MAX_BODY_BYTES", "1048576")
    # LOG_LEVEL, which each program reads before its flags: refused too.
    set_env(e, "LOG_LEVEL", "chatty")
    p = e.run("restart", "gateway")
    check(p.returncode == 2 and "LOG_LEVEL" in p.stderr and "nothing was stopped" in p.stderr
          and "gateway: stopped" not in p.stdout,
          "restart gateway with LOG_LEVEL=chatty is refused, naming it, before stopping", show(p))
    check(e.pids() == before and alive(before["gateway"]), "... and the gateway runs on", before, e.pids())
    set_env(e, "LOG_LEVEL", "info")

    # A new port for the mock (by its Compose name).
    old_mock, new_mock = e.ports["mock"], free_port()
    set_env(e, "MOCK_WEBHOOK_PORT", new_mock)
    p = e.run("restart", "mock")
    check(p.returncode == 0 and "mock-webhook: up (http://localhost:%d)" % new_mock in p.stdout,
          "restart mock starts the mock on its new port", show(p))
    st, _, _ = http_plain("GET", "http://127.0.0.1:%d/health" % new_mock)
    check(st == 200, "the mock answers on MOCK_WEBHOOK_PORT's new value", st)
    check(not listeners(old_mock), "nothing listens on the mock's old port", listeners(old_mock))

    # One bot type's workers: that worker alone, on the metrics port it had.
    before = e.pids()
    p = e.run("restart", "python")
    check(p.returncode == 0 and "worker-python: up" in p.stdout, "restart python", show(p))
    now = e.pids()
    check(now["worker-python-1"] != before["worker-python-1"]
          and all(now[k] == v for k, v in before.items() if k != "worker-python-1"),
          "restart python restarted worker-python-1 alone", before, now)
    check_metrics_ports(e, ports, "restart python")

    # A worker that died (kill -9; status shows it DOWN) is restarted by
    # the name status shows, not only by up.
    os.kill(now["worker-node-1"], signal.SIGKILL)
    wait_until(lambda: not alive(now["worker-node-1"]), 10, "worker-node-1 to die")
    p = e.run("restart", "worker-node-1")
    check(p.returncode == 0 and "worker-node: up" in p.stdout,
          "restart worker-node-1 starts the worker that died (status showed it DOWN)", show(p))
    check(alive(e.pids().get("worker-node-1", 0)), "worker-node-1 runs again", e.pids())

    # The broker alone (by its Compose name): the workers that ran on are
    # back in its list when restart returns.
    before = e.pids()
    p = e.run("restart", "orchestrator")
    check(p.returncode == 0 and all("worker-%s: up" % t in p.stdout for t in ports),
          "restart orchestrator restarts the broker and waits for the workers to register again", show(p))
    now = e.pids()
    check(now["broker"] != before["broker"] and all(now[k] == v for k, v in before.items() if k != "broker"),
          "restart orchestrator restarted the broker alone", before, now)
    st, _, body = http("GET", gw + "/stats", NEW_KEY)
    listed = sorted(t for w in body.get("workers", []) for t in w.get("types", []) if t != "webhook")
    check(st == 200 and listed == sorted(ports), "the broker lists a worker of each type at once", st, body)
    names = ["%s-worker-%s-1" % (socket.gethostname(), t) for t in sorted(ports)]
    check(worker_names(gw) == names, "the workers are named HOST-worker-TYPE-1 as status names them", names,
          worker_names(gw))

    # Everything: a job accepted before completes after; the broker stops
    # last and starts first.
    p = e.run("invoke", "python", '{"task":"data_analysis"}', "--delay-ms", "2000")
    check(p.returncode == 0, "a delayed job is accepted", show(p))
    job = json.loads(p.stdout)["jobId"]
    before = e.pids()
    p = e.run("restart")
    check(p.returncode == 0 and "botmesh: restarted" in p.stdout, "restart (all)", show(p))
    names = ["%s-worker-%s-1" % (socket.gethostname(), t) for t in sorted(ports)]
    check(worker_names(gw) == names, "the broker lists each worker under its name HOST-worker-TYPE-1, as before "
          "the restart, once", names, worker_names(gw))
    out = p.stdout
    gw_stop, worker_stop, broker_stop = order(out, "gateway: stopped", "worker-python-1: stopped",
                                              "broker: stopped")
    check(-1 < gw_stop < worker_stop < broker_stop,
          "restart stops the gateway, then the workers, the broker last", out)
    broker_start, gw_start, worker_start = order(out, "broker: started", "gateway: started",
                                                 "worker-python-1: started")
    check(broker_stop < broker_start < gw_start < worker_start,
          "... and starts the broker first, then the gateway and the workers", out)
    now = e.pids()
    check(now["redis"] == before["redis"], "restart (all) leaves Redis running", before, now)
    check(set(now) == set(before) and all(now[k] != v for k, v in before.items() if k != "redis")
          and all(alive(pid) for pid in now.values()),
          "every other service runs as a new process", before, now)
    check_metrics_ports(e, ports, "restart (all)")
    wait_until(lambda: http("GET", "%s/job/%s" % (gw, job), NEW_KEY)[2].get("state") == "completed", 60,
               "the job accepted before the restart to complete")
    p = e.run("invoke", "python", '{"task":"data_analysis"}', "--wait")
    check(p.returncode == 0, "a job submitted after the restart completes", show(p))

    p = e.run("restart", "nosuch")
    check(p.returncode != 0 and "'nosuch' is no service" in p.stderr and "gateway" in p.stderr,
          "restart of an unknown name is refused, naming the services", show(p))
    check(e.pids() == now, "... and touches nothing", now, e.pids())
    run_other_address(e)
    run_new_redis(e)


def run_other_address(e):
    """The gateway and the mock bound to another loopback address
    (GATEWAY_LISTEN, MOCK_LISTEN_ADDR): restart and status check their
    health there, not on 127.0.0.1."""
    addr = {"GATEWAY_LISTEN": "127.0.0.2", "MOCK_LISTEN_ADDR": "127.0.0.2"}
    p = e.run("restart", "gateway", "mock", env=addr)
    check(p.returncode == 0 and "gateway: up" in p.stdout and "mock-webhook: up" in p.stdout,
          "restart gateway mock on 127.0.0.2 passes their health checks there", show(p))
    check(listeners(e.ports["gw"]) == ["127.0.0.2"], "the gateway listens on 127.0.0.2 alone",
          listeners(e.ports["gw"]))
    p = e.run("status", env=addr)
    rows = [l for l in p.stdout.splitlines() if l.startswith(("gateway ", "mock-webhook "))]
    check(len(rows) == 2 and all("up (/health)" in l for l in rows) and p.returncode == 0,
          "status finds both up on 127.0.0.2", show(p))
    p = e.run("restart", "gateway", "mock")
    check(p.returncode == 0 and listeners(e.ports["gw"]) == ["0.0.0.0"],
          "restart gateway mock without those settings: back on every interface", show(p))


def environ(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        return dict(v.split("=", 1) for v in f.read().decode(errors="replace").split("\0") if "=" in v)


def run_new_redis(e):
    redis, port = start_redis(e, "redis-2")
    cli = lambda *a: subprocess.run(["redis-cli", "-p", str(port)] + list(a), capture_output=True,
                                    text=True).stdout.split()
    try:
        wait_until(lambda: cli("ping") == ["PONG"], 20, "the test's second redis-server to answer PING")
        url = "redis://127.0.0.1:%d/0" % port
        set_env(e, "REDIS_URL", url)
        before = e.pids()
        p = e.run("restart", "gateway")
        check(p.returncode != 0 and "REDIS_URL=%s" % url in p.stderr and ": broker would keep" in p.stderr,
              "restart gateway with a new REDIS_URL is refused, naming the services that would keep the "
              "old Redis", show(p))
        check(e.pids() == before, "... and stops nothing", before, e.pids())
        p = e.run("restart")
        check(p.returncode == 0 and "botmesh: restarted" in p.stdout, "restart (all) with a new REDIS_URL",
              show(p))
        now = e.pids()
        for name, pid in sorted(now.items()):
            if name in ("broker", "gateway"):
                check(environ(pid).get("REDIS_URL") == url, "%s runs on the new REDIS_URL" % name,
                      environ(pid).get("REDIS_URL"))
        p = e.run("invoke", "python", '{"task":"data_analysis"}', "--wait")
        check(p.returncode == 0, "a job submitted after the move completes", show(p))
        job = json.loads(p.stdout)["jobId"]
        keys = cli("--scan", "--pattern", "*%s*" % job)
        check(keys, "the job's record is in the new Redis", keys)
        p = e.run("down", timeout=120)
        check(p.returncode == 0, "down", show(p))
    finally:
        redis.terminate()
        redis.wait(timeout=30)


if __name__ == "__main__":
    main(test)

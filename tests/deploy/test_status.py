"""deploy.status - ./botmesh status tells the truth during an incident.

The local stack (ephemeral ports, private var directory, simulated bots,
env file with API keys, as deploy.script): `status` run without the env file
`up` read finds the services on the ports recorded in var/run and says
those differ from its own settings; a worker killed with SIGKILL stays DOWN
(exit 1) in every `status` until `up` starts it again, and `status` says so
without shell errors about its /proc entries being gone; a worker stopped
with SIGSTOP shows STOPPED (exit 1), and its type's row says the broker
lists fewer workers than run; `scale python=2` is kept across `down` and
`up` (var/scale), and `scale python=1` sets it back; a worker of a type
whose bot processes fail at every start shows "running, BOTS FAIL AT
INIT" with the last failure (status exits 1, and the scale that started
it exits 1 naming it); a worker of a long type name
(image_resize_large) widens the table's first column, every row's columns
under the header's (before, its rows pushed the PID, PORT and HEALTH
columns right past the header's).
"""
import os
import signal
import subprocess
import time

from harness import check, log, main, wait_until
from test_script import API_KEY, Env, alive, show
import deploylib as d


def row(p, name):
    return next((l for l in p.stdout.splitlines() if l.split()[:1] == [name]), "")


def type_row(p, t):
    return next((l for l in p.stdout.splitlines() if l.strip().startswith("%s workers" % t)), "")


def test():
    for b in ("botmesh-broker", "botmesh-worker", "botmesh-gateway"):
        if not d.binary(b):
            d.skip("%s not built yet" % b)
    e = Env()
    try:
        run(e)
    finally:
        e.cleanup()


def run(e):
    # One WORKER_NAME for all: each worker gets its instance's suffix (the
    # broker keeps one live worker a name).
    e.env["WORKER_NAME"] = "box"
    p = e.run("up")
    check(p.returncode == 0, "up", show(p))
    p = e.run("scale", "python=2")
    check(p.returncode == 0, "scale python=2", show(p))
    p = e.run("status")
    check(p.returncode == 0 and "1 registered" not in type_row(p, "python")
          and "2 registered with the broker" in type_row(p, "python"),
          "status: everything up, 2 python workers registered", show(p))
    with open(os.path.join(e.var, "log", "worker-python-2.log")) as f:
        text = f.read()
    check("box-python-2" in text, "WORKER_NAME=box: the second python worker is box-python-2", text[-1500:])

    # status without the env file up read (and without the port variables):
    # the ports recorded in var/run, and a note saying they differ.
    empty = os.path.join(e.dir, "empty.env")
    open(empty, "w").close()
    # The env file's API_KEYS is in force: the key comes from the shell.
    env = dict(e.env, BOTMESH_ENV_FILE=empty, BOTMESH_API_KEY=API_KEY)
    for k in ("API_GATEWAY_PORT", "BROKER_ENDPOINT", "BROKER_METRICS_PORT", "WEBHOOK_MANAGER_PORT",
              "BOTMESH_REDIS_PORT"):
        env.pop(k, None)
    q = subprocess.run([os.path.join(d.ROOT, "botmesh"), "status"], capture_output=True, text=True,
                       timeout=120, env=env)
    log("$ ./botmesh status (no env file) -> rc %d\n%s%s" % (q.returncode, q.stdout, q.stderr))
    check(q.returncode == 0, "status without the env file: every service up (exit 0)", show(q))
    check("up (/health)" in row(q, "gateway") and str(e.ports["gw"]) in row(q, "gateway"),
          "status without the env file finds the gateway on its recorded port", show(q))
    check("up (PING)" in row(q, "redis"), "... and Redis on its recorded port", show(q))
    check("gateway runs on port %d" % e.ports["gw"] in q.stderr and "not 3000" in q.stderr,
          "... and says the recorded gateway port differs from the configured one", q.stderr)
    check("2 registered with the broker" in type_row(q, "python"),
          "... and the broker's workers through the gateway on its recorded port", show(q))

    # SIGKILL: DOWN in the first status and in the next ones; a scaled
    # worker too (worker-python-2 of scale python=2).
    pids = e.pids()
    for w in ("worker-java-1", "worker-python-2"):
        os.kill(pids[w], signal.SIGKILL)
        wait_until(lambda: not alive(pids[w]), 10, "the killed %s to be gone" % w)
    for i in (1, 2):
        p = e.run("status")
        check(p.returncode == 1 and "DOWN" in row(p, "worker-java-1") and "DOWN" in row(p, "worker-python-2"),
              "status #%d after kill -9: worker-java-1 and worker-python-2 DOWN, exit 1" % i, show(p))
        check("/proc/" not in p.stderr and "No such file" not in p.stderr,
              "status #%d: no shell error about the dead workers' /proc entries" % i, p.stderr)
    check("worker-java-1" in e.pids(), "the dead worker's pid file is kept")
    # Its pid file gone (as an earlier up removed it): the type's row says
    # fewer run than scale asked for.
    os.unlink(os.path.join(e.var, "run", "worker-python-2.pid"))
    p = e.run("status")
    check(p.returncode == 1 and "1 running, FEWER than the 2 up starts" in p.stdout,
          "status: python has 1 worker running of the 2 scale set, exit 1", show(p))

    # SIGSTOP: STOPPED, and the broker soon lists fewer than run.
    node = pids["worker-node-1"]
    os.kill(node, signal.SIGSTOP)
    try:
        p = e.run("status")
        check(p.returncode == 1 and "STOPPED" in row(p, "worker-node-1"),
              "status: a SIGSTOPped worker is STOPPED, exit 1", show(p))

        def fewer():
            q = e.run("status")
            return "FEWER than the 1 running" in type_row(q, "node") and q
        t0 = time.monotonic()
        q = wait_until(fewer, 60, "status to say the broker lists fewer node workers than run", interval=0.5)
        log("fewer after %.1f s" % (time.monotonic() - t0))
        check(q.returncode == 1, "status exits 1 when fewer workers are registered than run", show(q))
    finally:
        os.kill(node, signal.SIGCONT)

    # up starts the dead worker again; the stopped one registers again.
    p = e.run("up")
    check(p.returncode == 0 and "worker-java-1: started" in p.stdout, "up starts the killed worker again",
          show(p))
    check("worker-python: 1 of 2 running" in p.stdout and "worker-python-2: started" in p.stdout,
          "... and the scaled python worker that died, to the count scale set", show(p))
    wait_until(lambda: e.run("status").returncode == 0, 60, "status to be healthy again after up", interval=0.5)

    # The scale survives down and up.
    p = e.run("down", timeout=120)
    check(p.returncode == 0, "down", show(p))
    p = e.run("up")
    check(p.returncode == 0 and "worker-python-2: started" in p.stdout
          and "python=2" in p.stdout, "up after down starts the 2 python workers scale asked for, and says so",
          show(p))
    p = e.run("status")
    check(p.returncode == 0 and row(p, "worker-python-2") and "2 registered" in type_row(p, "python"),
          "status: 2 python workers after down and up", show(p))
    p = e.run("scale", "python=1")
    check(p.returncode == 0, "scale python=1", show(p))
    p = e.run("down", timeout=120)
    p = e.run("up")
    check(p.returncode == 0 and "worker-python-2" not in p.stdout, "after scale python=1, up starts one",
          show(p))

    # A worker whose bot processes fail at every start (a pool bot that
    # exits at once): running, but status says its bots fail at init.
    broken = {"BOTMESH_WORKER_ARGS": "", "BOT_BROKEN_CMD": "/bin/false", "BOT_BROKEN_MODE": "pool"}
    p = e.run("scale", "broken=1", env=broken)
    check(p.returncode == 1 and "worker-broken-1: its bots fail at init" in p.stderr,
          "scale broken=1 (a type of our own, its bot fails at init) names the worker, exit 1", show(p))
    q = wait_until(lambda: (lambda q: "BOTS FAIL AT INIT" in row(q, "worker-broken-1") and q)(e.run("status")),
                   30, "status to say worker-broken-1's bots fail at init", interval=0.5)
    check(q.returncode == 1, "status exits 1 while a worker's bots fail at init", show(q))
    check("failed at init" in row(q, "worker-broken-1") and "./botmesh logs worker-broken-1" in row(q, "worker-broken-1"),
          "... quoting the last init failure and where to read more", show(q))
    check("FAIL AT INIT" not in row(q, "worker-python-1"), "a worker whose bots load says running", show(q))
    p = e.run("scale", "broken=0")
    check(p.returncode == 0, "scale broken=0", show(p))

    # A long type name (a spawn worker of type image_resize_large): the
    # table's first column is as wide as its longest name, every row's
    # columns under the header's.
    wide = {"BOTMESH_WORKER_ARGS": "", "BOT_IMAGE_RESIZE_LARGE_CMD": "/bin/true"}
    p = e.run("scale", "image_resize_large=1", env=wide)
    check(p.returncode == 0, "scale image_resize_large=1 (a spawn worker of a long type name)", show(p))
    q = wait_until(lambda: (lambda q: "1 registered" in type_row(q, "image_resize_large") and q)(e.run("status")),
                   30, "status to list the image_resize_large worker as registered", interval=0.5)
    lines = q.stdout.splitlines()
    head = lines[0]
    pid_col, port_col, health_col = head.index("PID"), head.index("PORT"), head.index("HEALTH")
    for line in lines[1:]:
        check(len(line) > health_col and line[pid_col - 1] == " " and line[port_col - 1] == " "
              and line[health_col - 1] == " " and line[health_col] != " ",
              "status: each row's columns start under the header's", line, show(q))
    inst = row(q, "worker-image_resize_large-1")
    check(inst[:pid_col].rstrip() == "worker-image_resize_large-1"
          and inst[pid_col:port_col].strip() == str(e.pids()["worker-image_resize_large-1"])
          and inst[health_col:].startswith("running"),
          "status: the long worker's row in its columns (name, pid, health)", show(q))
    check(type_row(q, "image_resize_large")[health_col:].startswith("1 registered with the broker"),
          "status: the long type's row says its worker is registered, under HEALTH", show(q))
    p = e.run("scale", "image_resize_large=0")
    check(p.returncode == 0, "scale image_resize_large=0", show(p))


if __name__ == "__main__":
    main(test)

"""deploy.scale_fail - a scale that fails is not remembered, and up starts
every service it can.  (And up gives python's fork warm-up only to a
python worker that forks: one scaled with BOT_PYTHON_MODE=pool has none.)

The stack of deploy.script (ephemeral ports, a private var directory,
simulated bots).  `scale ruby=1` with real bots and no BOT_RUBY_CMD: its
worker exits at start, scale exits 1 saying it was not applied, var/scale
has no ruby line and no ruby worker is left (status is clean).  `scale
python=0` is remembered: after down, up says it starts no python worker
and names var/scale and `./botmesh scale python=N` (as this stack's other
commands, with BOTMESH_ENV_FILE and BOTMESH_VAR_DIR), and its "Try it"
example is of node, which a worker serves (the printed curl answers a
jobId, the printed invoke --wait completes), saying that no worker serves
python (before, it printed a python example, whose job waited for ever).  Then a count of a type
whose worker fails at start in var/scale (ruby=1, as a hand edit or an
older launcher leaves it; SIM_RUBY_DURATION_MS=bogus makes that worker
exit): up reports worker-ruby, naming var/scale, still starts the mock
and the webhook manager, which come after the workers, and exits 1 naming
what failed; `scale ruby=0` and up again: exit 0.
"""
import os
import shlex

import deploylib as d
from harness import check, main
from test_script import Env, alive, run_try_it, show


def scale_file(e):
    path = os.path.join(e.var, "scale")
    return open(path).read().split() if os.path.exists(path) else []


def test():
    d.require(binaries=("botmesh-broker", "botmesh-worker", "botmesh-gateway", "botmesh-webhook", "botmesh-mock"),
              tools=("redis-server", "redis-cli", "curl", "jq", "ss"))
    e = Env()
    try:
        run(e)
    finally:
        e.cleanup()


def worker_environ(e, name):
    pid = e.pids()[name]
    with open("/proc/%d/environ" % pid) as f:
        return dict(kv.split("=", 1) for kv in f.read().split("\0") if "=" in kv)


def run(e):
    p = e.run("up")
    check(p.returncode == 0, "up", show(p))

    # up's python warm-up (BOT_PYTHON_FORK_WARMUP=1) goes with fork mode
    # only: a python worker in pool mode does not get it (the worker would
    # ignore it with a WARN).
    check(worker_environ(e, "worker-python-1").get("BOT_PYTHON_FORK_WARMUP") == "1",
          "a python worker in up's default fork mode gets the warm-up")
    p = e.run("scale", "python=2", env={"BOT_PYTHON_MODE": "pool"})
    check(p.returncode == 0, "scale python=2 with BOT_PYTHON_MODE=pool", show(p))
    wenv = worker_environ(e, "worker-python-2")
    check(wenv.get("BOT_PYTHON_MODE") == "pool" and "BOT_PYTHON_FORK_WARMUP" not in wenv,
          "a python worker in pool mode gets no BOT_PYTHON_FORK_WARMUP from up",
          {k: v for k, v in wenv.items() if k.startswith("BOT_PYTHON")})
    p = e.run("scale", "python=1")
    check(p.returncode == 0, "scale python=1", show(p))

    # Real bots (no --simulate) and no BOT_RUBY_CMD: the worker exits.
    p = e.run("scale", "ruby=1", env={"BOTMESH_WORKER_ARGS": ""})
    check(p.returncode == 1 and "exited during start-up" in p.stderr and "not applied" in p.stderr,
          "scale ruby=1 without BOT_RUBY_CMD fails and says it was not applied", show(p))
    check(not any(l.startswith("ruby=") for l in scale_file(e)), "var/scale remembers no ruby count",
          scale_file(e))
    check(not any(k.startswith("worker-ruby-") for k in e.pids()), "no ruby worker is left behind", e.pids())
    p = e.run("status")
    check(p.returncode == 0 and "worker-ruby" not in p.stdout, "status is clean after the failed scale", show(p))

    # A remembered 0: up says so.
    p = e.run("scale", "python=0")
    check(p.returncode == 0 and "python=0" in scale_file(e), "scale python=0 is remembered", show(p),
          scale_file(e))
    check(e.run("down", timeout=120).returncode == 0, "down")
    p = e.run("up")
    scale_path = os.path.join(e.var, "scale")
    # The scale commands it prints name this stack, as its other commands.
    bm = "BOTMESH_ENV_FILE=%s BOTMESH_VAR_DIR=%s ./botmesh" % (shlex.quote(e.envfile), shlex.quote(e.var))
    check(p.returncode == 0 and "worker-python: no worker, as %s scale python=0 set (%s" % (bm, scale_path)
          in p.stdout and "%s scale python=N" % bm in p.stdout,
          "up says it starts no python worker, naming var/scale and this stack's ./botmesh scale", show(p))
    check(not any(k.startswith("worker-python-") for k in e.pids()), "... and starts none", e.pids())
    try_it = p.stdout.split("Try it:\n", 1)[-1]
    check("Try it:\n" in p.stdout and '"botType": "node"' in try_it and "./botmesh invoke node " in try_it
          and '"python"' not in try_it and "invoke python" not in try_it
          and "No worker serves python" in try_it,
          "up's example is of a type a worker serves (node), saying no worker serves python", show(p))
    run_try_it(p.stdout)
    # Printed with the variables that name this stack (BOTMESH_VAR_DIR...),
    # which e.run sets too.
    invoke = [l for l in try_it.splitlines() if "./botmesh invoke " in l]
    words = shlex.split(invoke[0]) if invoke else []
    p = e.run(*words[words.index("./botmesh") + 1:]) if invoke else None
    check(p and p.returncode == 0 and '"completed"' in p.stdout,
          "the printed ./botmesh invoke node ... --wait completes", invoke, p and show(p))
    check(e.run("scale", "python=1").returncode == 0, "scale python=1")

    # A count in var/scale whose worker fails at start: up starts the rest.
    with open(scale_path, "a") as f:
        f.write("ruby=1\n")
    check(e.run("down", timeout=120).returncode == 0, "down")
    p = e.run("up", env={"SIM_RUBY_DURATION_MS": "bogus"})
    check(p.returncode == 1 and "FAILED: worker-ruby-1 did not come up" in p.stderr,
          "up with a ruby worker that fails at start reports it and exits 1", show(p))
    check("as %s scale ruby=1 set in %s" % (bm, scale_path) in p.stderr and "%s scale ruby=N" % bm in p.stderr,
          "... naming var/scale and ./botmesh scale as where its count comes from", show(p))
    check("FAILED: up: worker-ruby did not come up" in p.stderr, "... and, at the end, what failed", show(p))
    pids = e.pids()
    for name in ("mock-webhook", "webhook-manager", "gateway", "worker-python-1", "worker-node-1",
                 "worker-java-1"):
        check(name in pids and alive(pids[name]) and "%s: " % name in p.stdout,
              "up started %s all the same" % name, pids, show(p))
    check("mock-webhook: up" in p.stdout and "webhook-manager: up" in p.stdout,
          "the mock and the webhook manager pass their health checks", show(p))

    p = e.run("scale", "ruby=0")
    check(p.returncode == 0 and "ruby=0" in scale_file(e), "scale ruby=0", show(p))
    p = e.run("up")
    check(p.returncode == 0 and "worker-ruby" not in p.stdout,
          "up after scale ruby=0 exits 0 and starts no ruby worker", show(p))


if __name__ == "__main__":
    main(test)

"""e2elib.py - shared pieces of the end-to-end tests of the botmesh clients."""
import json
import logging
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("BOTMESH_ROOT") or os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))

import harness            # noqa: E402
import botmesh            # noqa: E402

PY = "/usr/bin/python3"
RUN_NODE = os.path.join(HERE, "run_node.sh")


def cli_run(stack, *args, stdin=None):
    """botmesh-client ARGS against the stack's broker: the finished process."""
    return subprocess.run([stack.bin("botmesh-client"), "--endpoint", stack.endpoint] + list(args),
                          capture_output=True, text=True, timeout=60, input=stdin)


def cli(stack, *args, stdin=None):
    """botmesh-client ARGS, which must exit 0: the JSON it printed."""
    out = cli_run(stack, *args, stdin=stdin)
    harness.check(out.returncode == 0, "botmesh-client %s exits 0" % " ".join(args[:2]), out.returncode,
                  out.stdout, out.stderr)
    return json.loads(out.stdout)


def need_node():
    """Install the Node dependencies if needed; exit 77 (skip) if impossible."""
    r = subprocess.run(["sh", RUN_NODE, "--check"], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        print("SKIP: the Node client's dependencies cannot be installed", flush=True)
        sys.exit(77)


def client_side():
    """The client library a test of both runs with, from its argument:
    python (the default) or node, whose dependencies are then installed
    (or the test skipped).  Another argument exits with the usage."""
    which = sys.argv[1] if len(sys.argv) > 1 else "python"
    if which not in ("python", "node"):
        raise SystemExit("usage: %s python|node" % os.path.basename(sys.argv[0]))
    if which == "node":
        need_node()
    return which


class ClientLog(logging.Handler):
    """The messages the Python client library logs (INFO and up) from now
    until close(), in order; with `holding`, only those that hold that
    text.  Any thread may log while a test reads lines()."""

    def __init__(self, holding=None):
        super().__init__(logging.INFO)
        self.holding = holding
        self.kept = []
        logging.getLogger("botmesh").addHandler(self)
        logging.getLogger("botmesh").setLevel(logging.INFO)

    def emit(self, record):             # called with the handler's lock held
        message = record.getMessage()
        if self.holding is None or self.holding in message:
            self.kept.append(message)

    def lines(self):
        with self.lock:
            return list(self.kept)

    def close(self):
        logging.getLogger("botmesh").removeHandler(self)
        super().close()


def pyworker(stack, name, types="pywork", credit=1, env=None, isolation="thread"):
    return stack.spawn(name, [PY, os.path.join(HERE, "pyworker.py"), "--types", types, "--credit", str(credit),
                              "--name", name, "--endpoint", stack.endpoint, "--isolation", isolation], env)


def nodeworker(stack, name, types="nodework", credit=1, env=None, endpoint=None):
    return stack.spawn(name, ["sh", RUN_NODE, os.path.join(HERE, "nodeworker.js"), "--types", types,
                              "--credit", str(credit), "--name", name, "--endpoint", endpoint or stack.endpoint],
                       env)


def side_worker(stack, side, proc_name, name, credit):
    """A python (pyworker.py, type pywork) or node (nodeworker.js, type
    nodework) worker with this name, its output in PROC_NAME.log."""
    if side == "python":
        args = [PY, os.path.join(HERE, "pyworker.py"), "--types", "pywork"]
    else:
        args = ["sh", RUN_NODE, os.path.join(HERE, "nodeworker.js"), "--types", "nodework"]
    return stack.spawn(proc_name, args + ["--credit", str(credit), "--name", name, "--endpoint", stack.endpoint])


def gateway(stack):
    """Start botmesh-gateway on a free port; returns its base URL once /ready answers 200."""
    p = stack.spawn("gateway", [stack.bin("botmesh-gateway"), "--port", "0", "--listen", "127.0.0.1",
                                "--broker", stack.endpoint, "--threads", "16"])
    port = p.listening("http")
    base = "http://127.0.0.1:%d" % port
    harness.wait_until(lambda: harness.http("GET", base + "/ready", timeout=2)[0] == 200, 15, "gateway /ready")
    return base


def wait_worker(client, name, timeout=15):
    """Wait until the broker lists a worker with this name."""
    harness.wait_until(lambda: any(w["name"] == name for w in client.stats()["workers"]), timeout,
                       "worker %s to register" % name)


def max_overlap(intervals):
    """Largest number of [start, end) intervals open at once."""
    events = []
    for s, e in intervals:
        events.append((s, 1))
        events.append((e, -1))
    events.sort(key=lambda x: (x[0], x[1]))      # an end before a start at the same instant
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best

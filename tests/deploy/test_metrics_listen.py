"""deploy.metrics_listen - the metrics ports can be kept local.

The broker's metrics port (BROKER_METRICS_PORT) binds BROKER_METRICS_ADDR
and a worker's (WORKER_METRICS_PORT) binds WORKER_METRICS_ADDR, each an
IPv4 address as GATEWAY_LISTEN is, 0.0.0.0 by default.  For each: with the
default the port answers on another local address of this machine (its
first non-loopback IPv4 address, else 127.0.0.2, which Linux routes to
lo); with 127.0.0.1 it is bound to 127.0.0.1 alone (ss -ltn) and that
other address is refused, while 127.0.0.1 still serves /metrics.
"""
import shutil
import socket
import subprocess

from harness import Stack, check, http, log, main

import deploylib as d


def other_address():
    """A local IPv4 address other than 127.0.0.1."""
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        addr = line.split()[3].split("/")[0]
        if not addr.startswith("127."):
            return addr
    return "127.0.0.2"


def answers(addr, port):
    try:
        with socket.create_connection((addr, port), timeout=2):
            return True
    except OSError:
        return False


def bound(port):
    """The local addresses listening on port (ss -ltn)."""
    out = subprocess.run(["ss", "-ltnH", "( sport = :%d )" % port], capture_output=True, text=True).stdout
    return sorted({line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()})


def check_port(what, port, local, other):
    st, _, _ = http("GET", "http://127.0.0.1:%d/metrics" % port)
    check(st == 200, "%s: GET /metrics on 127.0.0.1 answers 200" % what, st)
    if local:
        check(bound(port) == ["127.0.0.1"], "%s is bound to 127.0.0.1 only" % what, bound(port))
        check(not answers(other, port), "%s is refused on %s" % (what, other))
    else:
        check(bound(port) in (["0.0.0.0"], ["*"]), "%s is bound to every address by default" % what,
              bound(port))
        check(answers(other, port), "%s answers on %s by default" % (what, other))


def test():
    if not d.binary("botmesh-broker") or not d.binary("botmesh-worker"):
        d.skip("botmesh-broker or botmesh-worker not built yet")
    if not shutil.which("ss") or not shutil.which("ip"):
        d.skip("ss or ip is not installed (iproute2)")
    other = other_address()
    log("the other local address:", other)
    for local in (False, True):
        env = {"BROKER_METRICS_ADDR": "127.0.0.1", "WORKER_METRICS_ADDR": "127.0.0.1"} if local else {}
        label = "with 127.0.0.1" if local else "by default"
        with Stack("metrics-listen") as s:
            s.env.update(env)
            broker = s.broker(redis=False)
            check_port("the broker's metrics port (%s)" % label, broker.metrics_port, local, other)
            worker = s.worker("--type", "python", "--noop", env={"WORKER_METRICS_PORT": "-1"})
            check_port("the worker's metrics port (%s)" % label, worker.listening("metrics"), local, other)


if __name__ == "__main__":
    main(test)

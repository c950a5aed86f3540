"""Every service exits with the same codes (README, Configuration):
0 stopped on request or --help, 1 could not run with valid settings (a
port in use), 2 usage or configuration (an unknown flag, a bad value).

For each service, a table of bad values, each of a kind that stopped a
service with 1 before (a bot type's limit the broker checks late, a bad
listen address, a webhook manager's BROKER_ENDPOINT, a broker's endpoint
with a port that is not a number, ...): each exits 2
and names its variable; an unknown flag exits 2; a port in use exits 1.
"""
import os
import socket
import subprocess
import harness as h

BASE = {"PATH": "/usr/bin:/bin", "REDIS_URL": "none", "LOG_LEVEL": "info",
        "BROKER_ENDPOINT": "tcp://127.0.0.1:1", "BROKER_METRICS_PORT": "0",
        "API_GATEWAY_PORT": "0", "WEBHOOK_MANAGER_PORT": "0", "MOCK_WEBHOOK_PORT": "0",
        "WORKER_METRICS_PORT": "-1"}

BAD = {
    "botmesh-broker": [("MAX_PYTHON_BOTS", "abc"), ("MAX_QUEUE_PYTHON", "-1"),
                       ("RETRY_PYTHON_ATTEMPTS", "abc"), ("CURVE_SERVER_CERT", "/nonexistent"),
                       ("BROKER_ENDPOINT", "abc"), ("BROKER_METRICS_ADDR", "abc"),
                       ("MAX_QUEUE", "abc"), ("REDIS_URL", "http://x"), ("LOG_LEVEL", "chatty"),
                       # The peers' list of brokers, from an env file they share.
                       ("BROKER_ENDPOINT", "tcp://127.0.0.1:1,tcp://127.0.0.1:2"),
                       # The same list separated otherwise, and what no bound endpoint holds.
                       ("BROKER_ENDPOINT", "tcp://127.0.0.1:1 tcp://127.0.0.1:2"),
                       ("BROKER_ENDPOINT", "tcp://127.0.0.1:1;tcp://127.0.0.1:2"),
                       ("BROKER_ENDPOINT", "tcp://127.0.0.1:1/x"),
                       # A port or host zmq cannot bind: a typo, not a passing state.
                       ("BROKER_ENDPOINT", "tcp://127.0.0.1:notaport"),
                       ("BROKER_ENDPOINT", "tcp://127.0.0.1:70000"),
                       ("BROKER_ENDPOINT", "tcp://nosuchhost.invalid:5555"),
                       ("BROKER_ADVERTISE_ENDPOINT", "tcp://127.0.0.1:notaport"),
                       # What only binds is no address to connect to.
                       ("BROKER_ADVERTISE_ENDPOINT", "tcp://127.0.0.1:*"),
                       ("BROKER_ADVERTISE_ENDPOINT", "tcp://127.0.0.1:0")],
    "botmesh-gateway": [("GATEWAY_THREADS", "abc"), ("API_KEYS", "a,,b"), ("GATEWAY_LISTEN", "abc"),
                        ("REDIS_URL", "http://x"), ("BROKER_ENDPOINT", "abc"), ("LOG_LEVEL", "chatty"),
                        ("BROKER_ENDPOINT", "tcp://127.0.0.1:notaport"),
                        ("RATE_LIMIT_BURST", "0.5")],
    "botmesh-webhook": [("WEBHOOK_MAX_RETRIES", "abc"), ("WEBHOOK_JITTER", "abc"),
                        ("BROKER_ENDPOINT", "abc"), ("WEBHOOK_LISTEN_ADDR", "abc"),
                        ("BROKER_ENDPOINT", "tcp://127.0.0.1:1,tcp://127.0.0.1:notaport"),
                        ("CORS_ORIGINS", "not an origin"), ("LOG_LEVEL", "chatty"),
                        ("WEBHOOK_SECRET", "whsec_not base64!")],
    "botmesh-mock": [("MOCK_THREADS", "abc"), ("MOCK_LISTEN_ADDR", "abc"),
                     ("MOCK_WEBHOOK_PORT", "70000"), ("LOG_LEVEL", "chatty"),
                     ("MOCK_WEBHOOK_SECRET", "whsec_not base64!")],
    "botmesh-worker": [("WORKER_CONCURRENCY", "abc"), ("BOT_PYTHON_MODE", "abc"),
                       ("WORKER_METRICS_ADDR", "abc"), ("LOG_LEVEL", "chatty"),
                       ("BROKER_ENDPOINT", "tcp://127.0.0.1:notaport")],
}
ARGS = {"botmesh-worker": ["--type", "python"]}
PORT_VAR = {"botmesh-gateway": "API_GATEWAY_PORT", "botmesh-webhook": "WEBHOOK_MANAGER_PORT",
            "botmesh-mock": "MOCK_WEBHOOK_PORT"}


def run(binary, env=None, args=None):
    e = dict(BASE, **(env or {}))
    p = subprocess.run([os.path.join(h.BIN, binary)] + (ARGS.get(binary, []) if args is None else args),
                       env=e, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stderr


def test():
    for binary, cases in BAD.items():
        for var, value in cases:
            rc, err = run(binary, {var: value})
            h.check(rc == 2 and var in err, "%s with %s=%s exits 2 naming it" % (binary, var, value),
                    rc, err[-600:])
        rc, err = run(binary, args=["--bogus"])
        h.check(rc == 2, "%s --bogus exits 2 (usage)" % binary, rc, err[-300:])
        rc, _ = run(binary, args=["--help"])
        h.check(rc == 0, "%s --help exits 0" % binary, rc)

    # A list however separated is named as one, with the way to give the broker its own.
    for sep in (" ", ";"):
        rc, err = run("botmesh-broker", {"BROKER_ENDPOINT": "tcp://127.0.0.1:1%stcp://127.0.0.1:2" % sep})
        h.check(rc == 2 and "holds a list" in err and "--endpoint" in err,
                "the broker with a list separated by %r exits 2 saying it is a list" % sep, rc, err[-600:])

    # The mock checks the manager's secret when it has none of its own, and
    # names the variable the secret came from.
    rc, err = run("botmesh-mock", {"WEBHOOK_SECRET": "whsec_not base64!"})
    h.check(rc == 2 and "configuration: WEBHOOK_SECRET:" in err,
            "botmesh-mock with a bad WEBHOOK_SECRET exits 2 naming WEBHOOK_SECRET", rc, err[-300:])

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        for binary, var in PORT_VAR.items():
            rc, err = run(binary, {var: port, "GATEWAY_LISTEN": "127.0.0.1",
                                   "WEBHOOK_LISTEN_ADDR": "127.0.0.1", "MOCK_LISTEN_ADDR": "127.0.0.1"})
            h.check(rc == 1 and var in err, "%s with %s in use exits 1 naming it" % (binary, var),
                    rc, err[-300:])
        rc, err = run("botmesh-broker", {"BROKER_METRICS_PORT": port, "BROKER_METRICS_ADDR": "127.0.0.1"})
        h.check(rc == 1 and "BROKER_METRICS_PORT" in err, "the broker with its metrics port in use exits 1",
                rc, err[-300:])
        # Its ROUTER's port in use: the environment, not the value.
        rc, err = run("botmesh-broker", {"BROKER_ENDPOINT": "tcp://127.0.0.1:" + port})
        h.check(rc == 1 and "BROKER_ENDPOINT" in err and "in use" in err,
                "the broker with BROKER_ENDPOINT's port in use exits 1 naming it", rc, err[-300:])
    # An interface's name that is not up (yet): the environment, not the
    # value (wg0 before its tunnel, eth0 before DHCP): exit 1, so that a
    # service manager starts it again, with the hint.
    rc, err = run("botmesh-broker", {"BROKER_ENDPOINT": "tcp://bmnoif7:5555"})
    h.check(rc == 1 and "BROKER_ENDPOINT" in err and "not up" in err,
            "the broker bound to an interface name that is not up exits 1, saying so", rc, err[-300:])


if __name__ == "__main__":
    h.main(test)

"""Configuration: --help names every flag and variable; a bad value stops
the gateway at start with a message naming the variable; a busy port is
an error, not a silent exit."""
import subprocess

import harness
from gwtest import check, gateway, stop_clean

VARIABLES = ["API_GATEWAY_PORT", "GATEWAY_LISTEN", "BROKER_ENDPOINT", "GATEWAY_THREADS",
             "GATEWAY_KEEPALIVE_MS", "GATEWAY_REQUEST_TIMEOUT_MS", "GATEWAY_MAX_HEADER_BYTES",
             "MAX_BODY_BYTES", "MAX_PAYLOAD_BYTES", "RATE_LIMIT_RPS", "RATE_LIMIT_BURST",
             "RATE_LIMIT_MAX_KEYS", "API_KEYS", "METRICS_REQUIRE_KEY", "BROKER_TIMEOUT_MS",
             "BROKER_CONNECT_TIMEOUT_MS", "REDIS_URL", "REDIS_PREFIX", "REDIS_TIMEOUT_MS",
             "GATEWAY_SHUTDOWN_MS", "LOG_LEVEL", "WEBHOOK_ALLOW_PRIVATE", "WEBHOOK_ALLOWED_HOSTS",
             "GATEWAY_MAX_WAITERS"]


def run(args, env=None):
    e = {"PATH": "/usr/bin:/bin", "REDIS_URL": "none", "GATEWAY_LISTEN": "127.0.0.1",
         "API_GATEWAY_PORT": "0"}
    e.update(env or {})
    out = subprocess.run([harness.BIN + "/botmesh-gateway"] + args, env=e, capture_output=True,
                         text=True, timeout=20)
    return out.returncode, out.stdout + out.stderr


def main():
    rc, out = run(["--help"])
    check(rc == 0 and "--port" in out and all(v in out for v in VARIABLES),
          "--help lists the flags and every variable", [v for v in VARIABLES if v not in out])

    bad = [({"GATEWAY_THREADS": "abc"}, [], "GATEWAY_THREADS"),
           ({"GATEWAY_THREADS": "0"}, [], "GATEWAY_THREADS"),
           ({"API_GATEWAY_PORT": "70000"}, [], "API_GATEWAY_PORT"),
           ({}, ["--port", "x"], "--port"),
           ({"MAX_BODY_BYTES": "-1"}, [], "MAX_BODY_BYTES"),
           ({"RATE_LIMIT_RPS": "fast"}, [], "RATE_LIMIT_RPS"),
           ({"RATE_LIMIT_BURST": "0.5"}, [], "RATE_LIMIT_BURST"),
           ({"BROKER_TIMEOUT_MS": "0"}, [], "BROKER_TIMEOUT_MS"),
           ({"METRICS_REQUIRE_KEY": "maybe"}, [], "METRICS_REQUIRE_KEY"),
           ({"API_KEYS": "a,,b"}, [], "API_KEYS"),
           ({"WEBHOOK_ALLOWED_HOSTS": "localhost:0"}, [], "WEBHOOK_ALLOWED_HOSTS"),
           ({"WEBHOOK_ALLOW_PRIVATE": "perhaps"}, [], "WEBHOOK_ALLOW_PRIVATE"),
           ({"API_KEYS": "has space"}, [], "API_KEYS"),
           ({"REDIS_URL": "http://localhost"}, [], "REDIS_URL"),
           ({"BROKER_ENDPOINT": "localhost:5555"}, [], "BROKER_ENDPOINT"),
           ({"LOG_LEVEL": "chatty"}, [], "LOG_LEVEL"),
           ({"GATEWAY_THREADS": "8", "GATEWAY_MAX_WAITERS": "8"}, [], "GATEWAY_MAX_WAITERS"),
           ({}, ["--bogus", "1"], "--bogus")]
    for env, args, name in bad:
        rc, out = run(args, env)
        check(rc != 0 and name in out, "refused at start, naming %s" % name, rc, out[-300:])

    with harness.Stack("gw-config") as s:
        g = gateway(s)
        rc, out = run([], {"API_GATEWAY_PORT": str(g.port)})
        check(rc == 1 and "API_GATEWAY_PORT" in out and "Address already in use" in out,
              "a busy port stops the second gateway, naming API_GATEWAY_PORT", rc, out[-300:])
        stop_clean(g)


if __name__ == "__main__":
    harness.main(main)

"""A worker on a CURVE-encrypted mesh: with the broker's public key and a
certificate the broker accepts, it registers and runs a job; with an unknown
certificate it never registers; a bad CURVE configuration stops it at start.
"""
import json
import os
import re
import subprocess

import harness
from harness import check, wait_until


def keygen(d, name):
    out = subprocess.run([harness.os.path.join(harness.BIN, "botmesh-client"), "keygen", d, name],
                         capture_output=True, text=True, timeout=10)
    check(out.returncode == 0, "keygen %s" % name, out.stderr)
    return re.search(r"public key:\s+(\S+)", out.stdout).group(1)


def main():
    with harness.Stack("worker-curve") as s:
        allowed = os.path.join(s.dir, "allowed")
        secrets = os.path.join(s.dir, "secrets")
        server_pub = keygen(secrets, "broker")
        keygen(allowed, "worker1")
        keygen(allowed, "client1")
        keygen(secrets, "intruder")
        for name in ("worker1", "client1"):
            os.rename(os.path.join(allowed, name + ".key_secret"), os.path.join(secrets, name + ".key_secret"))
        # (Not s.broker (): its readiness PING has no CURVE keys.)
        broker = s.spawn("broker", [s.bin("botmesh-broker")], {
            "CURVE_SERVER_CERT": os.path.join(secrets, "broker.key_secret"), "CURVE_CLIENTS_DIR": allowed,
            "BROKER_ENDPOINT": "tcp://127.0.0.1:0", "REDIS_URL": "none", "BROKER_METRICS_PORT": "0"})
        s.endpoint = "tcp://127.0.0.1:%d" % broker.listening("zmq")
        wait_until(lambda: "CURVE on" in broker.output(), 10, "the broker to say CURVE is on")

        # A worker with an unknown key never gets in; one with a known key does.
        intruder = s.worker("--type", "python", "--name", "w-intruder",
                 env={"CURVE_SERVER_KEY": server_pub,
                      "CURVE_CLIENT_CERT": os.path.join(secrets, "intruder.key_secret")})
        s.worker("--type", "python", "--name", "w-known",
                 env={"CURVE_SERVER_KEY": server_pub,
                      "CURVE_CLIENT_CERT": os.path.join(secrets, "worker1.key_secret")})
        cenv = dict(os.environ, BROKER_CLIENT_ENDPOINT=s.endpoint, CURVE_SERVER_KEY=server_pub,
                    CURVE_CLIENT_CERT=os.path.join(secrets, "client1.key_secret"))

        def client(*args):
            out = subprocess.run([s.bin("botmesh-client")] + list(args), capture_output=True,
                                 text=True, env=cenv, timeout=60)
            return out.returncode, out.stdout
        workers = wait_until(lambda: (lambda r: r[0] == 0 and [w["name"] for w in json.loads(r[1])["workers"]])(
            client("stats")), 15, "the known worker to register over CURVE")
        rc, out = client("submit", "python", '{"dataset": "secret", "size": 10}', "--wait")
        rec = json.loads(out)
        check(rc == 0 and rec["state"] == "completed" and rec["worker"] == "w-known",
              "a job runs on the CURVE worker", rec.get("state"), rec.get("worker"))
        rc, out = client("stats")
        names = [w["name"] for w in json.loads(out)["workers"]]
        check(names == ["w-known"], "the worker with an unknown key never registered", names, workers)

        # The refused worker and the broker say why, in their logs.
        refused = "the broker refused this peer's CURVE key (its public key is not in the broker's CURVE_CLIENTS_DIR)"
        wait_until(lambda: refused in intruder.output(), 15, "the intruder to log that its key was refused")
        wait_until(lambda: "refused a CURVE handshake on %s (auth)" % s.endpoint in broker.output(), 10,
                   "the broker to log the refused key")
        # Once per connection attempt, not a line per heartbeat: HEARTBEAT send
        # failures are one warning per outage.
        out = intruder.output()
        sends = out.count("could not send HEARTBEAT")
        check(sends <= 1, "one heartbeat-send warning per outage", sends, out[-1500:])
        check(out.count(refused) <= 2, "the refused key logged once per connection attempt",
              out.count(refused), out[-1500:])

        # Bad CURVE configuration: exit 2 at start, naming the variable.
        for env, name in (({"CURVE_SERVER_KEY": "short"}, "CURVE_SERVER_KEY"),
                          ({"CURVE_SERVER_KEY": server_pub}, "CURVE_CLIENT_CERT"),
                          ({"CURVE_SERVER_KEY": server_pub,
                            "CURVE_CLIENT_CERT": os.path.join(secrets, "missing")}, "CURVE_CLIENT_CERT"),
                          ({"CURVE_SERVER_KEY": server_pub,
                            "CURVE_CLIENT_CERT": os.path.join(allowed, "worker1.key")},
                           "CURVE_CLIENT_CERT: '%s' is a public certificate; give the .key_secret file"
                           % os.path.join(allowed, "worker1.key"))):
            out = subprocess.run([s.bin("botmesh-worker"), "--type", "python"], capture_output=True,
                                 text=True, timeout=10, env=dict(os.environ, **env))
            check(out.returncode == 2 and name in out.stderr, "bad CURVE config stops the worker naming %s" % name,
                  out.returncode, out.stderr[-200:])


if __name__ == "__main__":
    harness.main(main)

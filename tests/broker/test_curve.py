"""CURVE security: with keys configured, only known peers get in.

Certificates made by `botmesh-client keygen`; the broker accepts the keys in
its CURVE_CLIENTS_DIR; a client with a known key is answered, a client with
an unknown key (or none) is not.
"""
import os
import re
import subprocess
import harness as h


def keygen(d, name):
    out = subprocess.run([h.os.path.join(h.BIN, "botmesh-client"), "keygen", d, name],
                         capture_output=True, text=True, timeout=10)
    h.check(out.returncode == 0, "keygen %s" % name, out.stderr)
    return re.search(r"public key:\s+(\S+)", out.stdout).group(1)


def test():
    with h.Stack("curve") as s:
        allowed = os.path.join(s.dir, "allowed")
        secrets = os.path.join(s.dir, "secrets")
        server_pub = keygen(secrets, "broker")
        keygen(allowed, "worker1")
        keygen(secrets, "intruder")
        os.rename(os.path.join(allowed, "worker1.key_secret"), os.path.join(secrets, "worker1.key_secret"))
        env = {"CURVE_SERVER_CERT": os.path.join(secrets, "broker.key_secret"),
               "CURVE_CLIENTS_DIR": allowed}
        broker = s.spawn("broker", [s.bin("botmesh-broker")],
                         dict(env, BROKER_ENDPOINT="tcp://127.0.0.1:0", REDIS_URL="none",
                              BROKER_METRICS_PORT="0"))
        s.endpoint = "tcp://127.0.0.1:%d" % broker.listening("zmq")
        h.wait_until(lambda: "CURVE on" in broker.output(), 10, "broker says CURVE is on")

        def ping(cert, timeout="1500"):
            e = dict(os.environ, BROKER_CLIENT_ENDPOINT=s.endpoint, CURVE_SERVER_KEY=server_pub)
            if cert:
                e["CURVE_CLIENT_CERT"] = cert
            else:
                e.pop("CURVE_SERVER_KEY")
            return subprocess.run([s.bin("botmesh-client"), "--timeout-ms", timeout, "ping"],
                                  capture_output=True, text=True, env=e, timeout=20)

        ok = h.wait_until(lambda: (lambda r: r if r.returncode == 0 else None)(
            ping(os.path.join(secrets, "worker1.key_secret"))), 15, "a known key is answered")
        h.check('"redis":true' in ok.stdout, "PING answered over CURVE", ok.stdout)
        bad = ping(os.path.join(secrets, "intruder.key_secret"))
        h.check(bad.returncode == 3, "an unknown key gets no answer (refused by the authenticator)", bad.returncode)
        plain = ping(None)
        h.check(plain.returncode == 3, "a peer without CURVE gets no answer", plain.returncode)
        wrong = ping(os.path.join(secrets, "missing.key_secret"))
        h.check(wrong.returncode == 2 and "CURVE_CLIENT_CERT" in wrong.stderr,
                "a missing certificate file is a configuration error naming the variable", wrong.stderr)


if __name__ == "__main__":
    h.main(test)

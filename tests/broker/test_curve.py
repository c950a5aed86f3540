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
        metrics_port = h.free_port()
        broker = s.spawn("broker", [s.bin("botmesh-broker")],
                         dict(env, BROKER_ENDPOINT="tcp://127.0.0.1:0", REDIS_URL="none",
                              BROKER_METRICS_PORT=str(metrics_port), BROKER_METRICS_ADDR="127.0.0.1"))
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
        h.check("the broker refused this peer's CURVE key" in bad.stderr and "CURVE_CLIENTS_DIR" in bad.stderr,
                "the client says its key was refused", bad.stderr)
        h.wait_until(lambda: "refused a CURVE handshake on %s (auth)" % s.endpoint in broker.output(), 10,
                     "the broker logs the refused key")
        # A wrong server key (the intruder's): the handshake breaks.
        e = dict(os.environ, BROKER_CLIENT_ENDPOINT=s.endpoint, CURVE_SERVER_KEY=keygen(secrets, "other"),
                 CURVE_CLIENT_CERT=os.path.join(secrets, "worker1.key_secret"))
        wrong_key = subprocess.run([s.bin("botmesh-client"), "--timeout-ms", "1500", "ping"],
                                   capture_output=True, text=True, env=e, timeout=20)
        h.check(wrong_key.returncode == 3 and "check CURVE_SERVER_KEY" in wrong_key.stderr,
                "a wrong server key: the client says to check CURVE_SERVER_KEY", wrong_key.stderr)
        h.wait_until(lambda: "(protocol): cryptographic error: the peer's CURVE_SERVER_KEY" in broker.output(),
                     10, "the broker logs the wrong server key")
        # The gateway's link says it too (once, though libzmq retries).
        gw = s.spawn("gateway", [s.bin("botmesh-gateway")], {
            "API_GATEWAY_PORT": "0", "GATEWAY_LISTEN": "127.0.0.1", "REDIS_URL": "none",
            "BROKER_ENDPOINT": s.endpoint, "CURVE_SERVER_KEY": e["CURVE_SERVER_KEY"],
            "CURVE_CLIENT_CERT": os.path.join(secrets, "worker1.key_secret")})
        h.wait_until(lambda: "ERROR gateway CURVE handshake with the broker failed: check CURVE_SERVER_KEY"
                     in gw.output().replace("ERROR  ", "ERROR "), 15, "the gateway logs the wrong server key")
        plain = ping(None)
        h.check(plain.returncode == 3, "a peer without CURVE gets no answer", plain.returncode)
        metrics = h.wait_until(lambda: (lambda t: t if 'broker_handshakes_failed_total{reason="auth"} 1' in t
                                        and 'broker_handshakes_failed_total{reason="protocol"}' in t else None)(
            str(h.http("GET", "http://127.0.0.1:%d/metrics" % metrics_port)[2])), 10,
            "the refused handshakes counted")
        h.check(metrics, "metrics")
        public = ping(os.path.join(allowed, "worker1.key"))
        h.check(public.returncode == 2 and "CURVE_CLIENT_CERT" in public.stderr
                and "is a public certificate; give the .key_secret file" in public.stderr,
                "a public certificate is refused at start, naming the variable", public.stderr)
        wrong = ping(os.path.join(secrets, "missing.key_secret"))
        h.check(wrong.returncode == 2 and "CURVE_CLIENT_CERT" in wrong.stderr,
                "a missing certificate file is a configuration error naming the variable", wrong.stderr)


if __name__ == "__main__":
    h.main(test)

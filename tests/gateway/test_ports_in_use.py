"""A port already in use stops the gateway, the webhook manager and the
mock at start with one ERROR line that names the variable and the port.

For each service, its port (API_GATEWAY_PORT, WEBHOOK_MANAGER_PORT,
MOCK_WEBHOOK_PORT) is held by a socket of the test:
- the service exits 1 (it could not run; its settings are valid);
- its log holds one ERROR line, naming the variable, the address and
  port, and the reason (Address already in use), and no civetweb WARN
  lines before it;
- the gateway and the webhook manager bind before they connect to the
  broker: the broker endpoint they are given (a plain TCP socket of the
  test) sees no connection at all.
"""
import os
import socket
import subprocess
import harness as h

SERVICES = [("botmesh-gateway", "API_GATEWAY_PORT", True),
            ("botmesh-webhook", "WEBHOOK_MANAGER_PORT", True),
            ("botmesh-mock", "MOCK_WEBHOOK_PORT", False)]


def listener():
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


def test():
    busy, broker = listener(), listener()
    port = busy.getsockname()[1]
    endpoint = "tcp://127.0.0.1:%d" % broker.getsockname()[1]
    broker.settimeout(0)
    try:
        for binary, var, uses_broker in SERVICES:
            env = dict(os.environ, LOG_LEVEL="info", REDIS_URL="none", BROKER_ENDPOINT=endpoint,
                       GATEWAY_LISTEN="127.0.0.1", WEBHOOK_LISTEN_ADDR="127.0.0.1",
                       MOCK_LISTEN_ADDR="127.0.0.1")
            env[var] = str(port)
            p = subprocess.run([os.path.join(h.BIN, binary)], env=env, capture_output=True,
                               text=True, timeout=30)
            errors = [l for l in p.stderr.splitlines() if " ERROR " in l]
            h.log("%s with %s=%d (in use): exit %d, %s" % (binary, var, port, p.returncode, errors))
            h.check(p.returncode == 1, "%s exits 1" % binary, p.returncode, p.stderr[-1500:])
            h.check(len(errors) == 1, "one ERROR line", p.stderr[-1500:])
            h.check(var in errors[0] and ":%d" % port in errors[0]
                    and "Address already in use" in errors[0],
                    "it names %s, the port and the reason" % var, errors[0])
            h.check("civetweb" not in p.stderr, "no civetweb WARN lines", p.stderr[-1500:])
            if uses_broker:
                try:
                    conn, _ = broker.accept()
                    conn.close()
                    h.check(False, "%s never connected to the broker" % binary)
                except BlockingIOError:
                    h.check(True, "%s never connected to the broker" % binary)
                h.check("broker" not in p.stderr.lower().replace("broker_endpoint", ""),
                        "and says nothing of a broker", p.stderr[-1500:])
    finally:
        busy.close()
        broker.close()


if __name__ == "__main__":
    h.main(test)

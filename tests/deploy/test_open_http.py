"""deploy.open_http - a gateway or webhook manager whose HTTP API asks no
API key says so at start when it listens beyond loopback, as the broker
does of its open port.

Each of botmesh-gateway and botmesh-webhook is started three times on a
free port, REDIS_URL=none, against a broker: on 0.0.0.0 without API_KEYS
(one WARN "http 0.0.0.0:PORT is open to the network without API_KEYS",
naming its listen variable), on 0.0.0.0 with API_KEYS (no such line), and
on 127.0.0.1 without API_KEYS (no such line).
"""
import re

import deploylib as d
from harness import Stack, check, main

OPEN = re.compile(r" WARN +(\S+) +http (\S+):(\d+) is open to the network without API_KEYS: "
                  r".* or (\S+)=127\.0\.0\.1 when only this host calls it$", re.M)
SERVICES = [("gateway", "botmesh-gateway", "GATEWAY_LISTEN", "API_GATEWAY_PORT"),
            ("webhook", "botmesh-webhook", "WEBHOOK_LISTEN_ADDR", "WEBHOOK_MANAGER_PORT")]
CASES = [("open", "0.0.0.0", "", True), ("keys", "0.0.0.0", "k1,k2", False),
         ("loopback", "127.0.0.1", "", False)]


def test():
    d.require(["botmesh-gateway", "botmesh-webhook", "botmesh-broker"])
    with Stack("open-http") as s:
        s.broker(redis=False)
        for name, binary, listen_var, port_var in SERVICES:
            for case, addr, keys, warns in CASES:
                p = s.spawn("%s-%s" % (name, case), [s.bin(binary)], {
                    "REDIS_URL": "none", "BROKER_ENDPOINT": s.endpoint, port_var: "0",
                    listen_var: addr, "API_KEYS": keys})
                port = p.listening("http")
                # The service writes the warning before its listening line.
                lines = OPEN.findall(p.output())
                if warns:
                    check(lines == [(name, addr, str(port), listen_var)],
                          "%s on %s without API_KEYS: one WARN naming %s:%d and %s"
                          % (name, addr, addr, port, listen_var), lines, p.output()[-800:])
                else:
                    check(not lines, "%s on %s, API_KEYS=%r: no open-port WARN" % (name, addr, keys),
                          lines)
                p.stop()


if __name__ == "__main__":
    main(test)

"""A Redis host name that does not resolve yet (a container not started)
is retried like a refused connection, and the broker says so.

- REDIS_URL names redis-later, which no hosts file or DNS knows: the
  broker logs one ERROR, "cannot connect (...); reconnecting with
  backoff", and is not ready (503 redis_unavailable).
- Once the name resolves, the broker connects by itself ("available
  again"), is ready, and its jobs reach that Redis.

The broker runs in a user and mount namespace of its own (unshare -Urm)
whose /etc/hosts is a file the test writes: a name that appears later,
as in a container network.  A real redis-server; the broker's log and
/ready as an operator sees them.
"""
import os
import subprocess
import sys
import harness as h

NAME = "redis-later"


def ready(broker):
    st, _, body = h.http("GET", "http://127.0.0.1:%d/ready" % broker.metrics_port)
    return st, (body.get("error", {}).get("code") if isinstance(body, dict) else None)


def test():
    probe = subprocess.run(["unshare", "-Urm", "true"], capture_output=True)
    if probe.returncode != 0:
        print("SKIP: no user and mount namespaces here (unshare -Urm: %s)" % probe.stderr.decode().strip())
        sys.exit(77)
    with h.Stack("redis-dns") as s:
        s.redis()
        hosts = os.path.join(s.dir, "hosts")
        with open("/etc/hosts") as f, open(hosts, "w") as out:
            out.write(f.read())
        h.check(subprocess.run(["getent", "hosts", NAME], capture_output=True).returncode != 0,
                "%s resolves nowhere to begin with" % NAME)

        port = h.free_port()
        env = dict(s.env, REDIS_URL="redis://%s:%d/0" % (NAME, s.redis_port),
                   BROKER_ENDPOINT="tcp://127.0.0.1:%d" % port, BROKER_METRICS_PORT="-1")
        broker = s.spawn("broker", ["unshare", "-Urm", "sh", "-c",
                                    'mount --bind "$0" /etc/hosts && exec "$1"', hosts,
                                    s.bin("botmesh-broker")], env)
        broker.metrics_port = broker.listening("metrics")
        h.wait_until(lambda: "cannot connect" in broker.output(), 10, "the broker to try %s" % NAME)
        line = next(l for l in broker.output().splitlines() if "cannot connect" in l)
        h.log("the broker said:", line)
        h.check(" ERROR " in line and NAME in line and "reconnecting with backoff" in line,
                "one ERROR naming the host and saying it reconnects with backoff", line)
        h.check(ready(broker) == (503, "redis_unavailable"), "/ready: 503 redis_unavailable",
                ready(broker))

        # The name appears (the same file, which the broker sees as its
        # /etc/hosts): the broker connects without being told.
        with open(hosts, "a") as out:
            out.write("127.0.0.1 %s\n" % NAME)
        h.wait_until(lambda: ready(broker) == (200, None), 15,
                     "the broker to connect once %s resolves" % NAME)
        h.check("redis %s:%d available again" % (NAME, s.redis_port) in broker.output(),
                "and say Redis is available again", broker.output()[-1500:])
        h.check(broker.output().count("cannot connect") == 1,
                "the failed attempts before were logged once", broker.output()[-1500:])
        s.endpoint = "tcp://127.0.0.1:%d" % port
        c = s.client()
        jid = c.submit("python", {"n": 1})
        h.check(s.redis_cli("HGET", "botmesh:{bm}:job:" + jid, "state") == "queued",
                "a job submitted now is in that Redis")
        c.close()


if __name__ == "__main__":
    h.main(test)

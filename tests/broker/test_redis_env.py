"""Where Redis is, as every service reads it.

- REDIS_HOST / REDIS_PORT (the original system's variables) point the
  broker at a Redis when REDIS_URL is not set: a submitted job's record is
  in that Redis.
- REDIS_URL wins over them; its scheme may be in any case (REDIS://).
- A bad REDIS_PORT, a bad REDIS_URL or an over-long REDIS_PREFIX stops the
  broker and the gateway at start with a message naming the variable; a
  metrics port in use stops the broker, naming BROKER_METRICS_PORT.
- A Redis without its append-only file, or one that evicts keys, is named
  in a warning when the broker connects.
- A variable of the original system that botmesh does not read (WORKER_ID,
  NODE_ENV) is named in a warning at start.
"""
import os
import subprocess
import harness as h


def start_fails(binary, env, what):
    e = dict(os.environ, LOG_LEVEL="info", BROKER_METRICS_PORT="0", API_GATEWAY_PORT="0")
    e.pop("REDIS_URL", None)
    e.update(env)
    p = subprocess.run([os.path.join(h.BIN, binary)], env=e, capture_output=True, text=True,
                       timeout=20)
    h.check(p.returncode != 0, "%s refuses to start with %s" % (binary, what), p.returncode)
    h.check(what in p.stderr, "and names %s in its message" % what, p.stderr[-400:])


def key(job_id):
    return "botmesh:{bm}:job:" + job_id


def test():
    with h.Stack("redis-env") as s:
        s.redis()
        port = s.redis_port
        s.env.pop("REDIS_URL")

        # REDIS_HOST + REDIS_PORT: the broker uses that Redis.
        broker = s.broker(env={"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port),
                               "WORKER_ID": "w-7"})
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "broker connected to REDIS_HOST:REDIS_PORT")
        jid = c.submit("python", {"n": 1})
        h.check(s.redis_cli("HGET", key(jid), "state") == "queued",
                "the job's record is in the Redis REDIS_HOST/REDIS_PORT name")
        h.wait_until(lambda: "WORKER_ID is set but botmesh does not read it" in broker.output(), 5,
                     "a warning names the original system's WORKER_ID")
        h.check("WORKER_NAME" in broker.output(), "and says what to set instead")
        h.check("append-only" not in broker.output() and "evicts keys" not in broker.output(),
                "no durability warning for a Redis with AOF and noeviction", broker.output()[-600:])
        c.close()
        broker.stop()

        # A Redis set up to lose confirmed jobs is named in warnings.
        s.redis_cli("CONFIG", "SET", "appendonly", "no")
        s.redis_cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru")

        # REDIS_URL wins over REDIS_HOST/PORT; the scheme's case does not matter.
        broker = s.broker(env={"REDIS_URL": "REDIS://127.0.0.1:%d/0" % port,
                               "REDIS_HOST": "127.0.0.1", "REDIS_PORT": "1"})
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "REDIS_URL wins over REDIS_PORT=1")
        h.wait_until(lambda: "runs without its append-only file (appendonly no)" in broker.output()
                     and "evicts keys when full (maxmemory-policy allkeys-lru)" in broker.output(), 10,
                     "warnings naming appendonly no and maxmemory-policy allkeys-lru")
        c.close()
        broker.stop()

    # Bad values stop the services at start, naming the variable.
    for binary in ("botmesh-broker", "botmesh-gateway"):
        start_fails(binary, {"REDIS_PORT": "70000"}, "REDIS_PORT")
        start_fails(binary, {"REDIS_URL": "http://127.0.0.1:6379"}, "REDIS_URL")
        start_fails(binary, {"REDIS_PREFIX": "p" * 65}, "REDIS_PREFIX")

    # A metrics port in use stops the broker too (Prometheus would scrape
    # whatever holds it), naming the variable.
    import socket
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        start_fails("botmesh-broker", {"REDIS_URL": "none", "BROKER_ENDPOINT": "tcp://127.0.0.1:0",
                                       "BROKER_METRICS_PORT": str(busy.getsockname()[1])},
                    "BROKER_METRICS_PORT")


if __name__ == "__main__":
    h.main(test)

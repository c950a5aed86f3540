"""A Redis database number the server does not have is never replaced by
database 0.

- At start, the broker and the gateway stop (exit 2) when Redis refuses
  the SELECT of REDIS_URL's database, naming REDIS_URL (or REDIS_DB when
  REDIS_URL is not set), Redis's error and the databases it has; nothing
  is written to database 0.
- Later, on a reconnect to a Redis that no longer has the database, the
  broker logs the refusal as an ERROR and stays not ready (/ready 503,
  SUBMIT refused store_unavailable), writing nothing to database 0; once
  Redis has the database again, it is ready again.

A real redis-server started with --databases 4 (0 to 3), real brokers and
a real gateway.
"""
import os
import subprocess
import harness as h

OUT_OF_RANGE = "ERR DB index is out of range"


def start_refused(binary, env, var):
    """binary stops at start, exit 2, naming var and Redis's refusal."""
    e = dict(os.environ, LOG_LEVEL="info", BROKER_ENDPOINT="tcp://127.0.0.1:0",
             BROKER_METRICS_PORT="-1", API_GATEWAY_PORT="0")
    for name in ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB"):
        e.pop(name, None)
    e.update(env)
    p = subprocess.run([os.path.join(h.BIN, binary)], env=e, capture_output=True, text=True,
                       timeout=30)
    h.log("%s with %s: exit %d; %s" % (binary, env, p.returncode, p.stderr.strip().splitlines()[-1:]))
    h.check(p.returncode == 2, "%s stops at start with exit 2 (a bad value)" % binary,
            p.returncode, p.stderr[-1500:])
    line = next((l for l in p.stderr.splitlines() if "refused SELECT 9" in l), "")
    h.check("ERROR" in line and var in line and OUT_OF_RANGE in line,
            "one ERROR line names %s and Redis's refusal" % var, p.stderr[-1500:])
    h.check("databases 0 to 3" in line, "and says which databases this Redis has", line)
    h.check("listening" not in p.stderr and "connected" not in p.stderr,
            "%s never started serving" % binary, p.stderr[-1500:])


def ready(broker):
    """GET /ready on the broker's metrics port: (status, error code)."""
    st, _, body = h.http("GET", "http://127.0.0.1:%d/ready" % broker.metrics_port)
    return st, (body.get("error", {}).get("code") if isinstance(body, dict) else None)


def select_refusals(s):
    """SELECTs Redis refused (INFO commandstats: failed_calls)."""
    line = next((l for l in s.redis_cli("INFO", "commandstats").splitlines()
                 if l.startswith("cmdstat_select:")), "")
    fields = dict(f.split("=") for f in line.split(":", 1)[1].split(",")) if line else {}
    return int(fields.get("failed_calls", 0))


def test():
    with h.Stack("redis-db") as s:
        first_redis = s.redis(args=["--databases", "4"])
        port = s.redis_port

        # 1. At start: database 9 of a Redis with 4 stops both services.
        url9 = "redis://127.0.0.1:%d/9" % port
        start_refused("botmesh-broker", {"REDIS_URL": url9}, "REDIS_URL")
        start_refused("botmesh-gateway", {"REDIS_URL": url9}, "REDIS_URL")
        # REDIS_DB names the database when REDIS_URL is not set.
        start_refused("botmesh-broker", {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(port),
                                         "REDIS_DB": "9"}, "REDIS_DB")
        h.check(s.redis_cli("DBSIZE") == "0", "nothing was written to database 0")

        # 2. A broker on database 3, which Redis has: ready, its jobs in database 3.
        broker = s.broker(env={"REDIS_URL": "redis://127.0.0.1:%d/3" % port})
        h.wait_until(lambda: ready(broker) == (200, None), 15, "the broker on database 3 to be ready")
        c = s.client()
        jid = c.submit("python", {"n": 1})
        h.check(s.redis_cli("-n", "3", "EXISTS", "botmesh:{bm}:job:" + jid) == "1",
                "the job's record is in database 3")

        # 3. Redis restarted with 2 databases: the broker reconnects, Redis
        # refuses SELECT 3, and the broker stays not ready.
        first_redis.stop()
        mark = len(broker.output())
        small = s.redis(appendonly=False, port=port, args=["--databases", "2"])
        h.wait_until(lambda: "refused SELECT 3" in broker.output()[mark:], 15,
                     "the broker to log Redis's refusal of SELECT 3")
        line = next(l for l in broker.output()[mark:].splitlines() if "refused SELECT 3" in l)
        h.log("the broker said:", line)
        h.check(" ERROR " in line and OUT_OF_RANGE in line and "REDIS_URL" in line,
                "an ERROR naming Redis's error and REDIS_URL", line)
        h.check(ready(broker) == (503, "redis_unavailable"), "/ready: 503 redis_unavailable",
                ready(broker))
        cmd, reply = c.try_submit("python", {"n": 2})
        h.check(cmd == h.REJECTED and reply.get("code") == "store_unavailable",
                "a SUBMIT is refused store_unavailable", cmd, reply)
        # A few reconnects later: still refused, still one line, nothing in database 0.
        seen = select_refusals(s)
        h.wait_until(lambda: select_refusals(s) >= seen + 2, 15,
                     "the broker to try twice more (Redis's count of refused SELECTs)")
        h.check(ready(broker) == (503, "redis_unavailable"), "still not ready", ready(broker))
        h.check(broker.output()[mark:].count("refused SELECT 3") == 1,
                "the refusal is logged once per outage", broker.output()[mark:][-1500:])
        h.check(s.redis_cli("DBSIZE") == "0" and s.redis_cli("-n", "1", "DBSIZE") == "0",
                "nothing was written to databases 0 or 1")
        h.check("connected" not in broker.output()[mark:] and "available again" not in broker.output()[mark:],
                "the broker never took the connection", broker.output()[mark:][-1500:])

        # 4. Redis with database 3 again: the broker is ready again.
        small.stop()
        s.redis(appendonly=False, port=port, args=["--databases", "4"])
        h.wait_until(lambda: ready(broker) == (200, None), 15, "the broker to be ready again")
        h.check("available again" in broker.output()[mark:], "and says Redis is available again")
        jid = c.submit("python", {"n": 3})
        h.check(s.redis_cli("-n", "3", "EXISTS", "botmesh:{bm}:job:" + jid) == "1",
                "its new jobs go to database 3")
        h.check(s.redis_cli("DBSIZE") == "0", "and none to database 0")
        c.close()


if __name__ == "__main__":
    h.main(test)

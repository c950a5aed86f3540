"""BROKER_HA=redis with a Redis that refuses writes with MISCONF (it cannot
persist: stop-writes-on-bgsave-error after a failed BGSAVE).

MISCONF refuses every write, the lease's renewal (a PEXPIRE) too, unlike a
full Redis (maxmemory, broker.ha_lease_oom): the leader cannot keep its
lease, and no broker can take it (that is a write as well) until Redis
takes writes again.  The state must be plain and nothing lost.

Two real brokers on a real redis-server (save points on, so a failed
BGSAVE stops writes), lease 1000 ms.  The leader holds 3 queued jobs (no
worker).  The RDB file's name is made a directory, BGSAVE fails:
- the leader steps down within its lease, naming MISCONF as the reason;
- each broker logs the refusal of the lease as one ERROR naming MISCONF
  and the fix (at most 3 lines naming MISCONF per broker for the episode:
  the refusal of the lease, the step-down, the refused PING of the
  restarted standby), not one line per attempt (before: a WARN
  "unexpected answer" every eighth lease);
- both brokers' /ready answer 503 redis_refuses_writes (before: standby,
  "another broker holds the lease", while none did) and their
  broker_redis_writes_refused is 1, redis_up 0.
Once BGSAVE succeeds again, one broker leads, logs that Redis takes
writes again, and a worker gets each of the 3 jobs once.
"""
import os
import re
import time
import harness as h
import hatest

LEASE_MS = 1000


def metric(p, name):
    text = h.http("GET", "http://127.0.0.1:%d/metrics" % p.metrics_port)[2]
    m = re.search(r"^%s (\S+)$" % name, text, re.M)
    return float(m.group(1)) if m else None


def ready(p):
    st, _, body = h.http("GET", "http://127.0.0.1:%d/ready" % p.metrics_port)
    return st, (body.get("error") or {}).get("code") if isinstance(body, dict) else body


def test():
    with h.Stack("ha-lease-misconf") as s:
        s.redis(args=["--save", "3600 1"])
        h.check(s.redis_cli("CONFIG", "GET", "save").split()[-2:] == ["3600", "1"],
                "redis saves (a failed BGSAVE stops writes)", s.redis_cli("CONFIG", "GET", "save"))
        pair = hatest.HaPair(s, env={"BROKER_LEASE_MS": str(LEASE_MS)})
        leader = pair.wait_leader()
        c = h.Client(pair.endpoint(leader))
        ids = [c.submit("python", {"i": i}) for i in range(3)]
        c.close()

        # The RDB file's name taken by a directory: BGSAVE cannot rename.
        rdb = os.path.join(s.redis_cli("CONFIG", "GET", "dir").split()[-1],
                           s.redis_cli("CONFIG", "GET", "dbfilename").split()[-1])
        os.makedirs(os.path.join(rdb, "taken"))
        s.redis_cli("BGSAVE")
        h.wait_until(lambda: "rdb_last_bgsave_status:err" in s.redis_cli("INFO", "persistence"),
                     10, "BGSAVE to fail")
        h.check(s.redis_cli("SET", "probe", "1").startswith("MISCONF"), "Redis refuses writes: MISCONF")
        began = time.monotonic()
        proc = pair.procs[leader]
        h.wait_until(lambda: "stepping down" in proc.output(), 10, "the leader to step down")
        h.log("the leader stepped down %.2f s after MISCONF" % (time.monotonic() - began))
        down = [l for l in proc.output().splitlines() if "stepping down" in l]
        h.check("MISCONF" in down[0], "the step-down names MISCONF", down)
        for n in ("a", "b"):
            p = pair.procs[n]
            h.wait_until(lambda: ready(p) == (503, "redis_refuses_writes"), 10,
                         "broker %s's /ready: 503 redis_refuses_writes" % n)
            h.check(metric(p, "broker_redis_writes_refused") == 1 and metric(p, "redis_up") == 0
                    and metric(p, "broker_leader") == 0,
                    "broker %s: writes refused 1, redis_up 0, leader 0" % n,
                    [metric(p, m) for m in ("broker_redis_writes_refused", "redis_up", "broker_leader")])
        # Several leases of MISCONF: nobody leads, and the log does not grow
        # a line per attempt.
        end = time.monotonic() + 3 * LEASE_MS / 1000.0
        while time.monotonic() < end:
            h.check(pair.leader_name() is None, "no broker leads while Redis refuses writes")
            time.sleep(0.1)         # sampling pace
        for n in ("a", "b"):
            out = pair.procs[n].output()
            lines = [l for l in out.splitlines() if "MISCONF" in l]
            h.check(1 <= len(lines) <= 3, "broker %s names MISCONF in at most 3 lines" % n,
                    len(lines), lines[:6])
            h.check(any("ERROR" in l and "refuses to" in l and "the lease" in l
                        and "free the disk" in l for l in lines),
                    "broker %s's ERROR names the lease's refusal and the fix" % n, lines[:3])

        # Redis persists again: a broker leads and runs the jobs, once each.
        os.rmdir(os.path.join(rdb, "taken"))
        os.rmdir(rdb)
        s.redis_cli("BGSAVE")
        h.wait_until(lambda: "rdb_last_bgsave_status:ok" in s.redis_cli("INFO", "persistence"),
                     10, "BGSAVE to succeed")
        now = pair.wait_leader(timeout=15)
        p = pair.procs[now]
        h.check("takes the lease's writes again" in p.output() or "takes writes again" in p.output(),
                "the new leader says Redis takes writes again", p.output()[-1200:])
        h.wait_until(lambda: ready(p) == (200, None), 10, "the leader's /ready: 200")
        hatest.run_jobs(pair.endpoint(now), "w1", ids)


if __name__ == "__main__":
    h.main(test)

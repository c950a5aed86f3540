"""A broker's start, as an operator sees it: one that cannot bind its
endpoint leaves Redis alone, and one that reads its queues back says so.

A real redis-server and real brokers; a raw DEALER client.
"""
import os
import signal
import harness as h

SUBMIT_MANY, ACCEPTED_MANY = 0x0A, 0x85
QUEUED = 60000


def commands(s):
    """Redis's count of commands it processed (this INFO's own included)."""
    info = s.redis_cli("INFO", "stats")
    return int(next(l.split(":")[1] for l in info.splitlines() if l.startswith("total_commands_processed:")))


def test():
    with h.Stack("redis") as s:
        s.redis()
        first = s.broker(env={"MAX_QUEUE": "1000000"})
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "broker connected to redis")

        # Jobs of a type no worker serves: they stay queued, for the second
        # broker to read back.
        for start in range(0, QUEUED, 1000):
            cmd, r = c.request(SUBMIT_MANY, {"jobs": [{"botType": "java", "payload": {"n": i}}
                                                      for i in range(start, start + 1000)]}, timeout=60)
            h.check(cmd == ACCEPTED_MANY and len(r["jobs"]) == 1000, "1,000 jobs accepted", cmd, str(r)[:200])
        c.close()

        # A second broker on the same endpoint, without --ha: it cannot bind,
        # exits 1, and sends Redis no command (no recovery of the queues the
        # first one serves).  The first broker stopped (SIGSTOP: its port
        # stays bound, its timers write nothing), the count moves by this
        # check's own INFOs only.
        os.kill(first.p.pid, signal.SIGSTOP)
        quiet = -commands(s) + commands(s)
        before = commands(s)
        second = s.spawn("broker-second", [s.bin("botmesh-broker")],
                         {"BROKER_ENDPOINT": s.endpoint, "BROKER_METRICS_PORT": "0"})
        code = second.p.wait(30)
        h.check(code == 1, "a broker that cannot bind exits 1", code)
        log = second.output()
        h.check("cannot bind" in log, "and says why", log[-2000:])
        h.check("recovered" not in log and "connected" not in log,
                "and never reached Redis", log[-2000:])
        after = commands(s)
        h.check(after - before == quiet, "Redis processed no command but this check's own",
                before, after, quiet)

        # The first broker killed (stopped as it is); a new one reads 60,000 jobs back.  While it
        # does, PING and GET /ready say "recovering", not that Redis is away.
        first.kill()
        h.wait_until(lambda: not first.alive(), 10, "the first broker to die")
        restarted = s.spawn("broker-restarted", [s.bin("botmesh-broker")],
                            {"BROKER_ENDPOINT": s.endpoint, "BROKER_METRICS_PORT": "-1",
                             "MAX_QUEUE": "1000000"})
        ready = "http://127.0.0.1:%d/ready" % restarted.listening("metrics")
        seen = []

        def poll():
            st, _, body = h.http("GET", ready)
            code = body.get("error", {}).get("code") if isinstance(body, dict) else None
            if not seen or seen[-1] != (st, code):
                seen.append((st, code))
            return st == 200

        h.wait_until(poll, 120, "the restarted broker's /ready to answer 200", interval=0.005)
        h.log("GET /ready while the broker started: %s" % seen)
        h.check(seen[-1] == (200, None), "ready in the end", seen)
        h.check((503, "recovering") in seen,
                "503 recovering while the queues were read back (%d jobs)" % QUEUED, seen)
        before_ready = [code for st, code in seen if st == 503]
        h.check(set(before_ready) <= {"recovering", "redis_unavailable"},
                "no other reason before ready", seen)
        h.check(before_ready.index("recovering") == len(before_ready) - 1
                or "redis_unavailable" not in before_ready[before_ready.index("recovering"):],
                "once recovering, never redis_unavailable again while Redis answers", seen)
        c = s.client()
        _, reply = c.request(h.PING)
        h.check(reply["redis"] is True and reply["recovering"] is False, "PING: redis, not recovering", reply)
        _, stats = c.request(h.STATS)
        h.check(stats["types"]["java"]["waiting"] == QUEUED and stats["recovering"] is False,
                "STATS: every job back, not recovering", stats.get("recovering"), stats["types"].get("java"))
        c.close()


if __name__ == "__main__":
    h.main(test)

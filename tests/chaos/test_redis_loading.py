"""Redis restarts (kill -9, AOF) and spends a while loading its data set
while jobs end: the state changes the broker writes meanwhile must still
reach Redis.

A restarted Redis accepts connections at once but answers every command
with "-LOADING Redis is loading the dataset in memory" until its AOF is
loaded (here: a ballast of keys makes that take about a second).  Durable
writes (a job's terminal state, its removal from the live set, webhook
state) answered with such an error were not applied: the broker must send
them again, as it does for writes lost with the connection.  Otherwise
Redis keeps saying "running" for a job the broker has completed (and
delivered the webhook of): after the next broker restart it runs again,
and GET /job from Redis history never ends.

Found by tests/chaos/test_chaos.py (5 of ~1,900 jobs stuck "running")."""
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness                      # noqa: E402
from harness import check, log, wait_until  # noqa: E402
from test_chaos import PREFIX, redis_jobs, redis_pipeline  # noqa: E402

HB = {"HEARTBEAT_INTERVAL_MS": "250", "HEARTBEAT_LIVENESS": "4"}
N = 30
BALLAST_KEYS = int(os.environ.get("BALLAST_KEYS", "600000"))


def main():
    with harness.Stack("redis-loading") as s:
        redis = s.redis()
        # Ballast: enough keys that loading the AOF takes about a second.
        value = "v" * 100
        t = time.monotonic()
        for start in range(0, BALLAST_KEYS, 50000):
            redis_pipeline(s.redis_port, [["SET", "ballast:%d" % i, value]
                                          for i in range(start, min(start + 50000, BALLAST_KEYS))],
                           batch=5000)
        log("ballast of %d keys written in %.1fs" % (BALLAST_KEYS, time.monotonic() - t))

        s.broker(env=dict(HB, MAX_PYTHON_BOTS=str(N)))
        s.worker("--simulate", "--type", "python", "--concurrency", str(N),
                 env=dict(HB, SIM_DURATION_MS="1500-4000"))
        s.wait_workers(1, "python")
        c = s.client()
        jobs = [c.submit("python", {"i": i}) for i in range(N)]
        wait_until(lambda: all(r and r["state"] == "running"
                               for r in redis_jobs(s.redis_port, jobs).values()),
                   10, "all %d jobs running (in Redis)" % N)

        redis.signal(signal.SIGKILL)
        wait_until(lambda: not redis.alive(), 5, "redis to die")
        t = time.monotonic()
        s.redis()                     # waits for PING: until the AOF is loaded
        loaded = time.monotonic() - t
        out = redis.output()
        log("redis restarted; it answered PING after %.1fs (%s)" % (
            loaded, [l.split("* ")[-1] for l in out.splitlines() if "loaded from append only" in l][-1:]))

        # The broker's view: every job ends (it keeps them in memory).
        for j in jobs:
            rec = c.wait(j, 30)
            check(rec["state"] in harness.TERMINAL, "job %s ended (broker: %s)" % (j, rec["state"]))
        # Redis's view must follow, whatever the broker met while Redis loaded.
        def durable():
            recs = redis_jobs(s.redis_port, jobs)
            return all(r and r["state"] in harness.TERMINAL for r in recs.values())
        try:
            wait_until(durable, 10, "Redis to hold every job's terminal state")
        except harness.TestFailure:
            pass
        recs = redis_jobs(s.redis_port, jobs)
        stuck = {j: r["state"] if r else None for j, r in recs.items()
                 if not r or r["state"] not in harness.TERMINAL}
        live = redis_pipeline(s.redis_port, [["ZCARD", PREFIX + "live"]])[0]
        broker_log = [l for l in s.procs[1].output().splitlines()
                      if "redis" in l.lower() and ("LOADING" in l or "available" in l or "error" in l.lower())]
        log("broker log around the outage:\n  " + "\n  ".join(broker_log[:10]))
        check(not stuck, "Redis holds the terminal state of every job the broker ended "
              "(%d of %d stuck)" % (len(stuck), N), stuck)
        check(live == 0, "Redis's live set is empty", live)
        c.close()


if __name__ == "__main__":
    harness.main(main)

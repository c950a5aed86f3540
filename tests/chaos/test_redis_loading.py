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

SUBMITs that arrive while Redis loads must be refused (store_unavailable)
or be durable: an ACCEPTED promises that Redis holds the job.

Found by tests/chaos/test_chaos.py (jobs stuck "running"; since the store's
group commit, 9229a47, also 122 of 8,792 accepted jobs missing from Redis:
the group's CLIENT REPLY ON is allowed while Redis loads and answers +OK,
while every write of the group got -LOADING, unseen with replies off)."""
import os
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness                      # noqa: E402
from harness import check, log, wait_until  # noqa: E402
from fakeworker import FakeWorker   # noqa: E402
from test_chaos import PREFIX, redis_jobs, redis_pipeline  # noqa: E402

HB = {"HEARTBEAT_INTERVAL_MS": "250", "HEARTBEAT_LIVENESS": "8"}
N = 30
BALLAST_KEYS = int(os.environ.get("BALLAST_KEYS", "600000"))


def main():
    with harness.Stack("redis-loading") as s:
        redis = s.redis()
        # Ballast: enough keys that loading the AOF takes a second or more.
        value = "v" * 100
        t = time.monotonic()
        for start in range(0, BALLAST_KEYS, 50000):
            redis_pipeline(s.redis_port, [["SET", "ballast:%d" % i, value]
                                          for i in range(start, min(start + 50000, BALLAST_KEYS))],
                           batch=5000)
        log("ballast of %d keys written in %.1fs" % (BALLAST_KEYS, time.monotonic() - t))

        broker = s.broker(env=dict(HB, MAX_LOADING_BOTS=str(N)))
        # A worker driven by the test: it ends its jobs exactly when told.
        w = FakeWorker(s.endpoint, "w-loading", ["loading"], N)
        s.wait_workers(1, "loading")
        c = s.client()
        jobs = [c.submit("loading", {"i": i}) for i in range(N)]
        held = []
        while len(held) < N:
            msg = w.recv(5)
            if not msg or msg[0] != harness.JOB:
                check(False, "the worker receives its jobs (%d so far)" % len(held), msg)
            held.append(msg[1]["jobId"])
        check(sorted(held) == sorted(jobs), "the worker holds the %d jobs" % N)
        wait_until(lambda: all(r and r["state"] == "running"
                               for r in redis_jobs(s.redis_port, jobs).values()),
                   10, "all %d jobs running (in Redis)" % N)

        reconnects = broker.output().count("available again")
        redis.signal(signal.SIGKILL)
        wait_until(lambda: not redis.alive(), 5, "redis to die")
        restart = threading.Thread(target=s.redis)      # returns once PING answers PONG
        restart.start()
        wait_until(lambda: s.redis_cli("PING").startswith("LOADING"), 10, "the new Redis to be loading")
        # The broker reconnects and sees Redis loading (it then waits for
        # PONG before it counts Redis as available).
        wait_until(lambda: broker.output().count("available again") > reconnects
                   or "is not ready" in broker.output(), 10,
                   "the broker to reconnect to the loading Redis")
        for j in held:
            w.done(j, {"j": j})
        # New jobs submitted now must be refused (store_unavailable) or
        # durable: an ACCEPTED is a promise that Redis has the job.
        answers = [c.try_submit("loading", {"late": i}) for i in range(20)]
        late = [r["jobId"] for cmd, r in answers if cmd == harness.ACCEPTED]
        refused = [r.get("code") for cmd, r in answers if cmd != harness.ACCEPTED]
        w.recv(0.3)                     # heartbeats meanwhile
        still_loading = s.redis_cli("PING").startswith("LOADING")
        log("SUBMITs while Redis loads: %d accepted, refused: %s" % (len(late), refused))
        log("the worker sent its %d DONEs while Redis was %s" % (N, "still loading" if still_loading
                                                                  else "ALREADY LOADED (timing)"))
        restart.join(30)
        check(s.redis_cli("PING") == "PONG", "Redis loaded its AOF")

        # The broker's view: every job completed (it keeps them in memory).
        states = [c.wait(j, 15)["state"] for j in jobs]
        check(states.count("completed") == N, "the broker completed the %d jobs" % N, states)
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
        live = redis_pipeline(s.redis_port, [["SCARD", PREFIX + "unfinished"]])[0]
        lines = [l for l in broker.output().splitlines()
                 if "redis" in l.lower() and ("LOADING" in l or "available" in l or "ERROR" in l)]
        log("broker log around the outage:\n  " + "\n  ".join(lines[-6:]))
        check(still_loading, "the DONEs reached the broker while Redis was loading (the case tested)")
        late_recs = redis_jobs(s.redis_port, late) if late else {}
        lost = [j for j, r in late_recs.items() if r is None]
        print("\n===== figures: %d DONEs while Redis loaded: %d stuck non-terminal in Redis; "
              "%d SUBMITs accepted while it loaded: %d LOST (no record in Redis); live set: %d =====\n"
              % (N, len(stuck), len(late), len(lost), live), flush=True)
        problems = []
        if lost:
            problems.append("LOST: %d of %d SUBMITs accepted while Redis loaded have no record in Redis: %s"
                            % (len(lost), len(late), lost[:5]))
        if stuck:
            problems.append("%d of %d jobs the broker completed are not terminal in Redis: %s"
                            % (len(stuck), N, list(stuck.items())[:5]))
        if live:
            problems.append("Redis's live set still lists %d jobs" % live)
        for p in problems:
            print("FAILED:", p, flush=True)
        check(not problems, "every write the broker made while Redis loaded reached Redis "
              "(%d problems above)" % len(problems))
        w.close()
        c.close()


if __name__ == "__main__":
    harness.main(main)

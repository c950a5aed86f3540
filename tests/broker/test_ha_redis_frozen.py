"""BROKER_HA=redis with a Redis that stops answering: the leader loses its
lease on time, by its own clock, whatever REDIS_TIMEOUT_MS says.

- Two real brokers on one real redis-server, lease 2000 ms, REDIS_TIMEOUT_MS
  3000 (longer than the lease: the lease must not wait for the store).
- Redis is stopped (SIGSTOP).  Within the lease (2 s, plus slack) the
  leader logs "lease: epoch N not renewed within 2000 ms: lost" and steps
  down; later both brokers log "no answer for N ms" once each.
- SIGCONT: one broker leads again, and a job submitted to it is in Redis.
"""
import re
import signal
import time
import harness as h
import hatest

LEASE_MS = 2000
TIMEOUT_MS = 3000
SLACK_S = 1.5
NO_ANSWER = re.compile(r"ERROR.*redis 127\.0\.0\.1:\d+: no answer for \d+ ms; reconnecting with backoff")


def test():
    with h.Stack("ha-redis-frozen") as s:
        redis = s.redis()
        pair = hatest.HaPair(s, env={"BROKER_LEASE_MS": str(LEASE_MS),
                                     "REDIS_TIMEOUT_MS": str(TIMEOUT_MS)})
        leader = pair.wait_leader()
        proc = pair.procs[leader]
        redis.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        h.log("redis-server stopped (SIGSTOP); broker %s leads" % leader)
        try:
            h.wait_until(lambda: "not renewed within %d ms: lost" % LEASE_MS in proc.output(),
                         LEASE_MS / 1000.0 + SLACK_S, "the leader to lose its lease")
            lost = time.monotonic() - stopped
            h.log("the leader lost its lease %.2f s after the freeze" % lost)
            h.check(lost < LEASE_MS / 1000.0 + SLACK_S, "within the lease", lost)
            h.check(not hatest.leads(pair.endpoint(leader)), "it no longer serves")
            h.wait_until(lambda: all(NO_ANSWER.search(pair.procs[n].output()) for n in ("a", "b")),
                         TIMEOUT_MS / 1000.0 + 3 * SLACK_S, "both brokers to log that Redis does not answer")
        finally:
            redis.signal(signal.SIGCONT)
        h.log("redis-server continued (SIGCONT)")
        now = pair.wait_leader(timeout=20)
        h.log("broker %s leads" % now)
        c = h.Client(pair.endpoint(now))
        jid = h.wait_until(lambda: (lambda r: r[1]["jobId"] if r[0] == h.ACCEPTED else None)(
            c.try_submit("python", {"after": "freeze"})), 10, "a SUBMIT to be accepted")
        h.check(s.redis_cli("HGET", "botmesh:{bm}:job:" + jid, "state") == "queued",
                "the job is in Redis", jid)
        for n in ("a", "b"):
            h.check(len(NO_ANSWER.findall(pair.procs[n].output())) <= 1,
                    "broker %s logged the silence at most once" % n)


if __name__ == "__main__":
    h.main(test)

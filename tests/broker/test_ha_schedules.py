"""Schedules with a standby broker: kill the leader, the standby takes over
the schedule, and no run is ever made twice.

Two real brokers with BROKER_HA=redis on one real redis-server.  A
schedule every 300 ms (bot type java, no worker: its runs stay queued, so
a run made again would show as a new record).  The standby makes no run
while it stands by.  The leader is killed with SIGKILL after a few runs;
the standby leads, reads the schedule back from Redis and goes on:
- the runs made before the kill keep their records as they were (the
  same createdAt and seq: none made again);
- after the takeover: one catch-up run for the earliest due time missed
  while no broker led (docs/protocol.md, SCHEDULE), then due times 300 ms
  apart again; every run id is "<key>@<due ms>" on the same 300 ms grid;
- with a limit of 12 runs, the schedule ends with runs = 12 = the distinct
  run records in Redis; the new leader's schedule_runs_total counts only
  its own runs.
"""
import re
import time
import harness as h
import hatest

SCHEDULE = 0x0E
KEY = "ha-tick"
EVERY = 300
LIMIT = 12


def runs(s):
    """{due ms: what the run was made with} of the schedule's run records in
    Redis: field r of the record (docs/redis.md: createdAt, seq, payload,
    ...), which a run made again would rewrite."""
    out = {}
    for k in s.redis_cli("KEYS", "botmesh:{bm}:job:%s@*" % KEY).split("\n"):
        if k:
            out[int(k.rsplit("@", 1)[1])] = s.redis_cli("--no-raw", "HGET", k, "r")    # msgpack, escaped
    return out


def schedule_runs_metric(port):
    text = h.http("GET", "http://127.0.0.1:%d/metrics" % port)[2]
    m = re.search(r'^schedule_runs_total\{schedule="%s"\} (\d+)' % KEY, text, re.M)
    return int(m.group(1)) if m else 0


def test():
    with h.Stack("ha-schedules") as s:
        s.redis()
        pair = hatest.HaPair(s)
        first = pair.wait_leader()
        second = pair.other(first)
        c = h.Client(pair.endpoint(first))
        cmd, r = c.request(SCHEDULE, {"action": "add", "key": KEY, "botType": "java", "payload": {"t": 1},
                                      "everyMs": EVERY, "limit": LIMIT})
        h.check(cmd == h.REPLY and r["schedule"]["key"] == KEY, "the leader adds the schedule", r)
        c.close()
        h.wait_until(lambda: len(runs(s)) >= 4, 10, "the leader to make 4 runs")
        h.check(schedule_runs_metric(pair.procs[second].metrics_port) == 0,
                "the standby makes no run while it stands by")

        pair.procs[first].kill()
        killed_ms = time.time() * 1000
        before = runs(s)
        h.log("leader %s killed with SIGKILL after %d runs" % (first, len(before)))
        pair.wait_leader(timeout=10, other_than=first)
        h.log("standby %s leads %.0f ms after the kill" % (second, time.time() * 1000 - killed_ms))
        last_before = max(before)
        c = h.Client(pair.endpoint(second))

        def ended():
            cmd, r = c.request(SCHEDULE, {"action": "list"})
            return [x for x in r.get("schedules", []) if x["key"] == KEY and x["ended"]]
        sched = h.wait_until(ended, 15, "the new leader to make the schedule's last run (limit %d)" % LIMIT)[0]
        after = runs(s)
        c.close()

        h.check({d: after[d] for d in before} == before,
                "the %d runs made before the kill keep their records (none made again)" % len(before))
        dues = sorted(after)
        first_due = dues[0]
        h.check(all((d - first_due) % EVERY == 0 for d in dues),
                "every run id is <key>@<due ms> on the %d ms grid" % EVERY, dues)
        new = [d for d in dues if d > last_before]
        h.log("due times after the takeover (ms after the last before it): %s"
              % [d - last_before for d in new])
        h.check(new[0] == last_before + EVERY,
                "the new leader's first run is the catch-up for the earliest missed due time",
                new[0] - last_before)
        h.check(new[1] - new[0] > EVERY,
                "one catch-up run only: the other due times missed while no broker led are skipped",
                new[1] - new[0])
        h.check(all(b - a == EVERY for a, b in zip(new[1:], new[2:])),
                "then runs %d ms apart again" % EVERY, [b - a for a, b in zip(new, new[1:])])
        h.check(sched["runs"] == LIMIT == len(after),
                "the schedule's runs count, its limit (%d) and the distinct run records agree" % LIMIT,
                sched, len(after))
        h.check(schedule_runs_metric(pair.procs[second].metrics_port) == len(new),
                "the new leader counts exactly its own %d runs in schedule_runs_total" % len(new))


if __name__ == "__main__":
    h.main(test)

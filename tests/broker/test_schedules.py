"""Repeatable jobs: schedules over BMC01 (SCHEDULE add, list, remove) on a
real broker and Redis, with a fake worker that completes every run.

- every 1000 ms: one job per due time, ids "<key>@<due ms>" 1000 ms apart;
  across a kill -9 of the broker no due time runs twice, the downtime gives
  exactly one catch-up run, and one a second follows again;
- limit: exactly that many runs, then the schedule has ended;
- a cron schedule lists its next due time on the minute; remove;
- bad schedules are bad_request naming the field; MAX_SCHEDULES holds.
"""
import time
import harness as h
from fakeworker import FakeWorker

SCHEDULE = 0x0E


def sched(c, **body):
    return c.request(SCHEDULE, body)


def collect(w, runs, until):
    """Complete every JOB until `until` (monotonic); record its id."""
    while time.monotonic() < until:
        msg = w.recv(max(0.01, min(0.2, until - time.monotonic())))
        if msg and msg[0] == h.JOB:
            runs.append((msg[1]["jobId"], time.time() * 1000))
            w.done(msg[1]["jobId"], result=1)


def test():
    env = {"MAX_SCHEDULES": "3", "HEARTBEAT_LIVENESS": "20", "MAX_PYTHON_BOTS": "10"}
    with h.Stack("schedules") as s:
        s.redis()
        s.broker(env=env)
        c = s.client()
        w = FakeWorker(s.endpoint, "fw-s", ["python", "node"], 10)
        h.wait_until(lambda: len(c.stats()["workers"]) == 1, 5, "the worker to register")

        # Bad schedules name the field.
        for body, field in (({"action": "add", "key": "k", "botType": "python", "cron": "61 * * * *"}, "cron"),
                            ({"action": "add", "key": "k", "botType": "python"}, "cron"),
                            ({"action": "add", "key": "k", "botType": "python", "cron": "* * * * *",
                              "tz": "Nowhere/Town"}, "tz"),
                            ({"action": "add", "key": "k", "botType": "python", "everyMs": 10}, "everyMs"),
                            ({"action": "add", "key": "k k", "botType": "python", "everyMs": 500}, "key"),
                            ({"action": "fire"}, "action")):
            cmd, r = sched(c, **body)
            h.check(cmd == h.REJECTED and r["code"] == "bad_request" and field in r["message"],
                    "%r: bad_request naming %s" % (body, field), r)

        # A cron schedule: next due on the minute, in its zone.
        cmd, r = sched(c, action="add", key="minutely", botType="node", payload={"c": 1},
                       cron="* * * * *", tz="Europe/Berlin")
        h.check(cmd == h.REPLY and r["schedule"]["nextAt"] % 60000 == 0
                and r["schedule"]["nextAt"] > time.time() * 1000, "cron: next due on a whole minute", r)

        # limit 3 every 200 ms: exactly 3 runs.
        cmd, r = sched(c, action="add", key="three", botType="node", payload=None, everyMs=200, limit=3)
        h.check(cmd == h.REPLY, "limit schedule added", r)
        runs = []
        collect(w, runs, time.monotonic() + 1.5)
        three = [jid for jid, _ in runs if jid.startswith("three@")]
        h.check(len(three) == 3, "a limit of 3 makes exactly 3 runs", three)
        cmd, r = sched(c, action="list")
        listed = {x["key"]: x for x in r["schedules"]}
        h.check(listed["three"]["ended"] is True and listed["three"]["runs"] == 3,
                "the limited schedule has ended", listed["three"])

        # MAX_SCHEDULES = 3.
        cmd, r = sched(c, action="add", key="tick", botType="python", payload={"t": 1}, everyMs=1000)
        h.check(cmd == h.REPLY, "every 1000 ms added", r)
        cmd, r = sched(c, action="add", key="fourth", botType="python", everyMs=1000)
        h.check(cmd == h.REJECTED and r["code"] == "queue_full", "a 4th schedule: queue_full", r)
        cmd, r = sched(c, action="remove", key="minutely")
        h.check(cmd == h.REPLY and r["removed"] is True, "remove", r)
        cmd, r = sched(c, action="remove", key="minutely")
        h.check(cmd == h.REJECTED and r["code"] == "not_found", "remove again: not_found", r)

        # Every second, across a kill -9.
        runs = []
        collect(w, runs, time.monotonic() + 3.5)
        broker = [p for p in s.procs if p.name == "broker"][-1]
        broker.kill()
        t_down = time.time() * 1000
        w.close()
        # Down for about 2.5 s: two or three due times pass.
        h.wait_until(lambda: time.time() * 1000 - t_down >= 2500, 5, "2.5 s of downtime")
        s.broker(env=env)
        t_up = time.time() * 1000
        c = s.client()
        w = FakeWorker(s.endpoint, "fw-s2", ["python", "node"], 10)
        collect(w, runs, time.monotonic() + 4.5)
        dues = sorted(int(jid.split("@")[1]) for jid, _ in runs if jid.startswith("tick@"))
        h.log("tick dues (relative): %s" % [d - dues[0] for d in dues])
        h.check(len(dues) == len(set(dues)), "no due time ran twice", dues)
        h.check(all((d - dues[0]) % 1000 == 0 for d in dues), "due times are 1000 ms apart", dues)
        missed = [d for d in range(dues[0], dues[-1] + 1, 1000) if d not in dues]
        down = [d for d in range(dues[0], dues[-1] + 1, 1000) if t_down <= d < t_up]
        caught = [d for d in down if d in dues]
        h.log("down from %d to %d: due times then %s, run %s" % (t_down, t_up, down, caught))
        h.check(len(caught) == 1 and caught[0] == down[0], "one catch-up run, for the first missed due",
                (down, caught))
        h.check(set(missed) == set(down[1:]), "only due times of the downtime were skipped", missed)
        h.check(sum(1 for d in dues if d >= t_up) >= 3, "one run a second after the restart", dues)
        w.close()


if __name__ == "__main__":
    h.main(test)

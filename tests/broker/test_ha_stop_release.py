"""A leader stopped with SIGTERM under load ends as soon as its lease's
release is confirmed, and no job is lost or run twice.

Two real brokers with BROKER_HA=redis on one real redis-server; two real
botmesh-workers (--simulate, 10 jobs at a time each, 20-100 ms a job) given
both brokers run a queue of jobs, so DONEs stream to the leader.  Three
times the leader gets SIGTERM (and is started again as a standby).  Before
each SIGTERM, delayed jobs are submitted due 105-125 ms after it: the
stopping leader gives its lease up at its first tick after the SIGTERM
(its writes confirmed), and those jobs fall due after that, while it waits
for Redis to confirm the release.

What must hold, each time: the old leader ends within 1 s of its "lease:
epoch N released" line (its "broker stopped" line), with no WARN about
writes not confirmed; the other broker leads.  At the end every job is
completed once: attempts 1 in Redis, and one "completed" line for it in
the workers' logs.  (Before: a job falling due after the release was
written to a group nothing sent any more; the old leader waited for it
until BROKER_SHUTDOWN_MS, 5 s, and ended with "WARN shutdown: N redis
writes not confirmed in time".)
"""
import re
import signal
import time
import datetime
import harness as h
import hatest

JOBS = 1500
CYCLES = 3
DUE = 14
STAMP = re.compile(r"^(\S+Z) ")


def stamp(line):
    """A log line's time, in seconds since the epoch."""
    m = STAMP.match(line)
    h.check(m, "a time at the start of the log line", line)
    return datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def line_with(text, what):
    lines = [l for l in text.splitlines() if what in l]
    h.check(lines, "a log line with %r" % what, text[-2000:])
    return lines[-1]


def test():
    with h.Stack("ha-stop-release") as s:
        s.redis()
        pair = hatest.HaPair(s)
        leader = pair.wait_leader()
        eps = pair.endpoints()
        workers = [s.worker("--simulate", "--type", "sim", "--concurrency", "10",
                            env={"BROKER_ENDPOINT": eps, "SIM_DURATION_MS": "20-100",
                                 "WORKER_NAME": "w%d" % n, "HEARTBEAT_INTERVAL_MS": "200",
                                 "HEARTBEAT_LIVENESS": "5"}, name="w%d" % n)
                   for n in range(2)]
        c = h.Client(pair.endpoint(leader))
        h.wait_until(lambda: len(c.stats()["workers"]) >= 2, 15, "both workers registered")
        ids = hatest.submit_queue(c, "sim", JOBS)
        c.close()

        for cycle in range(CYCLES):
            c = h.Client(pair.endpoint(leader))
            # Due every 150 ms from just after the SIGTERM on: the leader
            # releases its lease at a tick (every 100 ms) when all it wrote
            # is confirmed, so with none due in the 100 ms before it; the
            # next one falls due at most 50 ms after the release.
            kill_at = time.time() + 0.3
            for k in range(DUE):
                ids.append(c.submit("sim", {"due": k}, runAt=int(kill_at * 1000) + 50 + 150 * k))
            c.close()
            time.sleep(max(0.0, kill_at - time.time()))    # the planned SIGTERM time
            old = pair.procs[leader]
            old.signal(signal.SIGTERM)
            try:
                old.p.wait(15)
            except Exception:
                h.check(False, "the old leader %s ends on SIGTERM" % leader, old.output()[-2000:])
            out = old.output()
            released = stamp(line_with(out, "lease: epoch"))
            stopped = stamp(line_with(out, "broker stopped"))
            h.log("cycle %d: %s ended %.2f s after its lease's release"
                  % (cycle + 1, leader, stopped - released))
            h.check("not confirmed" not in out, "no WARN about writes not confirmed",
                    [l for l in out.splitlines() if "not confirmed" in l])
            h.check(stopped - released < 1.0,
                    "the old leader ends within 1 s of its lease's release (%.2f s)"
                    % (stopped - released), out.splitlines()[-6:])
            new = pair.wait_leader(timeout=15, other_than=leader)
            pair.start(leader)                  # back, as a standby
            leader = new

        h.wait_until(lambda: hatest.all_completed(s.redis_port, ids), 60,
                     "every job completed in Redis", interval=0.2)
        twice = [j for j in ids if int(h.job_record(s.redis_port, j)["attempts"]) != 1]
        h.check(not twice, "every job completed at its first attempt", twice[:5])
        logs = "".join(w.output() for w in workers)
        ran = {}
        for m in re.finditer(r" job=(\S+) completed in ", logs):
            ran[m.group(1)] = ran.get(m.group(1), 0) + 1
        h.check(all(ran.get(j) == 1 for j in ids), "each job ran once on the workers",
                [(j, ran.get(j)) for j in ids if ran.get(j) != 1][:5])
        h.log("%d jobs, each completed once, attempts 1" % len(ids))


if __name__ == "__main__":
    h.main(test)

"""Right after a start or a takeover, a valid bot type is never refused unknown_bot_type.

Here Redis holds no record of the types ("botmesh:{bm}:types" deleted
before each start and takeover: as after a broker of a version that kept
none); with the record the types are known at once
(tests/broker/test_types_recorded.py).

Real redis-server, real brokers, fake workers (tests/lib/fakeworker.py).
Types "fromjobs" and "fromworker" have no MAX_<TYPE>_BOTS: a broker knows
them only from Redis-held jobs, or from a worker's READY.

1. Solo broker (no BROKER_HA), restarted while a lease of another host is
   in Redis (planted: it waits for it to run out) with 2 queued fromjobs
   jobs in Redis: every SUBMIT fromjobs before the broker leads and has
   read its queues back is REJECTED store_unavailable, message exactly
   "the broker is reading its queues back from Redis; try again shortly"
   (before: unknown_bot_type "botType must be one of: java, node, python"
   for the whole wait); then ACCEPTED.  A SUBMIT fromworker (known to the
   earlier process from its worker only) is store_unavailable "...the
   workers are registering with it again..." until its worker registers,
   then ACCEPTED.  A type nobody used is store_unavailable during the
   same window, then unknown_bot_type once it ends (2 x
   HEARTBEAT_INTERVAL_MS x HEARTBEAT_LIVENESS after the recovery).
2. HA: the leader killed (SIGKILL); a SUBMIT of a type only the old
   leader's worker named, to the new leader before that worker registers
   with it, is store_unavailable (before: unknown_bot_type); ACCEPTED once
   the worker registers.
"""
import time
import harness as h
import hatest

RECOVERING = "the broker is reading its queues back from Redis; try again shortly"
TYPES_WAIT = ("the broker started or took over moments ago and the workers are registering "
              "with it again; botType is not known yet; try again shortly")
HB_MS, LIVENESS = 200, 5
GRACE_S = 2 * HB_MS * LIVENESS / 1000.0
ENV = {"BROKER_LEASE_MS": "2000", "HEARTBEAT_INTERVAL_MS": str(HB_MS),
       "HEARTBEAT_LIVENESS": str(LIVENESS)}


def start_solo(s, port):
    env = dict(ENV, BROKER_ENDPOINT="tcp://127.0.0.1:%d" % port, BROKER_METRICS_PORT="0")
    return s.spawn("solo", [s.bin("botmesh-broker")], env)


def submit_until(c, bot_type, want, what, timeout=15):
    """SUBMITs every 20 ms until one is answered `want` (ACCEPTED, or a
    REJECTED code); the answers before it, as (command, code, message)."""
    seen = []

    def answered():
        cmd, r = c.try_submit(bot_type, {"t": bot_type})
        got = "ACCEPTED" if cmd == h.ACCEPTED else r.get("code")
        seen.append((got, r.get("message")))
        return got == want
    h.wait_until(answered, timeout, what)
    return seen[:-1]


def test():
    with h.Stack("types-after-start") as s:
        s.redis()
        port = h.free_port()

        # 1. A solo broker: a worker names both types, 2 fromjobs jobs queue.
        solo = start_solo(s, port)
        endpoint = "tcp://127.0.0.1:%d" % port
        h.wait_until(lambda: hatest.leads(endpoint), 15, "the solo broker to lead")
        w = hatest.register(endpoint, "w-both", ["fromjobs", "fromworker"])
        c = h.Client(endpoint)
        queued = [c.submit("fromjobs", {"i": i}) for i in range(2)]
        c.close()
        w.close()
        h.check(solo.stop() == 0, "the solo broker stops on SIGTERM")
        h.check(s.redis_cli("DEL", "botmesh:{bm}:types") == "1", "the types record deleted")
        s.redis_cli("SET", "botmesh:{bm}:leader", "9 elsewhere:4242:abcd:x tcp://10.9.9.9:5555",
                    "PX", "2000")
        planted = time.monotonic()
        solo = start_solo(s, port)
        c = h.Client(endpoint)
        before = submit_until(c, "fromjobs", "ACCEPTED", "a SUBMIT fromjobs to be ACCEPTED")
        took = time.monotonic() - planted
        h.log("fromjobs: %d refusals, then ACCEPTED %.2f s after the restart" % (len(before), took))
        h.check("waiting up to" in solo.output(), "the broker waited for the planted lease",
                solo.output()[-1500:])
        h.check(before and all(b == ("store_unavailable", RECOVERING) for b in before),
                "until it recovered, every SUBMIT of the type its Redis jobs name was "
                "store_unavailable 'reading its queues back' (never unknown_bot_type)", before[:3])
        h.check(len(before) >= 20, "refused for the wait (>= 20 SUBMITs 20 ms apart)", len(before))
        st = c.stats()["types"].get("fromjobs", {})
        h.check(st.get("waiting") == 3, "the 2 recovered jobs and the new one queue", st)

        cmd, r = c.try_submit("fromworker", {"n": 1})
        h.check(cmd == h.REJECTED and r.get("code") == "store_unavailable"
                and r.get("message") == TYPES_WAIT,
                "a type only a worker named: store_unavailable while workers register", cmd, r)
        w = hatest.register(endpoint, "w-both", ["fromjobs", "fromworker"])
        cmd, r = c.try_submit("fromworker", {"n": 2})
        h.check(cmd == h.ACCEPTED, "ACCEPTED once its worker registered again", cmd, r)
        w.close()

        began = time.monotonic()
        before = submit_until(c, "nevertype", "unknown_bot_type",
                              "a type nobody used to be unknown_bot_type after the window")
        h.log("nevertype: store_unavailable for %.2f s more (window %.1f s)"
              % (time.monotonic() - began, GRACE_S))
        h.check(all(b == ("store_unavailable", TYPES_WAIT) for b in before),
                "before, store_unavailable 'registering again'", before[:3])
        c.close()
        h.check(solo.stop() == 0, "the solo broker stops")

        # 2. HA: a type only the old leader's worker named.
        pair = hatest.HaPair(s, env=ENV)
        first = pair.wait_leader()
        second = pair.other(first)
        w = hatest.register(pair.endpoint(first), "w-ha", ["hatype"])
        h.wait_until(lambda: s.redis_cli("HEXISTS", "botmesh:{bm}:types", "hatype") == "1", 10,
                     "the leader to record hatype (deleted below)")
        pair.procs[first].kill()
        h.check(s.redis_cli("DEL", "botmesh:{bm}:types") == "1", "the types record deleted")
        w.close()
        pair.wait_leader(timeout=15, other_than=first)
        new = h.Client(pair.endpoint(second))
        cmd, r = new.try_submit("hatype", {"n": 1})
        h.check(cmd == h.REJECTED and r.get("code") == "store_unavailable"
                and r.get("message") in (TYPES_WAIT, RECOVERING),
                "the new leader: store_unavailable for the old leader's worker's type", cmd, r)
        w = hatest.register(pair.endpoint(second), "w-ha", ["hatype"])
        cmd, r = new.try_submit("hatype", {"n": 2})
        h.check(cmd == h.ACCEPTED, "ACCEPTED once the worker registered with it", cmd, r)
        w.close()
        new.close()


if __name__ == "__main__":
    h.main(test)

"""A restart or a failover knows at once the bot types workers registered (types kept in Redis).

Real redis-server, real brokers, fake workers (tests/lib/fakeworker.py,
credit 0: they take no job).  The types here have no MAX_<TYPE>_BOTS: a
broker knows them only from a worker's READY, or from Redis's record of
them ("botmesh:{bm}:types", field = type, value = last-seen in epoch ms).

1. Solo broker: a worker registers "keptype", its field appears in Redis;
   the worker leaves, the broker is killed (SIGKILL) and started again.
   The first SUBMIT keptype after the recovery is ACCEPTED and queued
   (before: store_unavailable "...the workers are registering with it
   again..." for 2 x HEARTBEAT_INTERVAL_MS x HEARTBEAT_LIVENESS); a type
   never recorded is unknown_bot_type at once (before: store_unavailable
   for that window).
2. HA: the leader is killed (SIGKILL) with a worker of "hatype" registered
   with it only; the worker does not come back.  The new leader's first
   SUBMIT hatype is ACCEPTED and queued (before: store_unavailable); a type
   never recorded is unknown_bot_type.
3. Retention (BROKER_TYPE_TTL_MS=2000): a type whose worker left is
   deleted from the record by the leader's tick within the TTL plus a
   pass; planted fields (one fresh, one ahead of the clock, one past the
   TTL, one not a bot type name, one with a last-seen that is no number)
   are read back at a restart: the fresh ones are known (ACCEPTED), the
   others are deleted and unknown_bot_type; so is the expired one.
4. A record Redis cannot read as a hash (WRONGTYPE) is logged, the broker
   serves (configured types ACCEPTED), and no crash.
5. Redis away (killed) when a worker registers a type: the broker runs
   on (SUBMIT store_unavailable, as for any type), and once Redis is back
   the type's field lands (the write was kept and sent again).
6. REDIS_URL=none: a worker registers, a SUBMIT of its type is ACCEPTED
   (unchanged).
"""
import time
import harness as h
import hatest

TYPES = "botmesh:{bm}:types"
HB_MS, LIVENESS = 200, 5
ENV = {"HEARTBEAT_INTERVAL_MS": str(HB_MS), "HEARTBEAT_LIVENESS": str(LIVENESS),
       "BROKER_LEASE_MS": "2000"}


def recorded(s, bot_type):
    return s.redis_cli("HGET", TYPES, bot_type)


def wait_recorded(s, bot_type):
    h.wait_until(lambda: recorded(s, bot_type).isdigit(), 10,
                 "the type %s in redis's types record" % bot_type)
    seen = int(recorded(s, bot_type))
    h.check(abs(seen - time.time() * 1000) < 60000, "its last-seen is the time now", seen)


def check_known_at_once(c, bot_type, what):
    cmd, r = c.try_submit(bot_type, {"n": 1})
    h.check(cmd == h.ACCEPTED, "%s: the first SUBMIT %s is ACCEPTED" % (what, bot_type), cmd, r)
    st = c.stats()["types"].get(bot_type, {})
    h.check(st.get("waiting") == 1, "%s: the job waits in its queue for a worker" % what, st)


def check_unknown_at_once(c, bot_type, what):
    cmd, r = c.try_submit(bot_type, {"n": 1})
    h.check(cmd == h.REJECTED and r.get("code") == "unknown_bot_type",
            "%s: a SUBMIT of %s is unknown_bot_type at once" % (what, bot_type), cmd, r)


def test():
    with h.Stack("types-recorded") as s:
        s.redis()

        # 1. A solo broker, killed and started again.
        s.broker(env=ENV)
        w = hatest.register(s.endpoint, "w-kept", ["keptype"])
        wait_recorded(s, "keptype")
        w.close()
        s.procs[-1].kill()
        b = s.broker(env=ENV)
        c = s.client()
        check_known_at_once(c, "keptype", "restart")
        check_unknown_at_once(c, "nevertype", "restart")
        c.close()
        h.check("recovered 1 bot type from redis" in b.output(), "the recovery says so",
                b.output()[-2000:])
        h.check(b.stop() == 0, "the broker stops")

        # 2. HA: the leader killed, its worker does not come back.
        pair = hatest.HaPair(s, env=ENV)
        first = pair.wait_leader()
        second = pair.other(first)
        w = hatest.register(pair.endpoint(first), "w-ha", ["hatype"])
        wait_recorded(s, "hatype")
        pair.procs[first].kill()
        w.close()
        pair.wait_leader(timeout=15, other_than=first)
        c = h.Client(pair.endpoint(second))
        check_known_at_once(c, "hatype", "takeover")
        check_unknown_at_once(c, "nevertype", "takeover")
        c.close()
        h.check(pair.procs[second].stop() == 0, "the new leader stops")

        # 3. Retention: the leader deletes a type no worker served for the TTL.
        short = dict(ENV, BROKER_TYPE_TTL_MS="2000")
        b = s.broker(env=short)
        w = hatest.register(s.endpoint, "w-brief", ["brieftype"])
        wait_recorded(s, "brieftype")
        w.close()
        h.wait_until(lambda: s.redis_cli("HEXISTS", TYPES, "brieftype") == "0", 10,
                     "the leader to delete brieftype from the record after its TTL")
        h.check("bot type brieftype: no worker served it for 2000 ms" in b.output(),
                "the deletion is logged", b.output()[-1500:])
        now = int(time.time() * 1000)
        s.redis_cli("HSET", TYPES, "freshtype", str(now), "oldtype", str(now - 3600 * 1000),
                    "bad type!", str(now), "badvalue", "soon",
                    "futuretype", "9223372036854775807")
        h.check(b.stop() == 0, "the broker stops")
        b = s.broker(env=short)
        c = s.client()
        check_known_at_once(c, "freshtype", "a planted fresh field")
        check_known_at_once(c, "futuretype", "a last-seen ahead of the clock (counts as now)")
        for t in ("brieftype", "oldtype", "badvalue"):
            check_unknown_at_once(c, t, "deleted or past its TTL")
        c.close()
        left = s.redis_cli("HKEYS", TYPES).split()
        h.check(sorted(left) == ["freshtype", "futuretype"],
                "the expired and malformed fields are deleted", left)
        h.check("2 fields of the bot types record are no bot type" in b.output(),
                "the malformed fields are logged", b.output()[-2000:])
        h.check(b.stop() == 0, "the broker stops")

        # 4. A record that is no hash: logged, the broker serves.
        s.redis_cli("DEL", TYPES)
        s.redis_cli("SET", TYPES, "not a hash")
        b = s.broker(env=ENV)
        c = s.client()
        cmd, r = c.try_submit("python", {"n": 1})
        h.check(cmd == h.ACCEPTED, "WRONGTYPE record: a configured type is ACCEPTED", cmd, r)
        w = hatest.register(s.endpoint, "w-wrong", ["wrongtype"])
        cmd, r = c.try_submit("wrongtype", {"n": 1})
        h.check(cmd == h.ACCEPTED, "WRONGTYPE record: a registered type is ACCEPTED", cmd, r)
        w.close()
        c.close()
        h.check("the bot types could not be read (WRONGTYPE" in b.output(),
                "the unreadable record is logged", b.output()[-2000:])
        h.check(b.alive() and b.stop() == 0, "the broker runs on and stops")

        # 5. Redis away when a worker registers: the write is kept and lands.
        s.redis_cli("DEL", TYPES)
        b = s.broker(env=ENV)
        c = s.client()
        [p for p in s.procs if p.name == "redis"][-1].kill()
        h.wait_until(lambda: not c.request(h.PING)[1]["redis"], 10, "the broker to see redis gone")
        w = hatest.register(s.endpoint, "w-down", ["downtype"])
        cmd, r = c.try_submit("downtype", {"n": 1})
        h.check(cmd == h.REJECTED and r.get("code") == "store_unavailable",
                "redis away: store_unavailable, as for any SUBMIT", cmd, r)
        s.redis()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 15, "the broker to reconnect")
        wait_recorded(s, "downtype")
        w.close()
        c.close()
        h.check(b.alive() and b.stop() == 0, "the broker runs on and stops")

        # 6. Without Redis, as before.
        s.broker(env=ENV, redis=False)
        w = hatest.register(s.endpoint, "w-none", ["nonetype"])
        c = s.client()
        cmd, r = c.try_submit("nonetype", {"n": 1})
        h.check(cmd == h.ACCEPTED, "REDIS_URL=none: a registered type is ACCEPTED", cmd, r)
        w.close()
        c.close()


if __name__ == "__main__":
    h.main(test)

"""A bot type's last-seen in Redis follows its last worker's departure
(docs/redis.md, "{bm}:types"): the record of a type ends
BROKER_TYPE_TTL_MS after no worker served it, not up to a refresh interval
(a quarter of the TTL, at most an hour) earlier.

Real redis-server, broker (BROKER_TYPE_TTL_MS=40000: the last-seen is
rewritten every 10 s while served) and worker (simulated bots).  The
worker registers "deptype", serves it 7 s (between two refreshes) and
stops.  Within a few seconds the field's value is the moment it left (to
the broker's tick, a second), not when it registered: before, it stayed
the registration time, 7 s behind, and the field was deleted 7 s early.
"""
import time

import harness as h

TYPES = "botmesh:{bm}:types"


def last_seen(s):
    value = s.redis_cli("HGET", TYPES, "deptype")
    return int(value) if value.isdigit() else 0


def test():
    with h.Stack("types-departure") as s:
        s.redis()
        s.broker(env={"BROKER_TYPE_TTL_MS": "40000"})
        w = s.worker("--simulate", "--type", "deptype")
        s.wait_workers(1, "deptype")
        h.wait_until(lambda: last_seen(s), 10, "deptype's field in redis's types record")
        first = last_seen(s)
        # Served for 7 s: less than the refresh interval (10 s).  The
        # departure's last-seen is within a tick (1 s) of the stop, so at
        # least 6 s after the first; the old value stayed the first.
        h.wait_until(lambda: time.time() * 1000 >= first + 7000, 15, "7 s of serving")
        h.check(w.stop() == 0, "the worker stops")
        try:
            h.wait_until(lambda: last_seen(s) >= first + 4000, 10,
                         "the last-seen to be the worker's departure")
        except h.TestFailure:
            h.check(False, "the last-seen follows the departure (7 s after the first)",
                    last_seen(s), first)
        h.check(last_seen(s) <= time.time() * 1000, "not ahead of the clock", last_seen(s))


if __name__ == "__main__":
    h.main(test)

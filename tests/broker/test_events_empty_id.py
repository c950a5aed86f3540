"""SUBSCRIBE and UNSUBSCRIBE naming the subscription "" (protocol.md,
SUBSCRIBE, UNSUBSCRIBE, EVENT): no subscription has that id, so each is
REJECTED not_found naming it, the broker keeps serving (PING answers, a
real subscription still gets its events) and nothing was made.

Real redis and broker.
"""
import harness as h
from test_events import SUBSCRIBE, UNSUBSCRIBE, Subscriber

PING = 0x08


def test():
    with h.Stack("events-empty-id") as s:
        s.redis()
        broker = s.broker(env={"MAX_SUBSCRIPTIONS": "2"})
        sub = Subscriber(s)
        for cmd, name in ((UNSUBSCRIBE, "UNSUBSCRIBE"), (SUBSCRIBE, "SUBSCRIBE")):
            try:
                got, r = sub.call(cmd, {"req": 1, "subscription": ""})
            except h.TestFailure as e:
                h.check(broker.alive(), "the broker still runs after %s of \"\" (it exited %s)"
                        % (name, broker.p.poll()), e)
                raise
            h.check(got == h.REJECTED and r.get("code") == "not_found"
                    and "no live subscription" in r.get("message", ""),
                    "%s of subscription \"\": REJECTED not_found" % name, (got, r))
            got, r = sub.call(PING, {"req": 2})
            h.check(got == h.REPLY, "PING answered after %s of \"\"" % name, (got, r))
        # Nothing was made: both of MAX_SUBSCRIPTIONS (2) are still free.
        first = sub.subscribe(ttlMs=5000)["subscription"]
        second = sub.subscribe(ttlMs=5000)["subscription"]
        h.check(first != second, "two subscriptions made", (first, second))


if __name__ == "__main__":
    h.main(test)

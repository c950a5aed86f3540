"""GET /events when the broker turns event subscriptions off
(MAX_SUBSCRIPTIONS=0; gateway/README.md, "Live events").

- a stream is answered 503 too_many_subscriptions whose message passes on
  the broker's: event subscriptions are turned off (MAX_SUBSCRIPTIONS=0);
- the gateway logs the refusal once (one WARN), not once per attempt,
  however many streams ask.

Real redis, broker and gateway.
"""
import re

import harness
from gwtest import check, curl, gateway

KEY = "events-off-key"


def test():
    with harness.Stack("gw-events-off") as s:
        s.redis()
        s.broker(env={"MAX_SUBSCRIPTIONS": "0"})
        g = gateway(s, env={"API_KEYS": KEY})
        for attempt in range(3):
            r = curl(g.url + "/events", "-H", "X-API-Key: " + KEY)
            message = ((r.json or {}).get("error") or {}).get("message", "")
            check(r.status == 503 and r.error_code() == "too_many_subscriptions"
                  and "turned off" in message and "MAX_SUBSCRIPTIONS=0" in message,
                  "stream %d: 503 too_many_subscriptions, subscriptions turned off "
                  "(MAX_SUBSCRIPTIONS=0)" % (attempt + 1), r)
        warns = re.findall(r"^\S+ WARN .*event subscription.*$", g.output(), re.M)
        check(len(warns) == 1 and "MAX_SUBSCRIPTIONS=0" in warns[0],
              "the refusal is logged once, naming MAX_SUBSCRIPTIONS=0", warns)
        check("event subscription not made: too_many_subscriptions" in warns[0],
              "the line says the subscription was not made (no empty id in its place)", warns)


if __name__ == "__main__":
    harness.main(test)

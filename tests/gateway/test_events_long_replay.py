"""A resumed GET /events gets the broker's whole replay, however long
(gateway/README.md, "Live events"): a subscription made `since` an event
id is answered with up to BROKER_EVENT_HISTORY (10000 by default) events
replayed right behind the answer; those the link reads before the hub has
recorded the subscription are held, all of them, not the first 1024, and
a stream whose queue (1024) the replay overruns is waited for while its
client reads, the stream's head (HTTP 200) coming at once, not after the
replay (the stream and the replay waited for each other, 5 s).

A fake broker (the race made certain: the whole replay arrives before the
answer) answers SUBSCRIBE since=1-5 with REPLAY events (seq 1..REPLAY,
ids 1-6...), then one live event after its answer.  The stream opened
with Last-Event-ID 1-5 must get every one, ids following on, with no
`gap` (the gateway before held the first 1024 and dropped the rest, the
live one too, without a word).  Three events of a name the gateway
does not know follow: one WARN line for them, not three.

Real gateway and sockets; the broker is tests/lib/fakebroker.py.
"""
import threading
import time

import fakebroker
import harness
from gwtest import check, gateway, stop_clean
from test_events import KEY, Stream

SUBSCRIBE, UNSUBSCRIBE, PING = 0x0F, 0x10, 0x08
REPLY, EVENT = 0x83, 0x87
REPLAY = 2500


def event(seq):
    return {"subscription": "sub-1", "seq": seq, "id": "1-%d" % (5 + seq),
            "event": "completed", "jobId": "job-%d" % seq, "botType": "python",
            "timestamp": 1700000000000 + seq}


def main():
    subscribes = []
    ready = threading.Event()

    def respond(fb, m):
        body = m.body if isinstance(m.body, dict) else {}
        req = body.get("req")
        if m.cmd == SUBSCRIBE and "subscription" not in body:
            subscribes.append(body)
            for seq in range(1, REPLAY + 1):
                fb.send(m.ident, EVENT, event(seq))
            ready.set()
            return ([(REPLY, {"req": req, "subscription": "sub-1", "ttlMs": 30000, "seq": 0,
                              "dropped": 0, "eventId": "1-5", "reset": False,
                              "replayed": REPLAY}),
                     (EVENT, event(REPLAY + 1))]
                    + [(EVENT, dict(event(seq), event="frobbed"))
                       for seq in range(REPLAY + 2, REPLAY + 5)]
                    + [(EVENT, event(REPLAY + 5))])
        if m.cmd == SUBSCRIBE:
            return [(REPLY, {"req": req, "subscription": "sub-1", "ttlMs": 30000,
                             "seq": REPLAY + 1, "dropped": 0, "eventId": "1-5"})]
        if m.cmd == UNSUBSCRIBE:
            return [(REPLY, {"req": req})]
        if m.cmd == PING:
            return [(REPLY, {"req": req, "redis": "ok", "uptimeMs": 1000})]
        return []

    # No send limit: the fake's default (1000 messages) would drop part of
    # the burst whenever the gateway reads it more slowly than it is sent
    fake = fakebroker.FakeBroker(respond, sndhwm=0)
    try:
        with harness.Stack("gw-events-long-replay") as s:
            g = gateway(s, endpoint=fake.endpoint, env={"API_KEYS": KEY})
            opened = time.monotonic()
            stream = Stream(g.port, "?lastEventId=1-5")
            took = time.monotonic() - opened
            check(stream.status == 200, "the stream: 200", stream.headers)
            # The stream starts reading once the subscription is made, not
            # after the replay that waits for it to read (5 s, each waiting
            # for the other)
            check(took < 2, "the stream's head within 2 s, not after the replay's "
                  "5 s wait (%.2f s)" % took)
            harness.wait_until(ready.is_set, 10, "the gateway's SUBSCRIBE")
            check(subscribes[0].get("since") == "1-5", "SUBSCRIBE since the Last-Event-ID",
                  subscribes)
            got = []
            while len(got) < REPLAY + 2:
                try:
                    item = stream.next(15)
                except harness.TestFailure:
                    check(False, "every event within 15 s (%d came)" % len(got), got[-3:])
                if item[0] in ("gap", "reset"):
                    check(False, "no gap or reset in the replay (after %d events)" % len(got),
                          item)
                got.append(item)
            check([i for _, i, _ in got]
                  == ["1-%d" % (5 + k) for k in list(range(1, REPLAY + 2)) + [REPLAY + 5]],
                  "every replayed event in order, then the live ones (those of an unknown "
                  "name skipped, no gap for them)",
                  [i for _, i, _ in got][:3], [i for _, i, _ in got][-3:])
            warned = [line for line in g.output().splitlines() if "frobbed" in line]
            check(len(warned) == 1 and " WARN " in warned[0],
                  "an event name the gateway does not know: one WARN, not one per event",
                  warned)
            stream.sock.close()
            stop_clean(g)
    finally:
        fake.close()


if __name__ == "__main__":
    harness.main(main)

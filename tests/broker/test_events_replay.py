"""Events replayed after a reconnect (protocol.md, SUBSCRIBE since): each
EVENT has an id; a new subscription with since=<id> gets the events after
it that its filters match (from the broker's history), then live ones.

- a subscriber whose socket goes away comes back on a new socket with
  since= its last id: exactly the events it missed, seq 1, 2, 3 and ids
  contiguous, then the live ones; REPLY reset false, replayed 3;
- the replay honours the filters (jobIds: one job's events only);
- a since older than the history (BROKER_EVENT_HISTORY=4 here): reset
  true and the whole history replayed (the 4 events held, seq 1-4), then
  the live events;
- a since that is not an event id, one after the last id given, a since
  on a renewal: bad_request naming since;
- after a restart of the broker (SIGTERM, the same port) a since of the
  old run is answered reset, and what the new run's history holds
  follows (its ids of the new epoch).

Real redis and broker; no worker: each SUBMIT makes one `waiting` event.
"""
import re
import harness as h
from test_events import Subscriber, SUBSCRIBE


def number(event_id):
    m = re.fullmatch(r"([0-9a-f]+)-([0-9]+)", event_id)
    h.check(m, "an event id is <epoch>-<n>", event_id)
    return m.group(1), int(m.group(2))


def test():
    with h.Stack("events_replay") as s:
        s.redis()
        broker = s.broker(env={"BROKER_EVENT_HISTORY": "4"})
        c = s.client()

        first = Subscriber(s)
        r = first.subscribe(botTypes=["python"])
        epoch0, n0 = number(r["eventId"])
        a = c.submit("python", {"n": 1})
        seen = first.wait_for(a, ["waiting"])[0]
        epoch, n = number(seen["id"])
        h.check(epoch == epoch0 and n == n0 + 1, "the first event takes the id after the REPLY's "
                "eventId", (r, seen))
        first.c.close()                       # its socket goes away

        missed = [c.submit("python", {"n": i}) for i in (2, 3, 4)]
        back = Subscriber(s)
        r = back.subscribe(botTypes=["python"], since=seen["id"])
        h.check(r["reset"] is False and r["replayed"] == 3 and r["seq"] == 0,
                "since its last id: not reset, 3 replayed", r)
        back.pump(0.3)
        h.check([e["jobId"] for e in back.events] == missed
                and [e["seq"] for e in back.events] == [1, 2, 3]
                and [number(e["id"])[1] for e in back.events] == [n + 1, n + 2, n + 3]
                and all(e["event"] == "waiting" for e in back.events),
                "exactly the 3 missed events, seq 1-3, ids contiguous", back.events)
        live = c.submit("python", {"n": 5})
        ev = back.wait_for(live, ["waiting"])[0]
        h.check(ev["seq"] == 4 and number(ev["id"])[1] == n + 4, "then live, seq and ids going on",
                ev)

        one = Subscriber(s)
        r = one.subscribe(jobIds=[missed[1]], since=seen["id"])
        one.pump(0.3)
        h.check(r["replayed"] == 1 and [(e["jobId"], e["seq"]) for e in one.events]
                == [(missed[1], 1)], "the replay takes the subscription's filters", (r, one.events))

        # The history holds 4: the event after seen is gone after 2 more.
        c.submit("python", {"n": 6})
        c.submit("python", {"n": 7})
        old = Subscriber(s)
        r = old.subscribe(since=seen["id"])
        old.pump(0.3)
        h.check(r["reset"] is True and r["replayed"] == 4
                and [e["seq"] for e in old.events] == [1, 2, 3, 4]
                and [number(e["id"])[1] for e in old.events] == [n + 3, n + 4, n + 5, n + 6],
                "a since older than the history: reset, the 4 events held replayed",
                (r, old.events))
        g = c.submit("python", {"n": 8})
        old.wait_for(g, ["waiting"])

        last = old.events[-1]["id"]
        bad = s.client()
        for since, why in (("nonsense", "must be an event id"), (7, "must be an event id"),
                           ("%s-%d" % (epoch, number(last)[1] + 5), "after the last event id")):
            cmd, r = bad.request(SUBSCRIBE, {"since": since})
            h.check(cmd == h.REJECTED and r["code"] == "bad_request" and "since" in r["message"]
                    and why in r["message"], "since %r is refused naming since" % (since,), r)
        cmd, r = old.c.request(SUBSCRIBE, {"subscription": old.sub, "since": last})
        h.check(cmd == h.REJECTED and r["code"] == "bad_request" and "renewal" in r["message"],
                "since on a renewal is refused", r)

        for sub in (back, one, old):
            sub.c.close()
        broker.stop()
        s.broker(env={"BROKER_EVENT_HISTORY": "4"})
        again = Subscriber(s)
        r = again.subscribe(since=last)
        again.pump(0.3)
        h.check(r["reset"] is True and number(r["eventId"])[0] != epoch
                and len(again.events) == r["replayed"]
                and all(number(e["id"])[0] != epoch for e in again.events),
                "after a restart an old run's since is reset (another epoch), the new run's "
                "history replayed", (r, again.events))


if __name__ == "__main__":
    h.main(test)

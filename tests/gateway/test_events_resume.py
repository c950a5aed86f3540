"""GET /events resumes from a Last-Event-ID (gateway/README.md, "Live
events"): each item's `id:` is the broker's event id; a stream opened with
the Last-Event-ID header (as EventSource sends it on a reconnect) or the
lastEventId query gets the events after it first.

- a client reads a job's events and leaves; the gateway's broker
  subscription ends with it (no stream left); a second job runs; curl with
  Last-Event-ID gets exactly that job's 3 events, ids following on, no
  reset: the gateway subscribed again since its last event and the broker
  replayed them;
- while the gateway is subscribed, ?lastEventId= gets the events after it
  from the gateway's own history; a second gateway, which has none, gets
  them from the broker's;
- a Last-Event-ID the gateway does not know: a `reset` item first;
- GATEWAY_MAX_EVENT_STREAMS (2) reached: a stream of jobId=<an
  idempotencyKey> is 503 too_many_streams without the key's lookup (no
  line of it in the log);
- the broker restarts with MAX_SUBSCRIPTIONS=0: the open stream is told
  (a `reset` item naming too_many_subscriptions) while the gateway keeps
  asking.

Real redis, broker, worker (simulated bots) and gateway.
"""
import re
import time

import harness
from gwtest import check, curl, gateway, post_json
from test_events import KEY, Stream


AUTH = ("-H", "X-API-Key: " + KEY)


def number(event_id):
    return int(event_id.rsplit("-", 1)[1])


def sse(body):
    """The (event, id, data) items of an SSE body."""
    items = []
    for block in body.split("\n\n"):
        fields = {}
        for line in block.split("\n"):
            if line and not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.lstrip(" ")
        if fields:
            items.append((fields.get("event"), fields.get("id"), fields.get("data")))
    return items


def subscriptions(s):
    cmd, r = s.client().request(harness.METRICS)
    m = re.search(r"^broker_event_subscriptions (\S+)$", r["text"], re.M)
    return float(m.group(1)) if m else None


def streams(g):
    """The gateway's open event streams (gateway_event_streams)."""
    m = re.search(r"^gateway_event_streams (\S+)$", curl(g.url + "/metrics", show=False).body, re.M)
    return float(m.group(1)) if m else None


def run_job(g, s, **extra):
    r = post_json(g.url + "/invoke", dict({"botType": "python", "payload": {}}, **extra), *AUTH)
    check(r.status == 202, "invoked", r)
    return r.json["jobId"]


def test():
    with harness.Stack("gw-events-resume") as s:
        s.redis()
        broker = s.broker()
        s.worker("--simulate", "--type", "python", "--concurrency", "4",
                 env={"SIM_DURATION_MS": "20-40"})
        s.wait_workers(1, "python")
        g = gateway(s, env={"API_KEYS": KEY, "GATEWAY_MAX_EVENT_STREAMS": "2"})

        first = Stream(g.port, "?botType=python")
        j1 = run_job(g, s)
        items = first.job_events(j1, 3)
        last = items[-1][1]
        check(re.fullmatch(r"[0-9a-f]+-[0-9]+", last), "an item's id is the broker's event id",
              items)
        first.sock.close()
        harness.wait_until(lambda: subscriptions(s) == 0, 15,
                           "the gateway to end its subscription once its only stream left")

        j2 = run_job(g, s)
        harness.wait_until(lambda: (curl(g.url + "/job/" + j2, *AUTH, show=False).json or {})
                           .get("state") == "completed", 15, "job %s to complete" % j2)
        r = curl("-N", "-H", "Last-Event-ID: " + last, g.url + "/events?botType=python", *AUTH,
                 timeout=3)
        got = sse(r.body)
        check(r.status == 200, "the resumed stream: 200", r)
        check([e for e, _, _ in got] == ["waiting", "active", "completed"]
              and all(j2 in d for _, _, d in got)
              and [number(i) for _, i, _ in got] == [number(last) + k for k in (1, 2, 3)],
              "Last-Event-ID: exactly the missed job's 3 events, ids following on, no reset",
              got)

        live = Stream(g.port)
        j3 = run_job(g, s)
        live.job_events(j3, 3)
        since = got[-1][1]
        again = Stream(g.port, "?botType=python&lastEventId=" + since)
        items = again.job_events(j3, 3, timeout=5)
        check([i[0] for i in items] == ["waiting", "active", "completed"]
              and number(items[0][1]) == number(since) + 1,
              "lastEventId: the events after it, from the gateway's history", items)
        again.sock.close()

        # Another gateway (a restart, or the next one behind a balancer): no
        # history of its own, it asks the broker since that id.
        g2 = gateway(s, env={"API_KEYS": KEY}, name="gateway-2")
        r = curl("-N", "-H", "Last-Event-ID: " + since, g2.url + "/events?botType=python", *AUTH,
                 timeout=3)
        got = sse(r.body)
        check([e for e, _, _ in got] == ["waiting", "active", "completed"]
              and all(j3 in d for _, _, d in got),
              "another gateway: the events after Last-Event-ID, from the broker's history", got)
        g2.stop()

        harness.wait_until(lambda: streams(g) == 1, 15, "the closed stream's slot to be free")
        r = curl("-N", "-H", "Last-Event-ID: zz-1", g.url + "/events", *AUTH, timeout=2)
        got = sse(r.body)
        check(got and got[0][0] == "reset", "an unknown Last-Event-ID: reset first", got)

        # Two streams open (the cap): the key is not looked up.
        post_json(g.url + "/invoke", {"botType": "python", "payload": {}, "delayMs": 600000,
                                      "idempotencyKey": "cap-key"}, *AUTH)
        held = Stream(g.port)
        r = curl(g.url + "/events?jobId=cap-key", *AUTH, timeout=10)
        check(r.status == 503 and r.error_code() == "too_many_streams",
              "the cap reached: 503 too_many_streams", r)
        check("jobId=cap-key" not in g.output(), "no lookup of the key for a refused stream",
              g.output()[-2000:])
        held.sock.close()
        harness.wait_until(lambda: streams(g) == 1, 15, "the held stream's slot to be free")

        # The broker comes back refusing subscriptions: the open stream hears it.
        broker.stop()
        s.broker(env={"MAX_SUBSCRIPTIONS": "0"})
        deadline = time.monotonic() + 15
        item = live.next(15)
        while item[0] != "reset" and time.monotonic() < deadline:
            item = live.next(max(0.1, deadline - time.monotonic()))
        check(item[0] == "reset" and item[2].get("code") == "too_many_subscriptions"
              and "MAX_SUBSCRIPTIONS=0" in item[2].get("reason", ""),
              "the stream is told the gateway's subscription is refused", item)


if __name__ == "__main__":
    harness.main(test)

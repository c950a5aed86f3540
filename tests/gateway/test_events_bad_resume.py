"""A Last-Event-ID the broker cannot know (a plain number, as a gateway
before the broker's event ids gave, or a typo) is answered with a `reset`
on that stream and never breaks the gateway's live events:

- a gateway with no history gets a stream with Last-Event-ID: 42: the
  stream gets a `reset`, and the job submitted next arrives live on it and
  on a stream opened after it without a Last-Event-ID;
- on another gateway with no history, an id of the broker's shape and
  epoch but past its last event (the broker refuses such a `since`): the
  same.

Real redis, broker, worker (simulated bots) and gateway.
"""
import harness
from gwtest import check, gateway
from test_events import KEY, Stream
from test_events_flow import submit
from test_events_resume import subscriptions


def live(stream, job, what):
    """The stream's next item of job, past any reset and any event of an
    earlier job still running, is job's waiting; its id."""
    item = stream.next(10)
    while item[0] == "reset" or (item[2] and item[2].get("jobId") != job):
        item = stream.next(10)
    check(item[0] == "waiting" and item[2] and item[2].get("jobId") == job,
          "%s gets the next job's events live" % what, item)
    return item[1]


def test():
    with harness.Stack("gw-events-bad-resume") as s:
        s.redis()
        s.broker()
        s.worker("--simulate", "--type", "python", "--concurrency", "4",
                 env={"SIM_DURATION_MS": "20-40"})
        s.wait_workers(1, "python")

        # A number, on a gateway with no history: never sent to the broker.
        g = gateway(s, env={"API_KEYS": KEY})
        old = Stream(g.port, "?lastEventId=42")
        check(old.status == 200, "a stream with lastEventId=42: 200", old.headers)
        item = old.next(10)
        check(item[0] == "reset", "lastEventId=42: the stream's first item is a reset", item)
        fresh = Stream(g.port)
        j1 = submit(g)
        first_id = live(old, j1, "lastEventId=42: the resumed stream")
        live(fresh, j1, "lastEventId=42: a new stream")

        # This broker's epoch, past its last event, on another gateway with
        # no history: the broker refuses that since.
        future = first_id.split("-")[0] + "-999999999"
        g2 = gateway(s, env={"API_KEYS": KEY}, name="gateway-2")
        ahead = Stream(g2.port, "?lastEventId=" + future)
        check(ahead.status == 200, "a stream with lastEventId=%s: 200" % future, ahead.headers)
        item = ahead.next(10)
        check(item[0] == "reset", "lastEventId=%s: the stream's first item is a reset" % future, item)
        fresh2 = Stream(g2.port)
        j2 = submit(g2)
        live(ahead, j2, "lastEventId=%s: the resumed stream" % future)
        live(fresh2, j2, "lastEventId=%s: a new stream" % future)


if __name__ == "__main__":
    harness.main(test)

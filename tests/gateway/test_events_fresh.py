"""A new GET /events stream without Last-Event-ID starts with new events
only (gateway/README.md, "Resuming"; BullMQ's QueueEvents default): the
events the broker replays into the gateway's new subscription (those since
the last one the gateway saw) go to streams that named a Last-Event-ID.

- a client reads job J1's events and leaves (the gateway's subscription
  ends); J2 runs to the end; a new stream without Last-Event-ID then sees
  J3's events first, none of J2's; a stream opened next with
  Last-Event-ID = J1's last event gets J2's events, then J3's.

Real redis, broker, worker (simulated bots) and gateway.
"""
import harness
from gwtest import check, curl, gateway
from test_events import KEY, Stream
from test_events_flow import completed, submit
from test_events_resume import subscriptions


def test():
    with harness.Stack("gw-events-fresh") as s:
        s.redis()
        s.broker()
        s.worker("--simulate", "--type", "python", "--concurrency", "4",
                 env={"SIM_DURATION_MS": "20-40"})
        s.wait_workers(1, "python")
        g = gateway(s, env={"API_KEYS": KEY})

        first = Stream(g.port)
        j1 = submit(g)
        last = first.job_events(j1, 3)[-1][1]
        first.sock.close()
        harness.wait_until(lambda: subscriptions(s) == 0, 15,
                           "the gateway to end its subscription once its only stream left")
        j2 = submit(g)
        completed(g, j2)

        fresh = Stream(g.port)
        check(fresh.status == 200, "a new stream: 200", fresh.headers)
        resumed = Stream(g.port, "?lastEventId=" + last)
        j3 = submit(g)
        item = fresh.next(10)
        check(item[2] and item[2].get("jobId") == j3 and item[0] == "waiting",
              "the new stream's first item is J3's waiting, not J2's past events", item)
        got = [i for i in (resumed.next(10) for _ in range(6))]
        check([(i[0], i[2].get("jobId")) for i in got]
              == [(e, j2) for e in ("waiting", "active", "completed")]
              + [(e, j3) for e in ("waiting", "active", "completed")],
              "the stream with lastEventId: J2's events, then J3's", got)


if __name__ == "__main__":
    harness.main(test)

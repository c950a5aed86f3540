"""GET /events and flows (gateway/README.md, "Live events"): a job
submitted with dependsOn gives a `waiting-children` event, whose name is the
longest of the broker's event names.

- a stream of ?events=waiting-children gets C's `waiting-children` event
  (C dependsOn A, A still running), and no `gap`;
- a client reads a job's events and leaves (the subscription ends with
  it); A and C (dependsOn A) then run to the end; a stream with
  Last-Event-ID gets all their events, `waiting-children` among them, with
  no `gap` nor `reset`; a second stream with the same Last-Event-ID gets
  them again from the gateway's history, no `reset`.

Real redis, broker, worker (simulated bots) and gateway.
"""
import harness
from gwtest import check, curl, gateway, post_json
from test_events import KEY, Stream
from test_events_resume import sse, subscriptions

AUTH = ("-H", "X-API-Key: " + KEY)


def submit(g, **extra):
    r = post_json(g.url + "/invoke", dict({"botType": "python", "payload": {}}, **extra), *AUTH)
    check(r.status == 202, "invoked", r)
    return r.json["jobId"]


def completed(g, job):
    harness.wait_until(lambda: (curl(g.url + "/job/" + job, *AUTH, show=False).json or {})
                       .get("state") == "completed", 20, "job %s to complete" % job)


def test():
    with harness.Stack("gw-events-flow") as s:
        s.redis()
        s.broker()
        s.worker("--simulate", "--type", "python", "--concurrency", "4",
                 env={"SIM_DURATION_MS": "300"})
        s.wait_workers(1, "python")
        g = gateway(s, env={"API_KEYS": KEY})

        waiting = Stream(g.port, "?events=waiting-children")
        a = submit(g)
        c = submit(g, dependsOn=[a])
        item = waiting.next(10)
        check(item[0] == "waiting-children" and item[2].get("jobId") == c,
              "?events=waiting-children: C's waiting-children event", item)
        completed(g, c)
        waiting.sock.close()

        first = Stream(g.port)
        j = submit(g)
        last = first.job_events(j, 3)[-1][1]
        first.sock.close()
        harness.wait_until(lambda: subscriptions(s) == 0, 15,
                           "the gateway to end its subscription once its only stream left")
        a = submit(g)
        c = submit(g, dependsOn=[a])
        completed(g, c)
        for attempt in ("from the broker's history", "from the gateway's history"):
            got = []
            for _ in range(3):      # until C's completed is in (the replay may come in parts)
                r = curl("-N", "-H", "Last-Event-ID: " + last, g.url + "/events", *AUTH,
                         timeout=3)
                got = sse(r.body)
                if any(e == "completed" and c in d for e, _, d in got):
                    break
            names = [e for e, _, _ in got]
            check("gap" not in names and "reset" not in names,
                  "Last-Event-ID across a flow (%s): no gap, no reset" % attempt, got)
            check([e for e, _, d in got if c in d] == ["waiting-children", "waiting", "active",
                                                      "completed"],
                  "Last-Event-ID across a flow (%s): C's events, waiting-children first"
                  % attempt, got)


if __name__ == "__main__":
    harness.main(test)

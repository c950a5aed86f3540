"""The clients' events() resume (protocol.md, SUBSCRIBE since): they
subscribe again since the last event they yielded, and take since= from
the caller.  A real redis-server, broker and Python worker ('pywork').

Python:
- a stream paused longer than its ttl_ms (1 s) loses its subscription; a
  job runs meanwhile; iterated again, it subscribes since its last event
  and yields exactly that job's 3 events, ids following on, no reset;
- last_id is the last event's id; events(since=last_id) in a new stream
  (as after a restart of the process) yields the job that ran after it;
- a since of another broker run: a reset first; a since that is no event
  id: Rejected bad_request.
The Node client's are in e2e_node_events.js (run by
test_e2e_py_events.py).
"""
import threading

from e2elib import harness, botmesh, pyworker, wait_worker
from harness import check, wait_until
from test_e2e_py_events import gauge


def number(event_id):
    return int(event_id.rsplit("-", 1)[1])


def until_completed(stream, job):
    """The items up to job's completed (got[-1])."""
    got = [next(stream)]
    while (got[-1].get("jobId"), got[-1]["event"]) != (job, "completed"):
        got.append(next(stream))
    return got


def main():
    with harness.Stack("clients-py-events-since") as s:
        s.redis()
        s.broker()
        pyworker(s, "py-since", credit=2)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-since")

        stream = c.events(bot_types=["pywork"], ttl_ms=1000)
        threading.Thread(target=lambda: (wait_until(lambda: gauge(c) == 1, 10, "the subscription"),
                                         c.submit("pywork", {"echo": 1})), daemon=True).start()
        first = next(stream)                 # blocks until the job's first event
        got = [first] + until_completed(stream, first["jobId"])
        check([ev["event"] for ev in got] == ["waiting", "active", "completed"], "a job's events",
              got)
        check(stream.last_id == got[-1]["id"], "last_id is the last event's id",
              (stream.last_id, got[-1]))

        # Paused past its TTL: the broker drops the subscription.
        wait_until(lambda: gauge(c) == 0, 10, "the paused stream's subscription to lapse")
        missed = c.submit("pywork", {"echo": 2})
        c.wait(missed, timeout=20)
        got = until_completed(stream, missed)
        check([ev["event"] for ev in got] == ["waiting", "active", "completed"]
              and all(ev.get("jobId") == missed for ev in got),
              "iterated again: exactly the missed job's events, no reset", got)
        check([number(ev["id"]) for ev in got] == [number(first["id"]) + k for k in (3, 4, 5)],
              "ids following on from the last one yielded", got)
        saved = stream.last_id
        stream.close()
        wait_until(lambda: gauge(c) == 0, 10, "close() to unsubscribe")

        later = c.submit("pywork", {"echo": 3})
        c.wait(later, timeout=20)
        again = c.events(bot_types=["pywork"], since=saved)
        got = until_completed(again, later)
        check([(ev.get("jobId"), ev["event"]) for ev in got]
              == [(later, "waiting"), (later, "active"), (later, "completed")],
              "events(since=last_id): the job that ran after it, first", got)
        again.close()

        other = c.events(since="abcd0123-5")
        check(next(other) == {"event": "reset"}, "a since of another broker run: reset first")
        other.close()
        try:
            next(c.events(since="nonsense"))
            raise harness.TestFailure("a since that is no event id was taken")
        except botmesh.Rejected as e:
            check(e.code == "bad_request" and "since" in e.message, "a bad since: bad_request", e)


if __name__ == "__main__":
    harness.main(main)

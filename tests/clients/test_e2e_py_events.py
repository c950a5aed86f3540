"""The Python client's events(): live job events as a generator (protocol.md,
SUBSCRIBE).  A real redis-server, broker and Python worker ('pywork').

- events(bot_types=["pywork"]) yields a submitted job's waiting, active,
  completed (with its result), in seq order;
- events(job_ids=[J], events=["completed"]) yields J's completed only;
- bad filters raise Rejected bad_request;
- the broker restarts: the generator yields {"event": "reset"}, then the
  events of the next job; so does one renewed every 1/3 s across three
  graceful restarts (SIGTERM: renewals answered shutting_down);
- closing the generator unsubscribes (the broker's subscription gauge
  goes back to 0), and so does closing the client (its generators end);
- the Node client's events() (e2e_node_events.js): the same sequence, a
  bad filter, return() unsubscribes, even while a next() waits for an
  event; lastEventId and events({since}) resume (skipped when Node cannot
  run).
"""
import threading
import queue

import os
import subprocess

from e2elib import harness, botmesh, pyworker, wait_worker, need_node, RUN_NODE, HERE
from harness import check, wait_until


class Reader:
    """A generator drained by a thread into a queue."""

    def __init__(self, gen):
        self.gen, self.items = gen, queue.Queue()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            for ev in self.gen:
                self.items.put(ev)
        except Exception as e:          # noqa: BLE001 - handed to the test
            self.items.put(e)

    def until(self, pred, timeout=20):
        got = []
        while True:
            try:
                ev = self.items.get(timeout=timeout)
            except queue.Empty:
                raise harness.TestFailure("no event within %ss; got %r" % (timeout, got))
            if isinstance(ev, Exception):
                raise ev
            got.append(ev)
            if pred(ev):
                return got


def gauge(c):
    for line in c.metrics().splitlines():
        if line.startswith("broker_event_subscriptions "):
            return float(line.split()[1])
    return None


def main():
    with harness.Stack("clients-py-events") as s:
        s.redis()
        broker = s.broker()
        pyworker(s, "py-ev", credit=2)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-ev")

        try:
            next(c.events(events=["nope"]))
            raise harness.TestFailure("a bad event name was taken")
        except botmesh.Rejected as e:
            check(e.code == "bad_request" and "events" in e.message, "bad filter: Rejected bad_request", e)

        typed = Reader(c.events(bot_types=["pywork"]))
        wait_until(lambda: gauge(c) == 1, 10, "the subscription to exist")
        job = c.submit("pywork", {"echo": 7})
        got = typed.until(lambda ev: ev.get("jobId") == job and ev["event"] == "completed")
        mine = [ev for ev in got if ev.get("jobId") == job]
        check([ev["event"] for ev in mine] == ["waiting", "active", "completed"],
              "waiting, active, completed", mine)
        check([ev["seq"] for ev in mine] == sorted(ev["seq"] for ev in mine), "in seq order", mine)

        second = c.submit("pywork", {"echo": 8}, delay_ms=60000)
        one = c.events(job_ids=[second], events=["completed"])
        other = botmesh.Client(s.endpoint, timeout=5)

        def promote():
            wait_until(lambda: gauge(other) == 2, 10, "the second subscription to exist")
            other.promote(second)
        threading.Thread(target=promote, daemon=True).start()
        ev = next(one)
        check((ev["jobId"], ev["event"]) == (second, "completed"),
              "the narrow generator yields the job's completed only", ev)
        one.close()
        wait_until(lambda: gauge(c) == 1, 10, "closing the generator to unsubscribe")

        # closing the client ends its generators and unsubscribes them at
        # once (not at the TTL's end, 30 s): one suspended at an event, one
        # being iterated in a thread
        closing = botmesh.Client(s.endpoint, timeout=5)
        held = closing.events(bot_types=["pywork"])
        threaded = Reader(closing.events(bot_types=["pywork"]))
        threading.Thread(target=lambda: (wait_until(lambda: gauge(other) == 3, 10, "two more subscriptions"),
                                         other.submit("pywork", {"echo": 10})), daemon=True).start()
        check(next(held)["event"] == "waiting", "the held generator got an event")
        threaded.until(lambda ev: ev["event"] == "waiting")
        closing.close()
        wait_until(lambda: gauge(c) == 1, 3, "closing the client to unsubscribe its generators")
        check(list(held) == [], "a closed client's generator is done")

        broker.kill()
        broker = s.broker()
        wait_worker(c, "py-ev", timeout=20)
        got = typed.until(lambda ev: ev["event"] == "reset", timeout=30)
        check(got[-1] == {"event": "reset"}, "after a broker restart: reset", got[-1])
        third = c.submit("pywork", {"echo": 9})
        got = typed.until(lambda ev: ev.get("jobId") == third and ev["event"] == "completed")
        check([ev["event"] for ev in got if ev.get("jobId") == third] == ["waiting", "active", "completed"],
              "events again after the restart", got)

        # Graceful restarts (SIGTERM: the broker answers shutting_down for a
        # moment, then nothing) with renewals every 1/3 s, so that a renewal
        # meets the stopping broker: each time a reset, then a new job's
        # events, never an exception out of the generator
        quick = Reader(c.events(bot_types=["pywork"], ttl_ms=1000))
        wait_until(lambda: gauge(c) == 2, 10, "the quick subscription to exist")
        for n in range(3):
            broker.stop()
            broker = s.broker()
            wait_worker(c, "py-ev", timeout=20)
            got = quick.until(lambda ev: ev["event"] == "reset", timeout=30)
            job = c.submit("pywork", {"echo": 20 + n})
            got = quick.until(lambda ev: ev.get("jobId") == job and ev["event"] == "completed")
            check([ev["event"] for ev in got if ev.get("jobId") == job] == ["waiting", "active", "completed"],
                  "graceful restart %d: reset, then the next job's events" % (n + 1), got)

        need_node()
        r = subprocess.run(["sh", RUN_NODE, os.path.join(HERE, "e2e_node_events.js"), s.endpoint],
                           capture_output=True, text=True, timeout=150)
        print(r.stdout, r.stderr, flush=True)
        check(r.returncode == 0 and "NODE EVENTS PASS" in r.stdout, "the Node client's events() checks pass",
              r.returncode)


if __name__ == "__main__":
    harness.main(main)

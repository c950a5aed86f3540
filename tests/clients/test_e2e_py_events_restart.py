"""The Python client's events() across a broker restart (protocol.md,
SUBSCRIBE since): the restarted broker answers the old run's since with
reset and replays its whole history, so the stream yields `reset` and then
the events of what the new run did before the client subscribed again.
A real redis-server, broker (restarted) and Python worker ('pywork').

- a stream reads a job's events; the broker is killed and started again;
  a job J runs to the end before the stream's next renewal (ttl_ms 30 s:
  renewed each 10 s); the stream then yields `reset`, followed by J's
  waiting, active and completed;
- EventStream.close() from another thread than the one iterating ends
  that loop (no ValueError) and unsubscribes.
"""
import threading

from e2elib import harness, botmesh, pyworker, wait_worker
from harness import check, wait_until
from test_e2e_py_events import gauge


def main():
    with harness.Stack("clients-py-events-restart") as s:
        s.redis()
        broker = s.broker()
        pyworker(s, "py-restart", credit=2)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-restart")

        items, done = [], threading.Event()
        stream = c.events(bot_types=["pywork"])

        def read():
            try:
                for ev in stream:
                    items.append(ev)
            except Exception as e:          # noqa: BLE001 - reported by the check below
                items.append({"event": "error", "error": repr(e)})
            done.set()

        threading.Thread(target=read, daemon=True).start()
        wait_until(lambda: gauge(c) == 1, 10, "the subscription")
        first = c.submit("pywork", {"echo": 1})
        wait_until(lambda: (first, "completed") in [(e.get("jobId"), e["event"]) for e in items],
                   15, "the first job's completed on the stream")

        broker.kill()
        s.broker()
        wait_worker(c, "py-restart")
        j = c.submit("pywork", {"echo": 2})
        c.wait(j, timeout=20)
        wait_until(lambda: (j, "completed") in [(e.get("jobId"), e["event"]) for e in items],
                   25, "J's completed on the stream after the restart (the replay after reset)")
        after = items[[e["event"] for e in items].index("reset"):]
        check([(e.get("jobId"), e["event"]) for e in after if e.get("jobId") in (None, j)]
              == [(None, "reset"), (j, "waiting"), (j, "active"), (j, "completed")],
              "after the restart: reset, then J's events replayed", after)

        stream.close()                      # from this thread, the loop runs in another
        check(done.wait(5), "close() from another thread ends the loop", items[-3:])
        check(not any(e["event"] == "error" for e in items), "the loop raised nothing", items[-3:])
        wait_until(lambda: gauge(c) == 0, 10, "close() to unsubscribe")


if __name__ == "__main__":
    harness.main(main)

"""A job the broker told a worker to stop is not dispatched again to that
worker while the stopped run is still finishing.

Real broker and botmesh-worker, one worker with credit 2, a bot that on
attempt 1 ignores SIGTERM and sleeps until the worker's kill grace
(3 s) runs out.  The job allows 800 ms and retries with no backoff: the
broker sends CANCEL (timeout) for attempt 1 and queues attempt 2 at once,
while the worker still holds the stopped run and has a free slot.  Attempt
2 waits for the stopped run's DONE, then runs and completes with its own
result; the stopped run's `timeout` DONE does not end it.
"""
import time

import harness
from harness import check
from wlib import testbot_cmd

KILL_GRACE_MS = 3000


def main():
    with harness.Stack("worker-e2e-stopped-rerun") as s:
        env = {"BOT_KILL_GRACE_MS": str(KILL_GRACE_MS), "BOT_STALL_CMD": testbot_cmd()}
        s.broker(redis=False)
        s.worker("--type", "stall", "--concurrency", "2", env=env)
        s.wait_workers(1, "stall")
        c = s.client()

        t0 = time.monotonic()
        jid = c.submit("stall", {"stallAttempt": 1}, timeoutMs=800, attempts=3,
                       backoff={"type": "fixed", "delayMs": 0})
        rec = c.wait(jid, timeout=30)
        took = time.monotonic() - t0
        check(rec["state"] == "completed", "the job completes on a later attempt", rec)
        check(rec["attempts"] == 2 and rec["result"]["attempt"] == 2,
              "attempt 2 ran and its own result is the job's", rec)
        check([e.get("code") for e in rec.get("attemptErrors", [])] == ["timeout"],
              "attempt 1 is recorded as a timeout, nothing else", rec.get("attemptErrors"))
        check(took >= KILL_GRACE_MS / 1000.0 - 0.5,
              "attempt 2 started only after the stopped run ended (%.1f s)" % took, took)

        # The worker's slots are all free again: a plain job runs at once.
        rec = c.wait(c.submit("stall", {}), timeout=10)
        check(rec["state"] == "completed" and rec["attempts"] == 1, "the worker still serves", rec)


if __name__ == "__main__":
    harness.main(main)

"""A run the broker stops (CANCEL: timeout, cancelled) never completes the
job on a Python or Node worker, even when its handler returns normally.

    test_e2e_stopped_runs.py python|node

Real redis-server and broker, and the client library's worker as a process
(tests/clients/pyworker.py, thread isolation, or nodeworker.js), credit 2:
the broker dispatches a job again to that worker only once the stopped run's
DONE has freed it, whatever credit is spare.
Its handler sleeps until the job's CANCEL (job.cancelled / job.signal) and
then returns a result as usual; with sleepFirstRun it sleeps only in the
job's first run here, and its result says which run it is ("run").

- timeout: a job whose first run outlives its timeoutMs fails that run with
  timeout; the broker dispatches it again (attempt 2), the handler runs
  again, and the job completes with run 2's result. The worker does not
  answer attempt 2 with what the stopped run returned.
- cancel, then retry: the cancelled run's return value is not kept either;
  the retry runs the handler again and completes with run 2's result.
"""

from e2elib import harness, botmesh, client_side, nodeworker, pyworker, wait_worker
from harness import check, wait_until


def starts(worker, job_id):
    """The worker's START lines for the job: [(attempt, run), ...]."""
    out = []
    for line in worker.output().splitlines():
        words = line.split()
        if line.startswith("START ") and words[1] == job_id and len(words) >= 6:
            out.append((int(words[3]), int(words[5])))
    return out


def main():
    which = client_side()
    bot_type = "pystop" if which == "python" else "nodestop"
    with harness.Stack("clients-stopped-runs-" + which) as s:
        s.redis()
        s.broker()
        name = bot_type + "-1"
        w = (pyworker if which == "python" else nodeworker)(s, name, types=bot_type, credit=2)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, name)

        # timeout: attempt 1 is stopped at 1 s, attempt 2 runs the handler again.
        slow = c.submit(bot_type, {"sleepMs": 60000, "sleepFirstRun": True}, timeout_ms=1000, attempts=2,
                        backoff={"type": "fixed", "delayMs": 0}, notify=True)
        rec = c.wait(slow, timeout=30)
        check(rec["state"] == "completed" and rec["attempts"] == 2,
              "the job that timed out once completes on attempt 2", rec)
        check(rec["result"]["attempt"] == 2 and rec["result"]["run"] == 2,
              "with the result of the handler's second run, not what the stopped run returned",
              rec["result"])
        check([e.get("code") for e in rec.get("attemptErrors", [])] == ["timeout"],
              "attempt 1 is recorded as a timeout", rec.get("attemptErrors"))
        check(starts(w, slow) == [(1, 1), (2, 2)], "the handler ran once per attempt", starts(w, slow))

        # cancel, then retry: the retry runs the handler again.
        held = c.submit(bot_type, {"sleepMs": 60000, "sleepFirstRun": True})
        wait_until(lambda: starts(w, held), 20, "the job's first run to start")
        rec = c.cancel(held)
        check(rec["state"] == "cancelled", "cancel stops the running job", rec)
        check(c.retry(held) == held, "retry queues the cancelled job again")
        rec = c.wait(held, timeout=30)
        check(rec["state"] == "completed" and rec["result"]["run"] == 2,
              "the retried job completes with the handler's second run", rec)
        check(starts(w, held) == [(1, 1), (1, 2)], "the handler ran again for the retry", starts(w, held))
        wait_until(lambda: c.stats()["types"][bot_type]["running"] == 0, 15, "no job left running")
        check(w.alive(), "the worker is still serving")
        c.close()


if __name__ == "__main__":
    harness.main(main)

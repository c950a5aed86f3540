"""SIGTERM to a worker with running jobs, through the real broker: it stops
taking jobs (credit 0), lets the short jobs finish within the grace period,
kills the long one at the end of it and hands it back (RELEASE), then
disconnects and exits 0.  Nothing is lost: the handed-back job and a job
that was waiting in the queue complete on a second worker.
"""
import signal
import time

import harness
from harness import check, log, wait_until
from wlib import wait_exit, children

GRACE_MS = 3000
ENV = {"BOT_KILL_GRACE_MS": "500"}


def main():
    with harness.Stack("worker-e2e-sigterm") as s:
        s.broker(redis=False)
        a = s.worker("--type", "python", "--concurrency", "3", "--grace-ms", str(GRACE_MS),
                     "--name", "w-leaving", env=ENV)
        s.wait_workers(1, "python")
        c = s.client()
        short = [c.submit("python", {"dataset": "s%d" % i, "sleepMs": 300}) for i in range(2)]
        long_job = c.submit("python", {"dataset": "long", "sleepMs": 6000})
        queued = c.submit("python", {"dataset": "queued", "size": 10})

        def all_running():
            recs = [c.status(j) for j in short + [long_job]]
            return all(r["state"] == "running" for r in recs) and recs
        wait_until(all_running, 10, "three jobs running on w-leaving")
        # "running" on the broker means dispatched: wait for the bots themselves.
        wait_until(lambda: len(children(a.pid)) == 3, 10, "three bot processes")
        check(c.status(queued)["state"] == "queued", "the fourth job waits (credit 3)")

        t0 = time.monotonic()
        a.signal(signal.SIGTERM)

        def credit_zero():
            ws = [w for w in c.stats()["workers"] if w["name"] == "w-leaving"]
            return not ws or ws[0]["credit"] == 0
        wait_until(credit_zero, 5, "the broker to see credit 0")
        rc = wait_exit(a, (GRACE_MS + 500) / 1000.0 + 5)
        took = time.monotonic() - t0
        check(rc == 0, "the worker exits 0 after SIGTERM (%.2f s)" % took, rc)
        check(took >= GRACE_MS / 1000.0 - 0.2, "it waited for the grace period", took)

        for j in short:
            rec = c.status(j)
            check(rec["state"] == "completed" and rec["worker"] == "w-leaving",
                  "a short job finished within the grace period on w-leaving", rec["state"])
        rec = c.status(long_job)
        check(rec["state"] == "queued", "the long job was handed back to the queue (RELEASE)", rec["state"])
        check(c.status(queued)["state"] == "queued", "the waiting job never went to the leaving worker")
        out = a.output()
        check("released back to the broker" in out and "disconnected" in out,
              "the worker logged the RELEASE and the DISCONNECT")

        s.worker("--type", "python", "--concurrency", "2", "--name", "w-new", env=ENV)
        for j in (long_job, queued):
            rec = c.wait(j, timeout=60)
            check(rec["state"] == "completed" and rec["worker"] == "w-new",
                  "job %s completed on w-new" % j, rec["state"], rec.get("worker"))
        rec = c.status(long_job)
        log("the released job's attempts: %s (bot saw attempt %s)" % (rec["attempts"], rec["result"]["attempt"]))
        check(rec["result"]["attempt"] == rec["attempts"], "the bot's BOT_ATTEMPT matches the record")
        check(rec["attempts"] <= 2, "a RELEASE is not a failed attempt", rec["attempts"])
        c.close()


if __name__ == "__main__":
    harness.main(main)

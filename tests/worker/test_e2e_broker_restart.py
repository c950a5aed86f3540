"""The broker dies (kill -9) and comes back on the same endpoint while a bot
runs.  The worker notices (silence, or DISCONNECT from the new broker that
does not know it), opens a new socket and registers again; the bot carries
on, and the job still ends completed (its DONE on the new socket, or a new
attempt).  The worker then serves new jobs as before.  With Redis, so the
restarted broker knows the job.
"""
import signal

import harness
from harness import check, log, wait_until
from wlib import children

ENV = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "3"}


def main():
    with harness.Stack("worker-e2e-restart") as s:
        s.redis()
        broker = s.broker(env=ENV)
        w = s.worker("--type", "python", "--concurrency", "2", "--name", "w-stays", env=ENV)
        s.wait_workers(1, "python")
        c = s.client()
        jid = c.submit("python", {"dataset": "restart", "sleepMs": 2500})
        wait_until(lambda: children(w.pid), 10, "the bot to start")

        broker.signal(signal.SIGKILL)
        broker.p.wait()
        log("broker killed; restarting it on the same endpoint")
        c.close()
        s.broker(env=ENV, name="broker-2")
        c = s.client()
        wait_until(lambda: [x for x in c.stats()["workers"] if x["name"] == "w-stays"], 10,
                   "the worker to register with the new broker")
        rec = c.wait(jid, timeout=30)
        log("job after the restart: state %s, attempts %s, worker %s" % (
            rec["state"], rec["attempts"], rec.get("worker")))
        check(rec["state"] == "completed" and rec["worker"] == "w-stays",
              "the job running during the broker's restart completed", rec.get("state"), rec.get("error"))
        out = w.output()
        check("reconnecting" in out or "registering again" in out, "the worker logged its reconnect")
        check(w.alive(), "the worker survived the broker's death")

        rec = c.wait(c.submit("python", {"dataset": "after", "size": 10}), timeout=20)
        check(rec["state"] == "completed" and rec["worker"] == "w-stays",
              "the worker serves new jobs after the restart", rec.get("state"))
        c.close()


if __name__ == "__main__":
    harness.main(main)

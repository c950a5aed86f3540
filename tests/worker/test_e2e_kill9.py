"""kill -9 of a worker in the middle of a job: the broker notices (no
heartbeat), queues the job again, and it completes on another worker as
attempt 2 (the bot sees BOT_ATTEMPT=2).  The dead worker's bot does not
outlive it (PR_SET_PDEATHSIG).
"""
import signal

import harness
from harness import check, log, wait_until
from wlib import children, alive

ENV = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "3"}


def main():
    with harness.Stack("worker-e2e-kill9") as s:
        s.broker(redis=False, env=ENV)
        a = s.worker("--type", "python", "--concurrency", "1", "--name", "w-victim", env=ENV)
        s.wait_workers(1, "python")
        c = s.client()
        jid = c.submit("python", {"task": "data_analysis", "dataset": "kill9", "sleepMs": 1500})
        rec = wait_until(lambda: (lambda r: r if r and r["state"] == "running" else None)(c.status(jid)),
                         10, "the job to run on w-victim")
        check(rec["worker"] == "w-victim" and rec["attempts"] == 1, "running on w-victim, attempt 1", rec)
        bots = wait_until(lambda: children(a.pid), 5, "w-victim's bot process")
        s.worker("--type", "python", "--concurrency", "1", "--name", "w-rescuer", env=ENV)
        s.wait_workers(2, "python")

        a.signal(signal.SIGKILL)
        log("killed w-victim (pid %d), its bot pid %s" % (a.pid, bots))
        wait_until(lambda: not any(alive(p) for p in bots), 5, "the orphaned bot to die with its worker")
        rec = c.wait(jid, timeout=30)
        check(rec["state"] == "completed", "the job completed after its worker was killed", rec)
        check(rec["worker"] == "w-rescuer" and rec["attempts"] == 2,
              "it ran on the other worker, attempt 2", rec["worker"], rec["attempts"])
        check(rec["result"]["attempt"] == 2, "the bot saw BOT_ATTEMPT=2", rec["result"])
        c.close()


if __name__ == "__main__":
    harness.main(main)

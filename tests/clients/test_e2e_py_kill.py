"""A Python worker is killed (kill -9) in the middle of a job: the broker
notices the silence (HEARTBEAT_LIVENESS intervals), queues the job again
with attempts + 1, and another Python worker completes it.
"""
import signal
import time

from e2elib import harness, botmesh, pyworker, wait_worker
from harness import check, wait_until

HB = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "3"}


def main():
    with harness.Stack("clients-kill") as s:
        s.redis()
        s.broker(env=dict(HB, MAX_PYWORK_BOTS="2"))
        victim = pyworker(s, "py-victim", credit=1, env=HB)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-victim")
        jid = c.submit("pywork", {"sleepMs": 1500, "tag": "killme"}, max_attempts=3, notify=True)
        rec = wait_until(lambda: (lambda r: r if r["state"] == "running" and "START " + jid in victim.output()
                                  else None)(c.status(jid)), 10, "the job to start on the victim")
        check(rec["worker"] == "py-victim" and rec["attempts"] == 1, "attempt 1 runs on py-victim", rec)
        victim.signal(signal.SIGKILL)
        t_kill = time.monotonic()
        victim.p.wait(5)
        check(victim.p.returncode == -signal.SIGKILL, "the victim died of SIGKILL", victim.p.returncode)
        # the broker requeues after 3 x 200 ms of silence; nobody serves pywork yet
        rec = wait_until(lambda: (lambda r: r if r["state"] == "queued" and r["attempts"] >= 1 else None)(
            c.status(jid)), 10, "the job to be queued again")
        harness.log("queued again %.2fs after the kill" % (time.monotonic() - t_kill), rec)
        check(time.monotonic() - t_kill < 5, "the dead worker was noticed within a few heartbeats")
        check(not any(w["name"] == "py-victim" for w in c.stats()["workers"]), "the dead worker is gone from STATS")
        pyworker(s, "py-rescuer", credit=1, env=HB)
        rec = c.wait(jid, timeout=20)
        check(rec["state"] == "completed", "the job completes on another worker", rec)
        check(rec["attempts"] == 2 and rec["result"]["attempt"] == 2, "attempts == 2 (re-dispatched once)", rec)
        check(rec["worker"] == "py-rescuer" and rec["result"]["worker"] == "py-rescuer", "py-rescuer ran it", rec)
        check(rec["result"]["echo"]["tag"] == "killme", "same payload", rec["result"])
        c.close()


if __name__ == "__main__":
    harness.main(main)

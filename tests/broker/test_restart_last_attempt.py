"""A job on its last allowed dispatch (maxAttempts=1) when the broker
restarts is held for its worker like any other: the worker that still
runs it reports it (READY running) and its DONE completes it.  Only when
the hold ends with no worker reporting it does it fail with worker_lost.

Real redis (AOF) and broker, killed (SIGKILL) and started again on the
same port; a fake python worker whose every frame the test sends.  Hold:
2 x HEARTBEAT_INTERVAL_MS (200) x HEARTBEAT_LIVENESS (5) = 2 s.
"""
import harness as h
from fakeworker import FakeWorker

ENV = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5", "BROKER_SAVE_RUNNING_MS": "0"}


def restart(s, broker, name):
    """SIGKILL the broker, start another on its port; returns (broker, client)."""
    broker.kill()
    h.log("broker killed; started again as", name)
    return s.broker(env=ENV, name=name), s.client()


def test():
    with h.Stack("restart-last-attempt") as s:
        s.redis()
        broker = s.broker(env=ENV)
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 2)
        s.wait_workers(1, "python")
        kept = c.submit("python", {"n": 1}, maxAttempts=1)
        lost = c.submit("python", {"n": 2}, maxAttempts=1)
        for jid in (kept, lost):
            job = w1.recv_job()
            h.check(job and job["jobId"] == jid and job["attempt"] == 1,
                    "w1 runs attempt 1 of %s" % jid, job)
        h.wait_until(lambda: all(s.redis_cli("HGET", "botmesh:{bm}:job:" + j, "state") == "running"
                                 for j in (kept, lost)), 5, "redis to record both jobs running")
        c.close()
        w1.close()

        broker, c = restart(s, broker, "broker-2")
        # w1 reconnects, still running the first job only (the second's bot died with it).
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 2, ready=False)
        w1.send(h.READY, {"name": "w1", "types": ["python"], "credit": 2, "running": [kept]})
        rec = h.wait_until(lambda: (lambda r: r if r and r["state"] == "running" else None)(
            c.status(kept)), 5, "the reported job to be adopted (running)")
        h.check(rec["attempts"] == 1 and rec.get("worker") == "w1",
                "the job on its last allowed dispatch is adopted by w1, attempt 1", rec)
        w1.send(h.DONE, {"jobId": kept, "ok": True, "attempt": 1, "result": {"n": 1}})
        rec = c.wait(kept, 10)
        h.check(rec["state"] == "completed" and rec["result"] == {"n": 1},
                "its DONE completes it", rec)

        # w1 stays alive (heartbeats) while the hold runs out.
        received = []

        def lost_ended():
            msg = w1.recv(timeout=0.05)
            if msg:
                received.append(msg)
            rec = c.status(lost)
            return rec if rec["state"] in h.TERMINAL else None
        rec = h.wait_until(lost_ended, 10, "the unreported job to end once the hold is over")
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "worker_lost",
                "the job no worker reported fails worker_lost once the hold ends", rec)
        h.check(not received, "w1 receives nothing meanwhile (no JOB)", received)
        st = c.stats()["types"]["python"]
        h.check(st["usage"] == 0, "python usage 0 at the end", st)
        w1.close()


if __name__ == "__main__":
    h.main(test)

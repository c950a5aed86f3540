"""A run cancelled by a broker that then died before it wrote the cancel
ends its job cancelled, not failed, when its worker's DONE reaches the
next broker.

Real redis (AOF) and broker (BROKER_SAVE_RUNNING_MS 0: the dispatch is in
Redis at once); a fake worker whose every frame the test sends.  w1 runs
j (attempt 1, running in Redis); the broker is killed (SIGKILL) and
started again, and recovers j as running, held for w1.  w1 comes back
and sends the DONE its bot made when the dead broker's CANCEL stopped it:
ok false, error code cancelled.  What must hold: j is cancelled (state
cancelled, errorCode cancelled, attempts 1), so a queue retry of failed
jobs leaves it alone.  (Before: j ended failed with errorCode cancelled:
listed among the failed jobs, retried by POST /queues/{type}/retry.)
"""
import harness as h
from fakeworker import FakeWorker

ENV = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5", "BROKER_SAVE_RUNNING_MS": "0"}


def test():
    with h.Stack("cancelled-done-restart") as s:
        s.redis()
        broker = s.broker(env=ENV)
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1)
        s.wait_workers(1, "python")
        j = c.submit("python", {"n": 1})
        h.check(w1.recv_job()["jobId"] == j, "w1 runs j")
        h.wait_until(lambda: s.redis_cli("HGET", "botmesh:{bm}:job:" + j, "state") == "running",
                     5, "Redis to record j running")
        c.close()
        w1.close()
        broker.kill()
        broker = s.broker(env=ENV, name="broker-2")
        w1a = FakeWorker(s.endpoint, "w1", ["python"], 0)
        w1a.send(h.DONE, {"jobId": j, "ok": False, "attempt": 1,
                          "error": {"code": "cancelled", "message": "cancelled by request"}})
        c = s.client()
        rec = h.wait_until(lambda: (lambda r: r if r["state"] in h.TERMINAL else None)(c.status(j)),
                           10, "j to end")
        h.check(rec["state"] == "cancelled" and rec.get("errorCode", rec.get("error", {}).get("code"))
                in ("cancelled", None) and rec["attempts"] == 1,
                "j is cancelled (its DONE said so), attempts 1", rec)
        h.check(h.job_record(s.redis_port, j)["state"] == "cancelled", "Redis says cancelled too")
        c.close()
        w1a.close()


if __name__ == "__main__":
    h.main(test)

"""A READY listing a job that only Redis holds is answered from its record
(protocol.md section 5, READY's running): a job that finished is answered
CANCEL finished, an id Redis has no record of CANCEL unknown; the worker's
slot for each is held until Redis answers, and a finished job's slot (and a
permit of its type) stays taken until the worker's DONE for it.

- w1 (credit 1) runs J and goes silent; J runs again on w2 and completes,
  then a newer job N completes; the broker restarts (SIGTERM) with
  KEEP_FINISHED_JOBS=1: it reads back N, the newest to finish, for the
  listings, and only Redis holds J.
- Redis stopped (SIGSTOP: connected, answering nothing), w1 READYs on a new
  socket, credit 2, running [J, X] (X never submitted): nothing is sent to
  w1 and STATS shows both its slots held.
- Redis continues: CANCEL finished for J, CANCEL unknown for X; w1 holds one
  slot (J's) and python one permit.
- Two python jobs: one runs on w1 (its free slot), the other waits until w1
  sends J's DONE (answered NACK not_owner), then runs on w1.
- Redis down: a READY listing J is answered CANCEL unknown at once (the
  broker cannot tell), and no slot is held.

Real redis and broker; fake python workers.
"""
import signal
import harness as h
from fakeworker import FakeWorker

ENV = {"HEARTBEAT_INTERVAL_MS": "250", "HEARTBEAT_LIVENESS": "4", "MAX_PYTHON_BOTS": "4"}


def worker_stats(c, name):
    st = c.stats()
    return next((w for w in st["workers"] if w["name"] == name), None), st["types"].get("python", {})


def cancels(w, count):
    """The next count frames, each a CANCEL: {jobId: reason}."""
    got = {}
    for _ in range(count):
        msg = w.recv(timeout=5)
        h.check(msg is not None and msg[0] == h.WCANCEL, "worker %s received CANCEL" % w.name, msg)
        got[msg[1]["jobId"]] = msg[1]["reason"]
    return got


def test():
    with h.Stack("ready-finished") as s:
        redis = s.redis()
        b = s.broker(env=ENV)
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1)
        s.wait_workers(1, "python")
        jid = c.submit("python", {"n": 1})
        h.check(w1.recv_job()["jobId"] == jid, "J runs on w1")
        w1.close()                                  # silent: declared dead, J queued again
        w2 = FakeWorker(s.endpoint, "w2", ["python"], 1)
        job = w2.recv_job(timeout=10)
        h.check(job and job["jobId"] == jid, "J runs again on w2", job)
        w2.done(jid, result={"ok": 1})
        h.check(c.wait(jid)["state"] == "completed", "J completed")
        newer = c.submit("python", {"n": 0})
        h.check(w2.recv_job()["jobId"] == newer, "N runs on w2")
        w2.done(newer, result={"ok": 1})
        h.check(c.wait(newer)["state"] == "completed", "N completed")
        w2.close()
        b.stop()
        s.broker(env=dict(ENV, KEEP_FINISHED_JOBS="1"))
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1].get("recovering") is False, 10, "the recovery to end")
        h.wait_until(lambda: c.listed(state="completed") == [newer], 10,
                     "N, the newest finished job, to be read back for the listings")
        h.check(c.status(jid)["state"] == "completed", "STATUS answers J from Redis")
        unknown = "000000000000-0000-00000042"      # never submitted

        w1 = FakeWorker(s.endpoint, "w1", ["python"], 2, ready=False)
        redis.signal(signal.SIGSTOP)
        h.log("redis stopped (SIGSTOP)")
        try:
            w1.send(h.READY, {"name": "w1", "types": ["python"], "credit": 2, "running": [jid, unknown]})
            h.wait_until(lambda: worker_stats(c, "w1")[0] is not None, 3, "w1 to be registered")
            ws, _ = worker_stats(c, "w1")
            h.check(ws["running"] == 2, "both listed jobs hold w1's slots while Redis is asked", ws)
            msg = w1.recv(timeout=0.3)
            h.check(msg is None, "no answer to w1 before Redis answers", msg)
        finally:
            redis.signal(signal.SIGCONT)
        h.log("redis continued (SIGCONT)")
        got = cancels(w1, 2)
        h.check(got == {jid: "finished", unknown: "unknown"},
                "CANCEL finished for J (only Redis holds it), unknown for the id never submitted", got)
        ws, py = worker_stats(c, "w1")
        h.check(ws["running"] == 1 and py.get("usage") == 1,
                "J's slot and permit stay taken until its DONE, the unknown one's are free", ws, py)

        k1, k2 = c.submit("python", {"n": 2}), c.submit("python", {"n": 3})
        first = w1.recv_job()
        h.check(first and first["jobId"] == k1, "the first new job runs on w1's free slot", first)
        h.check(c.status(k2)["state"] == "queued", "the second waits: J still takes a slot", c.status(k2))
        w1.send(h.DONE, {"jobId": jid, "ok": False, "error": {"code": "cancelled", "message": "stopped"}})
        frames = [w1.recv(), w1.recv()]             # the JOB goes as the slot frees, before the NACK
        h.check(all(frames), "two frames after J's DONE", frames)
        h.check(any(f[0] == h.NACK and f[1].get("code") == "not_owner" for f in frames),
                "J's DONE: NACK not_owner", frames)
        h.check(any(f[0] == h.JOB and f[1]["jobId"] == k2 for f in frames),
                "J's DONE frees its slot: the second job runs on w1", frames)
        h.check(c.status(jid)["state"] == "completed", "J stays completed", c.status(jid))

        redis.kill()
        h.wait_until(lambda: c.request(h.PING)[1].get("redis") is False, 10, "the broker to see Redis down")
        w3 = FakeWorker(s.endpoint, "w3", ["python"], 1, ready=False)
        w3.send(h.READY, {"name": "w3", "types": ["python"], "credit": 1, "running": [jid]})
        got = cancels(w3, 1)
        h.check(got == {jid: "unknown"}, "Redis down: CANCEL unknown (the broker cannot tell)", got)
        ws, _ = worker_stats(c, "w3")
        h.check(ws and ws["running"] == 0, "no slot held for it", ws)


if __name__ == "__main__":
    h.main(test)

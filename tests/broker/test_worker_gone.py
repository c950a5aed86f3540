"""Workers that leave and come back (protocol.md sections 4 and 5).

A real broker (no Redis) and fake workers the test drives step by step:
- a bot type stays known after its only worker has left, even before any
  job was submitted for it;
- a worker declared dead that reconnects (new socket, same name, READY)
  and sends DONE for the job it was running has that DONE taken, as long
  as the job was not given to another worker meanwhile; if it was, NACK
  not_owner and the other worker's outcome counts;
- a worker whose connection closed (its process died) is logged as not
  connected when a send to it fails, not as a worker that reads too slowly.
"""
import harness as h
from fakeworker import FakeWorker


def workers_named(c, name):
    return [w for w in c.stats()["workers"] if w["name"] == name]


def test():
    env = {"HEARTBEAT_INTERVAL_MS": "100", "HEARTBEAT_LIVENESS": "3"}
    with h.Stack("worker_gone") as s:
        s.broker(redis=False, env=env)
        c = s.client()

        # Section 4: known once a worker was registered for it.
        cmd, r = c.try_submit("ruby", {"n": 0})
        h.check(cmd == h.REJECTED and r["code"] == "unknown_bot_type",
                "a type no worker ever served and no limit configures is unknown", r)
        w = FakeWorker(s.endpoint, "w-ruby", ["ruby"], 1)
        s.wait_workers(1, "ruby")
        w.send(h.DISCONNECT, {})
        w.close()
        h.wait_until(lambda: not c.stats()["workers"], 5, "the ruby worker to be gone")
        h.check("ruby" in c.stats()["types"], "STATS still lists ruby after its worker left")
        cmd, r = c.try_submit("ruby", {"n": 1})
        h.check(cmd == h.ACCEPTED, "SUBMIT for ruby accepted after its only worker left", r)
        h.check(c.status(r["jobId"])["state"] == "queued", "the ruby job waits for a worker")

        # Section 5: a dead worker's DONE for its re-queued job is taken.
        a = FakeWorker(s.endpoint, "w-back", ["python"], 1)
        job_id = c.submit("python", {"n": 2})
        job = a.recv_job()
        h.check(job and job["jobId"] == job_id, "w-back runs the job (attempt 1)", job)
        # a stays silent: no heartbeat for HEARTBEAT_LIVENESS intervals.
        h.wait_until(lambda: not workers_named(c, "w-back"), 5, "w-back to be declared dead")
        rec = c.status(job_id)
        h.check(rec["state"] == "queued" and rec["attempts"] == 1,
                "the job is queued again after its worker was lost, attempts 1", rec)
        a.close()
        # Reconnect: new socket, same name, credit 0 so nothing new is sent.
        back = FakeWorker(s.endpoint, "w-back", ["python"], 0)
        h.wait_until(lambda: workers_named(c, "w-back"), 5, "w-back to register again")
        back.done(job_id, {"answer": 42})
        rec = c.wait(job_id, timeout=5)
        h.check(rec["state"] == "completed" and rec["result"] == {"answer": 42},
                "the returning worker's DONE completes the re-queued job", rec)
        h.check(rec["attempts"] == 1 and rec["worker"] == "w-back",
                "the record keeps attempt 1 and the worker that ran it", rec)
        msg = back.recv(timeout=0.5)
        h.check(msg is None, "no NACK for the accepted DONE", msg)
        h.check(c.stats()["types"]["python"]["waiting"] == 0, "nothing left in the python queue")

        # ...but not once another worker has the job.
        b = FakeWorker(s.endpoint, "w-late", ["python"], 1)
        job_id = c.submit("python", {"n": 3})
        h.check(b.recv_job()["jobId"] == job_id, "w-late runs the second job")
        h.wait_until(lambda: not workers_named(c, "w-late"), 5, "w-late to be declared dead")
        b.close()
        other = FakeWorker(s.endpoint, "w-other", ["python"], 1)
        job = other.recv_job()
        h.check(job and job["jobId"] == job_id and job["attempt"] == 2,
                "w-other gets the re-queued job as attempt 2", job)
        late = FakeWorker(s.endpoint, "w-late", ["python"], 0)
        late.done(job_id, {"from": "late"})
        msg = late.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "not_owner",
                "DONE from the returning worker after re-dispatch: NACK not_owner", msg)
        other.done(job_id, {"from": "other"})
        rec = c.wait(job_id, timeout=5)
        h.check(rec["state"] == "completed" and rec["result"] == {"from": "other"},
                "the job ends with the outcome of the worker it was given to", rec)
        for wk in (back, other, late):
            wk.close()
    gone_peer()


def gone_peer():
    # Liveness 5 s: the broker's heartbeats to the closed worker (every
    # 100 ms) fail long before it is declared lost.
    env = {"HEARTBEAT_INTERVAL_MS": "100", "HEARTBEAT_LIVENESS": "50"}
    with h.Stack("worker_gone_peer") as s:
        broker = s.broker(redis=False, env=env)
        c = s.client()
        w = FakeWorker(s.endpoint, "w-killed", ["python"], 1)
        s.wait_workers(1, "python")
        w.close()                       # as kill -9 does: the TCP connection closes
        h.wait_until(lambda: "worker w-killed is not connected" in broker.output(), 4,
                     "the broker to log that w-killed is not connected")
        h.check("fast enough" not in broker.output(),
                "a closed connection is not logged as a slow reader", broker.output()[-1500:])
        h.check(workers_named(c, "w-killed"), "w-killed is not declared lost before its liveness")


if __name__ == "__main__":
    h.main(test)

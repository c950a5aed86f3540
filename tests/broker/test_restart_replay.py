"""DONEs a worker sends again after a broker restart, as protocol.md section
5 asks, against a real redis-server and a real broker.

A DONE for a job the broker knows has ended (in memory or in Redis) is
expected: NACK not_owner, a debug line, not counted in
broker_frames_rejected_total.  A DONE for a job it does not know, or one
that another worker runs, is refused: NACK not_owner, counted
(reason="not_owner") and logged as a WARN line naming the job, the worker
and its routing id; the other worker's run stands.

A DONE that comes before the recovery of a new broker reached its job (a
worker sends its DONEs again at once, the recovery may take seconds) is
expected too: not answered, one INFO line saying it is kept, not counted
nor logged as a rejection; once the recovery reads the job back (running,
held for its worker) the DONE is taken: the job completes with it and is
not dispatched again.
"""
import re
import time
import harness as h
from fakeworker import FakeWorker


def not_owner(c):
    text = c.request(h.METRICS)[1]["text"]
    for line in text.splitlines():
        if line.startswith('broker_frames_rejected_total{reason="not_owner"}'):
            return float(line.split()[-1])
    return 0.0


def test():
    env = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "10", "LOG_LEVEL": "debug",
           "BROKER_SAVE_RUNNING_MS": "0"}
    with h.Stack("restart-replay") as s:
        s.redis()
        broker = s.broker(env=env)
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 2, routing_id=b"w1-a")
        done_before, running = c.submit("python", {"n": 1}), c.submit("python", {"n": 2})
        got = {w1.recv_job()["jobId"], w1.recv_job()["jobId"]}
        h.check(got == {done_before, running}, "w1 runs both jobs", got)
        w1.done(done_before, {"r": 1})
        h.check(c.wait(done_before, 10)["state"] == "completed", "the first job completed")
        h.wait_until(lambda: (h.job_record(s.redis_port, done_before) or {}).get("state") == "completed",
                     10, "its end to be written to Redis")
        w1.close()

        # The broker dies; a new one recovers from Redis.  The finished job
        # is not in its memory any more: only Redis knows it ended.
        broker.kill()
        broker = s.broker(env=env)
        c.close()
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "the new broker to recover")
        h.check("recovered 1 unfinished jobs" in broker.output(),
                "it recovers the running job only", broker.output()[-2000:])

        # w1 comes back on a new socket, READY with the job it still runs,
        # then sends its recent DONE again.
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1, ready=False, routing_id=b"w1-b")
        w1.send(h.READY, {"name": "w1", "types": ["python"], "credit": 1, "running": [running]})
        w1.done(done_before, {"r": 1})
        msg = w1.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "not_owner",
                "the DONE sent again is answered NACK not_owner", msg)
        h.wait_until(lambda: re.search(r"DEBUG broker job=%s DONE from w1 sent again for a job that has "
                                       r"ended \(completed\)" % done_before, broker.output()),
                     10, "the debug line of the DONE sent again")
        h.check(not_owner(c) == 0, "the expected DONE is not counted as a rejected frame")
        out = broker.output()
        h.check("rejected DONE" not in out and "does not hold" not in out,
                "nor logged as a rejection", out[-3000:])
        h.check(c.status(done_before)["result"] == {"r": 1}, "the ended job keeps its result")

        # A DONE for a job nobody knows: refused, counted, logged.
        w1.done("nope-1", {})
        msg = w1.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "not_owner", "DONE for an unknown job -> NACK", msg)
        h.wait_until(lambda: not_owner(c) == 1, 10, "the unknown job's DONE to be counted")
        h.wait_until(lambda: re.search(r"WARN +broker job=nope-1 rejected DONE from worker w1 "
                                       r"\(routing id 77312D62\): not_owner \(", broker.output()),
                     5, "the WARN line naming the job, the worker and its routing id")

        # A DONE for a job another worker runs: refused, counted, logged;
        # that worker's outcome stands.
        w2 = FakeWorker(s.endpoint, "w2", ["python"], 1, routing_id=b"w2-a")
        other = c.submit("python", {"n": 3})
        h.check(w2.recv_job()["jobId"] == other, "w2 runs the third job (w1 is full)")
        w1.done(other, {"r": "w1"})
        msg = w1.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "not_owner",
                "DONE for another worker's job -> NACK not_owner", msg)
        h.check(not_owner(c) == 2, "and it is counted")
        h.wait_until(lambda: re.search(r"WARN +broker job=%s rejected DONE from worker w1 "
                                       r"\(routing id 77312D62\): not_owner" % other, broker.output()),
                     5, "its WARN line")
        w2.done(other, {"r": "w2"})
        h.check(c.wait(other, 10)["result"] == {"r": "w2"}, "w2's result stands")
        w1.done(running, {"r": 2})
        h.check(c.wait(running, 10)["result"] == {"r": 2}, "the adopted job completes with w1's DONE")

        # w2 runs a fourth job; the broker dies.  Redis holds 200,000
        # idempotency keys, which the new broker reads back before the
        # jobs: its recovery takes a while.
        last = c.submit("python", {"n": 4})
        h.check(w2.recv_job()["jobId"] == last, "w2 runs a fourth job")
        h.wait_until(lambda: (h.job_record(s.redis_port, last) or {}).get("state") == "running",
                     10, "its running state in Redis")
        far = int(time.time() * 1000) + 3600000
        fields = []
        for i in range(200000):
            fields += ["bulk-%d" % i, "bulk-job-%d %016x %d" % (i, i + 1, far)]
        h.redis_pipeline(s.redis_port, [["HSET", "botmesh:{bm}:idem"] + fields[j:j + 2000]
                                        for j in range(0, len(fields), 2000)])
        broker.kill()
        broker = s.broker(env=env, wait_recovered=False)     # caught while it recovers
        c.close()
        c = s.client()
        w2b = FakeWorker(s.endpoint, "w2", ["python"], 1, ready=False, routing_id=b"w2-b")
        w2b.send(h.READY, {"name": "w2", "types": ["python"], "credit": 1})
        h.check(c.request(h.PING)[1].get("recovering") is True, "the new broker is still recovering")
        w2b.done(last, {"r": "early"})
        # A PROGRESS with no jobId is answered at once (NACK bad_request):
        # what comes before that answer is the DONE's.
        w2b.send(h.PROGRESS, {"progress": 1})
        msg = w2b.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "bad_request",
                "w2's DONE sent again before the recovery reached the job is not answered "
                "(the PROGRESS after it is)", msg)
        def said_early():
            w2b.send(h.HEARTBEAT, {})       # w2 stays alive meanwhile
            return re.search(r"INFO +broker job=%s DONE from w2 before the recovery reached "
                             r"the job: kept" % last, broker.output())
        h.wait_until(said_early, 15, "the INFO line of the early DONE")

        def recovered():
            w2b.send(h.HEARTBEAT, {})
            return c.request(h.PING)[1]["redis"]
        h.wait_until(recovered, 30, "the new broker to recover")
        rejected = [l for l in broker.output().splitlines() if "rejected DONE" in l and last in l]
        h.check(not rejected, "the early DONE is not logged as a rejection", rejected)
        h.check(not_owner(c) == 0, "nor counted as a rejected frame")
        rec = c.wait(last, 10)
        h.check(rec["state"] == "completed" and rec["result"] == {"r": "early"},
                "the job completes with w2's early DONE", rec)
        got = []
        msg = w2b.recv(timeout=0.2)
        while msg:
            got.append(msg)
            msg = w2b.recv(timeout=0.2)
        h.check(not got, "w2 got neither a JOB nor a NACK for it", got)
        for w in (w1, w2, w2b):
            w.close()


if __name__ == "__main__":
    h.main(test)

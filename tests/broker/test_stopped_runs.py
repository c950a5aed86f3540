"""A run the broker told its worker to stop (CANCEL timeout, cancelled)
holds its slot until that worker's DONE for it, and that DONE is answered
NACK not_owner (protocol.md section 5), even when the job runs again on
another worker: a timed-out run's late DONE is not the job's result, and
its permit and credit come back.

Real redis and broker; fake python workers whose every frame the test
sends.
"""
import time
import harness as h
from fakeworker import FakeWorker


def python_usage(c):
    """(usage, running of each worker) as STATS gives them."""
    st = c.stats()
    return st["types"]["python"]["usage"], sorted(w["running"] for w in st["workers"])


def receive(workers, want, timeout, what):
    """Frames the workers receive until want (a list of (worker name,
    command, body)) is true of them; fails after timeout naming what."""
    got = []
    end = time.monotonic() + timeout
    while not want(got):
        if time.monotonic() > end:
            raise h.TestFailure("%s: not within %ss; received %r" % (what, timeout, got))
        for w in workers:
            m = w.recv(timeout=0.03)
            if m:
                got.append((w.name, m[0], m[1]))
    return got


def test_timed_out_run_done_late(s, c):
    w1 = FakeWorker(s.endpoint, "w1", ["python"], 1)
    w2 = FakeWorker(s.endpoint, "w2", ["python"], 1)
    s.wait_workers(2, "python")
    workers = {"w1": w1, "w2": w2}
    jid = c.submit("python", {"n": 1}, timeoutMs=1500, attempts=2,
                   backoff={"type": "fixed", "delayMs": 100})
    got = receive([w1, w2], lambda g: any(m[1] == h.JOB for m in g), 5, "the first JOB")
    first = [m for m in got if m[1] == h.JOB][0]
    h.check(first[2]["attempt"] == 1, "attempt 1 dispatched", first)
    wa = workers[first[0]]
    wb = workers["w2" if wa is w1 else "w1"]
    h.log("attempt 1 runs on", wa.name)

    got = receive([w1, w2], lambda g: any(m[1] == h.WCANCEL for m in g)
                  and any(m[1] == h.JOB for m in g), 6, "CANCEL timeout and the retry's JOB")
    cancel = [m for m in got if m[1] == h.WCANCEL][0]
    retry = [m for m in got if m[1] == h.JOB][0]
    h.check(cancel[0] == wa.name and cancel[2] == {"jobId": jid, "reason": "timeout"},
            "%s is told to stop attempt 1 (CANCEL timeout)" % wa.name, cancel)
    h.check(retry[0] == wb.name and retry[2]["attempt"] == 2,
            "attempt 2 goes to %s (%s's slot stays taken)" % (wb.name, wa.name), retry)

    # The timed-out run's bot finishes all the same: its DONE, late.
    wa.send(h.DONE, {"jobId": jid, "ok": True, "attempt": 1, "result": {"from": "timed-out run"}})
    msg = wa.recv(timeout=5)
    h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "not_owner",
            "the timed-out run's DONE is answered NACK not_owner", msg)
    rec = c.status(jid)
    h.check(rec["state"] == "running" and rec["attempts"] == 2 and rec["worker"] == wb.name
            and "result" not in rec, "the job still runs attempt 2 on %s, no result" % wb.name, rec)

    wb.send(h.DONE, {"jobId": jid, "ok": True, "attempt": 2, "result": {"from": "run 2"}})
    rec = c.wait(jid, 10)
    h.check(rec["state"] == "completed" and rec["result"] == {"from": "run 2"},
            "the job completes with attempt 2's result", rec)
    h.wait_equal(lambda: python_usage(c), (0, [0, 0]), 5,
                 "python usage back to 0, both workers running 0")
    w1.close()
    w2.close()


def test_ready_again_lists_stopped_run(s, c):
    w1 = FakeWorker(s.endpoint, "w1", ["python"], 2)
    s.wait_workers(1, "python")
    jid = c.submit("python", {"n": 1})
    job = w1.recv_job()
    h.check(job and job["jobId"] == jid, "the job is dispatched to w1", job)
    cmd, r = c.request(h.CANCEL, {"jobId": jid})
    h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "CANCEL answered: cancelled", r)
    msg = w1.recv()
    h.check(msg and msg[0] == h.WCANCEL and msg[1] == {"jobId": jid, "reason": "cancelled"},
            "w1 is told to stop the run (CANCEL cancelled)", msg)
    h.wait_equal(lambda: python_usage(c), (1, [1]), 5, "the stopped run holds its slot: usage 1")

    for credit in (1, 2):       # READY again (a credit change) listing what it runs
        w1.send(h.READY, {"name": "w1", "types": ["python"], "credit": credit, "running": [jid]})
        h.wait_until(lambda: c.stats()["workers"][0]["credit"] == credit, 5,
                     "the broker to take the READY with credit %d" % credit)
        h.check(python_usage(c) == (1, [1]),
                "READY again listing the stopped run: still one slot held", python_usage(c))

    w1.send(h.DONE, {"jobId": jid, "ok": False, "attempt": 1,
                     "error": {"code": "cancelled", "message": "stopped"}})
    msg = w1.recv()
    h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "not_owner",
            "the stopped run's DONE is answered NACK not_owner", msg)
    h.wait_equal(lambda: python_usage(c), (0, [0]), 5, "python usage back to 0, w1 running 0")
    w1.close()


def test():
    for case in (test_timed_out_run_done_late, test_ready_again_lists_stopped_run):
        with h.Stack("stopped-runs") as s:
            s.redis()
            s.broker()
            case(s, s.client())


if __name__ == "__main__":
    h.main(test)

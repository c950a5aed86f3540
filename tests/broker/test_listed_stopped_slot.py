"""A run a worker was told to stop keeps its slot across a reconnect: w1
(credit 1) runs A, A is cancelled (the CANCEL goes to w1's socket), B is
queued behind A's stopping run; w1 reconnects on a new socket before it read
that CANCEL, its READY listing A.  The new connection is told CANCEL for A
again and gets no JOB while A's bot holds its one slot; A's DONE (NACK
not_owner) frees the slot and B is dispatched.

Real redis and broker; a fake python worker whose every frame the test sends.
"""
import harness as h
from fakeworker import FakeWorker


def drain(w, first=1.5):
    got = []
    msg = w.recv(timeout=first)
    while msg:
        got.append(msg)
        msg = w.recv(timeout=0.3)
    return got


def test():
    with h.Stack("listed-stopped-slot") as s:
        s.redis()
        s.broker()
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1)
        s.wait_workers(1, "python")
        a = c.submit("python", {"n": "a"})
        job = w1.recv_job()
        h.check(job and job["jobId"] == a, "w1 runs A", job)
        cmd, r = c.request(h.CANCEL, {"jobId": a})
        h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "A cancelled", r)
        b = c.submit("python", {"n": "b"})
        h.check(c.status(b)["state"] == "queued", "B queued behind A's stopping run", c.status(b))
        w1.close()                      # reconnects before it read the CANCEL; A's bot runs on
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1, ready=False)
        w1.send(h.READY, {"name": "w1", "types": ["python"], "credit": 1, "running": [a]})
        got = drain(w1)
        h.check(any(m[0] == h.WCANCEL and m[1]["jobId"] == a and m[1]["reason"] == "cancelled"
                    for m in got), "the new connection is told CANCEL cancelled for A", got)
        h.check(not any(m[0] == h.JOB for m in got),
                "no JOB while A's bot holds w1's one slot (credit 1)", got)
        h.check(c.status(b)["state"] == "queued", "B still queued", c.status(b))
        w1.send(h.DONE, {"jobId": a, "ok": False, "attempt": 1,
                         "error": {"code": "cancelled", "message": "stopped"}})
        got = drain(w1, 3)
        h.check(any(m[0] == h.NACK and m[1].get("code") == "not_owner" for m in got),
                "A's DONE is answered NACK not_owner", got)
        h.check(any(m[0] == h.JOB and m[1]["jobId"] == b for m in got),
                "A's DONE frees the slot: B is dispatched to w1", got)


if __name__ == "__main__":
    h.main(test)

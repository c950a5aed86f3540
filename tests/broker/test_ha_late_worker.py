"""A worker that re-registers late after a failover keeps its jobs: the new
leader holds the jobs it recovered as running until their worker reports
them, instead of dispatching them at once to whichever worker came first.

Two real brokers with BROKER_HA=redis on one real redis-server, and fake
workers (tests/lib/fakeworker.py) whose every move the test controls.
On the first leader, worker w1 runs jobs j1 and j2, worker w3 runs j3;
their running state reaches Redis.  The leader is killed with SIGKILL.
An idle worker w2 registers with the new leader as soon as it leads, and
must get none of the three jobs while they are held.  Then w1 comes back
(a new socket, same name) with READY {running: [j1]} and the DONE of j2,
which completed while no broker led: j1 is adopted (attempt 1) and
completes once; j2's DONE is taken (completed, attempts 1), no JOB is sent
for either.  w3 never comes back: once the hold (2 x HEARTBEAT_INTERVAL_MS
x HEARTBEAT_LIVENESS) is over, j3 goes to w2 as attempt 2.
"""
import time
import harness as h
import hatest
from fakeworker import FakeWorker

HB = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "10"}   # hold 4 s


def done(worker, job_id, attempt, started_at):
    worker.send(h.DONE, {"jobId": job_id, "ok": True, "result": {"by": worker.name},
                         "attempt": attempt, "startedAt": started_at})


class Workers:
    """The live fake workers: each heartbeats while the test waits, and
    what the broker sends them (but heartbeats) is kept, per worker."""

    def __init__(self):
        self.live, self.got = [], {}

    def add(self, worker):
        self.live.append(worker)
        self.got[worker.name] = []         # what this connection got
        return worker

    def drop(self, worker):
        self.live.remove(worker)
        worker.close()

    def pump(self):
        for w in self.live:
            w.heartbeat()
            msg = w.recv(0.01)
            while msg:
                self.got[w.name].append(msg)
                msg = w.recv(0.01)

    def wait(self, fn, timeout, what):
        def step():
            self.pump()
            return fn()
        return h.wait_until(step, timeout, what, interval=0.03)

    def jobs(self, name):
        return [m[1] for m in self.got[name] if m[0] == h.JOB]


def test():
    with h.Stack("ha-late-worker") as s:
        s.redis()
        pair = hatest.HaPair(s, HB)
        first = pair.wait_leader()
        second = pair.other(first)
        old = pair.endpoint(first)

        ws = Workers()
        w1 = ws.add(FakeWorker(old, "w1", ["late"], 2))
        c = h.Client(old)
        ws.wait(lambda: len(c.stats()["workers"]) == 1, 15, "w1 to register")
        j1 = c.submit("late", {"n": 1})
        j2 = c.submit("late", {"n": 2})
        ws.wait(lambda: len(ws.jobs("w1")) == 2, 10, "w1 to get two jobs")
        got = {j["jobId"] for j in ws.jobs("w1")}
        h.check(got == {j1, j2}, "w1 runs j1 and j2", got)
        w3 = ws.add(FakeWorker(old, "w3", ["late"], 1))
        ws.wait(lambda: len(c.stats()["workers"]) == 2, 15, "w3 to register")
        j3 = c.submit("late", {"n": 3})
        ws.wait(lambda: ws.jobs("w3"), 10, "w3 to get a job")
        h.check(ws.jobs("w3")[0]["jobId"] == j3, "w3 runs j3", ws.got["w3"])
        got = {j["jobId"] for j in ws.jobs("w1")}
        h.check(got == {j1, j2}, "w1 still runs j1 and j2 only", got)
        started = int(time.time() * 1000)
        ws.wait(lambda: all(s.redis_cli("HGET", "botmesh:{bm}:job:" + j, "state") == "running"
                            for j in (j1, j2, j3)), 10, "the three jobs' running state in Redis")
        c.close()

        pair.procs[first].kill()
        ws.drop(w1)
        ws.drop(w3)
        pair.wait_leader(timeout=15, other_than=first)
        new = pair.endpoint(second)
        log = lambda: pair.procs[second].output()

        # w2 registers at once and must get nothing recovered while held.
        w2 = ws.add(FakeWorker(new, "w2", ["late"], 3))
        ws.wait(lambda: "recovered 3 unfinished jobs" in log(), 15,
                "the new leader to recover the three jobs")
        h.check("3 were running" in log(), "the recovery counts 3 jobs that were running",
                log()[-2000:])
        ws.pump()
        h.check(ws.got["w2"] == [], "w2 gets no recovered job while it is held", ws.got["w2"])

        # w1 comes back: reports j1, sends j2's DONE again.
        w1 = ws.add(FakeWorker(new, "w1", ["late"], 2, ready=False))
        w1.send(h.READY, {"name": "w1", "types": ["late"], "credit": 2, "running": [j1]})
        done(w1, j2, 1, started)
        ws.wait(lambda: "adopted" in log(), 10, "j1 to be adopted")
        c = h.Client(new)
        rec = c.status(j1)
        h.check(rec["state"] == "running" and rec["attempts"] == 1 and rec.get("worker") == "w1",
                "j1 adopted: runs on w1, attempt 1", rec)
        rec = ws.wait(lambda: (lambda r: r if r["state"] == "completed" else None)(c.status(j2)),
                      10, "j2 to complete")
        h.check(rec["attempts"] == 1, "j2's DONE taken after the failover: attempts 1", rec)
        done(w1, j1, 1, started)
        rec = ws.wait(lambda: (lambda r: r if r["state"] == "completed" else None)(c.status(j1)),
                      10, "j1 to complete")
        h.check(rec["attempts"] == 1 and rec["result"] == {"by": "w1"},
                "j1 completed once, by w1, attempt 1", rec)

        # j3's worker never comes back: after the hold it goes to w2.
        ws.wait(lambda: ws.jobs("w2"), 15, "j3 to be dispatched once the hold ended")
        job = ws.jobs("w2")[0]
        h.check(job["jobId"] == j3 and job["attempt"] == 2,
                "j3 dispatched to w2 (attempt 2) once the hold ended", job)
        h.check("not reported by w3" in log(), "the log says w3 did not report j3",
                log()[-2000:])
        done(w2, j3, 2, int(time.time() * 1000))
        rec = ws.wait(lambda: (lambda r: r if r["state"] == "completed" else None)(c.status(j3)),
                      10, "j3 to complete")
        h.check(rec["attempts"] == 2, "j3 completed, attempt 2", rec)
        ws.pump()
        h.check(len(ws.jobs("w2")) == 1 and ws.jobs("w1") == [],
                "no other JOB: w1 ran j1 and j2 once, w2 only j3", ws.got)
        h.check("CANCEL duplicate" not in log() and "runs twice" not in log(),
                "no job ran twice", log()[-2000:])
        c.close()


if __name__ == "__main__":
    h.main(test)

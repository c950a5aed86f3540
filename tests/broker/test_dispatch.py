"""Broker dispatch rules: priority, semaphores, liveness, deadlines, cancel.

A real broker (no Redis) with fake workers whose every move the test makes,
so each rule is seen exactly: which job is sent to whom, and when.
"""
import time
import harness as h
from fakeworker import FakeWorker


def test():
    env = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5", "MAX_JAVA_BOTS": "3"}
    with h.Stack("dispatch") as s:
        s.broker(redis=False, env=env)
        c = s.client()

        # Priority: with the queue backed up (no worker yet), priority 1 jobs
        # start before priority 3 jobs submitted earlier; FIFO within one.
        low = [c.submit("python", {"n": i}, priority=3) for i in range(3)]
        high = [c.submit("python", {"n": i}, priority=1) for i in range(3)]
        w = FakeWorker(s.endpoint, "w-prio", ["python"], 1)
        order = []
        for _ in range(6):
            job = w.recv_job()
            order.append(job["jobId"])
            w.done(job["jobId"], {"ok": 1})
        h.check(order == high + low, "priority 1 before priority 3, FIFO within each", order)
        w.send(h.DISCONNECT, {})
        w.close()

        # Semaphore: MAX_JAVA_BOTS=3 holds across two workers of credit 5.
        a = FakeWorker(s.endpoint, "w-a", ["java"], 5)
        b = FakeWorker(s.endpoint, "w-b", ["java"], 5)
        s.wait_workers(2, "java")
        ids = [c.submit("java", {"n": i}) for i in range(8)]
        held = []
        for wk in (a, b):
            while True:
                msg = wk.recv(timeout=0.3)
                if msg is None:
                    break
                held.append((wk, msg[1]["jobId"], msg[0]))
        h.check(len(held) == 3, "exactly MAX_JAVA_BOTS=3 jobs dispatched across both workers", held)
        st = c.stats()["types"]["java"]
        h.check(st["usage"] == 3 and st["waiting"] == 5 and st["waitingForPermit"] == 5,
                "STATS: usage 3, waiting 5, all 5 waiting for a permit (credit is free)", st)
        wk, jid, _ = held.pop(0)
        wk.done(jid, {"ok": 1})
        first_done = jid
        got = None
        for other in (a, b):
            m = other.recv(timeout=1)
            if m and m[0] == h.JOB:
                got = (other, m[1]["jobId"], m[0])
        h.check(got is not None, "one permit freed -> one more job dispatched", got)
        held.append(got)
        msg = None

        # A worker that goes silent: its jobs go back to the queue, attempt 2.
        if msg:
            held.append((a if msg in [] else None, msg[1]["jobId"], msg[0]))
        a_jobs = [j for wk, j, _ in held if wk is a]
        a.close()           # no DISCONNECT, no heartbeats: it just dies
        # b heartbeats (inside recv) and takes every job as permits allow.
        done = {first_done}
        deadline = time.monotonic() + 15
        while len(done) < 8 and time.monotonic() < deadline:
            m = b.recv(timeout=0.2)
            if m and m[0] == h.JOB:
                b.done(m[1]["jobId"], {"ok": 1})
                done.add(m[1]["jobId"])
            for wk, jid, _ in held:
                if wk is b and jid not in done:
                    b.done(jid, {"ok": 1})
                    done.add(jid)
        h.check(len(c.stats()["workers"]) == 1, "the silent worker expired after HEARTBEAT_LIVENESS intervals")
        recs = [c.wait(j, timeout=10) for j in ids]
        h.check(all(r["state"] == "completed" for r in recs), "all 8 java jobs completed", [r["state"] for r in recs])
        if a_jobs:
            r = c.status(a_jobs[0])
            h.check(r["attempts"] == 2 and r["worker"] == "w-b", "the dead worker's job ran again on w-b, attempt 2", r)

        # DONE for a job it does not hold: NACK not_owner.
        b.done(ids[0], {"again": True})
        m = b.recv(timeout=2)
        h.check(m and m[0] == h.NACK and m[1]["code"] == "not_owner", "DONE twice -> NACK not_owner", m)

        # Deadline: a job past timeoutMs fails with timeout; the worker is told.
        jid = c.submit("java", {"slow": True}, timeoutMs=300)
        job = b.recv_job()
        h.check(job["jobId"] == jid and job["timeoutMs"] == 300, "JOB carries timeoutMs", job)
        m = b.recv(timeout=3)
        h.check(m and m[0] == h.WCANCEL and m[1] == {"jobId": jid, "reason": "timeout"},
                "the worker is told to stop the job (CANCEL reason timeout)", m)
        rec = c.status(jid)
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "timeout", "job failed with timeout", rec)
        st = c.stats()["types"]["java"]
        h.check(st["usage"] == 1, "the permit stays held until the worker confirms the bot stopped", st)
        b.done(jid, None, ok=False, error={"code": "timeout", "message": "killed"})
        m = b.recv(timeout=2)
        h.check(m and m[0] == h.NACK, "the late DONE is answered with NACK not_owner", m)
        h.check(c.stats()["types"]["java"]["usage"] == 0, "and the permit is released")

        # Cancel a running job.
        jid = c.submit("java", {})
        job = b.recv_job()
        cmd, r = c.request(h.CANCEL, {"jobId": jid})
        h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "CANCEL of a running job", r)
        m = b.recv(timeout=2)
        h.check(m and m[0] == h.WCANCEL and m[1]["reason"] == "cancelled", "the worker is told to stop it", m)
        b.done(jid, None, ok=False)
        m = b.recv(timeout=2)
        h.check(m and m[0] == h.NACK and m[1]["code"] == "not_owner",
                "its DONE after the cancel is answered with NACK not_owner", m)

        # RELEASE: handed back without counting an attempt.
        jid = c.submit("java", {})
        job = b.recv_job()
        h.check(job["attempt"] == 1, "first attempt", job)
        b.send(h.RELEASE, {"jobId": jid})
        job = b.recv_job()
        h.check(job["jobId"] == jid and job["attempt"] == 1, "a released job comes back as attempt 1 again", job)
        b.done(jid, {"ok": 1})
        h.check(c.wait(jid)["state"] == "completed", "and completes")

        # A failure with the bot's own error.
        jid = c.submit("java", {})
        job = b.recv_job()
        b.done(jid, None, ok=False, error={"code": "bot_failed", "message": "Traceback: boom"})
        rec = c.wait(jid)
        h.check(rec["state"] == "failed" and rec["error"] == {"code": "bot_failed", "message": "Traceback: boom"},
                "a failed job keeps the worker's error", rec)

        # maxAttempts: a job whose worker dies on its last attempt fails with worker_lost.
        jid = c.submit("java", {}, maxAttempts=1)
        job = b.recv_job()
        b.send(h.DISCONNECT, {})
        rec = c.wait(jid)
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "worker_lost",
                "worker gone on the last allowed attempt -> worker_lost", rec)

        # notify: RESULT pushed to the submitting client.
        w2 = FakeWorker(s.endpoint, "w-n", ["node"], 2)
        jid = c.submit("node", {"q": 1}, notify=True)
        job = w2.recv_job()
        w2.send(h.PROGRESS, {"jobId": jid, "progress": 40})
        h.wait_until(lambda: c.status(jid)["progress"] == 40, 5, "progress 40 recorded")
        w2.done(jid, {"answer": 42})
        cmd, body = c.recv(timeout=5)
        h.check(cmd == h.RESULT and body["job"]["result"] == {"answer": 42}, "RESULT pushed with notify", body)


if __name__ == "__main__":
    h.main(test)

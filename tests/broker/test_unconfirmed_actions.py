"""A job whose SUBMIT Redis has not confirmed yet is listed at once, but no
action is taken on it: PROMOTE, CANCEL and REMOVE answer `conflict` ("the
job is being written; try again") until Redis answers.  Once confirmed,
the job runs once: one JOB, its slot and permit freed by its DONE.

Real redis and broker (KEEP_FINISHED_JOBS=1, as where a job run twice
left a stale deadline behind); two fake python workers.  Redis holds
every write for 2.5 s (CLIENT PAUSE WRITE) while two delayed SUBMITs are
in flight.
"""
import time
import harness as h
from fakeworker import FakeWorker

REMOVE, PROMOTE = 0x0C, 0x0D


def python_usage(c):
    """(usage, running of each worker) as STATS gives them."""
    st = c.stats()
    return st["types"]["python"]["usage"], sorted(w["running"] for w in st["workers"])


def jobs_received(workers, secs):
    """The JOBs the workers receive within secs: [(worker name, body)]."""
    got = []
    end = time.monotonic() + secs
    while time.monotonic() < end:
        for w in workers:
            m = w.recv(timeout=0.03)
            if m and m[0] == h.JOB:
                got.append((w.name, m[1]))
    return got


def test():
    with h.Stack("unconfirmed-actions") as s:
        s.redis()
        s.broker(env={"KEEP_FINISHED_JOBS": "1"})
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1)
        w2 = FakeWorker(s.endpoint, "w2", ["python"], 1)
        s.wait_workers(2, "python")

        s.redis_cli("CLIENT", "PAUSE", "2500", "WRITE")
        h.log("redis holds every write for 2.5 s")
        to_promote = c.send_request(h.SUBMIT, {"botType": "python", "payload": {"n": 1},
                                                "delayMs": 60000, "timeoutMs": 3000})
        to_cancel = c.send_request(h.SUBMIT, {"botType": "python", "payload": {"n": 2},
                                               "delayMs": 60000})
        # (LIST answers from memory while both SUBMITs wait for Redis.)
        watcher = s.client()
        delayed = h.wait_until(lambda: (lambda ids: ids if len(ids) == 2 else None)(
            watcher.listed(state="delayed")), 2, "LIST to show both unconfirmed jobs as delayed")
        h.log("LIST delayed while the SUBMITs are unconfirmed:", delayed)
        for name, cmd in (("PROMOTE", PROMOTE), ("CANCEL", h.CANCEL), ("REMOVE", REMOVE)):
            for jid in delayed:
                got, r = watcher.request(cmd, {"jobId": jid})
                h.check(got == h.REJECTED and r.get("code") == "conflict"
                        and "being written" in r.get("message", ""),
                        "%s of an unconfirmed job: conflict, the job is being written" % name, got, r)

        cmd, r = c.reply_to(to_promote)
        h.check(cmd == h.ACCEPTED, "the first SUBMIT is accepted once redis answers", cmd, r)
        promoted = r["jobId"]
        cmd, r = c.reply_to(to_cancel)
        h.check(cmd == h.ACCEPTED, "the second SUBMIT is accepted once redis answers", cmd, r)
        cancelled = r["jobId"]

        cmd, r = c.request(h.CANCEL, {"jobId": cancelled})
        h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled",
                "CANCEL of the confirmed delayed job: cancelled", cmd, r)
        cmd, r = c.request(PROMOTE, {"jobId": promoted})
        h.check(cmd == h.REPLY and r["job"]["state"] in ("queued", "running"),
                "PROMOTE of the confirmed delayed job: due now", cmd, r)

        got = jobs_received([w1, w2], 2.5)
        h.log("JOBs received:", [(n, b["jobId"], b["attempt"]) for n, b in got])
        h.check([b["jobId"] for _, b in got] == [promoted],
                "one JOB: the promoted job, once (the cancelled one never runs)", got)
        runner = w1 if got[0][0] == "w1" else w2
        runner.done(promoted, result={"ran": 1})
        rec = c.wait(promoted, 10)
        h.check(rec["state"] == "completed" and rec["attempts"] == 1,
                "the promoted job completes on its only attempt", rec)
        h.check(c.status(cancelled)["state"] == "cancelled", "the cancelled job stays cancelled")
        h.wait_equal(lambda: python_usage(c), (0, [0, 0]), 5,
                     "python usage back to 0, both workers running 0")

        # KEEP_FINISHED_JOBS=1: the next job pushes the promoted one out of
        # memory; the broker outlives the first dispatch's deadline.
        jid = c.submit("python", {"n": 3})
        got = jobs_received([w1, w2], 1.0)
        h.check([b["jobId"] for _, b in got] == [jid], "the next job is dispatched once", got)
        (w1 if got[0][0] == "w1" else w2).done(jid, result={"ran": 3})
        h.check(c.wait(jid, 10)["state"] == "completed", "the next job completes")
        time.sleep(1.0)     # past the promoted job's deadline (3 s after its dispatch)
        h.check(python_usage(c) == (0, [0, 0]), "nothing runs and the broker answers")
        w1.close()
        w2.close()


if __name__ == "__main__":
    h.main(test)

"""The read-back of the finished jobs after a restart (for the job
listings) reads each record again when Redis answers the read with an error
(here NOPERM: the broker's user may not HGETALL; BUSY or LOADING answer the
same way), a few times over about 8 s: once Redis answers, the jobs are
listed.  An error says nothing of the record, and before, such a job was
left out of LIST until the next recovery (the next restart, or Redis back
from an outage).

Two jobs complete and the broker stops.  Redis refuses HGETALL; the next
broker starts (no unfinished job: its recovery reads no record), reads the
finished sets' newest ids, and its reads of the two records are refused
(Redis's ACL LOG counts them; the broker logs one WARN line a round).  HGETALL allowed again: LIST of the completed
jobs names both, newest first.  A read refused every time is given up with
a warning naming how many jobs are not listed; a broker stopped while its
reads wait to be sent again exits 0 (under ASan: nothing leaked).

Real redis and broker; a fake python worker.
"""
import harness as h
from fakeworker import FakeWorker


def refused_reads(s):
    """How many HGETALLs Redis has refused since its ACL LOG was reset."""
    lines = s.redis_cli("ACL", "LOG").split("\n")
    total = 0
    for i, line in enumerate(lines):
        if line == "count" and i + 1 < len(lines) and "hgetall" in lines[i + 1:i + 9]:
            total += int(lines[i + 1])
    return total


def test():
    with h.Stack("readback-error") as s:
        s.redis()
        b = s.broker()
        c = s.client()
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        s.wait_workers(1, "python")
        ids = []
        for n in range(2):
            jid = c.submit("python", {"n": n})
            h.check(w.recv_job()["jobId"] == jid, "job %d runs" % n)
            w.done(jid, result={"ok": n})
            h.check(c.wait(jid)["state"] == "completed", "job %d completed" % n)
            ids.append(jid)
        w.close()
        c.close()
        b.stop()

        h.check(s.redis_cli("ACL", "SETUSER", "default", "-hgetall") == "OK"
                and s.redis_cli("ACL", "LOG", "RESET") == "OK",
                "Redis refuses HGETALL to the broker (NOPERM)")
        b = s.broker(name="broker2")
        c = s.client()
        h.wait_until(lambda: refused_reads(s) >= 2, 10, "Redis to refuse the read-back's two reads")
        h.check(c.listed(state="completed") == [], "nothing listed while Redis refuses the reads")
        h.check(s.redis_cli("ACL", "SETUSER", "default", "+hgetall") == "OK", "HGETALL allowed again")
        h.wait_equal(lambda: c.listed(state="completed"), list(reversed(ids)), 10,
                     "the two jobs listed once Redis answers the reads again, newest first")
        out = b.output()
        h.check("redis answered 2 record reads with an error (NOPERM" in out,
                "one WARN line for the round of refused reads, naming the error", out[-1500:])
        c.close()
        b.stop()

        # Refused for good: given up, with a warning.
        h.check(s.redis_cli("ACL", "SETUSER", "default", "-hgetall") == "OK", "HGETALL refused again")
        b = s.broker(name="broker3")
        h.wait_until(lambda: "2 finished jobs could not be read back from redis" in b.output(), 20,
                     "the read-back to give up with a warning")
        c = s.client()
        h.check(c.listed(state="completed") == [], "nothing listed", c.listed(state="completed"))
        c.close()
        b.stop()

        # Stopped while its reads wait to be sent again: it exits cleanly.
        h.check(s.redis_cli("ACL", "LOG", "RESET") == "OK", "ACL LOG reset")
        b = s.broker(name="broker4")
        h.wait_until(lambda: "; read again in 250 ms" in b.output(), 10,
                     "the read-back to wait to read the records again")
        rc = b.stop()
        out = b.output()
        h.check(rc == 0 and "Sanitizer" not in out and "runtime error" not in out,
                "a broker stopped while its reads wait to be sent again exits 0", rc, out[-1500:])
        h.check(s.redis_cli("ACL", "SETUSER", "default", "+hgetall") == "OK", "HGETALL allowed again")


if __name__ == "__main__":
    h.main(test)

"""The Python client's control and schedule calls end to end: a real
redis-server and broker, a Python worker serving 'pywork' ('pyhold' has no
worker).  delay_ms marks the id delayed; promote runs it now; status(key=) finds a
job by its idempotency_key until it is removed; remove,
pause/resume, drain, clean (completed and failed), retry_jobs; run() past its wait
names the job's state; add_schedule with
every_ms and a limit makes exactly its runs, ids "<key>@<due ms>";
schedules() lists it ended; remove_schedule; bad input raises Rejected
naming the field.
"""
from e2elib import harness, botmesh, pyworker, wait_worker
from harness import check, wait_until


def expect(fn, code):
    try:
        fn()
    except botmesh.Rejected as e:
        check(e.code == code, "raises Rejected %s" % code, e.code, e.message)
        return e
    raise harness.TestFailure("expected Rejected %s" % code)


def main():
    with harness.Stack("clients-py-control") as s:
        s.redis()
        s.broker(env={"MAX_PYWORK_BOTS": "4", "MAX_PYHOLD_BOTS": "1"})
        pyworker(s, "py-ctl", credit=2)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-ctl")

        later = c.submit("pywork", {"p": 1}, delay_ms=60000)
        check(later.delayed and c.status(later)["state"] == "delayed", "delay_ms: the id says delayed", later)
        rec = c.promote(later)
        check(rec["jobId"] == later and rec["state"] != "delayed", "promote: due now", rec)
        check(c.wait(later, timeout=20)["state"] == "completed", "the promoted job ran")
        expect(lambda: c.promote(later), "conflict")
        hold = c.submit("pyhold", {}, delay_ms=60000, idempotency_key="order-42")
        rec = c.status(key="order-42")
        check(rec["jobId"] == hold and rec["state"] == "delayed",
              "status(key=): the job submitted with that idempotency_key", rec)
        expect(lambda: c.status(key="no-such-key"), "not_found")
        c.remove(hold)
        expect(lambda: c.status(hold), "not_found")
        expect(lambda: c.status(key="order-42"), "not_found")

        r = c.pause("pywork")
        check(r["paused"] is True, "pause", r)
        held = c.submit("pywork", {"h": 1})
        check(c.status(held)["state"] == "queued" and c.stats()["types"]["pywork"]["paused"] is True,
              "a paused type holds its job")
        check(c.resume("pywork")["paused"] is False, "resume")
        check(c.wait(held, timeout=20)["state"] == "completed", "the held job runs after resume")
        c.submit("pyhold", {})
        try:
            c.run("pyhold", {}, timeout=0.3)
            raise harness.TestFailure("run() past its timeout should raise WaitTimeout")
        except botmesh.WaitTimeout as e:
            check("(state: queued)" in e.message and e.job["state"] == "queued",
                  "run() past its timeout: WaitTimeout names the job's last known state", e.message)
        check(c.drain("pyhold")["removed"] == 2, "drain removes the queued pyhold jobs")
        failed = c.submit("pywork", {"fail": True}, attempts=1)
        check(c.wait(failed, timeout=20)["state"] == "failed", "a failing job fails")
        check(c.clean("pywork", "failed")["removed"] == 1, "clean failed removes the one failed job")
        expect(lambda: c.status(failed), "not_found")
        check(c.clean("pywork", "completed")["removed"] == 2, "clean completed removes the 2 completed jobs")
        expect(lambda: c.clean("pywork", "running"), "bad_request")
        again = c.submit("pywork", {"failFirstRun": True}, attempts=1)
        check(c.wait(again, timeout=20)["state"] == "failed", "a job failing its first run fails")
        r = c.retry_jobs("pywork", limit=5)
        check(r["botType"] == "pywork" and r["retried"] == 1 and r["more"] is False,
              "retry_jobs runs the one failed job again", r)
        check(c.wait(again, timeout=20)["state"] == "completed", "the retried job completes")
        check(c.retry_jobs("pywork")["retried"] == 0, "retry_jobs again: nothing failed is left")
        e = expect(lambda: c.retry_jobs("pywork", state="completed"), "bad_request")
        check("state" in e.message, "retry_jobs of a wrong state names state", e.message)
        e = expect(lambda: c.retry_jobs("pywork", limit=0), "bad_request")
        check("limit" in e.message, "retry_jobs with limit 0 names limit", e.message)

        sc = c.add_schedule("py-every", "pywork", {"s": 1}, every_ms=300, limit=3)
        check(sc["key"] == "py-every" and sc["limit"] == 3 and sc["nextAt"] > 0, "add_schedule", sc)
        ended = wait_until(lambda: [x for x in c.schedules() if x["key"] == "py-every" and x["ended"]], 15,
                           "the schedule to make its 3 runs")[0]
        check(ended["runs"] == 3, "schedules(): 3 runs, ended", ended)
        ids = ["py-every@%d" % (sc["nextAt"] + 300 * k) for k in range(3)]
        for jid in ids:
            check(c.wait(jid, timeout=20)["state"] == "completed", "run %s completed" % jid)
        e = expect(lambda: c.add_schedule("py-bad", "pywork", cron="* * *"), "bad_request")
        check("cron" in e.message, "a bad cron names cron", e.message)
        c.remove_schedule("py-every")
        check(not [x for x in c.schedules() if x["key"] == "py-every"], "remove_schedule")
        expect(lambda: c.remove_schedule("py-every"), "not_found")
        c.close()


if __name__ == "__main__":
    harness.main(main)

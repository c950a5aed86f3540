"""A completed, failed or cancelled job's record carries no Redis TTL: the
leading broker deletes it once COMPLETED_JOB_TTL / FAILED_JOB_TTL ran out
(the sweep of the finished sets; a cancelled job's is FAILED_JOB_TTL),
within the sweep's granularity (half the retention under 20 s, at least
1 s), and the record of a type that no worker or client names after a
restart goes too.

A real redis-server and broker; a fake worker of an own bot type ends the
jobs; the broker is killed (SIGKILL) before the retention runs out and a
new one, with no worker of that type, must still delete the record, and
those of a type whose set an earlier version wrote without listing it.
"""
import time
import harness as h
from fakeworker import FakeWorker

P = "botmesh:{bm}:"
TTL_S = 4


def key(job_id):
    return P + "job:" + job_id


def test():
    env = {"COMPLETED_JOB_TTL": str(TTL_S), "FAILED_JOB_TTL": str(TTL_S)}
    with h.Stack("retention-sweep") as s:
        s.redis()
        broker = s.broker(env=env)
        c = s.client()
        w = FakeWorker(s.endpoint, "fw", ["sweeptype"], 1)
        h.wait_until(lambda: len(c.stats()["workers"]) == 1, 10, "the worker to register")

        ok = c.submit("sweeptype", {})
        w.done(w.recv_job(5)["jobId"], result={"r": 1})
        c.wait(ok)
        t_ok = time.monotonic()
        bad = c.submit("sweeptype", {}, attempts=1)
        w.done(w.recv_job(5)["jobId"], ok=False)
        c.wait(bad)
        t_bad = time.monotonic()

        # Each finished record: no TTL, its id in its type's finished set
        # scored by its finishedAt, the type in the types set.
        for jid, which in ((ok, "completed"), (bad, "failed")):
            rec = h.job_record(s.redis_port, jid)
            h.check(rec["state"] == which, "%s is %s in Redis" % (jid, which), rec)
            h.check(s.redis_cli("PTTL", key(jid)) == "-1", "a %s record carries no Redis TTL" % which)
            score = s.redis_cli("ZSCORE", P + "finished:%s:sweeptype" % which, jid)
            h.check(score and int(float(score)) == rec["finishedAt"],
                    "its id is in finished:%s scored by finishedAt" % which, (score, rec["finishedAt"]))
        h.check(s.redis_cli("SISMEMBER", P + "finished:types", "sweeptype") == "1",
                "the type is listed in finished:types")

        # A cancelled job likewise, in its own set.
        w.close()
        gone = c.submit("sweeptype", {})
        cmd, r = c.request(h.CANCEL, {"jobId": gone})
        h.check(cmd == h.REPLY, "the queued job is cancelled", r)
        t_gone_end = time.monotonic()
        h.check(s.redis_cli("HGET", key(gone), "state") == "cancelled", "cancelled in Redis")
        h.check(s.redis_cli("PTTL", key(gone)) == "-1", "a cancelled record carries no Redis TTL")
        h.check(s.redis_cli("ZSCORE", P + "finished:cancelled:sweeptype", gone) != "",
                "its id is in finished:cancelled")

        # Killed within the retention; the next broker sees no worker of
        # the type, only Redis names it.
        h.check(time.monotonic() - t_ok < TTL_S - 1, "killed before the retention ran out (slow machine)")
        broker.kill()
        h.log("broker killed with SIGKILL")
        # A set as a broker of an earlier version left it: a type that
        # finished jobs only then, in no types set.  Planted once the broker
        # is gone: a live broker's sweep lists the sets it finds.
        old = "01a0000000aa-0000-00000001"
        s.redis_cli("HSET", key(old), "r", "an earlier version's record")
        s.redis_cli("ZADD", P + "finished:completed:retired", str(int(time.time() * 1000) - 3600000), old)
        h.check(s.redis_cli("SISMEMBER", P + "finished:types", "retired") == "0",
                "an earlier version's set: its type is not listed")
        s.broker(env=env)
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "the new broker connected to redis")
        h.check(s.redis_cli("EXISTS", key(ok)) == "1", "the record is still there within its retention")

        # Gone after the retention, within the sweep's granularity (2 s
        # here) and a margin for a loaded machine; never before.
        for jid, t_end in ((ok, t_ok), (bad, t_bad), (gone, t_gone_end)):
            t_gone = h.wait_until(lambda: s.redis_cli("EXISTS", key(jid)) == "0" and time.monotonic(),
                                  TTL_S + 15, "the record of %s to be deleted after its retention" % jid)
            h.log("record of %s gone %.1f s after its end" % (jid, t_gone - t_end))
            h.check(t_gone - t_end >= TTL_S - 0.5, "not deleted before its retention of %d s" % TTL_S,
                    t_gone - t_end)
        for jid, which in ((ok, "completed"), (bad, "failed"), (gone, "cancelled")):
            h.wait_until(lambda: s.redis_cli("ZSCORE", P + "finished:%s:sweeptype" % which, jid) == "",
                         5, "the id of %s to leave finished:%s" % (jid, which))
        h.check(c.status(ok) is None, "STATUS answers not_found")

        # The earlier version's set was found (SCAN), its type listed, and
        # its record, an hour past its retention, swept.
        h.wait_until(lambda: s.redis_cli("SISMEMBER", P + "finished:types", "retired") == "1", 10,
                     "the type of an earlier version's set to be listed in finished:types")
        h.wait_until(lambda: s.redis_cli("EXISTS", key(old)) == "0", TTL_S + 15,
                     "the earlier version's record to be swept")
        h.check(s.redis_cli("ZCARD", P + "finished:completed:retired") == "0",
                "and its id out of the set")


if __name__ == "__main__":
    h.main(test)

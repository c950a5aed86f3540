"""Retention holds everywhere: after COMPLETED_JOB_TTL / FAILED_JOB_TTL a
finished job is gone from Redis AND from the broker's finished-job cache
(KEEP_FINISHED_JOBS), so STATUS (and GET /job) answer not_found.

A real broker and Redis; a fake worker ends one job completed and one
failed; TTLs of 2 s and 3 s.  Then retention by count per type
(KEEP_COMPLETED_NODE=2, KEEP_FAILED_NODE=1): exactly the older records go.
"""
import time
import harness as h
from fakeworker import FakeWorker


def test():
    env = {"COMPLETED_JOB_TTL": "2", "FAILED_JOB_TTL": "3", "KEEP_FINISHED_JOBS": "1000",
           "KEEP_COMPLETED_NODE": "2", "KEEP_FAILED_NODE": "1"}
    with h.Stack("retention") as s:
        s.redis()
        s.broker(env=env)
        c = s.client()
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        h.wait_until(lambda: len(c.stats()["workers"]) == 1, 5, "the worker to register")
        ok = c.submit("python", {})
        w.done(w.recv_job(5)["jobId"], result={"secret": 1})
        c.wait(ok)
        t_ok = time.monotonic()
        bad = c.submit("python", {}, attempts=1)
        w.done(w.recv_job(5)["jobId"], ok=False)
        c.wait(bad)
        t_bad = time.monotonic()
        h.check(c.status(ok)["result"] == {"secret": 1}, "the result is there right after the end")

        gone_ok = h.wait_until(lambda: c.status(ok) is None and time.monotonic(), 10,
                               "the completed job to be gone after COMPLETED_JOB_TTL")
        h.log("completed job gone %.1f s after its end" % (gone_ok - t_ok))
        h.check(gone_ok - t_ok >= 1.5, "not gone before its TTL of 2 s", gone_ok - t_ok)
        h.wait_until(lambda: s.redis_cli("EXISTS", "botmesh:{bm}:job:" + ok) == "0", 5,
                     "its Redis record to be deleted too (the sweep runs every second here)")
        h.check(c.status(bad) is not None or time.monotonic() - t_bad >= 2.5,
                "the failed job (TTL 3 s) outlives the completed one")
        gone_bad = h.wait_until(lambda: c.status(bad) is None and time.monotonic(), 10,
                                "the failed job to be gone after FAILED_JOB_TTL")
        h.log("failed job gone %.1f s after its end" % (gone_bad - t_bad))
        h.check(gone_bad - t_bad >= 2.5, "not gone before its TTL of 3 s", gone_bad - t_bad)
        cmd, r = c.request(h.LIST, {"botType": "python"})
        h.check(cmd == h.REPLY and r["jobs"] == [], "LIST no longer shows them", r)
        w.close()

        # Retention by count: node keeps its 2 newest completed and its
        # newest failed job; older ones go from memory and Redis.
        wn = FakeWorker(s.endpoint, "fw-node", ["node"], 1)
        h.wait_until(lambda: any(x["name"] == "fw-node" for x in c.stats()["workers"]), 5, "node worker")
        ids = []
        for ok in (True, True, False, True, False, True):
            jid = c.submit("node", {}, attempts=1)
            job = wn.recv_job(5)
            wn.done(job["jobId"], result=1) if ok else wn.done(job["jobId"], ok=False)
            c.wait(jid)
            ids.append((jid, ok))
        completed = [jid for jid, ok in ids if ok]
        failed = [jid for jid, ok in ids if not ok]
        for jid in completed[:-2] + failed[:-1]:
            h.wait_until(lambda: c.status(jid) is None, 5, "job %s beyond the count to go" % jid)
            h.check(s.redis_cli("EXISTS", "botmesh:{bm}:job:" + jid) == "0", "its Redis record is gone")
        for jid in completed[-2:] + failed[-1:]:
            h.check(c.status(jid) is not None, "job %s within the count stays" % jid)
        wn.close()


if __name__ == "__main__":
    h.main(test)

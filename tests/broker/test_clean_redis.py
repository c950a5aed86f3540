"""clean and the retention by count reach finished jobs that live only in
Redis: those pushed out of the broker's memory (KEEP_FINISHED_JOBS) and
those that ended before a broker restart.  Each bot type's completed and
failed job ids are kept in Redis by finish time
({bm}:finished:<state>:<type>, docs/redis.md).

A real redis-server and broker; a fake worker ends every job as told.
- KEEP_FINISHED_JOBS=4: 12 completed and 3 failed python jobs, most only
  in Redis; clean completed removes exactly the 12 (memory and Redis), the
  failed ones stay; STATUS of a cleaned one is not_found;
- across a restart (SIGTERM): clean failed with olderThanMs removes exactly the jobs
  that ended before the cut, not the newer ones, nor one that failed, was
  retried (RETRY) and completed;
- KEEP_COMPLETED_NODE=3 across a restart (SIGTERM): the newest 3 completed node
  records are kept, every older one (ended before the restart) goes.
"""
import time
import harness as h
from fakeworker import FakeWorker

QUEUE = 0x0B


def key(jid):
    return "botmesh:{bm}:job:" + jid


def exists(s, jid):
    return s.redis_cli("EXISTS", key(jid)) == "1"


def run(c, w, bot_type, ok):
    """Submit one job, let the worker end it completed (ok) or failed."""
    jid = c.submit(bot_type, {}, attempts=1)
    job = w.recv_job(5)
    h.check(job["jobId"] == jid, "the worker got job %s" % jid, job)
    if ok:
        w.done(jid, result=1)
    else:
        w.done(jid, ok=False)
    c.wait(jid)
    return jid


def clean(c, bot_type, state, older_than_ms=0):
    cmd, r = c.request(QUEUE, {"botType": bot_type, "action": "clean", "state": state,
                               "olderThanMs": older_than_ms})
    h.check(cmd == h.REPLY, "QUEUE clean answered", cmd, r)
    return r["removed"]


def test():
    env = {"KEEP_FINISHED_JOBS": "4", "KEEP_COMPLETED_NODE": "3", "HEARTBEAT_LIVENESS": "20"}
    with h.Stack("clean-redis") as s:
        s.redis()
        broker = s.broker(env=env)
        c = s.client()
        w = FakeWorker(s.endpoint, "fw", ["python", "node"], 1)
        h.wait_until(lambda: len(c.stats()["workers"]) == 1, 5, "the worker to register")

        done = [run(c, w, "python", True) for _ in range(12)]
        failed = [run(c, w, "python", False) for _ in range(3)]
        in_memory = [j for j in done if j in {x["jobId"] for x in c.request(h.LIST, {"limit": 100})[1]["jobs"]}]
        h.check(len(in_memory) <= 4, "at most KEEP_FINISHED_JOBS (4) finished jobs stay in memory", in_memory)
        h.check(all(exists(s, j) for j in done + failed), "all 15 records are in Redis")
        h.check(s.redis_cli("ZCARD", "botmesh:{bm}:finished:completed:python") == "12"
                and s.redis_cli("ZCARD", "botmesh:{bm}:finished:failed:python") == "3",
                "the finished sets hold the 12 completed and 3 failed ids")

        removed = clean(c, "python", "completed")
        h.check(removed == 12, "clean completed removes exactly the 12 completed jobs, "
                "most of them only in Redis", removed)
        h.check(not any(exists(s, j) for j in done), "no completed record is left in Redis")
        h.check(all(exists(s, j) for j in failed), "the failed records stay")
        h.check(c.status(done[0]) is None and c.status(done[-1]) is None,
                "STATUS of a cleaned job (old and newest) is not_found")
        h.check(s.redis_cli("ZCARD", "botmesh:{bm}:finished:completed:python") == "0",
                "the completed set is empty")
        h.check(clean(c, "python", "completed") == 0, "a second clean finds nothing")

        # A failed job retried by hand and then completed is no longer a
        # failed one: a clean of failed jobs leaves it, even only in Redis.
        again = run(c, w, "python", False)
        cmd, r = c.request(h.RETRY, {"jobId": again})
        h.check(cmd == h.ACCEPTED, "RETRY of a failed job accepted", cmd, r)
        w.done(w.recv_job(5)["jobId"], result=2)
        h.check(c.wait(again)["state"] == "completed", "the retried job completed")

        # Across a restart: failed jobs before and after a cut.
        cut = c.status(again)["finishedAt"]
        h.wait_until(lambda: time.time() * 1000 > cut + 300, 2, "the clock to pass the cut by 300 ms")
        newer = [run(c, w, "python", False) for _ in range(2)]
        w.close()
        broker.stop()
        broker = s.broker(env=env)
        c = s.client()
        w = FakeWorker(s.endpoint, "fw2", ["python", "node"], 1)
        h.wait_until(lambda: len(c.stats()["workers"]) == 1, 5, "the worker to register again")
        h.check(s.redis_cli("ZSCORE", "botmesh:{bm}:finished:failed:python", again) == "",
                "the retried job is no longer in the failed set")
        removed = clean(c, "python", "failed", int(time.time() * 1000) - cut - 150)
        h.check(removed == 3, "after a restart, clean failed olderThanMs removes exactly the 3 "
                "jobs that ended before the cut (only in Redis)", removed)
        h.check(not any(exists(s, j) for j in failed) and all(exists(s, j) for j in newer),
                "the 3 older failed records are gone, the 2 newer stay")
        h.check(s.redis_cli("HGET", key(again), "state") == "completed",
                "the job that failed, was retried and completed stays")

        # Retention by count across a restart: KEEP_COMPLETED_NODE=3.
        before = [run(c, w, "node", True) for _ in range(3)]
        w.close()
        broker.stop()
        s.broker(env=env)
        c = s.client()
        w = FakeWorker(s.endpoint, "fw3", ["python", "node"], 1)
        h.wait_until(lambda: len(c.stats()["workers"]) == 1, 5, "the worker to register again")
        after = [run(c, w, "node", True) for _ in range(2)]
        h.wait_until(lambda: [exists(s, j) for j in before + after] == [False, False, True, True, True], 10,
                     "the 2 oldest node records (ended before the restart) to go, the newest 3 to stay")
        h.check(s.redis_cli("ZCARD", "botmesh:{bm}:finished:completed:node") == "3",
                "the node completed set holds the 3 kept ids")
        h.check(c.status(before[0]) is None and c.status(after[-1]) is not None,
                "STATUS: the trimmed job is not_found, the newest is there")
        w.close()


if __name__ == "__main__":
    h.main(test)

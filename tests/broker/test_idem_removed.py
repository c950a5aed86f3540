"""An idempotencyKey dedupes to its job while that job exists; once the job
is removed (REMOVE, QUEUE drain, QUEUE clean) or its record is gone, the
key is free: the next SUBMIT with it makes a new job, which runs, and the
key names that job from then on, in memory and in Redis, across restarts.

A real redis-server (AOF) and real broker processes (KEEP_FINISHED_JOBS=1,
so that a finished job leaves the broker's memory and only Redis holds
it); a fake worker the test drives.

1. REMOVE of a queued keyed job: the key leaves Redis with the record
   (before REMOVE is answered); the same body makes a new job, a worker
   runs it, and a SUBMIT after that is a duplicate of the new job.
2. QUEUE drain: the same for a drained job.
3. QUEUE clean of a completed job the broker holds, and of one only Redis
   holds (its key is left in the hash: the SUBMIT finds the record gone);
   for the latter, another payload with its key makes a new job too
   (no idempotency_key_reused naming a job that no longer exists).
4. A key whose job was removed before a SIGKILL restart, and a key
   that names a job that never had a record (a crash between a record's DEL
   and its key's HDEL): after the restart both make new jobs, SUBMIT and
   SUBMIT_MANY alike (a batch's second item with the key is the first
   item's new job).
"""
import time
import harness as h
from fakeworker import FakeWorker
from test_idem_restart import IDEM, connected

SUBMIT_MANY, ACCEPTED_MANY = 0x0A, 0x85
QUEUE, REMOVE = 0x0B, 0x0C


def key_job(s, key):
    value = s.redis_cli("HGET", IDEM, key)
    return value.split()[0] if value else ""


def fresh(s, c, bot_type, key, payload, old, what, states=("queued",)):
    """The same body with key makes a new job, which the key names now
    (queued, or running when a worker serves the type)."""
    cmd, r = c.try_submit(bot_type, payload, idempotencyKey=key)
    h.check(cmd == h.ACCEPTED and r["duplicate"] is False and r["jobId"] != old,
            "%s: the same key makes a new job (not %s)" % (what, old), r)
    new = r["jobId"]
    h.check(c.status(new)["state"] in states, "%s: the new job exists, %s" % (what, states),
            c.status(new))
    cmd, r = c.try_submit(bot_type, payload, idempotencyKey=key)
    h.check(cmd == h.ACCEPTED and r["duplicate"] is True and r["jobId"] == new
            and r.get("state") in states, "%s: the key now names the new job" % what, r)
    h.check(key_job(s, key) == new, "%s: Redis maps the key to the new job" % what,
            s.redis_cli("HGET", IDEM, key))
    return new


def queue(c, bot_type, action, **extra):
    cmd, r = c.request(QUEUE, dict(extra, botType=bot_type, action=action))
    h.check(cmd == h.REPLY, "QUEUE %s %s answered" % (action, bot_type), cmd, r)
    return r


def complete(c, w, job_id):
    job = w.recv_job(10)
    h.check(job and job["jobId"] == job_id, "the worker runs job %s" % job_id, job)
    w.done(job_id, result={"ok": 1})
    h.check(c.wait(job_id)["state"] == "completed", "job %s completed" % job_id)


def test():
    with h.Stack("idem_removed") as s:
        s.redis()
        env = {"KEEP_FINISHED_JOBS": "1"}
        broker = s.broker(env=env)
        c = connected(s)

        # 1. REMOVE of a queued job (no worker yet).
        first = c.submit("python", {"n": 1}, idempotencyKey="k-remove")
        h.check(key_job(s, "k-remove") == first, "Redis maps k-remove to its job")
        cmd, r = c.request(REMOVE, {"jobId": first})
        h.check(cmd == h.REPLY and r.get("removed") is True, "REMOVE answered removed", cmd, r)
        h.check(s.redis_cli("HEXISTS", IDEM, "k-remove") == "0",
                "REMOVE answered: the key has left Redis with the record")
        new = fresh(s, c, "python", "k-remove", {"n": 1}, first, "after REMOVE")
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        complete(c, w, new)
        cmd, r = c.try_submit("python", {"n": 1}, idempotencyKey="k-remove")
        h.check(cmd == h.ACCEPTED and r["duplicate"] is True and r["jobId"] == new
                and r.get("state") == "completed",
                "a finished job still exists: its key is a duplicate of it, completed", r)

        # 2. QUEUE drain of a queued job (node: no worker).
        drained = c.submit("node", {"n": 2}, idempotencyKey="k-drain")
        r = queue(c, "node", "drain")
        h.check(r["removed"] == 1, "drain removed the node job", r)
        h.check(s.redis_cli("HEXISTS", IDEM, "k-drain") == "0", "drain answered: the key left Redis")
        fresh(s, c, "node", "k-drain", {"n": 2}, drained, "after QUEUE drain")

        # 3. QUEUE clean: new (completed, in the broker's memory) goes.
        r = queue(c, "python", "clean", state="completed", olderThanMs=0)
        h.check(r["removed"] == 1, "clean removed the completed job", r)
        h.check(s.redis_cli("HEXISTS", IDEM, "k-remove") == "0", "clean answered: the key left Redis")
        again = fresh(s, c, "python", "k-remove", {"n": 1}, new, "after QUEUE clean",
                      ("queued", "running"))
        complete(c, w, again)

        # A completed job only Redis holds (the next one to end pushes it
        # out of the broker's memory): clean deletes its record by id.
        old = c.submit("python", {"n": 3}, idempotencyKey="k-old")
        complete(c, w, old)
        other = c.submit("python", {"n": 4})
        complete(c, w, other)
        r = queue(c, "python", "clean", state="completed", olderThanMs=0)
        h.check(r["removed"] == 3, "clean removed the three completed jobs", r)
        h.check(h.job_record(s.redis_port, old) is None, "the record of %s is gone" % old)
        cmd, r = c.try_submit("python", {"n": 99}, idempotencyKey="k-old")
        h.check(cmd == h.ACCEPTED and r["duplicate"] is False and r["jobId"] != old,
                "a key whose job is gone, with another payload: a new job, not "
                "idempotency_key_reused", cmd, r)
        reborn = r["jobId"]
        h.check(key_job(s, "k-old") == reborn, "Redis maps k-old to the new job",
                s.redis_cli("HGET", IDEM, "k-old"))
        complete(c, w, reborn)
        w.close()

        # 4. Across a SIGKILL restart: a removed job's key, and a key naming
        # a job with no record at all.
        gone = c.submit("node", {"n": 5}, idempotencyKey="k-restart")
        cmd, r = c.request(REMOVE, {"jobId": gone})
        h.check(cmd == h.REPLY and r.get("removed") is True, "REMOVE answered removed", cmd, r)
        c.close()
        broker.kill()
        h.log("broker killed with SIGKILL")
        until = int(time.time() * 1000) + 3600000
        for key, ghost in (("k-ghost", "0000000000aa-0000-00000001"),
                           ("k-ghost-batch", "0000000000aa-0000-00000002")):
            s.redis_cli("HSET", IDEM, key, "%s %016x %d" % (ghost, 0, until))
        broker = s.broker(env=env)
        c = connected(s)
        fresh(s, c, "node", "k-restart", {"n": 5}, gone, "removed before a restart")
        fresh(s, c, "node", "k-ghost", {"n": 6}, "0000000000aa-0000-00000001",
              "a key naming a job with no record, after a restart")
        cmd, r = c.request(SUBMIT_MANY, {"jobs": [
            {"botType": "node", "payload": {"n": 7}, "idempotencyKey": "k-ghost-batch"},
            {"botType": "node", "payload": {"n": 7}, "idempotencyKey": "k-ghost-batch"}]})
        h.check(cmd == ACCEPTED_MANY, "SUBMIT_MANY answered", cmd, r)
        out = r["jobs"]
        h.check(out[0]["duplicate"] is False and out[0]["jobId"] != "0000000000aa-0000-00000002",
                "SUBMIT_MANY item 0: a new job", out[0])
        h.check(out[1]["duplicate"] is True and out[1]["jobId"] == out[0]["jobId"]
                and out[1].get("state") == "queued",
                "SUBMIT_MANY item 1: item 0's new job, queued", out[1])
        h.check(c.status(out[0]["jobId"])["state"] == "queued", "the batch's new job exists")
        h.check(key_job(s, "k-ghost-batch") == out[0]["jobId"],
                "Redis maps k-ghost-batch to the batch's new job")
        h.check("is gone (removed or past its retention)" in broker.output(),
                "the broker logs a key whose job is gone")
        c.close()


if __name__ == "__main__":
    h.main(test)

"""A bot type's queue under control, and job actions, on a real broker + Redis.

pause holds 100 queued jobs until resume (a worker with credit gets none);
a pause survives kill -9 of the broker; drain removes the queued jobs and
only them; clean removes exactly the finished jobs of the state and age
asked; REMOVE deletes a job that is not running (its Redis record too);
PROMOTE makes a delayed job due now.  QUEUE of an unknown type is
unknown_bot_type on the first broker of a fresh Redis, store_unavailable
(not known yet) right after a restart that finds no record of the types
in Redis (as after a broker of a version that kept none).
"""
import time
import harness as h
from fakeworker import FakeWorker

QUEUE, REMOVE, PROMOTE = 0x0B, 0x0C, 0x0D


def queue(c, bot_type, action, **extra):
    cmd, r = c.request(QUEUE, dict(extra, botType=bot_type, action=action))
    h.check(cmd == h.REPLY, "QUEUE %s %s answered" % (action, bot_type), r)
    return r


def test_pause(s, c, env):
    r = queue(c, "python", "pause")
    h.check(r["paused"] is True and r["removed"] == 0, "pause: paused", r)
    h.check(c.stats()["types"]["python"]["paused"] is True, "STATS shows python paused")
    ids = [c.submit("python", {"i": i}) for i in range(100)]
    w = FakeWorker(s.endpoint, "fw-p", ["python"], 100)
    h.wait_until(lambda: len(c.stats()["workers"]) >= 1, 5, "the worker to register")
    h.check(w.recv(1.0) is None, "nothing dispatched while paused (100 queued, credit 100)")
    st = c.stats()["types"]["python"]
    h.check(st["waiting"] == 100 and st["running"] == 0, "the 100 jobs stay queued", st)
    # The pause is in Redis: a broker killed and started again keeps it.
    w.close()
    [p for p in s.procs if p.name == "broker"][-1].kill()
    h.check(s.redis_cli("DEL", "botmesh:{bm}:types") == "1", "the types record deleted")
    s.broker(env=env)
    c = s.client()
    # Another broker led on this Redis and left no record of its types:
    # for 2 x HEARTBEAT_INTERVAL_MS x HEARTBEAT_LIVENESS (40 s here) a type
    # no worker named yet may be one whose workers register again: QUEUE
    # says retry, as SUBMIT does.
    cmd, r = c.request(QUEUE, {"botType": "nosuchtype", "action": "pause"})
    h.check(cmd == h.REJECTED and r["code"] == "store_unavailable" and "not known yet" in r["message"],
            "QUEUE of a type not known yet right after the restart: store_unavailable", r)
    h.wait_until(lambda: c.stats()["types"]["python"]["waiting"] == 100, 10, "the 100 jobs recovered")
    h.check(c.stats()["types"]["python"]["paused"] is True, "still paused after kill -9")
    w = FakeWorker(s.endpoint, "fw-p2", ["python"], 100)
    h.wait_until(lambda: len(c.stats()["workers"]) >= 1, 5, "the worker to register")
    h.check(w.recv(1.0) is None, "nothing dispatched after the restart either")
    r = queue(c, "python", "resume")
    h.check(r["paused"] is False, "resume: not paused", r)
    got = []
    while len(got) < 100:
        msg = w.recv(5.0)
        h.check(msg is not None and msg[0] == h.JOB, "a JOB after resume (%d so far)" % len(got))
        got.append(msg[1]["jobId"])
        w.done(msg[1]["jobId"], result=1)      # frees the permit (MAX_PYTHON_BOTS=5)
    h.check(sorted(got) == sorted(ids), "all 100 held jobs dispatched after resume, each once")
    h.wait_until(lambda: c.stats()["types"]["python"]["completed"] >= 100, 10, "the 100 jobs completed")
    w.close()
    return c


def test_drain_remove_promote(s, c):
    queue(c, "node", "pause")
    queued = [c.submit("node", {"q": i}) for i in range(5)]
    delayed = c.submit("node", {"d": 1}, delayMs=60000)
    r = queue(c, "node", "drain")
    h.check(r["removed"] == 5, "drain removed the 5 queued jobs", r)
    for jid in queued:
        h.check(c.status(jid) is None, "a drained job is gone (STATUS not_found)", jid)
        h.check(s.redis_cli("EXISTS", "botmesh:{bm}:job:" + jid) == "0", "its Redis record is gone")
    h.check(c.status(delayed)["state"] == "delayed", "drain leaves the delayed job")
    # PROMOTE: due now (the type is still paused, so it waits queued).
    cmd, r = c.request(PROMOTE, {"jobId": delayed})
    h.check(cmd == h.REPLY and r["job"]["state"] == "queued", "PROMOTE queues a delayed job", r)
    cmd, r = c.request(PROMOTE, {"jobId": delayed})
    h.check(cmd == h.REJECTED and r["code"] == "conflict", "PROMOTE of a queued job: conflict", r)
    # REMOVE a queued job, then an unknown one.
    cmd, r = c.request(REMOVE, {"jobId": delayed})
    h.check(cmd == h.REPLY and r["removed"] is True, "REMOVE of a queued job", r)
    h.check(c.status(delayed) is None, "a removed job is gone")
    cmd, r = c.request(REMOVE, {"jobId": delayed})
    h.check(cmd == h.REJECTED and r["code"] == "not_found", "REMOVE again: not_found", r)
    queue(c, "node", "resume")
    # A running job cannot be removed.
    w = FakeWorker(s.endpoint, "fw-n", ["node"], 1)
    jid = c.submit("node", {})
    job = w.recv_job(5)
    cmd, r = c.request(REMOVE, {"jobId": jid})
    h.check(cmd == h.REJECTED and r["code"] == "conflict" and "cancel" in r["message"],
            "REMOVE of a running job: conflict", r)
    w.done(jid, result=1)
    c.wait(jid)
    w.close()
    # Bad bodies name the field.
    for body, field in (({"botType": "node", "action": "stop"}, "action"),
                        ({"botType": "node", "action": "clean"}, "state"),
                        ({"botType": "node", "action": "clean", "state": "failed", "olderThanMs": -5},
                         "olderThanMs")):
        cmd, r = c.request(QUEUE, body)
        h.check(cmd == h.REJECTED and r["code"] == "bad_request" and field in r["message"],
                "QUEUE %r: bad_request naming %s" % (body, field), r)


def test_clean(s, c):
    w = FakeWorker(s.endpoint, "fw-j", ["java"], 1)
    h.wait_until(lambda: any(x["name"] == "fw-j" for x in c.stats()["workers"]), 5, "java worker")

    def run(ok):
        jid = c.submit("java", {}, attempts=1)
        job = w.recv_job(5)
        if ok:
            w.done(job["jobId"], result=1)
        else:
            w.done(job["jobId"], ok=False)
        c.wait(jid)
        return jid
    old_ok = [run(True) for _ in range(3)]
    old_failed = [run(False) for _ in range(2)]
    # The age boundary: the old jobs are 400 ms old or more before the new
    # ones run (the worker's recv waits, heartbeating, with nothing to do).
    h.check(w.recv(0.4) is None, "no job while the old ones age")
    new_ok = [run(True) for _ in range(2)]
    new_failed = [run(False) for _ in range(1)]
    r = queue(c, "java", "clean", state="completed", olderThanMs=300)
    h.check(r["removed"] == 3, "clean completed older than 300 ms removed exactly the 3 old ones", r)
    for jid in old_ok:
        h.check(c.status(jid) is None, "an old completed job is gone", jid)
    for jid in new_ok + old_failed + new_failed:
        h.check(c.status(jid) is not None, "a young or failed job stays", jid)
    r = queue(c, "java", "clean", state="failed", olderThanMs=0)
    h.check(r["removed"] == 3, "clean failed (any age) removed the 3 failed ones", r)
    for jid in old_failed + new_failed:
        h.check(c.status(jid) is None, "a failed job is gone", jid)
    for jid in new_ok:
        h.check(c.status(jid)["state"] == "completed", "completed jobs stay", jid)
    w.close()


def test():
    env = {"HEARTBEAT_LIVENESS": "20"}
    with h.Stack("control") as s:
        s.redis()
        s.broker(env=env)
        c = s.client()
        # The first broker on a fresh Redis: no type is waiting for its
        # workers, an unknown one is unknown at once.
        cmd, r = c.request(QUEUE, {"botType": "nosuchtype", "action": "pause"})
        h.check(cmd == h.REJECTED and r["code"] == "unknown_bot_type", "QUEUE of an unknown type", r)
        c = test_pause(s, c, env)
        test_drain_remove_promote(s, c)
        test_clean(s, c)


if __name__ == "__main__":
    h.main(test)

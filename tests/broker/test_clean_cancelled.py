"""Cancelled jobs are kept in Redis as completed and failed ones are: in
their bot type's finished set ({bm}:finished:cancelled:<type>, scored by
finishedAt), their record without a Redis TTL.  So after a broker restart
they are read back for LIST like the others, and QUEUE clean cancelled
reaches the ones only Redis holds.

A real redis-server and broker, no worker: 3 queued python jobs are
cancelled (KEEP_FINISHED_JOBS=2: one of them is only in Redis even after
the read-back); the broker is restarted (SIGTERM); LIST state=cancelled
shows the 2 newest; clean cancelled removes all 3, their records and ids.
"""
import harness as h

QUEUE = 0x0B
P = "botmesh:{bm}:"


def key(jid):
    return P + "job:" + jid


def test():
    env = {"KEEP_FINISHED_JOBS": "2"}
    with h.Stack("clean-cancelled") as s:
        s.redis()
        broker = s.broker(env=env)
        c = s.client()
        jobs = [c.submit("python", {"n": i}) for i in range(3)]
        for jid in jobs:
            cmd, r = c.request(h.CANCEL, {"jobId": jid})
            h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "the queued job is cancelled",
                    cmd, r)
        for jid in jobs:
            h.check(s.redis_cli("HGET", key(jid), "state") == "cancelled", "cancelled in Redis", jid)
            h.check(s.redis_cli("PTTL", key(jid)) == "-1",
                    "a cancelled record carries no Redis TTL (the sweep deletes it)", jid)
            score = s.redis_cli("ZSCORE", P + "finished:cancelled:python", jid)
            h.check(score and int(float(score)) == c.status(jid)["finishedAt"],
                    "its id is in finished:cancelled:python scored by finishedAt", jid, score)

        broker.stop()
        s.broker(env=env)
        c = s.client()
        listed = h.wait_until(lambda: (lambda ids: ids if len(ids) == 2 else None)(
            c.listed(state="cancelled")), 10, "LIST state=cancelled to show 2 cancelled jobs read "
            "back after the restart (KEEP_FINISHED_JOBS=2)")
        h.check(set(listed) < set(jobs) and jobs[2] in listed,
                "the jobs read back are cancelled ones, the newest among them", listed, jobs)
        cmd, r = c.request(QUEUE, {"botType": "python", "action": "clean", "state": "cancelled"})
        h.check(cmd == h.REPLY, "QUEUE clean cancelled answered", cmd, r)
        h.check(r["removed"] == 3, "clean cancelled removes the 3 jobs, the oldest only in Redis",
                r)
        # clean is answered before Redis has its deletes (as for completed
        # and failed jobs: test_clean_redis waits for them the same way).
        h.wait_until(lambda: not any(s.redis_cli("EXISTS", key(j)) == "1" for j in jobs), 10,
                     "no cancelled record left in Redis after clean")
        h.wait_until(lambda: s.redis_cli("ZCARD", P + "finished:cancelled:python") == "0", 10,
                     "the cancelled set to be empty after clean")
        h.check(all(c.status(j) is None for j in jobs), "STATUS of each is not_found")


if __name__ == "__main__":
    h.main(test)

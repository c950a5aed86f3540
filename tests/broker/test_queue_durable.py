"""QUEUE pause, resume and drain, and REMOVE, are answered once Redis has
them, so a broker crash (SIGKILL) right after the answer cannot undo them.
Redis is held with CLIENT PAUSE WRITE (a slow Redis, a failover) so that the
write is still pending when the request comes.

- pause python: at the answer Redis lists python paused; SIGKILL; the next
  broker has python paused.
- REMOVE of a queued python job: at the answer its record is gone; SIGKILL;
  the next broker answers STATUS not_found.
- drain python (two queued jobs): at the answer both records are gone;
  SIGKILL; the next broker finds neither and has none waiting.
- resume python: at the answer Redis no longer lists it; SIGKILL; the next
  broker has python resumed.

Real redis and broker.
"""
import harness as h
from test_answers_durable import crash, QUEUE_CMD

REMOVE = 0x0C


def paused_in_redis(s):
    return h.redis_pipeline(s.redis_port, [["SISMEMBER", "botmesh:{bm}:paused", "python"]])[0] == 1


def python_stats(c):
    return c.stats()["types"].get("python", {})


def queue(c, action):
    cmd, r = c.request(QUEUE_CMD, {"botType": "python", "action": action})
    h.check(cmd == h.REPLY, "QUEUE %s python answered REPLY" % action, (cmd, r))
    return r


def test():
    with h.Stack("queue-durable") as s:
        s.redis()
        s.broker()
        c = s.client()

        s.redis_cli("CLIENT", "PAUSE", "800", "WRITE")
        r = queue(c, "pause")
        h.check(r.get("paused") is True, "pause answered paused", r)
        h.check(paused_in_redis(s), "Redis lists python paused when the answer comes", r)
        c = crash(s)
        h.check(python_stats(c).get("paused") is True, "python paused after the crash", python_stats(c))

        gone, drained = c.submit("python", {"n": 1}), [c.submit("python", {"n": n}) for n in (2, 3)]
        s.redis_cli("CLIENT", "PAUSE", "800", "WRITE")
        cmd, r = c.request(REMOVE, {"jobId": gone})
        h.check(cmd == h.REPLY and r.get("removed") is True, "REMOVE answered removed", (cmd, r))
        h.check(h.job_record(s.redis_port, gone) is None, "its record is gone when the answer comes",
                h.job_record(s.redis_port, gone))
        c = crash(s)
        h.check(c.status(gone) is None, "the removed job stays removed after the crash", c.status(gone))

        s.redis_cli("CLIENT", "PAUSE", "800", "WRITE")
        r = queue(c, "drain")
        h.check(r.get("removed") == 2, "drain removed the two queued jobs", r)
        left = [j for j in drained if h.job_record(s.redis_port, j) is not None]
        h.check(not left, "their records are gone when the answer comes", left)
        c = crash(s)
        h.check([c.status(j) for j in drained] == [None, None], "the drained jobs stay removed after the crash",
                [c.status(j) for j in drained])
        h.check(python_stats(c).get("waiting") == 0, "none waits after the crash", python_stats(c))

        s.redis_cli("CLIENT", "PAUSE", "800", "WRITE")
        r = queue(c, "resume")
        h.check(r.get("paused") is False, "resume answered not paused", r)
        h.check(not paused_in_redis(s), "Redis no longer lists python paused when the answer comes", r)
        c = crash(s)
        h.check(python_stats(c).get("paused") is False, "python resumed after the crash", python_stats(c))


if __name__ == "__main__":
    h.main(test)

"""A CANCEL or RETRY answer is durable: the broker answers once Redis has the
job's new record, so a broker crash (SIGKILL) right after the answer cannot
undo it.  Redis is held with CLIENT PAUSE WRITE (a slow Redis, a failover) so
that the write is still pending when the request comes.

- CANCEL of a queued job (its type paused): answered cancelled, Redis says
  cancelled at once; SIGKILL; the next broker has it cancelled and, the type
  resumed, never dispatches it.
- RETRY of that cancelled job: ACCEPTED, Redis says queued at once; SIGKILL;
  the next broker has it queued and dispatches it.

Real redis and broker; a fake node worker.
"""
import harness as h
from fakeworker import FakeWorker

QUEUE_CMD = 0x0B


def record_state(s, jid):
    return (h.job_record(s.redis_port, jid) or {}).get("state")


def crash(s):
    [p for p in s.procs if p.name == "broker"][-1].kill()     # SIGKILL
    s.broker()
    c = s.client()
    h.wait_until(lambda: c.request(h.PING)[1].get("redis"), 10, "the broker to reach Redis")
    return c


def test():
    with h.Stack("answers-durable") as s:
        s.redis()
        s.broker()
        c = s.client()
        cmd, r = c.request(QUEUE_CMD, {"botType": "node", "action": "pause"})
        h.check(cmd == h.REPLY and r.get("paused") is True, "node paused", r)
        jid = c.submit("node", {"n": 1})

        s.redis_cli("CLIENT", "PAUSE", "800", "WRITE")
        cmd, r = c.request(h.CANCEL, {"jobId": jid})
        h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "CANCEL answered cancelled", r)
        h.check(record_state(s, jid) == "cancelled", "Redis has it cancelled when the answer comes",
                record_state(s, jid))
        c = crash(s)
        h.check(c.status(jid)["state"] == "cancelled", "cancelled after the crash", c.status(jid))
        cmd, r = c.request(QUEUE_CMD, {"botType": "node", "action": "resume"})
        h.check(cmd == h.REPLY and r.get("paused") is False, "node resumed", r)
        w = FakeWorker(s.endpoint, "w1", ["node"], 1)
        h.check(w.recv_job(timeout=1.0) is None, "the cancelled job is never dispatched", None)
        w.close()                       # no worker: the retried job stays queued

        s.redis_cli("CLIENT", "PAUSE", "800", "WRITE")
        cmd, r = c.request(h.RETRY, {"jobId": jid})
        h.check(cmd == h.ACCEPTED and r.get("jobId") == jid, "RETRY accepted", (cmd, r))
        h.check(record_state(s, jid) == "queued", "Redis has it queued when the answer comes",
                record_state(s, jid))
        c = crash(s)
        h.check(c.status(jid)["state"] == "queued", "queued again after the crash", c.status(jid))
        w = FakeWorker(s.endpoint, "w1", ["node"], 1)
        job = w.recv_job(timeout=5)
        h.check(job and job["jobId"] == jid, "the retried job is dispatched", job)


if __name__ == "__main__":
    h.main(test)

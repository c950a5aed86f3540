"""PROMOTE is answered once Redis has the job queued, so a broker crash
(SIGKILL) right after the answer cannot leave it delayed (protocol.md,
QUEUE, REMOVE, PROMOTE).

- Redis stopped (SIGSTOP: connected, answering nothing): PROMOTE of a job
  delayed an hour gets no answer; Redis continues: REPLY with the job
  queued, and Redis's record says queued.
- Redis holding writes (CLIENT PAUSE WRITE): PROMOTE of another delayed
  job; at the answer Redis's record says queued; SIGKILL; the next broker
  has it queued, not delayed.

Real redis and broker (python paused, so that the promoted jobs stay queued).
"""
import signal
import harness as h
from test_answers_durable import crash, QUEUE_CMD

PROMOTE = 0x0D
HOUR_MS = 3600 * 1000


def record_state(s, jid):
    rec = h.job_record(s.redis_port, jid)
    return rec and rec.get("state")


def test():
    with h.Stack("promote-durable") as s:
        redis = s.redis()
        s.broker()
        c = s.client()
        cmd, r = c.request(QUEUE_CMD, {"botType": "python", "action": "pause"})
        h.check(cmd == h.REPLY and r.get("paused") is True, "python paused", (cmd, r))
        first, second = (c.submit("python", {"n": n}, delayMs=HOUR_MS) for n in (1, 2))
        h.check(record_state(s, first) == "delayed", "the job is delayed in Redis", record_state(s, first))

        redis.signal(signal.SIGSTOP)
        h.log("redis stopped (SIGSTOP)")
        try:
            req = c.send_request(PROMOTE, {"jobId": first})
            watcher = s.client()
            h.wait_until(lambda: watcher.status(first)["state"] == "queued", 5,
                         "the broker to take the PROMOTE (the job queued in memory)")
            h.check(not c.sock.poll(300), "no answer to PROMOTE before Redis has it")
        finally:
            redis.signal(signal.SIGCONT)
        h.log("redis continued (SIGCONT)")
        cmd, r = c.reply_to(req)
        h.check(cmd == h.REPLY and r.get("job", {}).get("state") == "queued", "PROMOTE answered queued", (cmd, r))
        h.check(record_state(s, first) == "queued", "Redis has it queued", record_state(s, first))

        s.redis_cli("CLIENT", "PAUSE", "800", "WRITE")
        cmd, r = c.request(PROMOTE, {"jobId": second})
        h.check(cmd == h.REPLY and r.get("job", {}).get("state") == "queued", "PROMOTE answered queued", (cmd, r))
        h.check(record_state(s, second) == "queued", "Redis has it queued when the answer comes",
                record_state(s, second))
        c = crash(s)
        st = c.status(second)
        h.check(st and st["state"] == "queued", "the promoted job is queued after the crash, not delayed", st)


if __name__ == "__main__":
    h.main(test)

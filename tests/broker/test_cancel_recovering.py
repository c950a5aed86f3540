"""A CANCEL of a job the restarted broker has not recovered yet is refused
as retryable (store_unavailable), not as final (conflict); retried, it
cancels the job, which never runs.

Real redis (AOF) and broker.  A job delayed by 300 s; 200,000 idempotency
keys planted in Redis's hash (the recovery reads them first, page by page,
before the jobs: about a second).  The broker is killed (SIGKILL) and
started again; while PING says it is recovering, a CANCEL of the job is
sent: the job is not in memory yet, its record (delayed) is read from
Redis.  What must hold: the answer is REJECTED store_unavailable with the
broker's "reading its queues back" message; the same CANCEL sent again once
the recovery ended cancels the job (state cancelled) and a worker gets no
JOB for it.  (Before: REJECTED conflict "the job is being recovered;
retry", which the gateway answers 409 and clients take as final: in the
soak, 8 cancelled jobs ran.)
"""
import time

import harness as h
from fakeworker import FakeWorker

KEYS = 200000


def ping(endpoint):
    c = h.Client(endpoint)
    try:
        cmd, reply = c.request(h.PING, {}, timeout=5)
        return reply
    finally:
        c.close()


def test():
    with h.Stack("cancel-recovering") as s:
        s.redis()
        broker = s.broker()
        c = s.client()
        j = c.submit("python", {"n": 1}, delayMs=300000)
        c.close()
        far = str(int(time.time() * 1000) + 3600 * 1000)
        h.redis_pipeline(s.redis_port, [["HSET", "botmesh:{bm}:idem", "k%d" % i,
                                         "01a24d000000-0000-%08x 0000000000000000 %s" % (i, far)]
                                        for i in range(KEYS)])
        broker.kill()
        broker = s.broker(name="broker-2", wait_recovered=False)
        reply = h.wait_until(lambda: ping(s.endpoint), 10, "the broker to answer PING")
        h.check(reply.get("recovering") is True, "the broker is recovering", reply)
        c = s.client()
        cmd, answer = c.request(h.CANCEL, {"jobId": j})
        h.check(ping(s.endpoint).get("recovering") is True,
                "the CANCEL was answered while the broker recovered (more keys needed if not)")
        h.log("CANCEL while recovering: %r" % (answer,))
        h.check(cmd == h.REJECTED and answer.get("code") == "store_unavailable"
                and "reading its queues back" in answer.get("message", ""),
                "REJECTED store_unavailable, the recovery's message (retryable)", answer)
        h.wait_until(lambda: ping(s.endpoint).get("recovering") is False, 30,
                     "the recovery to end")
        cmd, answer = c.request(h.CANCEL, {"jobId": j})
        h.check(cmd == h.REPLY, "the CANCEL sent again is taken", answer)
        h.check(c.status(j)["state"] == "cancelled", "the job is cancelled")
        w = FakeWorker(s.endpoint, "w1", ["python"], 1)
        h.check(w.recv(timeout=1.0) is None, "no JOB for the cancelled job")
        w.close()
        c.close()


if __name__ == "__main__":
    h.main(test)

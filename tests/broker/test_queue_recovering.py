"""broker.queue_recovering - QUEUE drain, clean and retry wait for the
broker's recovery, as SUBMIT does; pause does not.

A real broker on a real Redis holds 3 queued python jobs (no worker).  It
is restarted while Redis holds every write (CLIENT PAUSE ... WRITE): it
cannot take the Redis lease, so it cannot read its queues back until the
pause ends.  Meanwhile:

    QUEUE drain python      store_unavailable "reading its queues back"
    QUEUE clean python      store_unavailable
    QUEUE retry python      store_unavailable
    QUEUE pause python      answered (it acts on the type, not on its jobs)

and once the pause ends, the 3 jobs are all there: nothing was drained from
a queue read back in part.  Before, the drain was answered (removed 0: the
broker held none of the jobs yet) and would have removed the part read back
so far (failed at "QUEUE drain while the broker reads its queues back").
"""
import harness as h

QUEUE = 0x0B
PAUSE_MS = 2500


def queue(s, body):
    c = s.client()
    try:
        c.send(QUEUE, dict(body, req=1))
        cmd, reply = c.recv(10)
        return cmd, reply
    finally:
        c.close()


def test():
    with h.Stack("queue-recovering") as s:
        s.redis()
        s.broker()
        c = s.client()
        ids = []
        for n in range(3):
            cmd, reply = c.try_submit("python", {"n": n})
            h.check(cmd == h.ACCEPTED, "job %d accepted" % n, reply)
            ids.append(reply["jobId"])
        c.close()
        h.check(s.procs[-1].stop() == 0, "the broker stops cleanly")

        h.check(s.redis_cli("CLIENT", "PAUSE", str(PAUSE_MS), "WRITE") == "OK",
                "Redis holds every write for %d ms" % PAUSE_MS)
        s.broker(name="broker2", wait_recovered=False)
        for body in ({"botType": "python", "action": "drain"},
                     {"botType": "python", "action": "clean", "state": "completed", "olderThanMs": 0},
                     {"botType": "python", "action": "retry"}):
            cmd, reply = queue(s, body)
            h.check(cmd == h.REJECTED and reply.get("code") == "store_unavailable"
                    and "reading its queues back" in reply.get("message", ""),
                    "QUEUE %s while the broker reads its queues back: store_unavailable" % body["action"],
                    cmd, reply)
        cmd, reply = queue(s, {"botType": "python", "action": "pause"})
        h.check(cmd == h.REPLY and reply.get("paused") is True,
                "QUEUE pause while it recovers is answered", cmd, reply)

        s.wait_ping()
        c = s.client()
        for job_id in ids:
            job = c.status(job_id)
            h.check(job is not None and job.get("state") == "queued",
                    "job %s is still queued after the recovery" % job_id, job)
        c.close()


if __name__ == "__main__":
    h.main(test)

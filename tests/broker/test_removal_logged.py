"""Every job removal a client asks for is logged at INFO, one line a job,
naming the job, its type and state, and who asked (the command, the
client's routing id): REMOVE of a queued job, QUEUE drain of two, QUEUE
clean of a completed job (in memory) and of one that only Redis holds
(after a restart).

Real redis and broker; a fake python worker.
"""
import re
import harness as h
from fakeworker import FakeWorker
from test_answers_durable import QUEUE_CMD

REMOVE = 0x0C
ENV = {"LOG_LEVEL": "info"}


def removal_line(broker, jid, what):
    pattern = re.compile(r"INFO  broker job=%s removed \(python, \w+[^)]*\): by %s from client [0-9A-F]+$"
                         % (re.escape(jid), re.escape(what)), re.M)
    h.wait_until(lambda: pattern.search(broker.output()), 5, "the INFO line of %s's removal by %s" % (jid, what))


def queue(c, action, **extra):
    cmd, r = c.request(QUEUE_CMD, dict(extra, botType="python", action=action))
    h.check(cmd == h.REPLY, "QUEUE %s python answered REPLY" % action, (cmd, r))
    return r


def start_and_complete(s, n):
    """A broker, a client and a worker; one python job run to completion."""
    b = s.broker(env=ENV)
    c = s.client()
    w = FakeWorker(s.endpoint, "w", ["python"], 1)
    s.wait_workers(1, "python")
    jid = c.submit("python", {"n": n})
    h.check(w.recv_job()["jobId"] == jid, "the worker runs job %d" % n)
    w.done(jid, result={"ok": n})
    h.check(c.wait(jid)["state"] == "completed", "job %d completed" % n)
    return b, c, jid


def test():
    with h.Stack("removal-logged") as s:
        s.redis()
        b, c, old = start_and_complete(s, 0)
        b.stop()
        b, c, done = start_and_complete(s, 1)

        queue(c, "pause")
        removed, drained = c.submit("python", {"n": 2}), [c.submit("python", {"n": n}) for n in (3, 4)]
        cmd, r = c.request(REMOVE, {"jobId": removed})
        h.check(cmd == h.REPLY and r.get("removed") is True, "REMOVE answered removed", (cmd, r))
        removal_line(b, removed, "REMOVE")
        h.check(queue(c, "drain").get("removed") == 2, "drain removed two jobs")
        for jid in drained:
            removal_line(b, jid, "QUEUE drain")
        h.check(queue(c, "clean", state="completed").get("removed") == 2,
                "clean removed both completed jobs (one in memory, one only in Redis)")
        removal_line(b, done, "QUEUE clean completed")
        removal_line(b, old, "QUEUE clean completed")


if __name__ == "__main__":
    h.main(test)

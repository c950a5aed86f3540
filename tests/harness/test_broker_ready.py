"""harness.broker_ready - Stack.broker() returns once the broker serves, not
at its first answer to PING.

A real redis-server holds every write (CLIENT PAUSE ... WRITE) while a real
broker starts: the broker reaches Redis but cannot take the Redis lease, so
it cannot read its queues back until the pause ends.  Meanwhile it answers
PING (recovering: true) and refuses SUBMIT store_unavailable.

    broker()                        returns after the pause: the first SUBMIT
                                    is accepted, PING says redis, not recovering
    broker(wait_recovered=False)    returns during the pause: PING says
                                    recovering; wait_ping with a short bound
                                    fails naming what it waited for and the
                                    last answer; wait_ping() then returns
"""
import time

import harness as h

PAUSE_MS = 2500


def ping(s):
    c = s.client()
    try:
        cmd, reply = c.request(h.PING)
        return reply
    finally:
        c.close()


def pause_writes(s):
    h.check(s.redis_cli("CLIENT", "PAUSE", str(PAUSE_MS), "WRITE") == "OK",
            "Redis holds every write for %d ms (CLIENT PAUSE WRITE)" % PAUSE_MS)
    return time.monotonic()


def test():
    with h.Stack("broker-ready") as s:
        s.redis()

        paused = pause_writes(s)
        b = s.broker()
        waited = time.monotonic() - paused
        c = s.client()
        cmd, reply = c.try_submit("python", {"n": 1})
        h.check(cmd == h.ACCEPTED, "the first SUBMIT after broker() is accepted", reply, "%.2f s" % waited)
        c.close()
        h.check(waited > PAUSE_MS / 1000.0 * 0.8, "broker() waited out the pause (%.2f s)" % waited)
        reply = ping(s)
        h.check(reply.get("redis") is True and reply.get("recovering") is False,
                "PING says redis, not recovering", reply)
        h.check(b.stop() == 0, "the broker stops cleanly")

        pause_writes(s)
        s.broker(name="broker2", wait_recovered=False)
        reply = ping(s)
        h.check(reply.get("recovering") is True and reply.get("redis") is False,
                "with wait_recovered=False broker() returns while it recovers", reply)
        try:
            s.wait_ping(timeout=0.5)
            failure = None
        except h.TestFailure as e:
            failure = str(e)
        h.check(failure is not None and "redis true, recovering false" in failure
                and "'recovering': True" in failure and s.endpoint in failure,
                "wait_ping's failure names what it waited for and the last answer", failure)
        s.wait_ping()
        c = s.client()
        cmd, reply = c.try_submit("python", {"n": 2})
        h.check(cmd == h.ACCEPTED, "after wait_ping() a SUBMIT is accepted", reply)
        c.close()


if __name__ == "__main__":
    h.main(test)

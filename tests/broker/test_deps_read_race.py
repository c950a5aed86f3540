"""A dependency the broker held when a SUBMIT's other dependencies were
read from Redis, pushed out of memory before the read came back, is read
in turn: the SUBMIT is not refused as naming no job.

A real redis-server, broker (KEEP_FINISHED_JOBS 1) and botmesh-worker whose
bot ("dep", depbot.py) sleeps when asked:

Y completes, then X (Y is only in Redis now, X the one finished job in
memory); Z runs for 0.8 s. Redis is paused (CLIENT PAUSE ALL, 2 s) and D
is submitted with dependsOn [X, Y]: X is held, Y is read (the read waits
for the pause). Z ends meanwhile and pushes X out of memory. When the read
comes back D must be ACCEPTED (both completed; before: REJECTED
bad_request "dependsOn[0] ... names no job"), and it completes.
"""
import os
import harness as h

HERE = os.path.dirname(os.path.abspath(__file__))


def test():
    with h.Stack("deps-read-race") as s:
        s.redis()
        s.broker(env={"KEEP_FINISHED_JOBS": "1"})
        s.worker("--type", "dep", "--concurrency", "2", "--name", "w1",
                 env={"BOT_DEP_CMD": "/usr/bin/python3 " + os.path.join(HERE, "depbot.py")})
        s.wait_workers(1)
        c = s.client()

        y = c.submit("dep", {"n": "y"})
        h.check(c.wait(y)["state"] == "completed", "Y completed")
        x = c.submit("dep", {"n": "x"})
        h.check(c.wait(x)["state"] == "completed", "X completed")
        h.wait_until(lambda: c.listed(state="completed") == [x], 10,
                     "X to be the one finished job in memory")
        z = c.submit("dep", {"n": "z", "sleepMs": 800})
        h.wait_until(lambda: c.status(z)["state"] == "running", 10, "Z to run")
        s.redis_cli("CLIENT", "PAUSE", "2000", "ALL")
        cmd, r = c.try_submit("dep", {"n": "d"}, dependsOn=[x, y])
        h.check(cmd == h.ACCEPTED, "D accepted though X left memory while Y was read", cmd, r)
        rec = c.wait(r["jobId"])
        h.check(rec["state"] == "completed", "D completed", rec)
        h.check(c.status(z)["state"] == "completed", "Z completed", c.status(z))


if __name__ == "__main__":
    h.main(test)

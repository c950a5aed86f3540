"""The results kept for jobs waiting with dependencyResults: one copy of a
dependency's result however many wait for it, and a job whose kept
results pass the JOB frame fails then, not when its last dependency ends.

1. A real broker without Redis and a botmesh-worker (depbot.py, type
   "dep"): X returns a 256 KiB result after 5 s; 1000 jobs (SUBMIT_MANY)
   wait for [X, Y] with dependencyResults, Y delayed an hour. Once X has
   completed (each of the 1000 now waits for Y only) the broker's RSS
   must have grown by less than half of 1000 copies (125 MiB; with the
   one copy, under 1 MiB here, 64 MiB with ASan's quarantine; before:
   each kept its own copy of X's result, 250 MiB more). 1000 more jobs
   submitted so, now that X has completed, must grow it no more (before:
   each admission copied X's result, 250 MiB). CANCEL of Y fails them.
2. A real redis-server, broker (MAX_FRAME_BYTES 65536, so a JOB frame
   holds 57,344 bytes of payload and results) and the same worker: W
   waits for [A1, A2, B] with dependencyResults, A1 and A2 returning
   about 30,000 bytes each, B delayed an hour. Once A1 and A2 completed, W
   fails dependency_results_too_large at once (before: it waited for B,
   here an hour, to fail only then).
"""
import os
import harness as h

HERE = os.path.dirname(os.path.abspath(__file__))
BOT = "/usr/bin/python3 " + os.path.join(HERE, "depbot.py")
SUBMIT_MANY, ACCEPTED_MANY = 0x0A, 0x85
DEPENDENTS = 1000


def rss_kib(proc):
    with open("/proc/%d/status" % proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise h.TestFailure("no VmRSS for pid %d" % proc.pid)


def submit_dependents(c, x, y):
    """DEPENDENTS jobs waiting for [x, y] with dependencyResults; the last's id."""
    items = [{"botType": "dep", "payload": i, "dependsOn": [x, y], "dependencyResults": True}
             for i in range(DEPENDENTS)]
    cmd, reply = c.request(SUBMIT_MANY, {"jobs": items}, timeout=30)
    h.check(cmd == ACCEPTED_MANY and all(j.get("state") == "waiting-children"
                                          for j in reply["jobs"]),
            "%d dependents waiting" % DEPENDENTS, cmd, str(reply)[:300])
    return reply["jobs"][-1]["jobId"]


def check_grown(before, broker, what):
    grown = rss_kib(broker) - before
    h.log("broker RSS %d KiB before, grown by %d KiB %s" % (before, grown, what))
    h.check(grown < DEPENDENTS * 256 // 2, "the broker's RSS grew by less than half of "
            "what %d copies of X's 256 KiB result take, %s" % (DEPENDENTS, what), grown)


def shared():
    with h.Stack("deps-results-shared") as s:
        broker = s.broker(redis=False)
        s.worker("--type", "dep", "--name", "w1", env={"BOT_DEP_CMD": BOT})
        s.wait_workers(1)
        c = s.client()
        x = c.submit("dep", {"pad": "x" * 262144, "sleepMs": 5000})
        y = c.submit("dep", {"n": "y"}, delayMs=3600_000)
        last = submit_dependents(c, x, y)
        h.check(c.status(x)["state"] == "running", "X still runs once they are all submitted",
                c.status(x))
        before = rss_kib(broker)
        rec = c.wait(x)
        h.check(rec["state"] == "completed", "X completed", rec.get("error"))
        h.wait_until(lambda: c.status(last)["pendingDependencies"] == [y], 10,
                     "the last dependent to keep X's result and wait for Y only")
        check_grown(before, broker, "once X completed")
        # as many again, admitted once X has completed
        before = rss_kib(broker)
        last = submit_dependents(c, x, y)
        h.check(c.status(last)["pendingDependencies"] == [y], "the last waits for Y only")
        check_grown(before, broker, "by as many admitted after X completed")
        cmd, r = c.request(h.CANCEL, {"jobId": y})
        h.check(cmd == h.REPLY, "Y cancelled", cmd, r)
        h.wait_until(lambda: c.stats()["types"]["dep"]["waitingChildren"] == 0, 10,
                     "the dependents to fail by Y")


def early():
    with h.Stack("deps-results-early") as s:
        s.redis()
        s.broker(env={"MAX_FRAME_BYTES": "65536", "MAX_PAYLOAD_BYTES": "40000"})
        s.worker("--type", "dep", "--concurrency", "2", "--name", "w1",
                 env={"BOT_DEP_CMD": BOT, "MAX_FRAME_BYTES": "65536"})
        s.wait_workers(1)
        c = s.client()
        a1 = c.submit("dep", {"pad": "a" * 30000, "sleepMs": 500})
        a2 = c.submit("dep", {"pad": "b" * 30000, "sleepMs": 500})
        b = c.submit("dep", {"n": "b"}, delayMs=3600_000)
        w = c.submit("dep", {"n": "w"}, dependsOn=[a1, a2, b], dependencyResults=True)
        h.check(c.wait(a1)["state"] == "completed" and c.wait(a2)["state"] == "completed",
                "A1 and A2 completed")
        rec = h.wait_until(lambda: (lambda j: j if j["state"] != "waiting-children" else None)(
            c.status(w)), 5, "W to fail once A1's and A2's results pass the frame")
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_results_too_large",
                "W failed dependency_results_too_large while B is still delayed", rec)
        h.check(c.status(b)["state"] == "delayed", "B is still delayed", c.status(b))


def test():
    early()
    shared()


if __name__ == "__main__":
    h.main(test)

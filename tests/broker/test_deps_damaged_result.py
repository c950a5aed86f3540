"""A damaged dependency result in a waiting job's record is read back as
no result, with a WARN naming the job: STATUS and the bot's JOB stay
well-formed msgpack.

A real redis-server, broker and botmesh-worker (depbot.py, type "dep"):
A completes; W waits for [A, B] with dependencyResults, B running 3 s.
The broker is killed; W's record in Redis gets A's kept result replaced
by bytes that are no msgpack object (its field "dr:0"); the broker
starts again. STATUS of W answers a well-formed record (before: the raw
bytes were spliced into the REPLY frame, which the client could not
read); the broker's log WARNs naming W. B completes (its DONE kept by the
worker if it ended while the broker was down), and W's bot gets A's
result as null and B's as B returned (before: its JOB frame was malformed
too).
"""
import os
import subprocess
import msgpack
import harness as h

HERE = os.path.dirname(os.path.abspath(__file__))
BOT = "/usr/bin/python3 " + os.path.join(HERE, "depbot.py")


def redis_bytes(s, *args, stdin=None):
    out = subprocess.run(["redis-cli", "-p", str(s.redis_port)] + list(args), input=stdin,
                         capture_output=True, timeout=10)
    return out.stdout


def test():
    with h.Stack("deps-damaged-result") as s:
        s.redis()
        broker = s.broker()
        s.worker("--type", "dep", "--concurrency", "2", "--name", "w1",
                 env={"BOT_DEP_CMD": BOT})
        s.wait_workers(1)
        c = s.client()
        a = c.submit("dep", {"n": "a"})
        h.check(c.wait(a)["state"] == "completed", "A completed")
        b = c.submit("dep", {"n": "b", "sleepMs": 3000})
        w = c.submit("dep", {"n": "w"}, dependsOn=[a, b], dependencyResults=True)
        h.check(c.status(w)["state"] == "waiting-children", "W waits for B")
        c.close()
        broker.kill()

        key = "botmesh:{bm}:job:" + w
        kept = redis_bytes(s, "HGET", key, "dr:0")[:-1]     # redis-cli ends it with a newline
        h.check(msgpack.unpackb(kept, raw=False) == {"got": {"n": "a"}},
                "W's record keeps A's result in its field", kept)
        redis_bytes(s, "-x", "HSET", key, "dr:0", stdin=b"\xc1\x92")   # 0xc1: never used in msgpack

        broker = s.broker()
        c = s.client()
        rec = c.status(w)
        h.check(rec and rec["jobId"] == w and rec["dependsOn"] == [a, b],
                "STATUS of W is well-formed", rec)
        rec = c.wait(w)
        h.check(rec["state"] == "completed", "W ran", rec)
        deps = rec["result"]["got"]["dependencies"]
        h.check(deps[a] is None and deps[b] == {"got": {"n": "b", "sleepMs": 3000}},
                "W's bot got A's damaged result as null, B's as it was", deps)
        h.check("WARN" in broker.output() and w in broker.output()
                     and "damaged" in broker.output(),
                "the broker to WARN of W's damaged dependency result")


if __name__ == "__main__":
    h.main(test)

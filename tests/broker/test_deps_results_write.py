"""How a waiting job's dependency results reach its Redis record
(docs/redis.md, `dr:<index>`): in the one HSET of the record, and again
after a write of the broker's was lost.

1. One atomic write.  A real redis-server, broker and botmesh-worker
   (fanbot.py, type "fan"); 100 dependencies (dependsOn's largest size)
   complete, each with a result.  Redis publishes keyspace events for
   hashes (notify-keyspace-events Kh) and the test listens to them for
   every job key.  G, of a type no worker serves (so nothing writes its
   record after its SUBMIT), is submitted on the 100 with
   dependencyResults.  Its record must be written by exactly one HSET,
   which holds its state and the 100 results: a command applies whole or
   not at all, so no crash or lost connection can leave a hash of results
   with no state, no TTL and in no set, which nothing would ever delete
   (before: the results that did not fit one command went in 3 HSETs of
   their own ahead of the record's, 4 HSETs in all, a plain pipeline).
   A kill -9 at a random point between two such HSETs is not tested: it
   cannot be timed; one HSET removes the window altogether.
2. A lost write is made again.  J waits for [A, B] (both delayed by an
   hour) with dependencyResults.  Redis refuses HSET for good (ACL
   SETUSER default -hset: NOPERM, which the broker does not send again)
   while A is promoted and completes: the HSET that carries J's `dr:0`
   is refused.  T, a SUBMIT made after J's record shows A ended, is
   answered only once its SADD, sent after J's HSET on the same
   connection, is answered: so J's HSET was refused by then.  HSET is
   allowed again and B is promoted: J's record, the one a restart or a
   failover reads, must hold A's result in `dr:0` (before: only `dr:1`;
   its bot would get null for A after a restart).
"""
import os
import socket
import harness as h

HERE = os.path.dirname(os.path.abspath(__file__))
BOT = "/usr/bin/python3 " + os.path.join(HERE, "fanbot.py")
SUBMIT_MANY, ACCEPTED_MANY, PROMOTE = 0x0A, 0x85, 0x0D
HOUR_MS = 3600 * 1000
DEPS = 100
WENV = {"BOT_FAN_CMD": BOT, "HEARTBEAT_INTERVAL_MS": "200"}


def key(jid):
    return "botmesh:{bm}:job:" + jid


def raw_hash(s, jid):
    pairs = h.redis_pipeline(s.redis_port, [["HGETALL", key(jid)]])[0]
    return dict(zip(pairs[0::2], pairs[1::2]))


def result_fields(rec):
    return {k: v for k, v in rec.items() if k.startswith(b"dr:")}


class KeyEvents:
    """A Redis connection subscribed to the keyspace events of job keys."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.f = self.sock.makefile("rb")
        self.sock.sendall(h._resp_encode(["PSUBSCRIBE", "__keyspace@0__:botmesh:{bm}:job:*"]))
        reply = h._resp_read(self.f)
        h.check(reply and reply[0] == b"psubscribe", "PSUBSCRIBE to the job keys' events", reply)

    def drain(self):
        """[(key, event)] published so far: those before a PING's answer,
        which Redis sends after every message published before it."""
        self.sock.sendall(h._resp_encode(["PING"]))
        events = []
        while True:
            msg = h._resp_read(self.f)
            if msg[0] == b"pong":
                return events
            if msg[0] == b"pmessage":
                events.append((msg[2].decode().split(":", 1)[1], msg[3].decode()))

    def close(self):
        self.f.close()
        self.sock.close()


def one_write():
    with h.Stack("deps-results-atomic") as s:
        s.redis()
        s.broker()
        s.worker("--type", "fan", "--concurrency", "4", "--name", "w1", env=WENV)
        s.wait_workers(1)
        c = s.client()
        items = [{"botType": "fan", "payload": {"i": i, "padBytes": 16}} for i in range(DEPS)]
        cmd, reply = c.request(SUBMIT_MANY, {"jobs": items}, timeout=30)
        h.check(cmd == ACCEPTED_MANY and all(j.get("jobId") for j in reply["jobs"]),
                "%d dependencies accepted" % DEPS, cmd, str(reply)[:300])
        ids = [j["jobId"] for j in reply["jobs"]]
        for jid in ids:
            h.check(c.wait(jid, timeout=60)["state"] == "completed", "dependency %s completed" % jid)

        h.check(s.redis_cli("CONFIG", "SET", "notify-keyspace-events", "Kh") == "OK",
                "Redis publishes hash keyspace events")
        events = KeyEvents(s.redis_port)
        g = c.submit("java", {"n": "g"}, dependsOn=ids, dependencyResults=True)
        h.wait_until(lambda: b"state" in raw_hash(s, g), 10, "G's record to be written")
        writes = [e for k, e in events.drain() if k == key(g)]
        events.close()
        rec = raw_hash(s, g)
        h.log("G's record: %d keyspace events %s, fields %d (%d results)"
              % (len(writes), writes, len(rec), len(result_fields(rec))))
        h.check(writes == ["hset"], "G's record (its state and %d results) is written by one HSET"
                % DEPS, writes)
        h.check(rec.get(b"state") == b"queued"
                and sorted(result_fields(rec)) == sorted(b"dr:%d" % i for i in range(DEPS)),
                "that HSET holds G's state and its %d results" % DEPS,
                rec.get(b"state"), len(result_fields(rec)))


def lost_write():
    with h.Stack("deps-results-lost") as s:
        s.redis()
        s.broker()
        s.worker("--type", "fan", "--name", "w1", env=WENV)
        s.wait_workers(1)
        c = s.client()
        a = c.submit("fan", {"i": 7, "padBytes": 10}, delayMs=HOUR_MS)
        b = c.submit("fan", {"i": 8, "padBytes": 20}, delayMs=HOUR_MS)
        j = c.submit("fan", {"n": "j"}, dependsOn=[a, b], dependencyResults=True)

        h.check(s.redis_cli("ACL", "SETUSER", "default", "-hset") == "OK", "Redis refuses HSET")
        cmd, r = c.request(PROMOTE, {"jobId": a})
        h.check(cmd == h.REPLY, "PROMOTE of A answered", cmd, r)
        h.check(c.wait(a)["state"] == "completed", "A completed")
        h.wait_until(lambda: c.status(j).get("pendingDependencies") == [b], 10,
                     "J to hold A's end")
        c.submit("java", {"n": "t"})
        errors = s.redis_cli("INFO", "errorstats")
        h.log("Redis errors while HSET was refused: %s" % errors.replace("\n", " "))
        h.check("NOPERM" in errors, "Redis refused the broker's HSETs", errors)
        h.check(b"dr:0" not in raw_hash(s, j), "the HSET with J's dr:0 was refused")
        h.check(s.redis_cli("ACL", "SETUSER", "default", "+hset") == "OK", "Redis takes HSET again")

        cmd, r = c.request(PROMOTE, {"jobId": b})
        h.check(cmd == h.REPLY, "PROMOTE of B answered", cmd, r)
        rec = c.wait(j, timeout=30)
        h.check(rec["state"] == "completed" and rec["result"]["deps"] == {a: [7, 10], b: [8, 20]},
                "J's bot got both results", rec)
        h.wait_until(lambda: raw_hash(s, j).get(b"state") == b"completed", 10,
                     "J's record to say completed")
        kept = result_fields(raw_hash(s, j))
        h.check(sorted(kept) == [b"dr:0", b"dr:1"] and h.unpack(kept[b"dr:0"]) == {"i": 7, "pad": "x" * 10},
                "J's record holds A's result again, written with its next HSET", sorted(kept))


def test():
    one_write()
    lost_write()


if __name__ == "__main__":
    h.main(test)

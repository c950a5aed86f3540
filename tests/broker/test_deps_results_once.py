"""A job waiting with dependencyResults has each dependency's result written
to Redis once, as a field of its own (docs/redis.md, `dr:<index>`), not its
whole set of kept results again at each dependency's end; and a record of
the earlier layout (the results in the "x" map, key "dr") still recovers.

1. A real redis-server, broker and botmesh-worker (fanbot.py, type "fan";
   MAX_FRAME_BYTES 32 MiB on both, so the fan-in's JOB holds its 100
   results).  100 dependencies, each returning a result of 64 KiB, are
   submitted delayed by an hour; F waits for all of them with
   dependencyResults.  50 are promoted and complete: the bytes Redis reads
   meanwhile (INFO stats total_net_input_bytes) must stay under 2.5 x the
   50 results (each written once by its own job, once by F; before: F's
   record was rewritten whole at each end, 1 + 2 + ... + 50 results,
   ~26 x).  F's "x" holds no result (under 4 KiB), its 50 `dr:<index>`
   fields hold them.  The broker is killed (SIGKILL) and started again:
   F is recovered waiting for the other 50, which are promoted, and the
   bytes stay under 2.5 x those 50 results again (before: ~77 x).  The bot
   gets all 100 results, each whole.  G, submitted on the 100 completed
   dependencies, has its 100 results written with its SUBMIT (more than
   one command holds: HSETs of their own ahead of the record's) and its
   bot gets them all.
2. Failover (two brokers, BROKER_HA=redis, so each write group runs as
   one fenced script): F waits for [P, Q, R] with dependencyResults, R
   delayed; P and Q complete under the first leader, which is killed; the
   new leader holds F with both results (read from their fields),
   R is promoted, F's bot gets all three.
3. The earlier layout: A completes; C waits for [A, B] (B delayed) with
   dependencyResults.  The broker stops; C's record is rewritten as an
   earlier broker wrote it (A's result in "x" under "dr", no `dr:0`
   field).  A broker started on it recovers C with A's result; B is
   promoted; C's bot gets both results, and C's record now has them in
   `dr:0` and `dr:1`, its "x" without "dr".
"""
import os
import harness as h
import hatest

HERE = os.path.dirname(os.path.abspath(__file__))
BOT = "/usr/bin/python3 " + os.path.join(HERE, "fanbot.py")
SUBMIT_MANY, ACCEPTED_MANY, PROMOTE = 0x0A, 0x85, 0x0D
HOUR_MS = 3600 * 1000
DEPS = 100                      # dependsOn's largest size
PAD = 65536
FRAME = str(32 * 1024 * 1024)
WENV = {"BOT_FAN_CMD": BOT, "MAX_FRAME_BYTES": FRAME, "HEARTBEAT_INTERVAL_MS": "200"}
BENV = {"MAX_FRAME_BYTES": FRAME, "MAX_PAYLOAD_BYTES": FRAME, "HEARTBEAT_INTERVAL_MS": "200",
        "HEARTBEAT_LIVENESS": "5"}
# One result's msgpack bytes, as the broker keeps it: {"i": i, "pad": PAD x "x"}
RESULT = len(h.pack({"i": 99, "pad": "x" * PAD}))


def key(jid):
    return "botmesh:{bm}:job:" + jid


def net_input(s):
    for line in s.redis_cli("INFO", "stats").splitlines():
        if line.startswith("total_net_input_bytes:"):
            return int(line.split(":")[1])
    raise h.TestFailure("no total_net_input_bytes in INFO stats")


def raw_hash(s, jid):
    pairs = h.redis_pipeline(s.redis_port, [["HGETALL", key(jid)]])[0]
    return dict(zip(pairs[0::2], pairs[1::2]))


def result_fields(rec):
    return {k: v for k, v in rec.items() if k.startswith(b"dr:")}


def promote(c, ids):
    """PROMOTE each of ids: answered queued, or already dispatched."""
    answers = [c.request(PROMOTE, {"jobId": jid}) for jid in ids]
    wrong = [(cmd, r) for cmd, r in answers
             if cmd != h.REPLY or r.get("job", {}).get("state") not in ("queued", "running")]
    h.check(not wrong, "PROMOTE of %d dependencies answered queued (or running)" % len(ids), wrong[:3])


def pending_in_redis(s, jid):
    rec = raw_hash(s, jid)
    return len(h.unpack(rec[b"x"]).get("dq", [])) if b"x" in rec else None


def check_bytes(s, before, ended, what):
    written = net_input(s) - before
    bound = 2.5 * ended * RESULT
    h.log("%s: redis read %d bytes for %d results of %d bytes (%.2f x their size; bound 2.5 x)"
          % (what, written, ended, RESULT, written / (ended * RESULT)))
    h.check(written < bound, "%s: Redis was written each new result about twice (its job's, "
            "the fan-in's field), not the fan-in's kept results again" % what, written, bound)


def fan_in():
    with h.Stack("deps-results-once") as s:
        s.redis()
        broker = s.broker(env=BENV)
        s.worker("--type", "fan", "--concurrency", "4", "--name", "w1", env=WENV)
        s.wait_workers(1)
        c = s.client()
        items = [{"botType": "fan", "payload": {"i": i, "padBytes": PAD}, "delayMs": HOUR_MS}
                 for i in range(DEPS)]
        cmd, reply = c.request(SUBMIT_MANY, {"jobs": items}, timeout=30)
        h.check(cmd == ACCEPTED_MANY and all(j.get("jobId") for j in reply["jobs"]),
                "%d delayed dependencies accepted" % DEPS, cmd, str(reply)[:300])
        ids = [j["jobId"] for j in reply["jobs"]]
        f = c.submit("fan", {"n": "f"}, dependsOn=ids, dependencyResults=True)
        h.check(c.status(f)["state"] == "waiting-children", "F waits for its dependencies")

        half = DEPS // 2
        before = net_input(s)
        promote(c, ids[:half])
        h.wait_until(lambda: pending_in_redis(s, f) == DEPS - half, 60,
                     "F's record to say %d dependencies are pending" % (DEPS - half))
        check_bytes(s, before, half, "the first %d ends" % half)
        rec = raw_hash(s, f)
        kept = result_fields(rec)
        x = h.unpack(rec[b"x"])
        h.log("F's record: x %d bytes, %d result fields of %d bytes in all"
              % (len(rec[b"x"]), len(kept), sum(map(len, kept.values()))))
        h.check("dr" not in x and len(rec[b"x"]) < 4096, "F's x holds no result", len(rec[b"x"]))
        h.check(sorted(kept) == sorted(b"dr:%d" % i for i in range(half))
                and all(len(v) == RESULT for v in kept.values()),
                "F's record holds each result kept in its own field, whole", sorted(kept)[:5])

        c.close()
        broker.kill()
        h.log("broker killed with F waiting for %d dependencies" % (DEPS - half))
        broker = s.broker(env=BENV)
        c = s.client()
        rec = c.status(f)
        h.check(rec["state"] == "waiting-children" and rec["pendingDependencies"] == ids[half:],
                "F is recovered waiting for the other %d" % (DEPS - half), rec.get("pendingDependencies"))

        before = net_input(s)
        promote(c, ids[half:])
        rec = c.wait(f, timeout=90)
        h.wait_until(lambda: raw_hash(s, f).get(b"state") == b"completed", 10,
                     "F's record to say completed")
        check_bytes(s, before, DEPS - half, "the other %d ends, after the restart" % (DEPS - half))
        h.check(rec["state"] == "completed", "F completed", rec.get("error"))
        got = rec["result"]["deps"]
        h.check(got == {jid: [i, PAD] for i, jid in enumerate(ids)},
                "F's bot got every dependency's result, whole, across the restart",
                {k: v for k, v in got.items() if v != [ids.index(k), PAD]})
        h.check(len(result_fields(raw_hash(s, f))) == DEPS, "F's record holds the %d results" % DEPS)

        g = c.submit("fan", {"n": "g"}, dependsOn=ids, dependencyResults=True)
        kept = result_fields(raw_hash(s, g))
        h.check(len(kept) == DEPS and all(len(v) == RESULT for v in kept.values()),
                "G's SUBMIT wrote its %d results" % DEPS, len(kept))
        rec = c.wait(g, timeout=60)
        h.check(rec["state"] == "completed" and rec["result"]["deps"] == got,
                "G's bot got the %d results it was admitted with" % DEPS, rec.get("error"))


def failover():
    with h.Stack("deps-results-ha") as s:
        s.redis()
        pair = hatest.HaPair(s, env=BENV)
        first, c = pair.worker("fan", WENV)
        deps = [c.submit("fan", {"i": i, "padBytes": 1000 * (i + 1)}, delayMs=HOUR_MS) for i in range(3)]
        f = c.submit("fan", {"n": "f"}, dependsOn=deps, dependencyResults=True)
        promote(c, deps[:2])
        h.wait_until(lambda: pending_in_redis(s, f) == 1, 15, "F's record to say R alone is pending")
        h.check(sorted(result_fields(raw_hash(s, f))) == [b"dr:0", b"dr:1"],
                "F's record holds P's and Q's results in their fields")
        c.close()
        c = pair.fail_over(first)
        rec = hatest.wait_status(c, f, "pendingDependencies", "the new leader to answer STATUS of F")
        h.check(rec["pendingDependencies"] == [deps[2]], "the new leader holds F waiting for R", rec)
        promote(c, deps[2:])
        rec = c.wait(f, timeout=30)
        h.check(rec["state"] == "completed"
                and rec["result"]["deps"] == {jid: [i, 1000 * (i + 1)] for i, jid in enumerate(deps)},
                "F's bot got the three results across the failover", rec)
        h.check(len(result_fields(raw_hash(s, f))) == 3, "F's record holds the three results")


def earlier_layout():
    with h.Stack("deps-results-layout") as s:
        s.redis()
        broker = s.broker(env=BENV)
        s.worker("--type", "fan", "--name", "w1", env=WENV)
        s.wait_workers(1)
        c = s.client()
        a = c.submit("fan", {"i": 1, "padBytes": 10})
        ra = c.wait(a)
        h.check(ra["state"] == "completed", "A completed", ra.get("error"))
        b = c.submit("fan", {"i": 2, "padBytes": 20}, delayMs=HOUR_MS)
        cj = c.submit("fan", {"n": "c"}, dependsOn=[a, b], dependencyResults=True)
        h.wait_until(lambda: b"dr:0" in raw_hash(s, cj), 10, "C's record to hold A's result")
        c.close()
        h.check(broker.stop() == 0, "the broker stops on SIGTERM")

        # C's record as an earlier broker wrote it: the results in "x".
        rec = raw_hash(s, cj)
        x = h.unpack(rec[b"x"])
        x["dr"] = {0: rec[b"dr:0"]}
        h.redis_pipeline(s.redis_port, [["HSET", key(cj), "x", h.pack(x)], ["HDEL", key(cj), "dr:0"]])
        rec = raw_hash(s, cj)
        h.check(b"dr:0" not in rec and "dr" in h.unpack(rec[b"x"]), "C's record is of the earlier layout")

        s.broker(env=BENV)
        c = s.client()
        st = c.status(cj)
        h.check(st["state"] == "waiting-children" and st["pendingDependencies"] == [b]
                and st.get("dependencyValues") == {a: ra["result"]},
                "C is recovered from the earlier layout with A's result", st)
        promote(c, [b])
        st = c.wait(cj)
        h.check(st["state"] == "completed" and st["result"]["deps"] == {a: [1, 10], b: [2, 20]},
                "C's bot got A's result (read from the earlier layout) and B's", st)
        h.wait_until(lambda: raw_hash(s, cj).get(b"state") == b"completed", 10,
                     "C's record to say completed")
        rec = raw_hash(s, cj)
        h.check("dr" not in h.unpack(rec[b"x"]) and sorted(result_fields(rec)) == [b"dr:0", b"dr:1"],
                "C's record now holds the results in their fields, its x none", sorted(rec))
        h.check(h.unpack(rec[b"dr:0"]) == ra["result"], "dr:0 is A's result")


def test():
    fan_in()
    failover()
    earlier_layout()


if __name__ == "__main__":
    h.main(test)

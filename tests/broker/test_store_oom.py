"""A Redis that refuses writes (maxmemory reached, noeviction): no job is
acknowledged without its record, and none refused is left behind.  A
write refused for good (WRONGTYPE) fails alone, logged.

A real redis-server with AOF, its maxmemory set a little above what it
uses, and a real broker with no worker (the jobs stay queued, so every
record stays).  SUBMIT_MANY batches and single SUBMITs go until Redis
is full: every ACCEPTED job has its record and is in the unfinished set;
every refusal is store_unavailable naming Redis's OOM error; no record
of a refused job remains; the broker logs one ERROR for the episode,
counts the refused writes (broker_redis_write_errors_total) and says so
in STATS (redisError) and GET /ready.  Once Redis has room again
(CONFIG SET maxmemory 0), SUBMITs are accepted; after a broker restart
every accepted job is recovered.
"""
import harness as h

SUBMIT_MANY, ACCEPTED_MANY = 0x0A, 0x85
JOB = "botmesh:{bm}:job:"
UNFINISHED = "botmesh:{bm}:unfinished"
OOM = "OOM command not allowed when used memory > 'maxmemory'"


def job_keys(port):
    out = []
    cursor = "0"
    while True:
        cursor, keys = h.redis_pipeline(port, [["SCAN", cursor, "MATCH", JOB + "*", "COUNT", "1000"]])[0]
        cursor = cursor.decode()
        out += [k.decode()[len(JOB):] for k in keys]
        if cursor == "0":
            return set(out)


def test():
    with h.Stack("store-oom") as s:
        s.redis(args=["--maxmemory-policy", "noeviction"])
        used = int(s.redis_cli("INFO", "memory").split("used_memory:")[1].split()[0])
        # Room for a few thousand records at most.
        h.check(s.redis_cli("CONFIG", "SET", "maxmemory", str(used + 1536 * 1024)) == "OK",
                "CONFIG SET maxmemory")
        # A key of the wrong type (the metric snapshots' list as a string):
        # its write alone fails, logged, and SUBMITs go on being accepted.
        s.redis_cli("SET", "botmesh:{bm}:snapshots", "not a list")
        broker = s.broker(env={"BROKER_METRICS_PORT": "-1", "METRICS_SNAPSHOT_INTERVAL": "1"})
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "broker connected to redis")
        h.wait_until(lambda: "refused a write (WRONGTYPE" in broker.output(), 5,
                     "the broker to log the snapshot's write refused WRONGTYPE")
        h.check("LPUSH botmesh:{bm}:snapshots not applied" in broker.output(),
                "the log line names the write")
        first = c.submit("python", {"n": 0})
        h.check(s.redis_cli("EXISTS", JOB + first) == "1", "a SUBMIT after it is accepted and stored")

        accepted, refusals = [first], []
        payload = {"blob": "x" * 200}
        batches = 0
        # Until Redis has refused for a while: a few batches after the first
        # refusal (each refused group frees what it wrote, so Redis may take
        # some more after it).
        while batches < 200 and len(refusals) < 1500:
            batches += 1
            cmd, r = c.request(SUBMIT_MANY, {"jobs": [{"botType": "python", "payload": payload}] * 250},
                               timeout=30)
            h.check(cmd == ACCEPTED_MANY, "SUBMIT_MANY answered ACCEPTED_MANY", cmd, r)
            for item in r["jobs"]:
                if "jobId" in item:
                    accepted.append(item["jobId"])
                else:
                    refusals.append(item)
            cmd, r = c.try_submit("python", payload)
            if cmd == h.ACCEPTED:
                accepted.append(r["jobId"])
            else:
                refusals.append(r)
        # Every ACCEPTED job is in Redis: its record and its unfinished entry.
        h.log("%d batches: %d accepted, %d refused" % (batches, len(accepted), len(refusals)))
        port = s.redis_port
        exists = h.redis_pipeline(port, [["EXISTS", JOB + j] for j in accepted])
        missing = [j for j, e in zip(accepted, exists) if e != 1]
        h.check(not missing, "every ACCEPTED job has its record in Redis (%d of %d missing)"
                % (len(missing), len(accepted)), missing[:5])
        members = h.redis_pipeline(port, [["SISMEMBER", UNFINISHED, j] for j in accepted])
        h.check(all(m == 1 for m in members), "every ACCEPTED job is in the unfinished set")

        h.check(refusals, "Redis filled up: some submissions were refused", len(accepted))
        bad = [r for r in refusals if r.get("code") != "store_unavailable" or OOM not in r.get("message", "")]
        h.check(not bad, "every refusal is store_unavailable naming Redis's OOM error", bad[:3])
        h.check(refusals[0]["message"].startswith("Redis refused the write: " + OOM),
                "the message says Redis refused the write", refusals[0])

        # While Redis refuses: STATS and /ready say so, the counter counts.
        cmd, r = c.try_submit("python", payload)
        h.check(cmd == h.REJECTED and OOM in r.get("message", ""),
                "a SUBMIT while Redis is full: REJECTED naming OOM", cmd, r)
        stats = c.stats()
        h.check(stats["redis"] is False and OOM in stats.get("redisError", ""),
                "STATS: redis false, redisError names the OOM error", stats.get("redis"),
                stats.get("redisError"))
        ready = "http://127.0.0.1:%d/ready" % broker.metrics_port
        st, _, body = h.wait_until(lambda: (lambda r: r if r[0] == 503 and r[2].get("error", {}).get("code")
                                            == "redis_refuses_writes" else None)(h.http("GET", ready)),
                                   5, "GET /ready: 503 redis_refuses_writes")
        metrics = h.http("GET", "http://127.0.0.1:%d/metrics" % broker.metrics_port)[2]
        metrics = metrics if isinstance(metrics, str) else metrics.decode()
        errors = [l for l in metrics.splitlines() if l.startswith("broker_redis_write_errors_total ")]
        h.check(errors and float(errors[0].split()[1]) > 0, "broker_redis_write_errors_total counts", errors)

        # No record of a refused job stays: the undo writes (DEL, SREM) land
        # even while Redis is full.
        def settled():
            keys = job_keys(port)
            return keys if keys == set(accepted) and int(s.redis_cli("SCARD", UNFINISHED)) == len(accepted) \
                else None
        h.wait_until(settled, 20, "Redis to hold exactly the %d accepted jobs (records and unfinished set)"
                     % len(accepted))

        log = broker.output()
        episodes = [l for l in log.splitlines() if "ERROR" in l and "refused writes" in l]
        h.check(1 <= len(episodes) <= 3 and OOM in episodes[0],
                "the refusal is logged as an ERROR once per episode, naming OOM", len(episodes), episodes[:2])

        # Room again: SUBMITs are accepted.
        h.check(s.redis_cli("CONFIG", "SET", "maxmemory", "0") == "OK", "CONFIG SET maxmemory 0")
        jid = h.wait_until(lambda: (lambda a: a[1]["jobId"] if a[0] == h.ACCEPTED else None)(
            c.try_submit("python", payload)), 15, "a SUBMIT to be accepted once Redis has room")
        accepted.append(jid)
        h.check(s.redis_cli("EXISTS", JOB + jid) == "1", "its record is in Redis")
        h.check("takes writes again" in broker.output(), "the end of the refusal is logged")
        c.close()

        # A restart recovers every accepted job, and only those.
        h.check(broker.stop() == 0, "the broker stops cleanly")
        broker = s.broker(name="broker2")
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 20, "the restarted broker to recover")
        queued = c.stats()
        recovered = [l for l in broker.output().splitlines() if "recovered" in l and "unfinished jobs" in l]
        h.check(recovered and ("recovered %d unfinished jobs" % len(accepted)) in recovered[0],
                "the restarted broker recovers the %d accepted jobs" % len(accepted), recovered, queued.get("redis"))
        statuses = [c.status(j) for j in accepted[::97] + [jid]]
        h.check(all(st and st["state"] == "queued" for st in statuses), "accepted jobs read back queued",
                [st for st in statuses if not st or st["state"] != "queued"][:3])
        c.close()


if __name__ == "__main__":
    h.main(test)

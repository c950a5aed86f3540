"""BROKER_HA=redis with a Redis that refuses writes (maxmemory reached,
noeviction): the leader keeps its lease.  Renewing it writes nothing new,
so Redis's refusal of the broker's job writes is no lost lease.

A real redis-server, its maxmemory set a little above what it uses, and
one real broker (lease 1000 ms) that leads it.  SUBMIT_MANY batches go
until Redis refuses them.  For three lease lengths after that the broker
still leads at the same epoch (STATS leader), logs no step-down and no
lost lease, and one ERROR line for the episode (the refused writes).  Once
Redis has room again (CONFIG SET maxmemory 0), SUBMITs are accepted by
the same reign.
"""
import time
import harness as h
import hatest

SUBMIT_MANY, ACCEPTED_MANY = 0x0A, 0x85
LEASE_MS = 1000


def test():
    with h.Stack("ha-lease-oom") as s:
        s.redis(args=["--maxmemory-policy", "noeviction"])
        broker = s.broker(port=h.free_port(), env=dict(hatest.HA_ENV, BROKER_LEASE_MS=str(LEASE_MS)))
        h.wait_until(lambda: hatest.leads(s.endpoint), 15, "the broker to lead")
        c = s.client()
        epoch = c.stats()["leader"]["epoch"]
        h.check(epoch > 0, "the leader has an epoch", epoch)

        used = int(s.redis_cli("INFO", "memory").split("used_memory:")[1].split()[0])
        h.check(s.redis_cli("CONFIG", "SET", "maxmemory", str(used + 1024 * 1024)) == "OK",
                "CONFIG SET maxmemory")
        payload = {"blob": "x" * 200}
        refused = 0
        for _ in range(200):
            cmd, r = c.request(SUBMIT_MANY, {"jobs": [{"botType": "python", "payload": payload}] * 250},
                               timeout=30)
            h.check(cmd == ACCEPTED_MANY, "SUBMIT_MANY answered ACCEPTED_MANY", cmd, r)
            refused += sum(1 for item in r["jobs"] if "jobId" not in item)
            if refused >= 500:
                break
        h.check(refused >= 500, "Redis filled up: submissions were refused", refused)
        cmd, r = c.try_submit("python", payload)
        h.check(cmd == h.REJECTED and r.get("code") == "store_unavailable",
                "a SUBMIT while Redis is full: REJECTED store_unavailable", cmd, r)

        # Three lease lengths of a full Redis: the reign goes on.
        end = time.monotonic() + 3 * LEASE_MS / 1000.0
        while time.monotonic() < end:
            h.check("stepping down" not in broker.output(), "no step-down while Redis is full",
                    [l for l in broker.output().splitlines() if "stepping down" in l or "lease" in l][:3])
            try:
                cmd, st = c.request(h.STATS, timeout=2)
            except h.TestFailure:
                h.check(False, "the broker answers STATS while Redis is full (it restarted?)",
                        [l for l in broker.output().splitlines() if "stepping down" in l][:2])
            h.check(cmd == h.REPLY and st["leader"]["epoch"] == epoch,
                    "the broker still leads at epoch %d" % epoch, cmd, st.get("leader"))
            time.sleep(0.1)         # sampling pace, not synchronisation
        log = broker.output()
        for line in ("stepping down", "not renewed within", "restarting as a standby"):
            h.check(line not in log, "no '%s' while Redis is full" % line,
                    [l for l in log.splitlines() if line in l][:2])
        # One line for the episode (the store's ERROR); the refused jobs'
        # own WARNs aside.
        warns = [l for l in log.splitlines() if ("WARN" in l or "ERROR" in l)
                 and "submit not confirmed" not in l]
        h.check(len(warns) == 1 and "refused writes" in warns[0], "one ERROR line for the episode",
                len(warns), warns[:3])

        # Room again: the same reign accepts SUBMITs.
        h.check(s.redis_cli("CONFIG", "SET", "maxmemory", "0") == "OK", "CONFIG SET maxmemory 0")
        jid = h.wait_until(lambda: (lambda a: a[1]["jobId"] if a[0] == h.ACCEPTED else None)(
            c.try_submit("python", payload)), 15, "a SUBMIT to be accepted once Redis has room")
        h.check(s.redis_cli("EXISTS", "botmesh:{bm}:job:" + jid) == "1", "its record is in Redis")
        h.check(c.stats()["leader"]["epoch"] == epoch, "still the same reign")
        h.check("stepping down" not in broker.output(), "no step-down at all")
        c.close()


if __name__ == "__main__":
    h.main(test)

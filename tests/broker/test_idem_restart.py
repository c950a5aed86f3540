"""An idempotencyKey outlives its job's end and the broker's restarts.

A real redis-server (AOF) and real broker processes; a fake worker the
test drives completes the keyed job.

1. A keyed job completes.  After a SIGTERM restart and after a SIGKILL
   restart, the same body again is ACCEPTED as a duplicate with the same
   id and state completed; another payload with the key is REJECTED
   idempotency_key_reused.
2. With IDEMPOTENCY_TTL_MS=1500: a key whose window ended while the
   broker was down is deleted from Redis at recovery, and a key that
   expires while the broker runs is deleted from Redis then; the same
   body with either key makes a new job.
3. A day's worth of keys: 50,000 live fields in the hash (as a busy
   broker leaves it), 2,000 expired ones and 20 that expire 8 s
   after the restart.  The restarted broker reads the hash in HSCAN pages
   (Redis's own command counts say so, and the broker's log), deletes the
   expired fields, answers a duplicate of a key it read with that key's
   job, and deletes the 20 short ones from Redis as they expire (the keys
   it read page by page in no order expire oldest first); a key it read
   whose job has no record (the bulk keys name made-up jobs) makes a new
   job.
"""
import time
import harness as h
from fakeworker import FakeWorker

IDEM = "botmesh:{bm}:idem"


def connected(s):
    c = s.client()
    h.wait_until(lambda: c.request(h.PING)[1]["redis"] and c.stats().get("redis"), 15,
                 "broker connected to redis")
    return c


def resend(c, key, payload, first, what):
    cmd, r = c.try_submit("python", payload, idempotencyKey=key)
    h.check(cmd == h.ACCEPTED and r["duplicate"] is True and r["jobId"] == first
            and r.get("state") == "completed",
            "%s: the same body is a duplicate of %s, completed" % (what, first), r)
    cmd, r = c.try_submit("python", {"other": 1}, idempotencyKey=key)
    h.check(cmd == h.REJECTED and r.get("code") == "idempotency_key_reused" and first in r["message"],
            "%s: another payload is refused, idempotency_key_reused" % what, r)
    cmd, r = c.try_submit("node", payload, idempotencyKey=key)
    h.check(cmd == h.REJECTED and r.get("code") == "idempotency_key_reused",
            "%s: another botType is refused, idempotency_key_reused" % what, r)


def expiry(s, key):
    value = s.redis_cli("HGET", IDEM, key)
    h.check(len(value.split()) == 3, "Redis keeps key %s: <jobId> <fingerprint> <expiry>" % key, value)
    return int(value.split()[2])


def bulk_keys(s, first, fingerprint):
    """Fill the hash as a busy day would: 50,000 live keys (one of them the
    real job's), 2,000 expired, 20 that expire ~8 s from now."""
    now = int(time.time() * 1000)
    fields = []
    for i in range(50000):
        fields += ["bulk-%d" % i, "bulk-job-%d %016x %d" % (i, i + 1, now + 3600000 + i)]
    for i in range(2000):
        fields += ["old-%d" % i, "old-job-%d %016x %d" % (i, i + 1, now - 1000 - i)]
    for i in range(20):
        fields += ["soon-%d" % i, "soon-job-%d %016x %d" % (i, i + 1, now + 8000 + i)]
    fields += ["real", "%s %s %d" % (first, fingerprint, now + 3600000)]
    commands = [["HSET", IDEM] + fields[j:j + 2000] for j in range(0, len(fields), 2000)]
    h.redis_pipeline(s.redis_port, commands)
    h.check(s.redis_cli("HLEN", IDEM) == str(50000 + 2000 + 20 + 1), "the hash holds 52,021 fields")


def hscan_calls(s):
    stats = s.redis_cli("INFO", "commandstats")
    for line in stats.splitlines():
        if line.startswith("cmdstat_hscan:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def test():
    with h.Stack("idem_restart") as s:
        s.redis()
        broker = s.broker()
        c = connected(s)

        # 1. A keyed job completes; the broker restarts twice.
        payload = {"order": 42}
        first = c.submit("python", payload, idempotencyKey="order-42")
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        job = w.recv_job(10)
        h.check(job["jobId"] == first, "the worker runs the keyed job", job)
        w.done(first, result={"ok": 1})
        h.check(c.wait(first)["state"] == "completed", "the keyed job completed")
        w.close()
        c.close()
        h.check(s.redis_cli("HGET", IDEM, "order-42").split()[0] == first,
                "Redis keeps the key with its job's id", s.redis_cli("HGET", IDEM, "order-42"))

        broker.stop()
        h.log("broker stopped with SIGTERM")
        broker = s.broker()
        c = connected(s)
        resend(c, "order-42", payload, first, "after a SIGTERM restart")
        c.close()

        broker.kill()
        h.log("broker killed with SIGKILL")
        broker = s.broker()
        c = connected(s)
        resend(c, "order-42", payload, first, "after a SIGKILL restart")
        h.check("recovered 1 idempotency keys" in broker.output(),
                "the broker says how many keys it recovered")
        c.close()
        broker.stop()

        # 2. Short windows: expired keys leave Redis and make new jobs.
        env = {"IDEMPOTENCY_TTL_MS": "1500"}
        broker = s.broker(env=env)
        c = connected(s)
        down = c.submit("python", {"n": 1}, idempotencyKey="short-down")
        until = expiry(s, "short-down")
        c.close()
        broker.kill()
        # The window ends while no broker runs (a bounded wait on the clock).
        h.wait_until(lambda: time.time() * 1000 > until + 50, 10, "key short-down's window to end")
        broker = s.broker(env=env)
        c = connected(s)
        h.wait_until(lambda: s.redis_cli("HEXISTS", IDEM, "short-down") == "0", 10,
                     "recovery to delete the expired key short-down from Redis")
        h.check(s.redis_cli("HEXISTS", IDEM, "order-42") == "1",
                "a key still in its window stays in Redis")
        cmd, r = c.try_submit("python", {"n": 1}, idempotencyKey="short-down")
        h.check(cmd == h.ACCEPTED and r["duplicate"] is False and r["jobId"] != down,
                "expired while the broker was down: the same body makes a new job", r)

        live = c.submit("python", {"n": 2}, idempotencyKey="short-live")
        cmd, r = c.try_submit("python", {"n": 2}, idempotencyKey="short-live")
        h.check(cmd == h.ACCEPTED and r["duplicate"] is True and r["jobId"] == live,
                "within its window: a duplicate", r)
        h.wait_until(lambda: s.redis_cli("HEXISTS", IDEM, "short-live") == "0", 10,
                     "the broker to delete key short-live from Redis as it expires")
        cmd, r = c.try_submit("python", {"n": 2}, idempotencyKey="short-live")
        h.check(cmd == h.ACCEPTED and r["duplicate"] is False and r["jobId"] != live,
                "expired while the broker ran: the same body makes a new job", r)
        c.close()
        broker.stop()

        # 3. 50,000 keys, read back page by page.
        broker = s.broker()
        c = connected(s)
        first = c.submit("python", {"bulk": 1}, idempotencyKey="real")
        fingerprint = s.redis_cli("HGET", IDEM, "real").split()[1]
        c.close()
        broker.stop()
        s.redis_cli("DEL", IDEM)
        bulk_keys(s, first, fingerprint)
        s.redis_cli("CONFIG", "RESETSTAT")
        broker = s.broker()
        c = connected(s)
        h.wait_until(lambda: "recovered 50021 idempotency keys" in broker.output(), 30,
                     "the broker to recover the 50,021 live keys")
        line = [l for l in broker.output().splitlines() if "idempotency keys from redis" in l][-1]
        pages = int(line.split(" in ")[1].split()[0])
        h.check(pages >= 40 and "(2000 expired deleted)" in line,
                "read in HSCAN pages of ~1,000 (%d pages), the 2,000 expired deleted" % pages, line)
        h.check(hscan_calls(s) == pages, "Redis counts one HSCAN per page", hscan_calls(s), pages)
        cmd, r = c.try_submit("python", {"bulk": 1}, idempotencyKey="real")
        h.check(cmd == h.ACCEPTED and r["duplicate"] is True and r["jobId"] == first,
                "a key read among 50,000: the same body is a duplicate of its job", r)
        cmd, r = c.try_submit("python", {"other": 1}, idempotencyKey="real")
        h.check(cmd == h.REJECTED and r.get("code") == "idempotency_key_reused"
                and first in r["message"],
                "a key read among 50,000: another body is refused naming its job", r)
        h.check(s.redis_cli("HEXISTS", IDEM, "old-0") == "0" and s.redis_cli("HEXISTS", IDEM, "old-1999") == "0",
                "the expired fields left Redis")
        h.wait_until(lambda: s.redis_cli("HLEN", IDEM) == "50001", 30,
                     "the 20 short keys to leave Redis as they expire (oldest first)")
        h.check(s.redis_cli("HEXISTS", IDEM, "bulk-49999") == "1",
                "the keys with later windows are still held")
        # A key read whose job has no record (the bulk keys name made-up
        # jobs): the job is gone, so the key is free and makes a new job.
        cmd, r = c.try_submit("python", {"other": 1}, idempotencyKey="bulk-31337")
        h.check(cmd == h.ACCEPTED and r["duplicate"] is False and r["jobId"] != "bulk-job-31337",
                "a key naming a job with no record: a new job", r)
        h.check(s.redis_cli("HGET", IDEM, "bulk-31337").split()[0] == r["jobId"],
                "Redis maps that key to the new job")
        c.close()


if __name__ == "__main__":
    h.main(test)

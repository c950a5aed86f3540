"""An idempotencyKey compares payloads by value, whatever their map order.

A real redis-server and real broker processes.

1. A keyed SUBMIT of {"b":2,"a":1} (nested maps too, one inside an array);
   the same payload again with its map keys in another order, at every
   level, is ACCEPTED as a duplicate of the first job; a payload that
   differs in one value is still refused idempotency_key_reused.
2. Upgrade: a key whose fingerprint an earlier version stored in Redis
   (the payload's map keys in the order received, as it hashed them):
   after a restart, the same body sent again is still a duplicate of its
   job, and another body is still refused.
"""
import harness as h

IDEM = "botmesh:{bm}:idem"


def connected(s):
    c = s.client()
    h.wait_until(lambda: c.request(h.PING)[1]["redis"] and c.stats().get("redis"), 15,
                 "broker connected to redis")
    return c


def earlier_fingerprint(bot_type, payload):
    """The fingerprint an earlier version stored: 64-bit FNV-1a of the bot
    type, a NUL, then the payload in msgpack's shortest encoding with its
    map keys in the order they came."""
    value = 14695981039346656037
    for byte in bot_type.encode() + b"\0" + h.pack(payload):
        value = ((value ^ byte) * 1099511628211) % (1 << 64)
    return value or 1


def test():
    with h.Stack("idem_key_order") as s:
        s.redis()
        broker = s.broker()
        c = connected(s)

        # 1. Map keys in another order, at every depth.
        first_body = {"b": 2, "a": 1, "n": {"y": [{"q": 1, "p": 2}], "x": None}}
        again_body = {"n": {"x": None, "y": [{"p": 2, "q": 1}]}, "a": 1, "b": 2}
        h.check(h.pack(first_body) != h.pack(again_body), "the two bodies differ in their bytes")
        first = c.submit("python", first_body, idempotencyKey="order-1")
        cmd, r = c.try_submit("python", again_body, idempotencyKey="order-1")
        h.check(cmd == h.ACCEPTED and r.get("duplicate") is True and r.get("jobId") == first,
                "the same payload with its map keys in another order is a duplicate of %s" % first,
                cmd, r)
        other = {"n": {"x": None, "y": [{"p": 2, "q": 3}]}, "a": 1, "b": 2}
        cmd, r = c.try_submit("python", other, idempotencyKey="order-1")
        h.check(cmd == h.REJECTED and r.get("code") == "idempotency_key_reused"
                and first in r.get("message", ""),
                "a payload differing in one nested value is refused idempotency_key_reused", cmd, r)

        # 2. A fingerprint an earlier version stored, read back after a restart.
        old_body = {"zeta": 1, "alpha": {"k2": 2, "k1": 1}}
        old = c.submit("python", old_body, idempotencyKey="order-old")
        value = s.redis_cli("HGET", IDEM, "order-old").split()
        h.check(len(value) == 3 and value[0] == old, "Redis keeps the key with its job", value)
        value[1] = "%016x" % earlier_fingerprint("python", old_body)
        s.redis_cli("HSET", IDEM, "order-old", " ".join(value))
        c.close()
        broker.kill()
        broker = s.broker()
        c = connected(s)
        h.wait_until(lambda: "idempotency keys from redis" in broker.output(), 15,
                     "the restarted broker to read the keys back")
        cmd, r = c.try_submit("python", old_body, idempotencyKey="order-old")
        h.check(cmd == h.ACCEPTED and r.get("duplicate") is True and r.get("jobId") == old,
                "a key stored by an earlier version: the same body is a duplicate of %s" % old,
                cmd, r)
        cmd, r = c.try_submit("python", {"zeta": 2, "alpha": {"k2": 2, "k1": 1}},
                              idempotencyKey="order-old")
        h.check(cmd == h.REJECTED and r.get("code") == "idempotency_key_reused",
                "a key stored by an earlier version: another body is refused", cmd, r)
        # The key read back from its record alone keeps comparing by value.
        cmd, r = c.try_submit("python", again_body, idempotencyKey="order-1")
        h.check(cmd == h.ACCEPTED and r.get("duplicate") is True and r.get("jobId") == first,
                "after the restart, the reordered payload is still a duplicate", cmd, r)
        c.close()


if __name__ == "__main__":
    h.main(test)

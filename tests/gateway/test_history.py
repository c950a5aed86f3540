"""GET /api/history: metric snapshots from Redis (LRANGE, newest first in
Redis, oldest first in the answer), the broker's own snapshots, bad
limits, and 503 while Redis is away, back to 200 when it returns."""
import json

import harness
from gwtest import check, curl, gateway, stop_clean, wait_until


def main():
    with harness.Stack("gw-history") as s:
        redis = s.redis()
        s.broker(env={"METRICS_SNAPSHOT_INTERVAL": "1"})
        g = gateway(s)                                   # REDIS_PREFIX: the broker's default
        t = gateway(s, env={"REDIS_PREFIX": "t:"}, name="gateway-prefix")

        # Known entries under another prefix, plus one that is not JSON.
        for item in ('{"n":1}', "not json", '{"n":2}', '{"n":3}'):
            s.redis_cli("LPUSH", "t:{bm}:snapshots", item)
        r = curl(t.url + "/api/history?limit=2")
        check(r.status == 200 and r.json == {"snapshots": [{"n": 2}, {"n": 3}]},
              "newest 2, oldest first", r)
        r = curl(t.url + "/api/history?limit=10")
        check(r.json == {"snapshots": [{"n": 1}, {"n": 2}, {"n": 3}]},
              "all of them; the non-JSON entry is skipped", r)
        for q in ("limit=0", "limit=8641", "limit=abc"):
            r = curl(t.url + "/api/history?" + q)
            check(r.status == 400 and r.error_code() == "invalid_limit", "400 for " + q, r)

        # The broker's own snapshots, every second here.
        def two():
            r = curl(g.url + "/api/history?limit=5", show=False)
            return r.status == 200 and len(r.json["snapshots"]) >= 2 and r
        r = wait_until(two, 15, "two broker snapshots")
        snaps = r.json["snapshots"]
        print("  first snapshot:", json.dumps(snaps[0])[:300])
        check(all(isinstance(x, dict) and "types" in x for x in snaps), "broker snapshots are objects",
              snaps)

        # Redis away: 503 with Retry-After; back: 200 again.
        redis.stop()
        r = curl(t.url + "/api/history?limit=2")
        check(r.status == 503 and r.error_code() == "redis_unavailable"
              and r.headers.get("retry-after"), "503 while Redis is away", r)
        r = curl(t.url + "/health")
        check(r.status == 200, "/health is unaffected", r)
        s.redis(port=s.redis_port)
        s.redis_cli("LPUSH", "t:{bm}:snapshots", '{"n":4}')
        wait_until(lambda: curl(t.url + "/api/history?limit=1", show=False).status == 200, 10,
                   "history to come back")
        r = curl(t.url + "/api/history?limit=1")
        check(r.json == {"snapshots": [{"n": 4}]}, "history back after Redis returned", r)
        stop_clean(t)
        stop_clean(g)


if __name__ == "__main__":
    harness.main(main)

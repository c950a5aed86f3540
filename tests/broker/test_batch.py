"""SUBMIT_MANY (protocol.md section 4a): each job accepted or rejected on
its own, one ACCEPTED_MANY in the items' order, nothing lost.

A real redis-server (AOF on) and a real broker; a fake worker the test
drives, so that every accepted job is seen to run exactly once.
"""
import harness as h
from fakeworker import FakeWorker

SUBMIT_MANY, ACCEPTED_MANY = 0x0A, 0x85


def key(job_id):
    return "botmesh:{bm}:job:" + job_id


def submit_many(c, jobs, timeout=20):
    """Send one SUBMIT_MANY; returns (command, body) of its answer."""
    return c.request(SUBMIT_MANY, {"jobs": jobs}, timeout=timeout)


def test():
    with h.Stack("batch") as s:
        s.redis()
        s.broker(env={"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "10",
                      "MAX_QUEUE_NODE": "5"})
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "broker connected to redis")

        first = c.submit("python", {"n": 0}, idempotencyKey="batch-key-1")

        # A mixed batch: every item answered on its own, in order.
        items = [
            {"botType": "python", "payload": {"n": 1}},
            42,
            {"botType": "nope", "payload": {}},
            {"botType": "python", "priority": "high"},
            {"botType": "python", "payload": {"n": 2}, "idempotencyKey": "batch-key-1"},
            {"botType": "python", "payload": {"n": 3}, "priority": 1, "notify": True},
        ]
        cmd, r = submit_many(c, items)
        h.check(cmd == ACCEPTED_MANY, "SUBMIT_MANY answered ACCEPTED_MANY", cmd, r)
        out = r["jobs"]
        h.check(len(out) == len(items), "one outcome per item", out)
        h.check("jobId" in out[0] and out[0]["duplicate"] is False and out[0]["position"] >= 1,
                "item 0 (valid) accepted with a position", out[0])
        h.check(out[1].get("code") == "bad_request" and "jobs[1]" in out[1]["message"],
                "item 1 (not a map) rejected bad_request naming jobs[1]", out[1])
        h.check(out[2].get("code") == "unknown_bot_type", "item 2 (unknown type) rejected", out[2])
        h.check(out[3].get("code") == "bad_request" and "priority" in out[3]["message"],
                "item 3 (bad priority) rejected naming priority", out[3])
        h.check(out[4].get("jobId") == first and out[4]["duplicate"] is True,
                "item 4 (known idempotencyKey) answers the first job, duplicate", out[4])
        h.check("jobId" in out[5] and out[5]["position"] == 1,
                "item 5 (priority 1) accepted, first in its queue", out[5])
        accepted = [out[0]["jobId"], out[5]["jobId"]]
        for jid in accepted:
            h.check(s.redis_cli("HGET", key(jid), "state") == "queued",
                    "accepted job %s is durable (in Redis) when answered" % jid)

        # The envelope's own faults refuse the whole message, naming jobs.
        for jobs, what in (([], "empty"), ({"botType": "python"}, "not an array"),
                           ([{"botType": "python"}] * 1001, "1,001 items")):
            cmd, r = submit_many(c, jobs)
            h.check(cmd == h.REJECTED and r["code"] == "bad_request" and "jobs" in r["message"],
                    "SUBMIT_MANY with jobs %s -> REJECTED bad_request naming jobs" % what, r)
        h.check(c.stats()["types"]["python"]["waiting"] == 3,
                "refused envelopes queued nothing (3 python jobs wait)")

        # A full queue refuses the items beyond its limit, not the batch.
        cmd, r = submit_many(c, [{"botType": "node", "payload": {"i": i}} for i in range(8)])
        codes = [o.get("code") for o in r["jobs"]]
        h.check(codes == [None] * 5 + ["queue_full"] * 3,
                "8 node jobs into a queue of 5: 5 accepted, 3 queue_full", codes)

        # 1,000 jobs in one message: all accepted, in order, and every one
        # runs exactly once (nothing lost, nothing doubled).
        big = [{"botType": "python", "payload": {"i": i}, "priority": 5} for i in range(1000)]
        cmd, r = submit_many(c, big, timeout=60)
        h.check(cmd == ACCEPTED_MANY and len(r["jobs"]) == 1000, "1,000 jobs answered", cmd)
        ids = [o.get("jobId") for o in r["jobs"]]
        h.check(all(ids) and len(set(ids)) == 1000, "1,000 distinct jobs accepted",
                [o for o in r["jobs"] if "jobId" not in o][:3])
        positions = [o["position"] for o in r["jobs"]]
        h.check(positions == sorted(positions) and positions[0] == 4,
                "positions follow the items' order behind the 3 jobs queued before",
                positions[:5])

        w = FakeWorker(s.endpoint, "w-batch", ["python"], 50)
        seen = []
        want = set(ids) | set(accepted) | {first}
        while len(seen) < len(want):
            job = w.recv_job(timeout=10)
            seen.append(job["jobId"])
            w.done(job["jobId"], {"ok": job["payload"]})
        h.check(set(seen) == want and len(seen) == len(want),
                "every accepted job ran exactly once (%d)" % len(want))
        batch_order = [j for j in seen if j in set(ids)]
        h.check(batch_order == ids, "the batch's jobs ran in the items' order")
        last = c.wait(ids[-1])
        h.check(last["state"] == "completed" and last["result"] == {"ok": {"i": 999}},
                "the last job of the batch completed with its own payload", last)
        # The notify item's RESULT was pushed to this client
        h.wait_until(lambda: (c.request(h.PING), out[5]["jobId"] in c.results)[1], 10,
                     "RESULT of the batch item submitted with notify")
        w.close()

    # Without Redis every write is confirmed at once: the answer still
    # comes once, after the last item, and lists every item.
    with h.Stack("batch-none") as s:
        s.broker(redis=False)
        c = s.client()
        cmd, r = submit_many(c, [{"botType": "python"}, {"botType": "nope"}, {"botType": "java"}])
        codes = [o.get("code") for o in r["jobs"]]
        h.check(cmd == ACCEPTED_MANY and codes == [None, "unknown_bot_type", None],
                "no Redis: one ACCEPTED_MANY with the three outcomes", cmd, r)
        c.send(h.PING, {"req": 99})
        cmd, r = c.recv()
        h.check(cmd == h.REPLY and r.get("req") == 99,
                "and nothing else: the next message is the PING's answer", cmd, r)


if __name__ == "__main__":
    h.main(test)

"""SUBMIT_MANY (protocol.md section 4a): each job accepted or rejected on
its own, one ACCEPTED_MANY in the items' order, nothing lost.

A real redis-server (AOF on) and a real broker; a fake worker the test
drives, so that every accepted job is seen to run exactly once.
"""
import harness as h
from fakeworker import FakeWorker

SUBMIT_MANY, ACCEPTED_MANY, RESULT_MANY = 0x0A, 0x85, 0x86
JOB_MANY, DONE_MANY = 0x0A, 0x0B


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
            {"botType": "python", "payload": {"n": 0}, "idempotencyKey": "batch-key-1"},
            {"botType": "python", "payload": {"n": 3}, "priority": 1, "notify": True},
            {"botType": "python", "payload": {"n": 2}, "idempotencyKey": "batch-key-1"},
        ]
        cmd, r = submit_many(c, items)
        h.check(cmd == ACCEPTED_MANY, "SUBMIT_MANY answered ACCEPTED_MANY", cmd, r)
        out = r["jobs"]
        h.check(len(out) == len(items), "one outcome per item", out)
        h.check("jobId" in out[0] and out[0]["duplicate"] is False and out[0]["position"] >= 1,
                "item 0 (valid) accepted with a position", out[0])
        # An item's outcome is in its place: no message names an index, each
        # is the message a SUBMIT of that body gets.
        h.check(out[1] == {"code": "bad_request", "message": "the item must be a map (a job's body)"},
                "item 1 (not a map) rejected bad_request", out[1])
        h.check(out[2].get("code") == "unknown_bot_type", "item 2 (unknown type) rejected", out[2])
        h.check(out[3].get("code") == "bad_request"
                and out[3]["message"].startswith("priority must be an integer"),
                "item 3 (bad priority) rejected naming priority", out[3])
        cmd, single = c.request(h.SUBMIT, items[3])
        h.check(cmd == h.REJECTED and single["message"] == out[3]["message"],
                "with the message a SUBMIT of that body gets", single, out[3])
        h.check(not any("jobs[" in o.get("message", "") for o in out), "no message names an index", out)
        h.check(out[4].get("jobId") == first and out[4]["duplicate"] is True,
                "item 4 (known idempotencyKey) answers the first job, duplicate", out[4])
        h.check("jobId" in out[5] and out[5]["position"] == 1,
                "item 5 (priority 1) accepted, first in its queue", out[5])
        h.check(out[6].get("code") == "idempotency_key_reused" and first in out[6].get("message", ""),
                "item 6 (the key with another payload) refused, naming the first job", out[6])
        accepted = [out[0]["jobId"], out[5]["jobId"]]
        for jid in accepted:
            h.check(s.redis_cli("HGET", key(jid), "state") == "queued",
                    "accepted job %s is durable (in Redis) when answered" % jid)

        # A delayed item is marked delayed, as a single SUBMIT's ACCEPTED is:
        # no position (it is in no queue yet), and its record says delayed.
        cmd, r = submit_many(c, [{"botType": "java", "payload": {"d": 1}, "delayMs": 60000},
                                 {"botType": "java", "payload": {"d": 2}}])
        late, now = r["jobs"]
        h.check(late.get("delayed") is True and "position" not in late,
                "a delayed item's outcome says delayed: true and gives no position", late)
        h.check("delayed" not in now and now["position"] == 1,
                "an item due now has a position and no delayed key", now)
        h.check(c.status(late["jobId"])["state"] == "delayed"
                and s.redis_cli("HGET", key(late["jobId"]), "state") == "delayed",
                "the delayed item is delayed in the broker and in Redis")

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
        # The broker sends such a batch's writes as several groups (every
        # 256 jobs) while it reads the rest: ACCEPTED_MANY still waits for
        # all of them, so every record and unfinished-set entry is there.
        members = s.redis_cli("SMISMEMBER", "botmesh:{bm}:unfinished", *ids).split()
        h.check(members == ["1"] * 1000, "all 1,000 jobs in the unfinished set at ACCEPTED_MANY",
                members.count("1"))
        states = s.redis_cli("EVAL", "local n = 0 for i, k in ipairs(KEYS) do "
                             "if redis.call('HGET', k, 'state') == 'queued' then n = n + 1 end end "
                             "return n", "1000", *[key(j) for j in ids])
        h.check(states == "1000", "all 1,000 records durable (queued) at ACCEPTED_MANY", states)
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

    # A worker whose READY says batch: true gets JOB_MANY (never beyond its
    # credit) and may answer DONE_MANY; each item is a DONE of its own.
    with h.Stack("batch-worker") as s:
        s.redis()
        s.broker(env={"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "10", "MAX_JAVA_BOTS": "100"})
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "broker connected to redis")
        cmd, r = submit_many(c, [{"botType": "java", "payload": {"i": i}} for i in range(30)])
        ids = [o["jobId"] for o in r["jobs"]]
        w = FakeWorker(s.endpoint, "w-many", ["java"], 20, ready=False)
        w.send(h.READY, {"name": "w-many", "types": ["java"], "credit": 20, "batch": True})
        msg = w.recv()
        h.check(msg and msg[0] == JOB_MANY, "a batch worker gets JOB_MANY", msg and msg[0])
        first = msg[1]["jobs"]
        h.check([j["jobId"] for j in first] == ids[:20] and all(j["attempt"] == 1 for j in first),
                "JOB_MANY carries as many jobs as the credit (20), in queue order, as JOB bodies",
                len(first))
        h.check(c.stats()["types"]["java"]["waiting"] == 10, "and no more than its credit: 10 wait")
        # DONE_MANY: 19 results, one failure, one not its job, one not a map
        items = [{"jobId": j["jobId"], "ok": True, "result": {"i": j["payload"]["i"]}} for j in first[:19]]
        items += [{"jobId": first[19]["jobId"], "ok": False, "error": {"code": "bot_failed", "message": "x"}},
                  {"jobId": ids[25], "ok": True, "result": 1}, "junk"]
        w.send(DONE_MANY, {"jobs": items})
        nacks, second = [], None
        while second is None:
            msg = w.recv()
            h.check(msg is not None, "the broker answers the DONE_MANY and sends more jobs")
            if msg[0] == h.NACK:
                nacks.append(msg[1]["code"])
            elif msg[0] == JOB_MANY:
                second = msg[1]["jobs"]
        h.check(sorted(nacks) == ["bad_request", "not_owner"],
                "the item not its own is NACK not_owner, the one not a map bad_request", nacks)
        h.check([j["jobId"] for j in second] == ids[20:], "the freed credit brings the other 10", len(second))
        rec = c.wait(ids[0])
        h.check(rec["state"] == "completed" and rec["result"] == {"i": 0}, "item 0 completed", rec)
        rec = c.wait(first[19]["jobId"])
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "bot_failed", "item 19 failed", rec)
        h.check(c.status(ids[25])["state"] == "running", "a DONE_MANY item for another's job changes nothing")
        w.send(DONE_MANY, {"jobs": [{"jobId": j["jobId"], "ok": True, "result": None} for j in second]})
        h.wait_until(lambda: c.stats()["types"]["java"]["completed"] == 29, 10, "29 java jobs completed")
        h.check(s.redis_cli("HGET", key(ids[-1]), "state") == "completed", "and durable as completed")
        # JOB_MANY stays within the frame size (MAX_FRAME_BYTES, 2 MiB): four
        # jobs of 700 KB go as JOB_MANYs of two, whatever the credit.
        big = ["x" * 700000 + str(i) for i in range(4)]
        w.send(h.READY, {"name": "w-many", "types": ["java"], "credit": 0, "batch": True})
        h.wait_until(lambda: c.stats()["workers"][0]["credit"] == 0, 5, "the worker's credit to drop to 0")
        big_ids = [c.submit("java", p) for p in big]
        w.send(h.READY, {"name": "w-many", "types": ["java"], "credit": 20, "batch": True})
        got, messages = [], 0
        while len(got) < 4:
            msg = w.recv()
            h.check(msg is not None and msg[0] in (JOB_MANY, h.JOB), "large jobs arrive", msg and msg[0])
            jobs = msg[1]["jobs"] if msg[0] == JOB_MANY else [msg[1]]
            h.check(len(jobs) <= 2, "a JOB_MANY of 700 KB jobs holds at most 2 (2 MiB frames)", len(jobs))
            got += jobs
            messages += 1
        h.check(messages == 2, "four queued 700 KB jobs leave as two JOB_MANYs", messages)
        h.check([j["jobId"] for j in got] == big_ids and [j["payload"] for j in got] == big,
                "the four large jobs arrive whole, in order")
        w.send(DONE_MANY, {"jobs": [{"jobId": j, "ok": True, "result": 1} for j in big_ids]})
        h.wait_until(lambda: c.stats()["types"]["java"]["completed"] == 33, 10, "33 java jobs completed")
        # A worker without batch: one JOB at a time, as before
        c.submit("java", {"single": 1})
        w2 = FakeWorker(s.endpoint, "w-single", ["java"], 5)
        job = w2.recv_job()
        h.check(job["payload"] == {"single": 1}, "a worker that did not ask for batches gets JOB")
        w2.done(job["jobId"], 1)
        w.close()
        w2.close()

    # RESULT_MANY: a client that sent SUBMIT_MANY gets the RESULTs that one
    # DONE_MANY brings as one message; a client that never did gets RESULT.
    with h.Stack("batch-results") as s:
        s.redis()
        s.broker(env={"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "10",
                      "MAX_PYTHON_BOTS": "100"})
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "broker connected to redis")
        w = FakeWorker(s.endpoint, "w-results", ["python"], 50, ready=False)
        w.send(h.READY, {"name": "w-results", "types": ["python"], "credit": 50, "batch": True})
        cmd, r = submit_many(c, [{"botType": "python", "payload": {"i": i}, "notify": True}
                                 for i in range(20)])
        ids = [o["jobId"] for o in r["jobs"]]
        single = s.client()
        one = single.submit("python", {"alone": 1}, notify=True)
        jobs = []
        while len(jobs) < 21:
            msg = w.recv()
            h.check(msg is not None and msg[0] in (JOB_MANY, h.JOB), "the 21 jobs are dispatched",
                    msg and msg[0], msg and msg[1], len(jobs))
            jobs += msg[1]["jobs"] if msg[0] == JOB_MANY else [msg[1]]
        w.send(DONE_MANY, {"jobs": [{"jobId": j["jobId"], "ok": True, "result": j["payload"]}
                                    for j in jobs]})
        got, messages = {}, []
        while len(got) < 20:
            cmd, body = c.recv()
            h.check(cmd in (h.RESULT, RESULT_MANY), "the batch client gets RESULTs", cmd, body)
            items = body["jobs"] if cmd == RESULT_MANY else [body]
            messages.append((cmd, len(items)))
            got.update((i["jobId"], i["job"]) for i in items)
        h.check(sorted(got) == sorted(ids) and all(got[j]["state"] == "completed" for j in ids),
                "every job of the batch has its RESULT, completed", len(got))
        h.check(any(cmd == RESULT_MANY and n > 1 for cmd, n in messages) and len(messages) < 20,
                "they come as RESULT_MANY (%d messages for 20 results)" % len(messages), messages)
        cmd, body = single.recv()
        h.check(cmd == h.RESULT and body["jobId"] == one and body["job"]["result"] == {"alone": 1},
                "a client that never sent SUBMIT_MANY gets its RESULT alone", cmd, body)
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

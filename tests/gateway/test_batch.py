"""POST /invoke/batch against a real stack (redis, broker, no-op workers):
a mixed array answered 207 with each item's outcome in order (accepted
items with their jobId, refused ones with the error POST /invoke would
give, naming the field), the body refused as a whole only when it is not
an array, empty or over MAX_BATCH (413), concurrent batches lose nothing
and every accepted job reaches a terminal state; with no broker the
request is answered 503 as a whole."""
import json
import threading

import harness
from gwtest import check, curl, gateway, post_json, start_workers, stop_clean, wait_until


def job(u, job_id):
    return curl(u + "/job/" + job_id, show=False).json


def main():
    with harness.Stack("gw-batch") as s:
        s.redis()
        s.broker()
        start_workers(s, ["python", "node"])
        g = gateway(s, env={"MAX_BATCH": "50"})
        u = g.url + "/invoke/batch"

        # Mixed items: each accepted or refused on its own, in order.
        items = [
            {"botType": "python", "payload": {"n": 1}, "priority": 1},
            {"botType": "Python", "payload": {}},                   # bad botType
            "not an object",
            {"botType": "node"},                                    # no payload
            {"botType": "nope", "payload": {}},                     # the broker's refusal
            {"botType": "node", "payload": [1, 2], "idempotencyKey": "batch-k1"},
            {"botType": "node", "payload": [1, 2], "idempotencyKey": "batch-k1"},   # duplicate
            {"botType": "python", "payload": 5, "timeoutMs": 0},    # bad timeoutMs
            {"botType": "python", "payload": {"later": True}, "delayMs": 60000},
            {"botType": "node", "payload": [3], "idempotencyKey": "batch-k1"},   # another job
        ]
        r = post_json(u, items)
        check(r.status == 207 and r.headers.get("content-type", "").startswith("application/json"),
              "a mixed batch is answered 207 (JSON)", r)
        out = r.json["jobs"]
        check(len(out) == len(items) and [o["index"] for o in out] == list(range(len(items))),
              "one outcome per item, in the items' order", out)
        check(r.json["accepted"] == 4 and r.json["rejected"] == 6, "4 accepted, 6 refused", r.json)
        ok = [o for o in out if o["httpStatus"] == 202]
        check(all(o["jobId"] and o["status"] in ("queued", "delayed") for o in ok),
              "accepted items carry a jobId", ok)
        check(out[0]["botType"] == "python" and out[0]["priority"] == 1
              and out[0]["status"] == "queued", "item 0: queued, its botType and priority", out[0])
        want = {1: (400, "invalid_bot_type", "botType"), 2: (400, "invalid_body", "object"),
                3: (400, "missing_field", "payload"), 4: (400, "invalid_bot_type", "botType"),
                7: (400, "invalid_timeout", "timeoutMs")}
        for i, (status, code, field) in want.items():
            o = out[i]
            check(o["httpStatus"] == status and o["error"]["code"] == code
                  and field in o["error"]["message"] and "jobId" not in o,
                  "item %d refused: %d %s naming %s" % (i, status, code, field), o)
        check(out[5]["httpStatus"] == 202 and out[6]["httpStatus"] == 202
              and out[6]["jobId"] == out[5]["jobId"] and out[6].get("duplicate") is True
              and "duplicate" not in out[5], "same idempotencyKey: the first job, duplicate", out[5:7])
        check(out[8]["status"] == "delayed" and out[8]["estimatedPosition"] is None,
              "delayMs: delayed", out[8])
        check(out[9]["httpStatus"] == 422 and out[9]["error"]["code"] == "idempotency_key_reused"
              and out[5]["jobId"] in out[9]["error"]["message"],
              "the key again with another payload: 422 idempotency_key_reused naming the job", out[9])
        for i in (0, 5):
            wait_until(lambda: job(g.url, out[i]["jobId"])["state"] == "completed", 30,
                       "batch item %d to complete" % i)
        check(job(g.url, out[8]["jobId"])["state"] == "delayed", "the delayed one waits")

        # The body as a whole.
        for body, status, code in [('{"botType": "python", "payload": 1}', 400, "invalid_body"),
                                   ("[]", 400, "invalid_body"),
                                   ("[{", 400, "invalid_json"),
                                   ("", 400, "invalid_json"),
                                   (json.dumps([{"botType": "python", "payload": i}
                                                for i in range(51)]), 413, "too_many_jobs")]:
            r = post_json(u, body)
            check(r.status == status and r.error_code() == code and r.json["error"]["message"],
                  "body %.30r: %d %s" % (body, status, code), r)
        check("MAX_BATCH" in r.json["error"]["message"], "413 names MAX_BATCH", r)
        r = curl("-X", "POST", u, "-H", "Content-Type: text/plain", "-d", "[]")
        check(r.status == 415, "another Content-Type: 415", r)
        r = curl(u)
        check(r.status == 405 and r.headers.get("allow") == "POST", "GET: 405 Allow: POST", r)

        # Exactly MAX_BATCH items pass; concurrent batches lose nothing.
        results = []

        def send(k):
            batch = [{"botType": "python" if i % 2 else "node", "payload": {"k": k, "i": i}}
                     for i in range(50)]
            results.append(post_json(u, batch, show=False))
        threads = [threading.Thread(target=send, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(all(r.status == 207 and r.json["accepted"] == 50 for r in results),
              "6 concurrent batches of MAX_BATCH=50: every job accepted",
              [(r.status, r.json and r.json.get("accepted")) for r in results])
        ids = [o["jobId"] for r in results for o in r.json["jobs"]]
        check(len(set(ids)) == 300, "300 distinct job ids", len(set(ids)))

        def finished():
            states = [job(g.url, i)["state"] for i in ids[::7]]
            return all(st == "completed" for st in states)
        wait_until(finished, 60, "a sample of every batch's jobs to complete")
        wait_until(lambda: (lambda st: st["types"]["python"]["completed"]
                            + st["types"]["node"]["completed"] >= 302)(
                                curl(g.url + "/stats", show=False).json), 60,
                   "all 302 accepted jobs (300 + 2 from the mixed batch) to complete")
        r = curl(g.url + "/metrics", show=False)
        check('route="/invoke/batch",code="207"' in r.body, "metrics count the 207s by route")
        stop_clean(g)

        # No broker: answered as a whole, as POST /invoke would be.
        lonely = gateway(s, name="gateway-nobroker", endpoint="tcp://127.0.0.1:%d" % harness.free_port(),
                         env={"BROKER_CONNECT_TIMEOUT_MS": "200"})
        r = post_json(lonely.url + "/invoke/batch", [{"botType": "python", "payload": 1},
                                                    {"botType": "BAD", "payload": 1}])
        check(r.status == 503 and r.error_code() == "broker_unavailable"
              and r.headers.get("retry-after") == "1", "no broker: 503 broker_unavailable", r)
        stop_clean(lonely)


if __name__ == "__main__":
    harness.main(main)

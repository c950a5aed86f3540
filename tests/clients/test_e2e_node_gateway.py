"""A Node worker serves jobs submitted over HTTP through botmesh-gateway:
POST /invoke -> 202 {jobId}; GET /job/{id} until it ends; JSON payloads and
results survive JSON -> msgpack -> Node -> msgpack -> JSON; a handler that
throws ends the job failed with {code, message}; progress is recorded.
"""
from e2elib import harness, botmesh, need_node, nodeworker, wait_worker, gateway
from harness import check, wait_until, http

TERMINAL = ("completed", "failed", "cancelled")


def main():
    need_node()
    with harness.Stack("clients-gw") as s:
        s.redis()
        s.broker()
        nodeworker(s, "node-gw", types="nodework", credit=3)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "node-gw")
        base = gateway(s)
        payloads = [
            {"task": "process_api", "endpoint": "/users", "i": i, "unicode": "żółw ✓", "f": 0.25,
             "big": 2 ** 40, "neg": -3, "list": [1, "two", None, False, {"deep": [[]]}], "progress": True,
             "sleepMs": 50}
            for i in range(5)
        ]
        ids = []
        for p in payloads:
            st, hdrs, body = http("POST", base + "/invoke", {"botType": "nodework", "payload": p, "priority": 2})
            check(st == 202 and isinstance(body, dict) and body.get("jobId"), "POST /invoke accepted", st, body)
            ids.append(body["jobId"])
        st, _, body = http("POST", base + "/invoke", {"botType": "nodework", "payload": {"fail": True}})
        check(st == 202, "POST /invoke of a failing job accepted", st, body)
        fail_id = body["jobId"]

        def ended(jid):
            st, _, rec = http("GET", base + "/job/" + jid)
            return rec if st == 200 and isinstance(rec, dict) and rec.get("state") in TERMINAL else None

        for jid, p in zip(ids, payloads):
            rec = wait_until(lambda: ended(jid), 30, "job %s to end" % jid, interval=0.05)
            check(rec["state"] == "completed", "job %s completed" % jid, rec)
            res = rec["result"]
            check(res["worker"] == "node-gw" and res["echo"] == p,
                  "the Node worker's result carries the JSON payload unchanged", res)
            check(rec.get("attempts") == 1 and rec.get("worker") == "node-gw", "ran once on node-gw", rec)
        rec = wait_until(lambda: ended(fail_id), 30, "failing job to end", interval=0.05)
        err = rec.get("error") or {}
        check(rec["state"] == "failed" and err.get("code") == "bot_failed" and "asked to fail" in err.get("message", ""),
              "a throwing Node handler ends the job failed with {code, message}", rec)
        # PROGRESS from the Node worker shows on the running job
        st, _, body = http("POST", base + "/invoke", {"botType": "nodework", "payload": {"sleepMs": 1500, "progress": True}})
        slow = body["jobId"]

        def at_50():
            st, _, rec = http("GET", base + "/job/" + slow)
            return rec if st == 200 and rec.get("state") == "running" and rec.get("progress") == 50 else None
        rec = wait_until(at_50, 10, "the running job to show progress 50", interval=0.05)
        check(rec["progress"] == 50, "PROGRESS from the Node worker is in the record while it runs", rec)
        check(wait_until(lambda: ended(slow), 10, "slow job to end")["state"] == "completed", "slow job completed")
        # the same jobs are visible to the Python client
        check(c.status(ids[0])["result"]["echo"] == payloads[0], "the Python client reads the same record")
        c.close()


if __name__ == "__main__":
    harness.main(main)

"""GET /job/{id} finds a job by the id its client gave it: BullMQ users add
a job with their own jobId (read as idempotencyKey) and then ask for it by
that id.  The broker knows no job by that id, so the gateway asks again by
key (STATUS {idempotencyKey}); the answer is the job's record, its jobId
(and BullMQ's id) the job's own.  A key whose job was removed is free: 404
then, as for an unknown id; the key lives in Redis, so a restarted broker
finds it too.

A real stack: redis, broker, gateway, a no-op python worker.
"""
import time

import harness as h
from gwtest import curl, gateway, post_json, start_workers, stop_clean


def test():
    with h.Stack("gw-key-lookup") as s:
        s.redis()
        broker = s.broker()
        start_workers(s, ["python"])
        gw = gateway(s)
        u = gw.url

        r = post_json(u + "/invoke", {"botType": "python", "payload": {"n": 42},
                                      "jobId": "order-42"})
        h.check(r.status == 202 and r.json["jobId"] != "order-42", "submitted with BullMQ jobId", r)
        job_id = r.json["jobId"]
        r = curl(u + "/job/order-42?wait=10000")
        h.check(r.status == 200 and r.json["jobId"] == job_id and r.json["id"] == job_id
                and r.json["state"] == "completed" and r.json["payload"] == {"n": 42},
                "GET /job/order-42?wait= answers the job's record once completed, its own jobId", r)
        r = curl(u + "/job/order-42")
        h.check(r.status == 200 and r.json["jobId"] == job_id, "GET /job/order-42 answers it", r)

        r = post_json(u + "/invoke", {"botType": "python", "payload": {"n": 7},
                                      "idempotencyKey": "invoice/7"})
        h.check(r.status == 202, "submitted with idempotencyKey", r)
        other_id = r.json["jobId"]
        r = curl(u + "/job/invoice%2F7")
        h.check(r.status == 200 and r.json["jobId"] == other_id,
                "GET /job/{key} (percent-encoded) answers the job submitted with that key", r)

        r = curl(u + "/job/no-such-order")
        h.check(r.status == 404 and r.error_code() == "not_found", "an unknown id or key: 404", r)

        # Redis holds the key: a restarted broker finds the job by it
        broker.stop()
        s.broker()
        h.wait_until(lambda: curl(u + "/job/order-42", show=False).status == 200, 15,
                     "GET /job/order-42 to answer after the broker's restart")
        r = curl(u + "/job/order-42")
        h.check(r.status == 200 and r.json["jobId"] == job_id and r.json["state"] == "completed",
                "after a broker restart GET /job/order-42 still answers the job", r)

        # A key Redis holds that the broker's index does not (as while the
        # index is being recovered): read from the hash idem
        far = int(time.time() * 1000) + 3600000
        s.redis_cli("HSET", "botmesh:{bm}:idem", "only-in-redis", "%s 0000000000000000 %d"
                    % (other_id, far))
        s.redis_cli("HSET", "botmesh:{bm}:idem", "expired-in-redis", "%s 0000000000000000 1"
                    % other_id)
        r = curl(u + "/job/only-in-redis")
        h.check(r.status == 200 and r.json["jobId"] == other_id,
                "a key only Redis holds answers its job (HGET idem)", r)
        r = curl(u + "/job/expired-in-redis")
        h.check(r.status == 404, "an expired key only Redis holds: 404", r)

        # Removed: the key is free, nothing is found by it
        r = curl("-X", "DELETE", u + "/job/" + job_id)
        h.check(r.status in (200, 204), "DELETE /job/{its id}", r)
        r = curl(u + "/job/order-42")
        h.check(r.status == 404 and r.error_code() == "not_found",
                "a removed job's key: GET /job/order-42 is 404", r)
        r = curl(u + "/job/order-42?wait=200")
        h.check(r.status == 404, "and with ?wait= too", r)
        stop_clean(gw)


if __name__ == "__main__":
    h.main(test)

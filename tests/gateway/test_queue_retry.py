"""POST /queues/{botType}/retry: a bot type's failed jobs run again in bulk
over HTTP (BullMQ's queue.retryJobs).  A real gateway, broker and Redis; a
fake worker fails each job's first run and completes the retried ones.

- 3 python jobs fail; retry {"limit": 2}: 200 {"botType", "retried": 2,
  "more": true}, the 2 oldest run again and complete; a retry without a
  body takes the third (more false); then nothing is left (retried 0);
- a wrong state, olderThanMs or limit is a 400 naming the field, and so is
  a field retry does not take (a typo, "State", would otherwise retry every
  failed job): 400 invalid_body; the webhook type is 400 invalid_bot_type.
"""
import os
import sys

import harness as h
from gwtest import gateway, curl, post_json

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "broker"))
from fakeworker import FakeWorker   # noqa: E402


def test():
    with h.Stack("gw-queue-retry") as s:
        s.redis()
        s.broker(env={"HEARTBEAT_LIVENESS": "20"})
        gw = gateway(s)
        u = gw.url
        w = FakeWorker(s.endpoint, "fw-gw", ["python"], 1)
        h.wait_until(lambda: any(x["name"] == "fw-gw" for x in s.client().stats()["workers"]), 5,
                     "the worker to register")

        def job(jid):
            return curl(u + "/job/" + jid, show=False).json

        failed = []
        for i in range(3):
            jid = post_json(u + "/invoke", {"botType": "python", "payload": i, "attempts": 1},
                            show=False).json["jobId"]
            w.done(w.recv_job(5)["jobId"], ok=False)
            h.wait_until(lambda: job(jid)["state"] == "failed", 5, "job %s to fail" % jid)
            failed.append(jid)

        def run_again(ids):
            got = []
            for _ in ids:
                j = w.recv_job(5)
                h.check(j is not None and j["attempt"] == 1, "a retried job runs from attempt 1", j)
                got.append(j["jobId"])
                w.done(j["jobId"], result={"ok": 1})
            h.check(sorted(got) == sorted(ids), "the jobs retried are the expected ones", got, ids)
            for jid in ids:
                h.wait_until(lambda: job(jid)["state"] == "completed", 5, "job %s to complete" % jid)

        r = post_json(u + "/queues/python/retry", {"limit": 2})
        h.check(r.status == 200 and r.json == {"botType": "python", "retried": 2, "more": True},
                "retry limit 2: 200, 2 retried, more left", r)
        run_again(failed[:2])
        r = curl("-X", "POST", u + "/queues/python/retry")
        h.check(r.status == 200 and r.json == {"botType": "python", "retried": 1, "more": False},
                "retry without a body: the defaults, the third job", r)
        run_again(failed[2:])
        r = post_json(u + "/queues/python/retry", {"state": "failed", "olderThanMs": 0})
        h.check(r.status == 200 and r.json["retried"] == 0 and r.json["more"] is False,
                "nothing failed is left: retried 0", r)

        for body, code, field in (("[1]", "invalid_body", "state"),
                                  ({"state": "completed"}, "invalid_state", "state"),
                                  ({"state": 3}, "invalid_state", "state"),
                                  ({"olderThanMs": -1}, "invalid_older_than", "olderThanMs"),
                                  ({"olderThanMs": "1"}, "invalid_older_than", "olderThanMs"),
                                  ({"limit": 0}, "invalid_limit", "limit"),
                                  ({"limit": 1001}, "invalid_limit", "limit"),
                                  ({"limit": 2.5}, "invalid_limit", "limit"),
                                  ({"foo": 1}, "invalid_body", '"foo"'),
                                  ({"State": "cancelled"}, "invalid_body", '"State"'),
                                  ({"olderThan": 3600000}, "invalid_body", '"olderThan"')):
            r = post_json(u + "/queues/python/retry", body)
            h.check(r.status == 400 and r.error_code() == code and field in r.json["error"]["message"],
                    "retry %r: 400 %s naming %s" % (body, code, field), r)
        r = post_json(u + "/queues/webhook/retry", {})
        h.check(r.status == 400 and r.error_code() == "invalid_bot_type"
                and "redeliver" in r.json["error"]["message"],
                "retry of the webhook type: 400 invalid_bot_type pointing to redeliver", r)
        r = post_json(u + "/queues/nosuch/retry", {})
        h.check(r.status == 400 and r.error_code() == "invalid_bot_type", "an unknown type: 400", r)
        w.close()


if __name__ == "__main__":
    h.main(test)

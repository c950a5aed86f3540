"""The webhook deliveries' queue is paused and resumed, never drained or
cleaned: a real gateway, broker and Redis, a fake bot worker and a fake
webhook manager (a worker of the webhook type).

A drain of the webhook type removed the queued deliveries and left their
jobs at webhook.state pending for ever.  Now POST /queues/webhook/drain and
/clean are 400 invalid_bot_type saying why, QUEUE drain/clean of webhook
over the wire is REJECTED bad_request, and the delivery is still queued;
pause holds it back, resume lets the webhook manager take it.
"""
import os
import sys

import harness as h
from gwtest import gateway, curl, post_json

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "broker"))
from fakeworker import FakeWorker   # noqa: E402

QUEUE = 0x0B


def test():
    with h.Stack("gw-webhook-queue") as s:
        s.redis()
        s.broker()
        gw = gateway(s)
        u = gw.url
        c = s.client()

        r = curl("-X", "POST", u + "/queues/webhook/pause")
        h.check(r.status == 200 and r.json == {"botType": "webhook", "paused": True, "removed": 0},
                "pause of the webhook queue: 200, paused", r)
        bot = FakeWorker(s.endpoint, "fw-bot", ["python"], 1)
        hook = FakeWorker(s.endpoint, "fw-hook", ["webhook"], 1)
        r = post_json(u + "/invoke", {"botType": "python", "payload": 1,
                                      "webhookUrl": "http://127.0.0.1:9/hook"})
        h.check(r.status == 202, "a job with a webhook: 202", r)
        jid = r.json["jobId"]
        bot.done(bot.recv_job()["jobId"], result={"ok": 1})

        def webhook_waiting():
            return curl(u + "/stats", show=False).json["types"]["webhook"]["waiting"]
        h.wait_until(lambda: webhook_waiting() == 1, 5, "its delivery to wait in the paused queue")
        h.check(hook.recv(timeout=0.3) is None, "the paused delivery is not sent to the webhook manager")

        for action, body in (("drain", None), ("clean", {"state": "completed"})):
            r = (post_json(u + "/queues/webhook/clean", body) if body
                 else curl("-X", "POST", u + "/queues/webhook/" + action))
            h.check(r.status == 400 and r.error_code() == "invalid_bot_type"
                    and "webhook deliveries" in r.json["error"]["message"]
                    and "pause and resume" in r.json["error"]["message"],
                    "POST /queues/webhook/%s: 400 invalid_bot_type saying why" % action, r)
            cmd, reply = c.request(QUEUE, dict(body or {}, botType="webhook", action=action))
            h.check(cmd == h.REJECTED and reply["code"] == "bad_request"
                    and "webhook deliveries" in reply["message"],
                    "QUEUE %s of webhook over the wire: REJECTED bad_request" % action, reply)
        h.check(webhook_waiting() == 1, "the delivery is still queued")
        rec = curl(u + "/job/" + jid).json
        h.check(rec["webhook"]["state"] == "pending", "its job's webhook is pending", rec)

        r = curl("-X", "POST", u + "/queues/webhook/resume")
        h.check(r.status == 200 and r.json["paused"] is False, "resume of the webhook queue: 200", r)
        delivery = hook.recv_job()
        h.check(delivery["jobId"] == jid + ".wh1", "the webhook manager gets the delivery", delivery)
        hook.done(delivery["jobId"], {}, ok=True)
        h.wait_until(lambda: (c.status(delivery["jobId"]) or {}).get("state") == "completed", 5,
                     "the delivery to complete")
        # Drain of a bot type still works.
        r = curl("-X", "POST", u + "/queues/python/drain")
        h.check(r.status == 200 and r.json["removed"] == 0, "drain of python: 200", r)
        bot.close()
        hook.close()


if __name__ == "__main__":
    h.main(test)

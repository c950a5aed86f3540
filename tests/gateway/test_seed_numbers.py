"""Bodies as the seed's clients write them: a real gateway, broker and Redis.

- "webhookUrl": "" is how the seed's JavaScript clients say "no webhook":
  accepted as absent (the job has no webhook), like null.
- Python's json.dumps writes a float as 1.0: an integer field (priority,
  timeoutMs, maxAttempts, attempts, delay, runAt, backoff.delay) given as a
  real with an integral value is that integer, in /invoke, in each item of
  /invoke/batch and in a schedule's priority; 1.5 stays a 400 naming the
  field.
"""
import time

import harness as h
from gwtest import curl, gateway, post_json


def test():
    with h.Stack("gw-seed-numbers") as s:
        s.redis()
        s.broker()
        gw = gateway(s)
        u = gw.url

        r = post_json(u + "/invoke", '{"botType": "python", "payload": {}, "webhookUrl": ""}')
        h.check(r.status == 202, 'webhookUrl "" is accepted (no webhook)', r)
        rec = curl(u + "/job/" + r.json["jobId"])
        h.check(rec.status == 200 and not rec.json.get("webhookUrl") and not rec.json.get("webhook"),
                'the job of webhookUrl "" has no webhook', rec)

        run_at = int(time.time() * 1000) + 3600 * 1000
        body = ('{"botType": "python", "payload": {"n": 2.0}, "priority": 1.0, "timeoutMs": 60000.0,'
                ' "maxAttempts": 2.0, "attempts": 4.0, "backoff": {"type": "fixed", "delay": 100.0},'
                ' "runAt": %d.0}' % run_at)
        r = post_json(u + "/invoke", body)
        h.check(r.status == 202 and r.json["priority"] == 1 and r.json["status"] == "delayed",
                "integer fields given as integral reals are accepted, priority 1", r)
        rec = curl(u + "/job/" + r.json["jobId"])
        j = rec.json
        h.check(j["priority"] == 1 and j["timeoutMs"] == 60000 and j["maxAttempts"] == 2
                and j["runAttempts"] == 4, "the record holds them as integers", rec)

        r = post_json(u + "/invoke", '{"botType": "python", "payload": {}, "delay": 5000.0}')
        h.check(r.status == 202 and r.json["status"] == "delayed", "delay 5000.0 delays the job", r)

        for field, value, code in (("priority", "1.5", "invalid_priority"),
                                   ("timeoutMs", "100.5", "invalid_timeout"),
                                   ("attempts", "2.5", "invalid_attempts"),
                                   ("delay", "0.5", "invalid_delay")):
            r = post_json(u + "/invoke", '{"botType": "python", "payload": {}, "%s": %s}' % (field, value))
            h.check(r.status == 400 and r.error_code() == code
                    and field in r.json["error"]["message"],
                    "%s %s is still 400 %s naming the field" % (field, value, code), r)

        r = post_json(u + "/invoke/batch",
                      '[{"botType": "python", "payload": {}, "priority": 2.0, "webhookUrl": ""},'
                      ' {"botType": "python", "payload": {}, "priority": 2.5}]')
        h.check(r.status == 207 and r.json["accepted"] == 1, "a batch: one accepted, one refused", r)
        first, second = r.json["jobs"]
        h.check(first["httpStatus"] == 202 and first["priority"] == 2,
                'the batch item with priority 2.0 and webhookUrl "" is accepted, priority 2', first)
        h.check(second["httpStatus"] == 400 and second["error"]["code"] == "invalid_priority",
                "the batch item with priority 2.5 is 400 invalid_priority", second)

        r = post_json(u + "/schedules", '{"key": "seed-1", "botType": "python", "payload": {},'
                      ' "everyMs": 60000, "priority": 1.0, "webhookUrl": ""}')
        h.check(r.status == 200 and r.json.get("priority") == 1 and not r.json.get("webhookUrl"),
                'a schedule with priority 1.0 and webhookUrl "": priority 1, no webhook', r)


if __name__ == "__main__":
    h.main(test)

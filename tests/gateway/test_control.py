"""Queue control and job actions over HTTP: a real gateway, broker and Redis.

POST /queues/{botType}/pause|resume|drain|clean, DELETE /job/{id},
POST /job/{id}/promote, and POST /invoke's retry and timing options
(attempts, backoff, delayMs, runAt): each exchange is printed as a curl
transcript; bad input is a 400 naming the field.
"""
import json
import os
import sys
import time

import harness as h
from gwtest import gateway, curl, post_json

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "broker"))
from fakeworker import FakeWorker   # noqa: E402


def test():
    with h.Stack("gw-control") as s:
        s.redis()
        s.broker(env={"HEARTBEAT_LIVENESS": "20"})
        gw = gateway(s)
        u = gw.url

        # Options on /invoke: a delayed job answers status delayed.
        r = post_json(u + "/invoke", {"botType": "python", "payload": {"a": 1}, "delayMs": 60000,
                                      "attempts": 2, "backoff": {"type": "fixed", "delayMs": 10}})
        h.check(r.status == 202 and r.json["status"] == "delayed"
                and r.json["estimatedPosition"] is None, "a delayed job: 202, status delayed", r)
        delayed = r.json["jobId"]
        r = curl(u + "/job/" + delayed)
        h.check(r.status == 200 and r.json["state"] == "delayed" and r.json["runAttempts"] == 2
                and r.json["backoff"] == {"type": "fixed", "delayMs": 10, "jitter": False}
                and r.json["runAt"].endswith("Z"), "GET /job shows delayed, runAt, the options", r)
        r = curl(u + "/jobs?state=delayed")
        h.check(r.status == 200 and [j["jobId"] for j in r.json["jobs"]] == [delayed],
                "GET /jobs?state=delayed lists it", r)
        for body, code in (({"delayMs": -1}, "invalid_delay"),
                           ({"runAt": "tomorrow"}, "invalid_run_at"),
                           ({"attempts": 101}, "invalid_attempts"),
                           ({"backoff": {"type": "linear", "delayMs": 1}}, "invalid_backoff"),
                           ({"backoff": {"type": "fixed"}}, "invalid_backoff")):
            r = post_json(u + "/invoke", dict(body, botType="python", payload=1))
            h.check(r.status == 400 and r.error_code() == code, "%r: 400 %s" % (body, code), r)
        r = post_json(u + "/invoke", {"botType": "python", "payload": 1,
                                      "runAt": int(time.time() * 1000) - 86400000})
        h.check(r.status == 400 and "runAt" in r.body, "a runAt a day ago: 400 naming runAt", r)

        # Promote: due now; promote again: 409.
        r = curl("-X", "POST", u + "/job/%s/promote" % delayed)
        h.check(r.status == 200 and r.json["state"] == "queued", "promote: 200, queued", r)
        r = curl("-X", "POST", u + "/job/%s/promote" % delayed)
        h.check(r.status == 409, "promote of a queued job: 409", r)

        # Pause / resume / drain over HTTP; /stats shows paused and delayed.
        r = curl("-X", "POST", u + "/queues/python/pause")
        h.check(r.status == 200 and r.json == {"botType": "python", "paused": True, "removed": 0},
                "pause: 200", r)
        r = curl(u + "/stats")
        h.check(r.json["types"]["python"]["paused"] is True and "delayed" in r.json["types"]["python"],
                "/stats shows paused and delayed per type", r)
        ids = [post_json(u + "/invoke", {"botType": "python", "payload": i}, show=False).json["jobId"]
               for i in range(3)]
        r = curl("-X", "POST", u + "/queues/python/drain")
        h.check(r.status == 200 and r.json["removed"] == 4, "drain removed the 4 queued jobs", r)
        r = curl(u + "/job/" + ids[0])
        h.check(r.status == 404, "a drained job: 404", r)
        r = curl("-X", "POST", u + "/queues/python/resume")
        h.check(r.status == 200 and r.json["paused"] is False, "resume: 200", r)
        r = curl("-X", "POST", u + "/queues/nosuch/pause")
        h.check(r.status == 400 and r.error_code() == "invalid_bot_type", "an unknown type: 400 naming the known ones", r)
        r = curl("-X", "POST", u + "/queues/Python!/pause")
        h.check(r.status == 404, "a path that is not a bot type: 404", r)
        r = curl(u + "/queues/python/pause")
        h.check(r.status == 405, "GET on pause: 405", r)

        # Clean: a body naming state and age.
        w = FakeWorker(s.endpoint, "fw-gw", ["python"], 1)
        h.wait_until(lambda: any(x["name"] == "fw-gw" for x in s.client().stats()["workers"]), 5,
                     "the worker to register")
        done = []
        for ok in (True, False, False):
            jid = post_json(u + "/invoke", {"botType": "python", "payload": 1, "attempts": 1},
                            show=False).json["jobId"]
            job = w.recv_job(5)
            w.done(job["jobId"], result=1) if ok else w.done(job["jobId"], ok=False)
            h.wait_until(lambda: curl(u + "/job/" + jid, show=False).json["state"] in h.TERMINAL, 5,
                         "job %s to end" % jid)
            done.append(jid)
        for body, code in (("", "invalid_json"), ("[1]", "invalid_body"),
                           ({"state": "queued"}, "invalid_state"),
                           ({"state": "failed", "olderThanMs": -1}, "invalid_older_than"),
                           ({"state": "failed", "olderThan": 0}, "invalid_body")):
            r = post_json(u + "/queues/python/clean", body)
            h.check(r.status == 400 and r.error_code() == code, "clean %r: 400 %s" % (body, code), r)
        h.check('"olderThan"' in r.json["error"]["message"], "an unknown field is named", r)
        r = post_json(u + "/queues/python/clean", {"state": "failed", "olderThanMs": 0})
        h.check(r.status == 200 and r.json["removed"] == 2, "clean failed: the 2 failed jobs", r)
        h.check(curl(u + "/job/" + done[0]).status == 200, "the completed job stays")
        # Clean cancelled: the cancelled jobs the broker holds.
        jid = post_json(u + "/invoke", {"botType": "python", "payload": 1, "delayMs": 60000},
                        show=False).json["jobId"]
        r = curl("-X", "POST", u + "/job/%s/cancel" % jid)
        h.check(r.status == 200 and curl(u + "/job/" + jid, show=False).json["state"] == "cancelled",
                "a delayed job cancelled", r)
        r = post_json(u + "/queues/python/clean", {"state": "cancelled", "olderThanMs": 60000})
        h.check(r.status == 200 and r.json["removed"] == 0, "clean cancelled older than 60 s: none", r)
        r = post_json(u + "/queues/python/clean", {"state": "cancelled"})
        h.check(r.status == 200 and r.json["removed"] == 1, "clean cancelled: the cancelled job", r)
        h.check(curl(u + "/job/" + jid).status == 404, "the cleaned cancelled job: 404")
        h.check(curl(u + "/job/" + done[0]).status == 200, "the completed job stays")

        # DELETE /job/{id}: a finished job, then again (404); a running job (409).
        r = curl("-X", "DELETE", u + "/job/" + done[0])
        h.check(r.status == 200 and r.json == {"jobId": done[0], "removed": True}, "DELETE: 200", r)
        h.check(curl("-X", "DELETE", u + "/job/" + done[0]).status == 404, "DELETE again: 404")
        jid = post_json(u + "/invoke", {"botType": "python", "payload": 1}, show=False).json["jobId"]
        w.recv_job(5)
        r = curl("-X", "DELETE", u + "/job/" + jid)
        h.check(r.status == 409, "DELETE of a running job: 409", r)
        w.close()

        # Schedules over HTTP.
        r = post_json(u + "/schedules", {"key": "nightly", "botType": "python", "payload": {"n": 1},
                                         "cron": "0 3 * * *", "tz": "Europe/Berlin"})
        h.check(r.status == 200 and r.json["key"] == "nightly" and r.json["nextAt"].endswith("Z"),
                "POST /schedules: 200 with the schedule and its next due time", r)
        h.check(not {"data", "processedOn", "finishedOn", "failedReason", "id"} & set(r.json),
                "a schedule carries none of a job record's BullMQ fields", sorted(r.json))
        for body, word in (({"key": "x", "botType": "python", "cron": "* * * *"}, "cron"),
                           ({"key": "x", "botType": "python", "everyMs": 5}, "everyMs"),
                           ({"key": "x", "botType": "python", "cron": "* * * * *", "tz": "Moon/Base"}, "tz"),
                           ({"botType": "python", "everyMs": 1000}, "key")):
            r = post_json(u + "/schedules", body)
            h.check(r.status == 400 and word in r.body, "POST /schedules %r: 400 naming %s" % (body, word), r)
        # The fields a schedule shares with /invoke get /invoke's codes (and statuses).
        for body, code in (({"key": "x", "everyMs": 1000}, "missing_field"),
                           ({"key": "x", "botType": "Py", "everyMs": 1000}, "invalid_bot_type"),
                           ({"key": "x", "botType": "nosuch", "everyMs": 1000}, "invalid_bot_type"),
                           ({"key": "x", "botType": "python", "everyMs": 1000, "priority": -1},
                            "invalid_priority"),
                           ({"key": "x", "botType": "python", "everyMs": 1000, "webhookUrl": "ftp://h"},
                            "invalid_webhook_url"),
                           ({"key": "x", "botType": "python", "everyMs": 1000,
                             "payload": json.loads("[" * 40 + "]" * 40)}, "invalid_payload")):
            inv = post_json(u + "/invoke", dict(body, payload=body.get("payload", {})), show=False)
            r = post_json(u + "/schedules", body)
            h.check(r.status == 400 and r.error_code() == code and inv.error_code() == code,
                    "POST /schedules %s: 400 %s, as /invoke answers" % (sorted(body), code), r, inv)
        # A 6-field cron (seconds first, as BullMQ takes): the 400 says to use everyMs.
        r = post_json(u + "/schedules", {"key": "x", "botType": "python", "cron": "*/10 * * * * *"})
        h.check(r.status == 400 and "seconds are not supported" in r.body and "everyMs" in r.body,
                "POST /schedules with a 6-field cron: 400 saying to use everyMs", r)
        r = post_json(u + "/schedules", "[1]")
        h.check(r.status == 400 and r.error_code() == "invalid_body", "a body that is not an object: 400", r)
        r = curl(u + "/schedules")
        h.check(r.status == 200 and [x["key"] for x in r.json["schedules"]] == ["nightly"], "GET /schedules", r)
        r = curl("-X", "DELETE", u + "/schedules/nightly")
        h.check(r.status == 200 and r.json == {"key": "nightly", "removed": True}, "DELETE /schedules/{key}", r)
        r = curl("-X", "DELETE", u + "/schedules/nightly")
        h.check(r.status == 404 and "schedule" in r.body, "DELETE again: 404 naming the schedule", r)


if __name__ == "__main__":
    h.main(test)

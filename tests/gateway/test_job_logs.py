"""GET /job/{id}/logs: a job's log as BullMQ's getJobLogs answers it, and
`log` in GET /job/{id}: a real Redis, broker, worker and gateway, curl.

The bot (spawned) writes lines on stderr and completes, or fails:

- GET /job/{id}: `log` is those lines as one string (the trailing newline
  trimmed), for a completed and for a failed job (with its failedReason);
- GET /job/{id}/logs: {"jobId", "logs": [the lines], "count": 2}, an empty
  line in the middle kept; found by its idempotencyKey too;
- a job whose bot wrote nothing on stderr: `log` null, {"logs": [],
  "count": 0};
- an unknown id: 404 not_found; POST: 405 with Allow: GET, HEAD.

Before, the route did not exist (404 "no such endpoint") and the record
had no `log`: the first check failed ("GET /job/{id}: log holds the bot's
stderr lines", no "log" key).
"""
import os

import harness as h
from gwtest import gateway, curl, post_json

BOT = r"""import json, sys
payload = json.load(sys.stdin)
for line in payload.get("err", []):
    sys.stderr.write(line + "\n")
sys.stderr.flush()
sys.exit(payload.get("exit", 0)) if payload.get("exit") else print(json.dumps({"done": True}))
"""


def submit(u, payload, **more):
    r = post_json(u + "/invoke", dict({"botType": "lg", "payload": payload, "attempts": 1}, **more))
    h.check(r.status == 202, "POST /invoke: 202", r)
    r = curl(u + "/job/%s?wait=20000" % r.json["jobId"], show=False)
    h.check(r.status == 200 and r.json["state"] in ("completed", "failed"), "the job ends", r)
    return r.json


def test():
    with h.Stack("gw-job-logs") as s:
        bot = os.path.join(s.dir, "bot.py")
        with open(bot, "w") as f:
            f.write(BOT)
        s.redis()
        s.broker()
        s.worker("--type", "lg", env={"BOT_LG_CMD": "/usr/bin/python3 " + bot})
        s.wait_workers(1)
        gw = gateway(s)
        u = gw.url

        rec = submit(u, {"err": ["step one", "", "step three"]}, idempotencyKey="logged-1")
        h.check(rec.get("log") == "step one\n\nstep three",
                "GET /job/{id}: log holds the bot's stderr lines", rec)
        r = curl(u + "/job/%s/logs" % rec["jobId"])
        h.check(r.status == 200 and r.json == {"jobId": rec["jobId"], "count": 3,
                                                "logs": ["step one", "", "step three"]},
                "GET /job/{id}/logs: BullMQ's {logs, count}, the empty line kept", r)
        r = curl(u + "/job/logged-1/logs")
        h.check(r.status == 200 and r.json["jobId"] == rec["jobId"] and r.json["count"] == 3,
                "GET /job/{idempotencyKey}/logs: the same job's", r)

        rec = submit(u, {"err": ["why it failed"], "exit": 3})
        h.check(rec["state"] == "failed" and rec["failedReason"] == "why it failed"
                and rec.get("log") == "why it failed",
                "a failed job: failedReason and log", rec)
        r = curl(u + "/job/%s/logs" % rec["jobId"])
        h.check(r.status == 200 and r.json["logs"] == ["why it failed"] and r.json["count"] == 1,
                "a failed job's logs", r)

        rec = submit(u, {})
        h.check("log" in rec and rec["log"] is None, "no stderr: log is null", rec)
        r = curl(u + "/job/%s/logs" % rec["jobId"])
        h.check(r.status == 200 and r.json == {"jobId": rec["jobId"], "logs": [], "count": 0},
                "no stderr: no lines", r)

        r = curl(u + "/job/no-such-job/logs")
        h.check(r.status == 404 and r.error_code() == "not_found", "an unknown job: 404", r)
        r = curl("-X", "POST", u + "/job/%s/logs" % rec["jobId"])
        h.check(r.status == 405 and "GET" in r.headers.get("allow", ""),
                "POST /job/{id}/logs: 405, Allow names GET", r)


if __name__ == "__main__":
    h.main(test)

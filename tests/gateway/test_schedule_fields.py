"""POST /schedules refuses a body field it does not take: a real gateway,
broker and Redis, spoken to with curl.

A typo in a schedule ("cronn", "webhookURL") made, before, a schedule other
than the one meant (here: one every minute, with no webhook), 200, the
field dropped without a word.  Now it is 400 invalid_body naming the field
and the fields taken, and no schedule is made.  Every field the message
lists is one the gateway README's POST /schedules row names, and a body
with each of them is taken.

Before, failed at "a schedule with \"cronn\": 400 invalid_body naming it"
(200, the schedule made).  A "tz" with "everyMs" was taken and dropped, even
a zone that does not exist, while with "cron" a bad zone is refused: now a
zone that does not exist is 400 bad_request naming tz, a real one is taken
and dropped (everyMs counts in no zone) (before, failed at "a schedule with
everyMs and tz 'Mars/Olympus': 400 bad_request naming tz").
"""
import os
import re
import time

import harness as h
from gwtest import gateway, curl, post_json


def test():
    with h.Stack("gw-schedule-fields") as s:
        s.redis()
        s.broker()
        gw = gateway(s)
        u = gw.url

        taken = None
        for typo, value in (("cronn", "0 3 * * *"), ("webhookURL", "http://example.com/hook"),
                            ("every", 1000)):
            body = {"key": "typo", "botType": "python", "payload": {}, "everyMs": 60000, typo: value}
            r = post_json(u + "/schedules", body)
            h.check(r.status == 400 and r.error_code() == "invalid_body"
                    and ('unknown field "%s"' % typo) in r.json["error"]["message"],
                    "a schedule with %r: 400 invalid_body naming it" % typo, r)
            taken = r.json["error"]["message"].split("the body takes only ", 1)[1]
        r = curl(u + "/schedules")
        h.check(r.status == 200 and r.json["schedules"] == [], "no schedule was made", r)

        fields = taken.split(", ")
        readme = open(os.path.join(os.environ["BOTMESH_ROOT"], "gateway", "README.md")).read()
        row = next(line for line in readme.splitlines() if line.startswith("| `POST /schedules`"))
        listed = re.search(r"body `\{([^`]*)\}`", row).group(1)
        missing = [f for f in fields if '"%s"' % f not in listed]
        h.check(not missing, "the README's POST /schedules row names every field taken", missing, row)

        now = int(time.time() * 1000)
        every = {"key": "all", "botType": "python", "payload": {"n": 1}, "cron": "0 3 * * *",
                 "tz": "Europe/Berlin", "limit": 5, "startAt": now + 3600000,
                 "endAt": now + 86400000 * 30, "priority": 2, "webhookUrl": "http://example.com/hook"}
        h.check(set(every) | {"everyMs"} == set(fields),
                "the fields taken are the schedule's (cron or everyMs)", sorted(fields))
        r = post_json(u + "/schedules", every)
        h.check(r.status == 200 and r.json["key"] == "all", "a schedule with every field: 200", r)
        r = post_json(u + "/schedules", {"key": "often", "botType": "python", "everyMs": 1000})
        h.check(r.status == 200 and r.json["key"] == "often", "a schedule with everyMs: 200", r)
        h.check("payload" in r.json and r.json["payload"] is None,
                "a schedule without payload: its runs' payload is null", r)

        # A time zone with everyMs is unused (everyMs counts in no zone): a
        # zone that does not exist is refused as with cron; a real one (a
        # caller that always sends "UTC", BullMQ's every with tz) is taken
        # and dropped.
        r = post_json(u + "/schedules", {"key": "tz-every", "botType": "python", "payload": {},
                                         "everyMs": 60000, "tz": "Mars/Olympus"})
        h.check(r.status == 400 and r.error_code() == "bad_request"
                and r.json["error"]["message"].startswith("tz: "),
                "a schedule with everyMs and tz 'Mars/Olympus': 400 bad_request naming tz", r)
        r = curl(u + "/schedules")
        h.check(r.status == 200 and "tz-every" not in [x["key"] for x in r.json["schedules"]],
                "no schedule was made with everyMs and a zone that does not exist", r)
        for zone in ("UTC", "Europe/Berlin"):
            r = post_json(u + "/schedules", {"key": "tz-every", "botType": "python", "payload": {},
                                             "everyMs": 60000, "tz": zone})
            h.check(r.status == 200 and r.json["key"] == "tz-every" and not r.json.get("tz"),
                    "a schedule with everyMs and tz %r: 200, the zone dropped" % zone, r)

if __name__ == "__main__":
    h.main(test)

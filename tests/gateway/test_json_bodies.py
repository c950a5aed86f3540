"""Every route that takes a JSON body reads it alike: a real gateway,
broker and Redis, spoken to with curl.

POST /invoke, /invoke/batch, /schedules and /queues/{botType}/clean get
the same answers for the same bad bodies: 415 for a declared type that is
not JSON (curl -d without -H sends a form), 400 invalid_json naming line
and column for malformed text, a duplicate key or an integer past 64 bits,
and 400 invalid_json for text nested 1000 deep, which must not reach
jansson's recursive parser on a civetweb thread's small stack (it crashed
the gateway, exit 139).  A field nested 31..64 deep that is not payload is
named as itself, not as payload.
"""
import harness as h
from gwtest import gateway, curl, post_json

SCHEDULE = '{"key":"k1","botType":"python","everyMs":1000'
ROUTES = {
    "/invoke": '{"botType":"python","payload":1',
    "/invoke/batch": '[{"botType":"python","payload":1',
    "/schedules": SCHEDULE,
    "/queues/python/clean": '{"state":"failed"',
}


def close(start):
    """The body that start opens, closed: one ']' more for a batch."""
    return start + ("}]" if start.startswith("[") else "}")


def test():
    with h.Stack("gw-json-bodies") as s:
        s.redis()
        s.broker()
        gw = gateway(s)
        u = gw.url

        for path, start in ROUTES.items():
            deep = start + ',"x":' + "[" * 1000 + "]" * 1000 + ("}]" if start[0] == "[" else "}")
            r = post_json(u + path, deep)
            h.check(r.status == 400 and r.error_code() == "invalid_json"
                    and "nests deeper than" in r.json["error"]["message"],
                    "%s, a field 1000 deep: 400 invalid_json" % path, r)
            h.check(gw.alive(), "the gateway is alive after the deep body on %s" % path,
                    gw.output()[-1500:])

            r = curl("-X", "POST", u + path, "-d", close(start))
            h.check(r.status == 415 and r.error_code() == "unsupported_media_type",
                    "%s, a form-encoded body (curl -d, no Content-Type): 415" % path, r)

            r = post_json(u + path, start + ',"x":}')
            h.check(r.status == 400 and r.error_code() == "invalid_json"
                    and "line 1 column" in r.json["error"]["message"],
                    "%s, malformed JSON: 400 invalid_json naming line and column" % path, r)

            r = post_json(u + path, close(start + ',"x":1,"x":2'))
            h.check(r.status == 400 and r.error_code() == "invalid_json"
                    and "duplicate" in r.json["error"]["message"],
                    "%s, a key given twice: 400 invalid_json" % path, r)

            r = post_json(u + path, close(start + ',"x":123456789012345678901234'))
            h.check(r.status == 400 and r.error_code() == "invalid_json"
                    and "64-bit" in r.json["error"]["message"],
                    "%s, an integer past 64 bits: 400 invalid_json saying so" % path, r)

        for path in ("/schedules", "/queues/python/clean"):
            r = post_json(u + path, "")
            h.check(r.status == 400 and r.error_code() == "invalid_json"
                    and "empty" in r.json["error"]["message"],
                    "%s, an empty body: 400 invalid_json" % path, r)

        # 40 deep in a field that is not payload: named as that field.
        r = post_json(u + "/schedules", SCHEDULE + ',"tz":' + "[" * 40 + "]" * 40 + "}")
        h.check(r.status == 400 and r.error_code() == "invalid_body"
                and r.json["error"]["message"].startswith("tz nests deeper"),
                "/schedules, a field 40 deep: 400 naming it, not payload", r)

        # The routes still take good bodies.
        r = post_json(u + "/schedules", {"key": "k1", "botType": "python", "everyMs": 60000,
                                         "payload": {"a": [1]}})
        h.check(r.status == 200 and r.json["key"] == "k1", "/schedules, a good body: 200", r)
        r = curl("-X", "POST", u + "/queues/python/clean", "-H", "Content-Type:", "--data-binary",
                 '{"state":"failed","olderThanMs":0}')
        h.check(r.status == 200 and r.json["removed"] == 0,
                "/queues/python/clean, a good body without Content-Type: 200", r)
        r = post_json(u + "/invoke", {"botType": "python", "payload": {"n": 1}})
        h.check(r.status == 202, "/invoke, a good body: 202", r)


if __name__ == "__main__":
    h.main(test)

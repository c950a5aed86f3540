"""Job ids that hold '/', '?', '#' or '%' are reached percent-encoded: a
real gateway, broker and Redis, spoken to with curl.

A schedule's runs are jobs "<key>@<due ms>", and a key may hold any
printable ASCII but a space, so a run of "reports/daily" is
"reports/daily@1796...": GET /job/reports%2Fdaily%401796... must find it
(and cancel it, and DELETE it), as the dashboard asks for it with
encodeURIComponent.  The gateway routes on the path as sent and decodes
the id segment alone (before, civetweb decoded the whole path first, the
%2F became a '/' and the request was a 404).
"""
from urllib.parse import quote

import harness as h
from gwtest import gateway, curl, post_json


def test():
    with h.Stack("gw-job-paths") as s:
        s.redis()
        s.broker()
        gw = gateway(s)
        u = gw.url

        for key in ("reports/daily", "q?h#p%x"):
            r = post_json(u + "/schedules", {"key": key, "botType": "python", "payload": 1,
                                             "everyMs": 100, "limit": 1})
            h.check(r.status == 200 and r.json["key"] == key, "POST /schedules %r: 200" % key, r)

            def run():
                jobs = curl(u + "/jobs?botType=python", show=False).json["jobs"]
                return [j["jobId"] for j in jobs if j["jobId"].startswith(key + "@")]
            h.wait_until(run, 10, "the first run of schedule %r" % key)
            job = run()[0]
            enc = quote(job, safe="")
            h.log("run %s, in a path: %s" % (job, enc))

            r = curl(u + "/job/" + enc)
            h.check(r.status == 200 and r.json["jobId"] == job and r.json["state"] == "queued",
                    "GET /job/{the run id, percent-encoded}: 200 with its record", r)
            r = curl("-X", "POST", u + "/job/%s/cancel" % enc)
            h.check(r.status == 200 and r.json["jobId"] == job and r.json["state"] == "cancelled",
                    "POST /job/{id}/cancel: 200, cancelled", r)
            r = curl("-X", "DELETE", u + "/job/" + enc)
            h.check(r.status == 200 and r.json == {"jobId": job, "removed": True},
                    "DELETE /job/{id}: 200, removed", r)
            r = curl(u + "/job/" + enc)
            h.check(r.status == 404 and r.error_code() == "not_found", "GET again: 404", r)

            r = curl("-X", "DELETE", u + "/schedules/" + quote(key, safe=""))
            h.check(r.status == 200 and r.json == {"key": key, "removed": True},
                    "DELETE /schedules/{key, percent-encoded}: 200", r)

        # The id segment is one segment: a '/' sent as it is still ends it.
        r = curl(u + "/job/reports/daily@1")
        h.check(r.status == 404 and r.error_code() == "not_found",
                "GET /job/reports/daily@1 (an unencoded '/'): 404 no such endpoint", r)
        # Other routes still take encoded paths, decoded.
        r = curl(u + "/%68ealth")
        h.check(r.status == 200 and r.json["status"] == "healthy", "GET /%68ealth: /health", r)
        r = curl(u + "/job/%00x")
        h.check(r.status == 404, "GET /job/%00x (a NUL in the id): 404", r)
        r = curl(u + "/admin/queues")
        h.check(r.status == 200 and "html" in r.headers.get("content-type", ""),
                "GET /admin/queues: the dashboard", r)


if __name__ == "__main__":
    h.main(test)

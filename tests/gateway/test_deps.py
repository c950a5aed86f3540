"""POST /invoke with dependsOn: run two jobs, then a third with their
results, over HTTP.

A real stack: redis, broker, gateway and a worker whose bot ("dep",
tests/broker/depbot.py) answers with what it was given.  A and B are
invoked, then C with dependsOn [A, B] and dependencyResults: 202 status
waiting-children; GET /job/C shows state and bullmqState
waiting-children, dependsOn and pendingDependencies; GET /jobs
?state=waiting-children lists it; C completes with both results, which GET /job/C
shows as dependencyValues (GET /jobs does not).  Bad
dependsOn (not an array, a number among the ids, a repeat, an id of no
job), and the options without dependsOn: 400 naming the field and index.
The same through POST /invoke/batch.
"""
import os

import harness as h
from gwtest import curl, gateway, post_json

BOT = "/usr/bin/python3 " + os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                         "broker", "depbot.py")


def test():
    with h.Stack("gw-deps") as s:
        s.redis()
        s.broker()
        s.worker("--type", "dep", "--concurrency", "2", env={"BOT_DEP_CMD": BOT})
        s.wait_workers(1, "dep")
        u = gateway(s).url

        a = post_json(u + "/invoke", {"botType": "dep", "payload": {"n": "a", "sleepMs": 500}})
        b = post_json(u + "/invoke", {"botType": "dep", "payload": {"n": "b", "sleepMs": 800}})
        h.check(a.status == 202 and b.status == 202, "A and B accepted", a, b)
        a, b = a.json["jobId"], b.json["jobId"]
        r = post_json(u + "/invoke", {"botType": "dep", "payload": {"n": "c"},
                                      "dependsOn": [a, b], "dependencyResults": True})
        h.check(r.status == 202 and r.json["status"] == "waiting-children",
                "C accepted, status waiting-children", r)
        c = r.json["jobId"]
        r = curl(u + "/job/" + c)
        h.check(r.status == 200 and r.json["state"] == "waiting-children"
                and r.json["bullmqState"] == "waiting-children" and r.json["dependsOn"] == [a, b]
                and sorted(r.json["pendingDependencies"]) == sorted([a, b]),
                "GET /job shows C waiting for A and B", r)
        r = curl(u + "/jobs?state=waiting-children")
        h.check(r.status == 200 and c in [j["jobId"] for j in r.json["jobs"]],
                "GET /jobs?state=waiting-children lists C", r)
        r = curl(u + "/jobs?state=bogus")
        h.check(r.status == 400 and "waiting-children" in r.json["error"]["message"],
                "a wrong state's 400 names waiting-children among the states", r)

        def ended():
            r = curl(u + "/job/" + c, show=False)
            return r.json if r.json["state"] in h.TERMINAL else None
        rec = h.wait_until(ended, 30, "C to end")
        ra, rb = curl(u + "/job/" + a, show=False).json, curl(u + "/job/" + b, show=False).json
        h.check(rec["state"] == "completed" and rec["result"]["got"] == {
            "payload": {"n": "c"}, "dependencies": {a: ra["result"], b: rb["result"]}},
            "C's bot got its payload and both results", rec)
        h.check(rec.get("dependencyValues") == {a: ra["result"], b: rb["result"]},
                "GET /job/C shows the results it kept (dependencyValues)", rec)
        r = curl(u + "/jobs?state=completed")
        h.check(all("dependencyValues" not in j for j in r.json["jobs"]),
                "GET /jobs leaves dependencyValues out", r)

        for body, field in (({"dependsOn": a}, "dependsOn"), ({"dependsOn": [a, 5]}, "dependsOn[1]"),
                            ({"dependsOn": [a, a]}, "dependsOn[1]"),
                            ({"dependsOn": [a, "no-such-job"]}, "dependsOn[1]"),
                            ({"dependencyResults": True}, "dependencyResults"),
                            ({"dependsOn": [a], "onDependencyFailure": "later"},
                             "onDependencyFailure")):
            r = post_json(u + "/invoke", dict(body, botType="dep", payload=1))
            h.check(r.status == 400 and field in r.json["error"]["message"],
                    "%r: 400 naming %s" % (body, field), r)

        e = post_json(u + "/invoke", {"botType": "dep", "payload": {"sleepMs": 3000}}).json["jobId"]
        r = post_json(u + "/invoke/batch", [
            {"botType": "dep", "payload": {"n": "d"}, "dependsOn": [e, c]},
            {"botType": "dep", "payload": 1, "dependsOn": ["no-such-job"]}])
        h.check(r.status == 207 and len(r.json["jobs"]) == 2, "the batch is answered", r)
        first, second = r.json["jobs"]
        h.check(first.get("status") == "waiting-children", "the batch's first item waits for E",
                first)
        h.check(second.get("httpStatus") == 400 and "dependsOn[0]" in second["error"]["message"],
                "the batch's second item is refused naming dependsOn[0]", second)

if __name__ == "__main__":
    h.main(test)

"""A job for a bot type no worker serves now is accepted with a warning
that says so, a real gateway, broker and Redis.

POST /invoke of a "python" job while no worker serves python: 202 with
"warning": "no worker serves bot type python now: the job waits until one
connects" (the broker's ACCEPTED says unserved, protocol.md section 4);
each accepted item of POST /invoke/batch and each node of POST /flows says
the same, after the request's own warning (a loopback webhookUrl) when
it has one.  Once a worker serves python, the 202 has no warning.  Before,
the 202 was plain: "the 202 warns that no worker serves python" failed.
"""
import harness as h
from gwtest import gateway, post_json
from fakeworker import FakeWorker

WARNING = "no worker serves bot type python now: the job waits until one connects"


def test():
    with h.Stack("gw-invoke-unserved") as s:
        s.redis()
        s.broker()
        u = gateway(s, env={"WEBHOOK_ALLOW_PRIVATE": "0"}).url

        r = post_json(u + "/invoke", {"botType": "python", "payload": {}})
        h.check(r.status == 202 and r.json.get("warning") == WARNING,
                "the 202 warns that no worker serves python", r.status, r.json)
        h.check(r.json["status"] == "queued" and r.json["jobId"], "the job is queued all the same", r.json)

        # After the request's own warning, joined by "; ".
        r = post_json(u + "/invoke", {"botType": "python", "payload": {},
                                      "webhookUrl": "http://127.0.0.1:5000/hook"})
        warning = r.json.get("warning", "")
        h.check(r.status == 202 and warning.startswith("webhookUrl host 127.0.0.1 is loopback")
                and warning.endswith("; " + WARNING), "both warnings, the request's first", r.status, r.json)

        r = post_json(u + "/invoke/batch", [{"botType": "python", "payload": {"n": 1}},
                                            {"botType": "python", "payload": {"n": 2}}])
        h.check(r.status == 207 and [j.get("warning") for j in r.json["jobs"]] == [WARNING, WARNING],
                "each accepted batch item warns", r.status, r.json)

        r = post_json(u + "/flows", {"botType": "python", "payload": {"n": 3},
                                     "children": [{"botType": "python", "payload": {"n": 4}}]})
        h.check(r.status == 202 and r.json.get("warning") == WARNING
                and [c.get("warning") for c in r.json.get("children", [])] == [WARNING],
                "each flow node warns", r.status, r.json)

        w = FakeWorker(s.endpoint, "unserved-py", ["python"], 1)
        s.wait_workers(1, "python")
        r = post_json(u + "/invoke", {"botType": "python", "payload": {}})
        h.check(r.status == 202 and "warning" not in r.json,
                "served: the 202 has no warning", r.status, r.json)
        w.close()


if __name__ == "__main__":
    h.main(test)

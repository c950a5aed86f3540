"""Jobs whose dependency failed, over HTTP: POST /job/{id}/retry of a job
with dependsOn answers the state the job is in (waiting-children while a
dependency has not completed).

A real stack: redis, broker, gateway and a worker whose bot ("dep",
tests/broker/depbot.py) fails until a flag file exists.  A (attempts 1)
fails, so C (dependsOn [A]) fails dependency_failed.  RETRY of C: 202 with
status waiting-children, and GET /job/C says so.  The flag made, RETRY of
A completes it (status queued: it has no dependencies) and releases C,
which completes.
"""
import os

import harness as h
from gwtest import curl, gateway, post_json

BOT = "/usr/bin/python3 " + os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                         "broker", "depbot.py")


def test():
    with h.Stack("gw-deps-failed") as s:
        s.redis()
        s.broker()
        s.worker("--type", "dep", env={"BOT_DEP_CMD": BOT})
        s.wait_workers(1, "dep")
        u = gateway(s).url
        flag = os.path.join(s.dir, "flag")

        def ended(job):
            def check():
                r = curl(u + "/job/" + job, show=False)
                return r.json if r.json["state"] in h.TERMINAL else None
            return check

        a = post_json(u + "/invoke", {"botType": "dep", "payload": {"failUnless": flag},
                                      "attempts": 1}).json["jobId"]
        c = post_json(u + "/invoke", {"botType": "dep", "payload": {"n": "c"},
                                      "dependsOn": [a]}).json["jobId"]
        rec = h.wait_until(ended(c), 30, "C to fail with A")
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_failed",
                "C failed dependency_failed", rec)

        r = post_json(u + "/job/%s/retry" % c, {})
        h.check(r.status == 202 and r.json["status"] == "waiting-children",
                "RETRY of C answers waiting-children, the state it is in", r)
        r = curl(u + "/job/" + c)
        h.check(r.json["state"] == "waiting-children" and r.json["pendingDependencies"] == [a],
                "GET /job/C: waiting for A", r)

        open(flag, "w").close()
        r = post_json(u + "/job/%s/retry" % a, {})
        h.check(r.status == 202 and r.json["status"] == "queued", "RETRY of A answers queued", r)
        rec = h.wait_until(ended(c), 30, "C to end after A's RETRY")
        h.check(rec["state"] == "completed", "C completed once A did", rec)


if __name__ == "__main__":
    h.main(test)

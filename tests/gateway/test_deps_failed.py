"""Jobs whose dependency failed, over HTTP: POST /job/{id}/retry of a job
with dependsOn answers the state the job is in (waiting-children while a
dependency has not completed), and BullMQ's names of onDependencyFailure.

A real stack: redis, broker, gateway and a worker whose bot ("dep",
tests/broker/depbot.py) fails until a flag file exists.  A (attempts 1)
fails, so C (dependsOn [A]) fails dependency_failed.  RETRY of C: 202 with
status waiting-children, and GET /job/C says so.  The flag made, RETRY of
A completes it (status queued: it has no dependencies) and releases C,
which completes.  BullMQ's flow options: ignoreDependencyOnFailure true
lets D depend on the failed A and complete (failedDependencies [A]);
failParentOnFailure true is "fail" (a job depending on the failed A, in
a batch too, is accepted as failed dependency_failed); two that
disagree, or one that is not a boolean, or one without dependsOn: 400
invalid_dependencies naming them.
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

        # BullMQ's names: ignoreDependencyOnFailure true is "ignore" (D may
        # depend on the failed A and runs), failParentOnFailure true "fail".
        r = post_json(u + "/invoke", {"botType": "dep", "payload": {"n": "d"}, "dependsOn": [a],
                                      "ignoreDependencyOnFailure": True})
        h.check(r.status == 202 and "ignored" not in r.json,
                "ignoreDependencyOnFailure true: D accepted, the option read", r)
        rec = h.wait_until(ended(r.json["jobId"]), 30, "D to end")
        h.check(rec["state"] == "completed" and rec["failedDependencies"] == [a],
                "D completed, A counted as done failed", rec)
        r = post_json(u + "/invoke", {"botType": "dep", "payload": 1, "dependsOn": [a],
                                      "failParentOnFailure": True})
        h.check(r.status == 202 and r.json["status"] == "failed" and "ignored" not in r.json,
                "failParentOnFailure true: failed at once on the failed A, as without ignore", r)
        # A dependency failed before the SUBMIT fails the job as one failing
        # after: accepted, failed dependency_failed; in a batch too.
        r = post_json(u + "/invoke/batch", [{"botType": "dep", "payload": 2, "dependsOn": [a]}])
        h.check(r.status == 207 and r.json["jobs"][0].get("status") == "failed",
                "a batch item depending on the failed A: status failed", r)
        rec = curl(u + "/job/" + r.json["jobs"][0]["jobId"]).json
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "dependency_failed"
                and rec["error"]["message"] == "dependency %s failed: bot_failed" % a,
                "its record: dependency_failed naming A", rec)
        for body, names in (({"failParentOnFailure": True, "onDependencyFailure": "ignore"},
                             ("failParentOnFailure", "onDependencyFailure")),
                            ({"ignoreDependencyOnFailure": True, "failParentOnFailure": True},
                             ("failParentOnFailure", "ignoreDependencyOnFailure")),
                            ({"ignoreDependencyOnFailure": 1}, ("ignoreDependencyOnFailure",))):
            r = post_json(u + "/invoke", dict(body, botType="dep", payload=1, dependsOn=[a]))
            h.check(r.status == 400 and r.json["error"]["code"] == "invalid_dependencies"
                    and all(n in r.json["error"]["message"] for n in names),
                    "%r: 400 naming %s" % (body, names), r)
        r = post_json(u + "/invoke", {"botType": "dep", "payload": 1, "ignoreDependencyOnFailure": True})
        h.check(r.status == 400 and "dependsOn" in r.json["error"]["message"],
                "ignoreDependencyOnFailure without dependsOn: 400", r)

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

"""A seed (BullMQ) client polls GET /job/{id} while the job's state is
waiting, active or delayed.  botmesh's `state` says queued and running;
`bullmqState` carries BullMQ's name (waiting, active, delayed, completed,
failed; a cancelled job is failed there), so that such a loop, reading
bullmqState, ends when the job has ended.

A real stack: redis, broker, gateway and one python worker whose bot waits
until the test creates a file, then echoes its payload (cat).
"""
import os

import harness as h
from gwtest import curl, gateway, post_json


def states(u, job_id):
    r = curl(u + "/job/" + job_id, show=False)
    h.check(r.status == 200, "GET /job/%s answers 200" % job_id, r)
    return r.json["state"], r.json.get("bullmqState")


def test():
    with h.Stack("gw-bullmq-state") as s:
        release = os.path.join(s.dir, "release")
        bot = "/bin/sh -c 'while [ ! -e %s ]; do sleep 0.05; done; exec cat'" % release
        s.redis()
        s.broker()
        s.worker("--type", "python", "--concurrency", "1", env={"BOT_PYTHON_CMD": bot})
        s.wait_workers(1, "python")
        gw = gateway(s)
        u = gw.url

        running = post_json(u + "/invoke", {"botType": "python", "payload": {"n": 1}}).json["jobId"]
        h.wait_until(lambda: states(u, running)[0] == "running", 15, "the first job to run")
        h.check(states(u, running) == ("running", "active"), "running is BullMQ's active",
                states(u, running))

        queued = post_json(u + "/invoke", {"botType": "python", "payload": {"n": 2}}).json["jobId"]
        h.check(states(u, queued) == ("queued", "waiting"),
                "queued behind it (one slot) is BullMQ's waiting", states(u, queued))

        delayed = post_json(u + "/invoke", {"botType": "python", "payload": {},
                                            "delay": 3600000}).json["jobId"]
        h.check(states(u, delayed) == ("delayed", "delayed"), "delayed is delayed",
                states(u, delayed))
        r = curl("-X", "POST", u + "/job/%s/cancel" % delayed)
        h.check(r.status == 200 and r.json["state"] == "cancelled" and r.json["bullmqState"] == "failed",
                "a cancelled job is BullMQ's failed, in the cancel's answer too", r)

        # The seed's poll loop, on bullmqState: it ends once the job has ended.
        open(release, "w").close()
        h.wait_until(lambda: states(u, queued)[1] not in ("waiting", "active", "delayed"), 30,
                     "the seed's poll loop on bullmqState to end")
        h.check(states(u, queued) == ("completed", "completed"),
                "the poll loop ends with the job completed", states(u, queued))
        r = curl(u + "/jobs?state=completed")
        h.check(r.status == 200 and r.json["jobs"]
                and all(j["bullmqState"] == "completed" for j in r.json["jobs"]),
                "GET /jobs records carry bullmqState too", r)


if __name__ == "__main__":
    h.main(test)

"""A job removed while a request waits for it (GET /job/{id}?wait=MS,
POST /invoke?wait=MS) is answered 404 not_found at once, the message
saying the job was removed while the request waited (not the "no job with
this id" of an id that never was one), and the gateway logs it with the
job id.

A real stack: redis, broker and gateway, no worker, so the jobs stay
queued.  Removed by DELETE /job/{id} (the GET waiter) and by a drain of
the queue (the /invoke waiter).  Before, the GET waiter got the 404 of an
unknown id, and POST /invoke?wait answered 202 without `state`, as if the
broker could not be asked.
"""
import json
import time

import harness as h
from gwtest import curl, gateway, post_json
from test_wait import in_background, waiters


def removed_answer(w, job_id, what):
    w["thread"].join(15)
    r = w.get("r")
    h.check(r is not None and r.status == 404 and r.error_code() == "not_found"
            and job_id in r.json["error"]["message"]
            and "removed while this request waited" in r.json["error"]["message"],
            "%s: 404 not_found saying the job was removed while waiting" % what, r)


def test():
    with h.Stack("gw-wait-removed") as s:
        s.redis()
        s.broker()
        gw = gateway(s)
        u = gw.url

        r = curl(u + "/job/nosuchjob?wait=5000")
        h.check(r.status == 404 and r.error_code() == "not_found"
                and "removed" not in r.json["error"]["message"],
                "an id that never was a job: the plain 404", r)

        # GET ?wait, then DELETE /job/{id}
        job = post_json(u + "/invoke", {"botType": "python", "payload": {"n": 1}}).json["jobId"]
        waiter = in_background(lambda: curl(u + "/job/%s?wait=30000" % job, timeout=60))
        h.wait_until(lambda: waiters(u) == 1, 10, "the GET to wait")
        r = curl("-X", "DELETE", u + "/job/" + job)
        h.check(r.status == 200 and r.json == {"jobId": job, "removed": True}, "DELETE /job/{id}", r)
        t0 = time.monotonic()
        removed_answer(waiter, job, "GET /job/{id}?wait")
        h.check(waiter["at"] - t0 < 10, "... within %.2f s, not at the end of its wait"
                % (waiter["at"] - t0))

        # POST /invoke?wait, then a drain of its queue
        body = json.dumps({"botType": "python", "payload": {"n": 2}})
        waiter = in_background(lambda: curl("-X", "POST", u + "/invoke?wait=30000", "-H",
                                            "Content-Type: application/json", "-d", body,
                                            timeout=60))
        h.wait_until(lambda: waiters(u) == 1, 10, "the POST /invoke to wait")
        jobs = curl(u + "/jobs?botType=python", show=False).json["jobs"]
        h.check(len(jobs) == 1 and jobs[0]["state"] == "queued", "its job is queued", jobs)
        job = jobs[0]["jobId"]
        r = post_json(u + "/queues/python/drain", {})
        h.check(r.status == 200 and r.json.get("removed") == 1, "the drain removed the job", r)
        removed_answer(waiter, job, "POST /invoke?wait")
        h.wait_until(lambda: waiters(u) == 0, 10, "no request waiting any more")

        gw.signal(15)
        h.check(gw.p.wait(15) == 0, "the gateway exits 0")
        out = gw.output()
        h.check(out.count("the job was removed while a request waited for it") == 2,
                "one log line per waiter whose job was removed", out[-1500:])


if __name__ == "__main__":
    h.main(test)

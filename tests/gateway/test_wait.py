"""Long-polling a job: GET /job/{id}?wait=MS and POST /invoke?wait=MS answer
once the job has finished (with its result), or with the record as it is
when MS have passed; a bad wait, or any wait on POST /invoke/batch, is 400
invalid_wait; past
GATEWAY_MAX_WAITERS waiters, 503 too_many_waiters (and no job submitted);
wait=0 is no wait (answered as without wait, never too_many_waiters);
SIGTERM answers the waiters at once with their jobs' records.

A real stack: redis, broker, gateway and one python worker (one slot)
whose bot waits until the test creates a file, then echoes its payload
(cat).  Before ?wait existed the gateway ignored it: GET /job/{id}?wait=
answered at once with the running job.
"""
import os
import re
import threading
import time

import harness as h
from gwtest import curl, gateway, post_json


def waiters(u):
    text = curl(u + "/metrics", show=False).body
    m = re.search(r"^gateway_waiters (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def in_background(fn):
    """Run fn in a thread; the returned dict gets "r" (its answer) and "at"
    (time.monotonic() when it came)."""
    out = {}

    def run():
        out["r"] = fn()
        out["at"] = time.monotonic()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    out["thread"] = t
    return out


def test():
    with h.Stack("gw-wait") as s:
        release = os.path.join(s.dir, "release")
        bot = "/bin/sh -c 'while [ ! -e %s ]; do sleep 0.05; done; exec cat'" % release
        s.redis()
        s.broker()
        s.worker("--type", "python", "--concurrency", "1", env={"BOT_PYTHON_CMD": bot})
        s.wait_workers(1, "python")
        gw = gateway(s, env={"GATEWAY_MAX_WAITERS": "2"})
        u = gw.url

        running = post_json(u + "/invoke", {"botType": "python", "payload": {"n": 1}}).json["jobId"]
        h.wait_until(lambda: curl(u + "/job/" + running, show=False).json["state"] == "running",
                     15, "the first job to run")

        # The wait runs out: 200 with the record as it is (running).
        t0 = time.monotonic()
        r = curl(u + "/job/%s?wait=400" % running)
        took = time.monotonic() - t0
        h.check(r.status == 200 and r.json["state"] == "running" and r.json["jobId"] == running,
                "GET ?wait=400 of a running job: 200 with the running record", r)
        h.check(took >= 0.38, "it waited the 400 ms before answering (%.3f s)" % took)

        # A bad wait: 400 naming it, on both routes; no job submitted.
        for bad in ("abc", "-1", "60001", "1.5", ""):
            r = curl(u + "/job/%s?wait=%s" % (running, bad))
            h.check(r.status == 400 and r.error_code() == "invalid_wait"
                    and "wait" in r.json["error"]["message"], "wait=%r: 400 invalid_wait" % bad, r)
        r = curl(u + "/job/%s?wait=10&wait=20" % running)
        h.check(r.status == 400 and r.error_code() == "invalid_wait", "wait given twice: 400", r)
        r = post_json(u + "/invoke?wait=forever", {"botType": "python", "payload": {"bad": 1}})
        h.check(r.status == 400 and r.error_code() == "invalid_wait",
                "POST /invoke?wait=forever: 400 invalid_wait", r)
        # POST /invoke/batch answers at once: any wait there is refused,
        # not ignored (the jobs counted below show none was submitted).
        for q in ("wait=5000", "wait=abc", "wait="):
            r = post_json(u + "/invoke/batch?" + q, [{"botType": "python", "payload": {"b": 1}}])
            h.check(r.status == 400 and r.error_code() == "invalid_wait"
                    and "wait" in r.json["error"]["message"]
                    and "GET /job/{id}?wait=MS" in r.json["error"]["message"],
                    "POST /invoke/batch?%s: 400 invalid_wait naming wait" % q, r)

        # POST /invoke?wait that runs out: 202, the accepted body and the
        # state now (queued behind the running job).
        t0 = time.monotonic()
        r = post_json(u + "/invoke?wait=300", {"botType": "python", "payload": {"n": 2}})
        took = time.monotonic() - t0
        h.check(r.status == 202 and r.json["status"] == "queued" and r.json["state"] == "queued"
                and r.headers.get("location") == "/job/" + r.json["jobId"],
                "POST /invoke?wait=300 of a job that cannot run yet: 202 with its state", r)
        h.check(took >= 0.28, "it waited the 300 ms (%.3f s)" % took)
        queued = r.json["jobId"]

        # Two waiters (GATEWAY_MAX_WAITERS=2); a third is refused.
        first = in_background(lambda: curl(u + "/job/%s?wait=60000" % running, timeout=90))
        second = in_background(lambda: curl(u + "/job/%s?wait=60000" % queued, timeout=90))
        h.wait_until(lambda: waiters(u) == 2, 10, "two requests waiting (gateway_waiters 2)")
        r = curl(u + "/job/%s?wait=1000" % running)
        h.check(r.status == 503 and r.error_code() == "too_many_waiters"
                and "GATEWAY_MAX_WAITERS" in r.json["error"]["message"],
                "a third waiter: 503 too_many_waiters", r)
        r = post_json(u + "/invoke?wait=1000", {"botType": "python", "payload": {"third": 1}})
        h.check(r.status == 503 and r.error_code() == "too_many_waiters",
                "POST /invoke?wait with no waiter's place: 503 too_many_waiters", r)
        jobs = curl(u + "/jobs?botType=python&limit=500", show=False).json["jobs"]
        h.check(len(jobs) == 2, "no job was submitted by the refused or invalid requests",
                [j["jobId"] for j in jobs])
        r = curl(u + "/job/%s" % running)
        h.check(r.status == 200 and r.json["state"] == "running",
                "a request without wait is served meanwhile", r)
        # wait=0 is no wait: answered as without wait, taking no waiter's
        # place (both are taken now); /invoke's plain 202, no "state".
        r = curl(u + "/job/%s?wait=0" % running)
        h.check(r.status == 200 and r.json["state"] == "running",
                "GET ?wait=0 with every waiter's place taken: the record at once", r)
        r = post_json(u + "/invoke?wait=0", {"botType": "python", "payload": {"n": 0}})
        h.check(r.status == 202 and r.json["status"] == "queued" and "state" not in r.json
                and r.headers.get("location") == "/job/" + r.json["jobId"],
                "POST /invoke?wait=0 with every waiter's place taken: the plain 202, no state", r)

        # The jobs finish: each waiter answers with the finished record
        # and its result, long before its 60 s.
        released = time.monotonic()
        open(release, "w").close()
        for name, w, job, payload in (("first", first, running, {"n": 1}),
                                      ("second", second, queued, {"n": 2})):
            w["thread"].join(30)
            r = w.get("r")
            h.check(r is not None and r.status == 200 and r.json["jobId"] == job
                    and r.json["state"] == "completed" and r.json["result"] == payload,
                    "the %s waiter got the completed record with its result" % name, r)
            h.check(w["at"] - released < 20,
                    "... %.2f s after the bot was released, not at the 60 s cap"
                    % (w["at"] - released))
        h.wait_until(lambda: waiters(u) == 0, 10, "no request waiting any more")

        # POST /invoke?wait of a job that finishes in time: 200, its record.
        r = post_json(u + "/invoke?wait=30000", {"botType": "python", "payload": {"n": 3}})
        h.check(r.status == 200 and r.json["state"] == "completed" and r.json["result"] == {"n": 3}
                and r.headers.get("location") == "/job/" + r.json["jobId"],
                "POST /invoke?wait=30000: 200 with the completed record and result", r)
        r = curl(u + "/job/%s?wait=5000" % queued)
        h.check(r.status == 200 and r.json["state"] == "completed",
                "GET ?wait of a finished job answers at once", r)
        r = curl(u + "/job/nosuchjob?wait=5000")
        h.check(r.status == 404 and r.error_code() == "not_found", "an unknown job: 404 at once", r)

        # SIGTERM while a request waits (for a job delayed an hour): it is
        # answered with the record as it is, and the gateway exits 0.
        delayed = post_json(u + "/invoke", {"botType": "python", "payload": {},
                                            "delayMs": 3600000}).json["jobId"]
        waiter = in_background(lambda: curl(u + "/job/%s?wait=60000" % delayed, timeout=90))
        h.wait_until(lambda: waiters(u) == 1, 10, "one request waiting")
        stopped = time.monotonic()
        gw.signal(15)
        waiter["thread"].join(30)
        r = waiter.get("r")
        h.check(r is not None and r.status == 200 and r.json["state"] == "delayed"
                and r.json["jobId"] == delayed,
                "SIGTERM: the waiter got the job's record as it is (delayed)", r)
        h.check(waiter["at"] - stopped < 5,
                "... %.2f s after SIGTERM, not after GATEWAY_SHUTDOWN_MS or its wait"
                % (waiter["at"] - stopped))
        rc = gw.p.wait(15)
        out = gw.output()
        h.check(rc == 0 and "Sanitizer" not in out and "runtime error" not in out,
                "the gateway exits 0 after SIGTERM", rc, out[-1500:])
        h.check("wait ended by the shutdown" in out and delayed in out,
                "it logged the wait that the shutdown ended, with the job id")


if __name__ == "__main__":
    h.main(test)

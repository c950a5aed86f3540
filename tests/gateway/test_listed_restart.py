"""The failed and completed listings survive a broker restart: a real stack
(redis, broker, a fake python worker, botmesh-webhook, botmesh-mock,
gateway, curl).

GET /jobs?state=failed, ?state=completed and ?webhook=failed list the same
jobs, in the same order, after the broker restarts as before: the broker
reads the newest KEEP_FINISHED_JOBS finished jobs back from Redis once it
has recovered the unfinished ones.  ?webhook=failed keeps its order (newest
to give up first) though it differs from the finish order: A, the first to
finish, is redelivered and gives up again after D, so it lists A, D (and
limit=1 lists A).  With KEEP_FINISHED_JOBS=2 only the two newest to finish
come back.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "webhook"))
import harness as h
import whlib
from fakeworker import FakeWorker
from gwtest import curl, gateway, post_json


def listed(u, query, show=True):
    r = curl(u + "/jobs?" + query, show=show)
    h.check(r.status == 200, "GET /jobs?%s: 200" % query, r)
    return [j["jobId"] for j in r.json["jobs"]]


def test():
    with h.Stack("gw-listed-restart") as s:
        s.redis()
        broker = s.broker()
        mock = whlib.mock(s)
        whlib.manager(s, {"WEBHOOK_RETRY_DELAY": "100", "WEBHOOK_JITTER": "none"})
        s.wait_workers(1, "webhook")
        gw = gateway(s)
        u = gw.url
        w = FakeWorker(s.endpoint, "fw-listed", ["python"], 1)
        h.wait_until(lambda: any(x["name"] == "fw-listed" for x in s.client().stats()["workers"]),
                     5, "the worker to register")

        def run(ok, webhook=False):
            body = {"botType": "python", "payload": 1, "attempts": 1}
            if webhook:
                body["webhookUrl"] = mock.url + "/hook"
            r = post_json(u + "/invoke", body)
            h.check(r.status == 202, "POST /invoke: 202", r)
            jid = r.json["jobId"]
            job = w.recv_job(5)
            h.check(job is not None and job["jobId"] == jid, "the worker got job %s" % jid, job)
            w.done(jid, result=1) if ok else w.done(jid, ok=False)
            h.wait_until(lambda: curl(u + "/job/" + jid, show=False).json["state"] in h.TERMINAL, 5,
                         "job %s to end" % jid)
            return jid

        def given_up(jid, redeliveries=0):
            wh = curl(u + "/job/" + jid, show=False).json["webhook"]
            return wh["state"] == "failed" and wh.get("redeliveries", 0) == redeliveries

        # A: completed, its webhook given up (a 404 is final); B: failed; C: completed;
        # D: completed, its webhook given up; then A redelivered, given up again.
        whlib.mock_mode(mock, failFirst=100, status=404)
        a = run(True, webhook=True)
        h.wait_until(lambda: given_up(a), 20, "job %s's webhook to give up" % a)
        b = run(False)
        c = run(True)
        d = run(True, webhook=True)
        h.wait_until(lambda: given_up(d), 20, "job %s's webhook to give up" % d)
        r = post_json(u + "/job/%s/redeliver" % a, {})
        h.check(r.status in (200, 202), "POST /job/A/redeliver accepted", r)
        h.wait_until(lambda: given_up(a, 1), 20, "job %s's redelivery to give up" % a)
        w.close()
        want = {"state=failed": [b], "state=completed": [d, c, a], "webhook=failed": [a, d],
                "webhook=failed&limit=1": [a], "botType=python": [d, c, b, a]}
        for query, ids in want.items():
            h.check(listed(u, query) == ids, "before the restart, ?%s lists %s" % (query, ids))

        broker.stop()
        broker = s.broker()
        h.wait_until(lambda: curl(u + "/ready", show=False).status == 200, 15,
                     "the restarted broker to be ready")
        h.wait_until(lambda: listed(u, "state=completed", show=False) == [d, c, a], 10,
                     "the completed jobs to be listed again")
        for query, ids in want.items():
            h.check(listed(u, query) == ids, "after the restart, ?%s lists %s" % (query, ids))
        r = curl(u + "/job/" + a)
        h.check(r.status == 200 and r.json["state"] == "completed"
                and r.json["webhook"]["state"] == "failed", "job A's record is as it was", r)

        # Bounded by KEEP_FINISHED_JOBS: the newest two to finish, D and C.
        broker.stop()
        s.broker(env={"KEEP_FINISHED_JOBS": "2"})
        h.wait_until(lambda: curl(u + "/ready", show=False).status == 200, 15,
                     "the restarted broker to be ready")
        h.wait_until(lambda: listed(u, "", show=False) == [d, c], 10,
                     "the two newest finished jobs to be listed")
        h.check(listed(u, "webhook=failed") == [d], "A, the oldest to finish, is not read back")
        h.check(curl(u + "/job/" + a).status == 200, "though GET /job still reads it from Redis")


if __name__ == "__main__":
    h.main(test)

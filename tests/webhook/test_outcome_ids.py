"""Each outcome of a job is its own webhook message, with its own webhook-id;
redeliveries of one outcome keep its id.

Real redis, broker, botmesh-webhook and botmesh-mock (signing and checking
signatures, which cover the id); a fake python worker fails, completes or
is cancelled on command.

  * fail -> RETRY -> fail -> RETRY -> complete: three deliveries, three
    webhook-ids (the job id, then "<jobId>.wh2", "<jobId>.wh3"), each
    X-Bot-Job-Id the job id and X-Delivery-Attempt 1; the mock counts no
    duplicate, and the job's record counts no redelivery.
  * The last outcome redelivered (the manager's POST /deliveries/{jobId}/retry):
    the same webhook-id as that outcome's, and the mock counts a duplicate.
  * cancel (its delivery refused 404) -> RETRY -> complete: two webhook-ids;
    the new outcome's record carries neither the earlier outcome's
    delivery error nor a redelivery count.
  * kill -9 and restart of the broker, then REDELIVER of both jobs (read
    back from Redis): each keeps its current outcome's webhook-id.
"""
import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h
from harness import check, http, wait_until
from fakeworker import FakeWorker
import whlib

def hdr(d):
    return {k.lower(): v for k, v in d["headers"].items()}


SECRET = "whsec_" + base64.b64encode(b"outcome-ids-test-secret-0123456").decode()


def main():
    with h.Stack("wh-outcome-ids") as s:
        s.redis()
        env = {"HEARTBEAT_LIVENESS": "20"}
        broker = s.broker(env=env)
        mock = whlib.mock(s, {"MOCK_WEBHOOK_SECRET": SECRET})
        mgr = whlib.manager(s, {"WEBHOOK_SECRET": SECRET})
        s.wait_workers(1, "webhook")
        c = s.client()
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        s.wait_workers(1, "python")
        hook = mock.url + "/hook"

        def job_for(jid):
            """The next JOB the fake worker is given: it must be jid's.  A
            CANCEL before it is answered with DONE (which frees the slot),
            a NACK of that DONE skipped."""
            while True:
                msg = w.recv(10)
                check(msg is not None, "the fake worker is given %s" % jid)
                if msg[0] == h.WCANCEL:
                    w.done(msg[1]["jobId"], ok=False, error={"code": "cancelled", "message": "stopped"})
                elif msg[0] == h.JOB:
                    check(msg[1]["jobId"] == jid, "the fake worker is given %s" % jid, msg)
                    return

        def run(jid, ok):
            job_for(jid)
            if ok:
                w.done(jid, result={"done": True})
            else:
                w.done(jid, ok=False, error={"code": "bot_failed", "message": "run failed"})
            rec = c.wait(jid)
            check(rec["state"] == ("completed" if ok else "failed"),
                  "%s %s" % (jid, "completed" if ok else "failed"), rec)

        def deliveries(jid, count, state="delivered"):
            """jid's deliveries at the mock, once there are count and the
            job's record says state; returns (deliveries, record)."""
            wait_until(lambda: len(whlib.mock_deliveries(mock, jid)) >= count, 20,
                       "the mock to receive delivery %d of %s" % (count, jid))
            rec = wait_until(lambda: (lambda r: r if r.get("webhook", {}).get("state") == state else None)(
                c.status(jid)), 20, "STATUS of %s: webhook %s" % (jid, state))
            got = whlib.mock_deliveries(mock, jid)
            check(len(got) == count, "the mock has %d deliveries of %s" % (count, jid),
                  [(d["webhookId"], d["body"]["status"]) for d in got])
            for d in got:
                check(d["signature"] == "valid" and hdr(d).get("x-bot-job-id") == jid,
                      "delivery %s of %s: signed over its webhook-id, X-Bot-Job-Id the job id"
                      % (d["webhookId"], jid), hdr(d))
            return got, rec

        def redeliver(jid):
            cmd, r = c.request(h.REDELIVER, {"jobId": jid})
            check(cmd == h.ACCEPTED and r["jobId"] == jid, "REDELIVER of %s accepted" % jid, r)

        def retry(jid):
            cmd, r = c.request(h.RETRY, {"jobId": jid})
            check(cmd == h.ACCEPTED and r["jobId"] == jid, "RETRY of %s accepted" % jid, r)

        # --- fail -> RETRY -> fail -> RETRY -> complete.
        f = c.submit("python", {"job": "F"}, webhookUrl=hook, attempts=1)
        run(f, ok=False)
        deliveries(f, 1)
        retry(f)
        run(f, ok=False)
        deliveries(f, 2)
        retry(f)
        run(f, ok=True)
        got, rec = deliveries(f, 3)
        ids = [d["webhookId"] for d in got]
        check([d["body"]["status"] for d in got] == ["failed", "failed", "completed"],
              "F's three outcomes delivered in order: failed, failed, completed", got)
        check(len(set(ids)) == 3, "each outcome of F has its own webhook-id", ids)
        check(ids == [f, f + ".wh2", f + ".wh3"],
              "webhook-ids: the job id, then the id of each outcome's first delivery job", ids)
        check(all(hdr(d).get("x-delivery-attempt") == "1" for d in got),
              "each outcome's delivery is its attempt 1", [d["headers"] for d in got])
        check("redeliveries" not in rec["webhook"] and "previousError" not in rec["webhook"],
              "F's record: the new outcome's delivery is no redelivery", rec["webhook"])
        st = whlib.get_json(mock.url + "/stats")
        check(st["received"] == 3 and st["uniqueIds"] == 3 and st["duplicates"] == 0,
              "the mock: 3 received, 3 unique ids, no duplicate", st)

        # --- The last outcome redelivered over the manager's HTTP API.
        status, _, reply = http("POST", "%s/deliveries/%s/retry" % (mgr.url, f), b"")
        check(status == 202, "POST /deliveries/{jobId}/retry: 202", reply)
        got, rec = deliveries(f, 4)
        check(got[3]["webhookId"] == f + ".wh3" and got[3]["body"]["status"] == "completed",
              "the redelivery keeps the webhook-id of the outcome it carries", got[3])
        check(rec["webhook"].get("redeliveries") == 1, "F's record: 1 redelivery", rec["webhook"])
        st = whlib.get_json(mock.url + "/stats")
        check(st["received"] == 4 and st["uniqueIds"] == 3 and st["duplicates"] == 1,
              "the mock counts the redelivery as a duplicate", st)

        # --- cancel (delivery refused 404) -> RETRY -> complete.
        whlib.mock_mode(mock, failFirst=1, status=404)
        k = c.submit("python", {"job": "K"}, webhookUrl=hook)
        job_for(k)
        cmd, r = c.request(h.CANCEL, {"jobId": k})
        check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "CANCEL of K while it runs", r)
        got, rec = deliveries(k, 1, state="failed")
        check(got[0]["status"] == 404 and got[0]["body"]["status"] == "cancelled"
              and got[0]["webhookId"] == k, "K's cancelled outcome: webhook-id K, answered 404", got)
        whlib.mock_mode(mock, failFirst=0)
        retry(k)
        run(k, ok=True)
        got, rec = deliveries(k, 2)
        check([d["body"]["status"] for d in got] == ["cancelled", "completed"]
              and got[1]["status"] == 200, "K's outcomes: cancelled (404), then completed (200)", got)
        check(got[1]["webhookId"] == k + ".wh2" and hdr(got[1]).get("x-delivery-attempt") == "1",
              "K's new outcome: its own webhook-id, attempt 1", got[1])
        check(rec["webhook"]["attempts"] == 1 and "redeliveries" not in rec["webhook"]
              and "previousError" not in rec["webhook"],
              "K's record: neither a redelivery count nor the earlier outcome's error", rec["webhook"])

        # --- A broker restart: both jobs read back from Redis keep their ids.
        c.close()
        w.close()
        broker.kill()
        broker = s.broker(env=env)
        s.wait_workers(1, "webhook", timeout=30)
        c = s.client()
        redeliver(f)
        redeliver(k)
        got_f, rec = deliveries(f, 5)
        check(got_f[4]["webhookId"] == f + ".wh3" and rec["webhook"].get("redeliveries") == 2,
              "after a broker restart, F's redelivery keeps its id (2 redeliveries)",
              got_f[4]["webhookId"], rec["webhook"])
        got_k, rec = deliveries(k, 3)
        check(got_k[2]["webhookId"] == k + ".wh2" and got_k[2]["body"]["status"] == "completed"
              and rec["webhook"].get("redeliveries") == 1,
              "after a broker restart, K's redelivery keeps its id (1 redelivery)",
              got_k[2]["webhookId"], rec["webhook"])
        c.close()
        whlib.stop_clean(mgr, mock)


h.main(main)

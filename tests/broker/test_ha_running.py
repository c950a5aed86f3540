"""A job running through a failover runs once: the worker reports it (READY
running) and the new leader adopts it.

Two real brokers with BROKER_HA=redis on one real redis-server, a real
botmesh-worker given both brokers, whose bot (type "slow") appends its job
id to a file, runs 5 s and completes; the webhook manager and the mock
receiver.  A job with a webhook starts on the worker; the leader is killed
with SIGKILL while it runs.  The new leader recovers the job from Redis
as running, the worker re-registers with READY {running: [id]}: the job
is adopted, not dispatched again.  It completes once (one bot run in the
file, attempts 1), and its webhook arrives once.

Then, on the new leader: a READY whose running is not an array of job ids
is answered NACK bad_request naming the field; a READY naming a job the
broker does not know is answered CANCEL {reason: unknown}.
"""
import os
import time
import harness as h
import hatest
from fakeworker import FakeWorker

BOT = r'''
import json, sys, time
job = __import__("os").environ["BOT_JOB_ID"]
with open(%r, "a") as f:
    f.write(job + "\n")
payload = json.load(sys.stdin)
time.sleep(payload.get("sleepMs", 0) / 1000.0)
print(json.dumps({"ran": job}))
'''


def runs(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().split()


def test():
    with h.Stack("ha-running") as s:
        s.redis()
        pair = hatest.HaPair(s)
        first = pair.wait_leader()
        second = pair.other(first)
        eps = pair.endpoints()
        hb = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5"}

        runs_file = os.path.join(s.dir, "runs.txt")
        bot = os.path.join(s.dir, "slowbot.py")
        with open(bot, "w") as f:
            f.write(BOT % runs_file)
        s.spawn("worker", [s.bin("botmesh-worker"), "--type", "slow", "--concurrency", "2",
                           "--name", "w1"],
                dict(hb, BROKER_ENDPOINT=eps, BOT_SLOW_CMD="/usr/bin/python3 " + bot))
        mock_port = h.free_port()
        s.spawn("mock", [s.bin("botmesh-mock")], {"MOCK_WEBHOOK_PORT": str(mock_port),
                                                   "MOCK_LISTEN_ADDR": "127.0.0.1"})
        mock = "http://127.0.0.1:%d" % mock_port
        h.wait_until(lambda: h.http("GET", mock + "/health")[0] == 200, 15, "mock /health")
        s.spawn("webhook", [s.bin("botmesh-webhook")], dict(
            hb, WEBHOOK_MANAGER_PORT=str(h.free_port()), WEBHOOK_LISTEN_ADDR="127.0.0.1",
            WEBHOOK_ALLOW_PRIVATE="1", BROKER_ENDPOINT=eps))

        c = h.Client(pair.endpoint(first))
        h.wait_until(lambda: len(c.stats()["workers"]) == 2, 15,
                     "the worker and the webhook manager to register with the leader")
        jid = c.submit("slow", {"sleepMs": 5000}, webhookUrl=mock + "/hook")
        h.wait_until(lambda: runs(runs_file) == [jid], 15, "the bot to start the job")
        # Its running state in Redis (written after BROKER_SAVE_RUNNING_MS):
        # the new leader recovers it as an attempt that was running.
        h.wait_until(lambda: s.redis_cli("HGET", "botmesh:{bm}:job:" + jid, "state") == "running", 5,
                     "the job's running state in Redis")
        rec = c.status(jid)
        h.check(rec["state"] == "running" and rec["attempts"] == 1, "the job runs (attempt 1)", rec)
        c.close()

        pair.procs[first].kill()
        killed = time.monotonic()
        pair.wait_leader(timeout=10, other_than=first)
        h.log("new leader after %.2f s" % (time.monotonic() - killed))
        c = h.Client(pair.endpoint(second))
        log = lambda: pair.procs[second].output()
        h.wait_until(lambda: "adopted" in log(), 15, "the new leader to adopt the running job")
        rec = c.status(jid)
        h.check(rec["state"] == "running" and rec["attempts"] == 1,
                "the adopted job runs on, attempt 1", rec)
        rec = c.wait(jid, timeout=20)
        h.log("job done %.2f s after the kill" % (time.monotonic() - killed))
        h.check(rec["state"] == "completed" and rec["attempts"] == 1,
                "the job completed once, attempts 1", rec)
        h.check(runs(runs_file) == [jid], "the bot ran the job once", runs(runs_file))

        def deliveries():
            status, _, body = h.http("GET", mock + "/deliveries?jobId=" + jid)
            return body["deliveries"] if status == 200 and body["deliveries"] else None
        h.wait_until(lambda: (c.status(jid).get("webhook") or {}).get("state") == "delivered", 20,
                     "the webhook to be delivered")
        got = h.wait_until(deliveries, 10, "the mock to list the delivery")
        h.check(len(got) == 1, "the webhook arrived once", got)
        h.check("dispatched to w1" not in log() and "dispatched again" not in s.procs[0].output(),
                "the new leader did not dispatch the job again")

        # Bad running: NACK bad_request naming the field.
        for bad in ("x", [jid, 7], ["has space"]):
            w = FakeWorker(pair.endpoint(second), "bad", ["slow"], 1, ready=False)
            w.send(h.READY, {"name": "bad", "types": ["slow"], "credit": 1, "running": bad})
            msg = w.recv(timeout=5)
            h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "bad_request"
                    and "running" in msg[1]["message"], "READY running %r refused naming it" % (bad,), msg)
            w.sock.close()
        # A job the broker does not know: CANCEL.
        w = FakeWorker(pair.endpoint(second), "stray", ["slow"], 1, ready=False)
        w.send(h.READY, {"name": "stray", "types": ["slow"], "credit": 1,
                         "running": ["no-such-job-1"]})
        msg = w.recv(timeout=5)
        h.check(msg and msg[0] == h.WCANCEL and msg[1]["jobId"] == "no-such-job-1"
                and msg[1]["reason"] == "unknown", "an unknown running job gets CANCEL", msg)
        # A finished one too.
        w.send(h.READY, {"name": "stray", "types": ["slow"], "credit": 1, "running": [jid]})
        msg = w.recv(timeout=5)
        h.check(msg and msg[0] == h.WCANCEL and msg[1]["jobId"] == jid
                and msg[1]["reason"] == "finished", "a finished running job gets CANCEL", msg)
        w.sock.close()
        c.close()


if __name__ == "__main__":
    h.main(test)

"""WEBHOOK_ALLOWED_HOSTS entries may carry a port: host:port allows that
port only, so allowing the local mock does not open every other loopback
port of the stack to a tenant's webhookUrl.

A real Redis, broker, python worker (--noop), mock and webhook manager with
WEBHOOK_ALLOWED_HOSTS=127.0.0.1:MOCK,localhost:MOCK (as ./botmesh up sets
it) and the SSRF guard on:
- a webhookUrl on the mock's port is delivered;
- webhookUrls on Redis's port, the broker's metrics port and a listener of
  this test's own on 127.0.0.1 are refused by the SSRF guard after one
  attempt, and the listener never sees a connection;
- a malformed entry (localhost:0, localhost:http) stops the manager, naming
  WEBHOOK_ALLOWED_HOSTS.
"""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, wait_until
import whlib


def ended(c, job):
    def done():
        rec = c.status(job) or {}
        return rec if rec.get("webhook", {}).get("state") in ("delivered", "failed") else None
    return wait_until(done, 30, "job %s's webhook to end" % job)


def main():
    with harness.Stack("wh-ssrf-ports") as s:
        s.redis()
        broker = s.broker(env={"BROKER_METRICS_PORT": "-1"})
        s.worker("--noop", "--type", "python")
        mock = whlib.mock(s)
        allowed = "127.0.0.1:%d, localhost:%d" % (mock.port, mock.port)
        whlib.manager(s, {"WEBHOOK_ALLOW_PRIVATE": "0", "WEBHOOK_ALLOWED_HOSTS": allowed,
                          "WEBHOOK_MAX_RETRIES": "2", "WEBHOOK_RETRY_DELAY": "100"})
        s.wait_workers(1, "webhook")
        c = s.client()

        job = c.submit("python", {"task": "ok"}, webhookUrl="http://127.0.0.1:%d/hook" % mock.port)
        rec = ended(c, job)
        check(rec["webhook"]["state"] == "delivered" and rec["webhook"]["lastStatus"] == 200,
              "a webhookUrl on the allowed host:port is delivered", rec["webhook"])
        job = c.submit("python", {"task": "ok"}, webhookUrl="http://localhost:%d/hook" % mock.port)
        check(ended(c, job)["webhook"]["state"] == "delivered", "localhost:MOCK is delivered too")

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        own = listener.getsockname()[1]
        try:
            targets = {"Redis": "http://127.0.0.1:%d/" % s.redis_port,
                       "the broker's metrics": "http://localhost:%d/metrics" % broker.metrics_port,
                       "another loopback port": "http://127.0.0.1:%d/" % own}
            for what, url in targets.items():
                job = c.submit("python", {"task": "ok"}, webhookUrl=url)
                wh = ended(c, job)["webhook"]
                check(wh["state"] == "failed" and wh["attempts"] == 1 and "SSRF" in wh.get("lastError", ""),
                      "a webhookUrl on %s (%s) is refused by the SSRF guard, not retried" % (what, url), wh)
            try:
                conn, _ = listener.accept()
                conn.close()
                check(False, "the test's listener got no connection from the manager")
            except BlockingIOError:
                pass
        finally:
            listener.close()
        c.close()

    for bad in ("localhost:0", "127.0.0.1:http"):
        with harness.Stack("wh-ssrf-ports-bad") as b:
            p = whlib.manager(b, {"WEBHOOK_ALLOWED_HOSTS": "mock-webhook:5000," + bad}, wait=False)
            rc = p.p.wait(10)
            out = p.output()
            check(rc != 0 and "WEBHOOK_ALLOWED_HOSTS" in out and bad in out,
                  "WEBHOOK_ALLOWED_HOSTS entry %s stops the manager, naming the variable and the entry" % bad,
                  rc, out[-500:])


if __name__ == "__main__":
    harness.main(main)

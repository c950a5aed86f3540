"""Secrets in a webhook URL never reach the webhook manager's log or the
errors it reports: a password in the userinfo shows as user:***@, a bare
userinfo as ***@, query values as ***.  The deliveries themselves still
carry them (the receiver gets the credentials as Basic authorization).
A fake broker hands the real manager (LOG_LEVEL=debug: every line that
names a URL) deliveries to the real mock: one retried after a 503 then
delivered, one to a closed port (failed), one resumed from a reported
state.
"""
import base64
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check
import whlib
from whlib import JOB, PROGRESS, DONE, job

PASSWORD, TOKEN, BARE, PATH = "s3cretPassw0rd", "t0kenValue42", "ghpBareToken77", "pathT0ken99"


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main():
    with harness.Stack("wh-url-secrets") as s:
        mock = whlib.mock(s)
        broker, mgr = whlib.manager_on_fake_broker(s, {"LOG_LEVEL": "debug", "WEBHOOK_RETRY_DELAY": "50",
                                                       "WEBHOOK_JITTER": "none", "WEBHOOK_MAX_RETRIES": "1"})
        url = "http://alice:%s@127.0.0.1:%d/hook?token=%s&v=2" % (PASSWORD, mock.port, TOKEN)

        whlib.mock_mode(mock, failFirst=1, status=503)
        broker.send(JOB, job("s1.wh1", url, '{"jobId":"s1"}'))
        _, _, progress = broker.expect_cmd(PROGRESS, "s1.wh1")
        _, _, done = broker.expect_cmd(DONE, "s1.wh1")
        check(done["ok"] is True and done["webhook"]["attempts"] == 2, "a 503, then delivered", done)
        got = whlib.mock_deliveries(mock, "s1")
        auth = {k.lower(): v for k, v in got[-1]["headers"].items()}.get("authorization", "")
        check(len(got) == 2 and auth == "Basic " + base64.b64encode(("alice:" + PASSWORD).encode()).decode(),
              "the receiver still got the credentials (Basic authorization)", auth)

        gone = "http://%s@127.0.0.1:%d/x?key=%s" % (BARE, closed_port(), TOKEN)
        broker.send(JOB, job("s2.wh1", gone, '{"jobId":"s2"}'))
        _, _, failed = broker.expect_cmd(DONE, "s2.wh1")
        check(failed["ok"] is False and failed["webhook"]["state"] == "failed",
              "a closed port: failed after its attempts", failed)

        broker.send(JOB, job("s3.wh1", url, '{"jobId":"s3"}',
                             webhook={"state": "retrying", "attempts": 1, "lastStatus": 503,
                                      "lastError": "HTTP 503", "nextAttemptAt": 1}))
        broker.expect_cmd(DONE, "s3.wh1")

        # A token in the path (Slack's /services/T/B/TOKEN, Discord's
        # /api/webhooks/ID/TOKEN): only the path's first segment shows.
        slack = "http://127.0.0.1:%d/services/T01/B02/%s" % (closed_port(), PATH)
        broker.send(JOB, job("s4.wh1", slack, '{"jobId":"s4"}'))
        _, _, in_path = broker.expect_cmd(DONE, "s4.wh1")

        log = mgr.output()
        reported = repr([progress, done, failed, in_path])
        for secret in (PASSWORD, TOKEN, BARE, PATH):
            check(secret not in log, "the manager's log never holds %s" % secret,
                  [line for line in log.splitlines() if secret in line][:3])
            check(secret not in reported, "no PROGRESS or DONE it sent holds %s" % secret)
        shown = "http://alice:***@127.0.0.1:%d/hook?token=***&v=***" % mock.port
        lines = [line for line in log.splitlines() if shown in line]
        check(any("failed (HTTP 503" in line for line in lines) and any("delivered to" in line for line in lines)
              and any("resuming delivery" in line for line in lines),
              "the retry, delivery and resume lines show the URL as " + shown, lines)
        check(any("delivery to http://***@127.0.0.1" in line and "key=***" in line for line in log.splitlines()),
              "a bare userinfo shows as ***@, the key's value as ***")
        check(any("/services/***" in line for line in log.splitlines()),
              "a path shows its first segment, then ***")
        broker.close()


if __name__ == "__main__":
    harness.main(main)

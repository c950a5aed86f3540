"""The seed's examples name http://mock-webhook:5000: WEBHOOK_CONNECT_TO maps
that host and port to the local mock (as ./botmesh up does), and the SSRF
guard lets it through only because the host is in WEBHOOK_ALLOWED_HOSTS.
An IPv6 target is written in brackets (hook-v6:80:[::1]:PORT) and reached
(before, the manager refused any entry with more than three colons)."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, wait_until
import whlib


def answer_200(receiver, path, conn, number):
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    return True


def main():
    with harness.Stack("wh-connect-to") as s:
        s.redis()
        s.broker()
        s.worker("--noop", "--type", "python")
        mock = whlib.mock(s)
        whlib.manager(s, {"WEBHOOK_ALLOW_PRIVATE": "0", "WEBHOOK_ALLOWED_HOSTS": "mock-webhook",
                          "WEBHOOK_CONNECT_TO": "mock-webhook:5000:127.0.0.1:%d" % mock.port})
        s.wait_workers(1, "webhook")
        c = s.client()
        job = c.submit("python", {"task": "data_analysis", "dataset": "sales_2024"},
                       webhookUrl="http://mock-webhook:5000", priority=1)
        rec = wait_until(lambda: (lambda r: r if r.get("webhook", {}).get("state") == "delivered" else None)(
            c.status(job)), 15, "the seed's webhookUrl to be delivered")
        check(rec["webhook"]["lastStatus"] == 200, "delivered to http://mock-webhook:5000 via WEBHOOK_CONNECT_TO",
              rec["webhook"])
        got = whlib.mock_deliveries(mock, job)
        check(len(got) == 1 and got[0]["path"] == "/", "the local mock received it on /", got)

    with whlib.RawReceiver(answer_200, host="::1") as v6, harness.Stack("wh-connect-to-v6") as s:
        broker, mgr = whlib.manager_on_fake_broker(s, {
            "WEBHOOK_CONNECT_TO": "hook-v6:80:[::1]:%d" % v6.port, "WEBHOOK_MAX_RETRIES": "0"})
        broker.send(whlib.JOB, whlib.job("v6.wh1", "http://hook-v6/hook", '{"jobId":"v6"}'))
        _, _, done = broker.expect_cmd(whlib.DONE, "v6.wh1")
        check(done["ok"] and [path for _, path in v6.requests] == ["/hook"],
              "an IPv6 target in brackets: delivered to [::1]", done, v6.requests)
        whlib.stop_clean(mgr)

    bad = harness.Stack("wh-connect-to-bad")
    with bad:
        p = whlib.manager(bad, {"WEBHOOK_CONNECT_TO": "mock-webhook:5000"}, wait=False)
        rc = p.p.wait(10)
        check(rc != 0 and "WEBHOOK_CONNECT_TO" in p.output(), "a malformed WEBHOOK_CONNECT_TO stops the manager, "
              "naming the variable", rc)
        p = whlib.manager(bad, {"WEBHOOK_CONNECT_TO": "hook:80:::1:5000"}, wait=False)
        rc = p.p.wait(10)
        check(rc != 0 and "WEBHOOK_CONNECT_TO" in p.output(), "an IPv6 target without brackets is refused",
              rc)


if __name__ == "__main__":
    harness.main(main)

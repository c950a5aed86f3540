"""A webhookUrl the webhook manager would refuse is refused at /invoke: a
real gateway, broker and Redis.

The manager's SSRF guard refuses loopback, private, link-local, ... targets
unless WEBHOOK_ALLOW_PRIVATE=1 or the host (host:port) is in
WEBHOOK_ALLOWED_HOSTS; such a job used to be accepted (202) and its webhook
to fail at delivery, unseen by the caller.  The gateway reads the same two
settings: a URL whose host needs no lookup (an IP address, localhost) in a
refused range is a 400 invalid_webhook_url naming the reason and the
settings, in /invoke, in a /invoke/batch item and in POST /schedules, and no
job is made.  A host name stays the manager's to look up; a public address
passes.  With ./botmesh up's allowance (the mock's port on localhost and
127.0.0.1) the mock's URL passes and another loopback port does not; with
WEBHOOK_ALLOW_PRIVATE=1 every target passes.
"""
import harness as h
from gwtest import curl, gateway, post_json

REFUSED = [("http://127.0.0.1:5000/hook", "127.0.0.1 is loopback"),
           ("http://localhost:5000/hook", "localhost is loopback"),
           ("http://10.1.2.3:8080/hook", "10.1.2.3 is private"),
           ("http://169.254.169.254/latest", "169.254.169.254 is link-local"),
           ("http://[::1]:5000/hook", "[::1] is loopback"),
           ("http://192.0.2.1:81/hook", "192.0.2.1 is reserved")]


def invoke(u, url):
    return post_json(u + "/invoke", {"botType": "python", "payload": {}, "webhookUrl": url})


def jobs(u):
    return len(curl(u + "/jobs?limit=500", show=False).json["jobs"])


def test():
    with h.Stack("gw-private-webhooks") as s:
        s.redis()
        s.broker()
        gw = gateway(s, env={"WEBHOOK_ALLOW_PRIVATE": "0"})
        u = gw.url

        for url, says in REFUSED:
            r = invoke(u, url)
            h.check(r.status == 400 and r.error_code() == "invalid_webhook_url"
                    and says in r.json["error"]["message"]
                    and "WEBHOOK_ALLOW_PRIVATE=1" in r.json["error"]["message"]
                    and "WEBHOOK_ALLOWED_HOSTS" in r.json["error"]["message"],
                    "%s: 400 invalid_webhook_url, '%s', naming the settings" % (url, says), r)
        h.check(jobs(u) == 0, "no job was made for the refused requests", jobs(u))

        for url in ("http://mock-webhook:5000/hook", "https://1.1.1.1/hook"):
            r = invoke(u, url)
            h.check(r.status == 202, "%s (a name to look up, a public address): accepted" % url, r)

        r = post_json(u + "/invoke/batch", [
            {"botType": "python", "payload": {}, "webhookUrl": "http://127.0.0.1:5000/hook"},
            {"botType": "python", "payload": {}, "webhookUrl": "http://mock-webhook:5000/hook"}])
        h.check(r.status == 207 and r.json["accepted"] == 1
                and r.json["jobs"][0]["httpStatus"] == 400
                and r.json["jobs"][0]["error"]["code"] == "invalid_webhook_url"
                and r.json["jobs"][1]["httpStatus"] == 202,
                "a batch: the loopback item refused, the other accepted", r)

        r = post_json(u + "/schedules", {"key": "k-private", "botType": "python", "payload": {},
                                         "everyMs": 60000, "webhookUrl": "http://10.0.0.1/x"})
        h.check(r.status == 400 and r.error_code() == "invalid_webhook_url",
                "a schedule with a private webhookUrl: 400 invalid_webhook_url", r)

        # ./botmesh up's allowance: the mock's port only.
        up = gateway(s, env={"WEBHOOK_ALLOW_PRIVATE": "0",
                             "WEBHOOK_ALLOWED_HOSTS": "localhost:5000,127.0.0.1:5000,mock-webhook:5000"})
        for url in ("http://127.0.0.1:5000/hook", "http://localhost:5000/hook"):
            r = invoke(up.url, url)
            h.check(r.status == 202, "listed with its port (as ./botmesh up): %s accepted" % url, r)
        r = invoke(up.url, "http://127.0.0.1:6379/")
        h.check(r.status == 400 and r.error_code() == "invalid_webhook_url",
                "another port of a listed host: refused", r)

        open_gw = gateway(s, env={"WEBHOOK_ALLOW_PRIVATE": "1"})
        r = invoke(open_gw.url, "http://10.1.2.3:8080/hook")
        h.check(r.status == 202, "WEBHOOK_ALLOW_PRIVATE=1: a private target is accepted", r)


if __name__ == "__main__":
    h.main(test)

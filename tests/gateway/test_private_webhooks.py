"""A webhookUrl the webhook manager would refuse is accepted with a warning
at /invoke: a real gateway, broker and Redis.

The manager's SSRF guard refuses loopback, private, link-local, ... targets
unless WEBHOOK_ALLOW_PRIVATE=1 or the host (host:port) is in
WEBHOOK_ALLOWED_HOSTS; such a job used to be accepted (202) and its webhook
to fail at delivery, unseen by the caller.  The gateway reads the same two
settings: a URL whose host needs no lookup (an IP address, localhost) in a
refused range is still accepted (the manager may run with settings of its
own), and its 202 carries `warning` naming the reason and the settings, in
/invoke and in a /invoke/batch item; the gateway logs it (WARN, with the job
id), and a schedule's is logged.  A host name stays the manager's to look
up; a public address has no warning.  With ./botmesh up's allowance (the
mock's port on localhost and 127.0.0.1) the mock's URL has none and another
loopback port has one; with WEBHOOK_ALLOW_PRIVATE=1 no target has one.
"""
import harness as h
from gwtest import curl, gateway, post_json, start_workers

WARNED = [("http://127.0.0.1:5000/hook", "127.0.0.1 is loopback"),
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
        # A worker serves python: no 202 here warns that none does.
        start_workers(s, ["python"])
        gw = gateway(s, env={"WEBHOOK_ALLOW_PRIVATE": "0"})
        u = gw.url

        for url, says in WARNED:
            r = invoke(u, url)
            warning = (r.json or {}).get("warning") or ""
            h.check(r.status == 202 and r.json.get("jobId") and says in warning
                    and "WEBHOOK_ALLOW_PRIVATE=1" in warning and "WEBHOOK_ALLOWED_HOSTS" in warning,
                    "%s: 202 with a warning, '%s', naming the settings" % (url, says), r)
            job = r.json["jobId"]
            h.wait_until(lambda: "job=%s accepted with a warning: webhookUrl host" % job in gw.output(),
                         5, "the gateway's WARN line for %s" % job)
        h.check(jobs(u) == len(WARNED), "a job was made for each", jobs(u))

        for url in ("http://mock-webhook:5000/hook", "https://1.1.1.1/hook"):
            r = invoke(u, url)
            h.check(r.status == 202 and "warning" not in r.json,
                    "%s (a name to look up, a public address): accepted, no warning" % url, r)

        r = post_json(u + "/invoke/batch", [
            {"botType": "python", "payload": {}, "webhookUrl": "http://127.0.0.1:5000/hook"},
            {"botType": "python", "payload": {}, "webhookUrl": "http://mock-webhook:5000/hook"}])
        h.check(r.status == 207 and r.json["accepted"] == 2
                and r.json["jobs"][0]["httpStatus"] == 202
                and "127.0.0.1 is loopback" in r.json["jobs"][0].get("warning", "")
                and r.json["jobs"][1]["httpStatus"] == 202
                and "warning" not in r.json["jobs"][1],
                "a batch: both accepted, the loopback item with a warning", r)

        r = post_json(u + "/schedules", {"key": "k-private", "botType": "python", "payload": {},
                                         "everyMs": 60000, "webhookUrl": "http://10.0.0.1/x"})
        h.check(r.status == 200, "a schedule with a private webhookUrl is accepted", r)
        h.wait_until(lambda: "schedule k-private accepted with a warning: webhookUrl host 10.0.0.1"
                     in gw.output(), 5, "the gateway's WARN line for the schedule")

        # ./botmesh up's allowance: the mock's port only.
        up = gateway(s, env={"WEBHOOK_ALLOW_PRIVATE": "0",
                             "WEBHOOK_ALLOWED_HOSTS": "localhost:5000,127.0.0.1:5000,mock-webhook:5000"})
        for url in ("http://127.0.0.1:5000/hook", "http://localhost:5000/hook"):
            r = invoke(up.url, url)
            h.check(r.status == 202 and "warning" not in r.json,
                    "listed with its port (as ./botmesh up): %s accepted, no warning" % url, r)
        r = invoke(up.url, "http://127.0.0.1:6379/")
        h.check(r.status == 202 and "is loopback" in r.json.get("warning", ""),
                "another port of a listed host: a warning", r)

        open_gw = gateway(s, env={"WEBHOOK_ALLOW_PRIVATE": "1"})
        r = invoke(open_gw.url, "http://10.1.2.3:8080/hook")
        h.check(r.status == 202 and "warning" not in r.json,
                "WEBHOOK_ALLOW_PRIVATE=1: a private target, no warning", r)


if __name__ == "__main__":
    h.main(test)

"""gateway_invoke_rejected_total{reason}: every refusal of a job on POST
/invoke and /invoke/batch counted under its own error code, a real gateway,
broker and Redis.

The reasons are read from the gateway's sources (the codes the /invoke
translation, the batch reader, the body reader, the broker's REJECTED
mapping, authentication and the rate limiter answer with): each must be
a label of the metric from the start, at 0.  Before, invalid_delay,
invalid_run_at, invalid_attempts, invalid_backoff, out_of_memory,
broker_connection_lost and too_many_jobs were all "other", a broker's
runAt refusal was bad_request, and the items a 207 batch refused were
not counted at all.
"""
import os
import re
import time

import harness as h
from gwtest import gateway, curl, post_json

SOURCES = {
    # the pure translations: every code they fail with
    "gw_invoke.c": r's_fail \(error, \d+, "(\w+)"',
    "gw_invoke_batch.c": r's_refuse \(error, \d+, "(\w+)"',
    # the request, the broker's answers, authentication, rate limiting
    "gw_request.c": r'(?:r->reason|out->reason) = "(\w+)"|\{ "\w+", \d{3}, "(\w+)"',
    "gw_server.c": r'r->reason = "(\w+)"',
}


def reasons_in_sources():
    found = set()
    for name, pattern in SOURCES.items():
        text = open(os.path.join(h.ROOT, "gateway", name)).read()
        for m in re.finditer(pattern, text):
            found.add(next(g for g in m.groups() if g))
    # forbidden is for the admin routes, never /invoke
    return found - {"forbidden"}


def counts(u):
    text = curl(u + "/metrics", show=False).body
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r'^gateway_invoke_rejected_total\{reason="(\w+)"\} (\S+)$', text, re.M)}


def test():
    with h.Stack("gw-invoke-rejected") as s:
        s.redis()
        s.broker()
        gw = gateway(s, env={"MAX_BATCH": "3"})
        u = gw.url

        wanted = reasons_in_sources()
        h.log("reasons in the sources: %s" % ", ".join(sorted(wanted)))
        for must in ("invalid_delay", "invalid_run_at", "invalid_attempts", "invalid_backoff",
                     "out_of_memory", "broker_connection_lost", "too_many_jobs"):
            h.check(must in wanted, "the sources answer %s" % must)
        before = counts(u)
        missing = sorted(wanted - set(before))
        h.check(not missing, "every reason is a label of gateway_invoke_rejected_total from the start",
                missing)
        h.check(all(v == 0 for v in before.values()), "all at 0", before)

        def expect(delta, what):
            now = counts(u)
            changed = {k: now[k] - before.get(k, 0) for k in now if now[k] != before.get(k, 0)}
            h.check(changed == delta, what, changed)
            before.update(now)

        r = post_json(u + "/invoke", {"botType": "python", "payload": 1, "delayMs": -1})
        h.check(r.status == 400 and r.error_code() == "invalid_delay", "delayMs -1: 400", r)
        expect({"invalid_delay": 1}, "counted as invalid_delay")

        r = post_json(u + "/invoke", {"botType": "python", "payload": 1,
                                      "runAt": int(time.time() * 1000) - 86400000})
        h.check(r.status == 400 and r.error_code() == "invalid_run_at",
                "a runAt a day ago, the broker's refusal: 400 invalid_run_at", r)
        expect({"invalid_run_at": 1}, "counted as invalid_run_at, not bad_request")

        r = post_json(u + "/invoke/batch", [{"botType": "python", "payload": 1},
                                            {"botType": "python", "payload": 1, "attempts": 0},
                                            {"botType": "python", "payload": 1, "backoff": "5"}])
        h.check(r.status == 207 and r.json["accepted"] == 1 and r.json["rejected"] == 2,
                "a batch with two bad items: 207, 1 accepted, 2 refused", r)
        expect({"invalid_attempts": 1, "invalid_backoff": 1}, "each refused item counted")

        r = post_json(u + "/invoke/batch", [{"botType": "python", "payload": 1}] * 4)
        h.check(r.status == 413 and r.error_code() == "too_many_jobs", "4 jobs past MAX_BATCH 3: 413", r)
        expect({"too_many_jobs": 1}, "counted as too_many_jobs")


if __name__ == "__main__":
    h.main(test)

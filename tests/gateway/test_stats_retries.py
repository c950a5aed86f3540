"""GET /stats: each type's `retries` and `totals.retried` count different
things (docs/protocol.md, STATS): `retries` the automatic retries of failed
runs, `totals.retried` the RETRY requests (POST /job/{id}/retry).

Real stack: broker (no Redis), botmesh-worker running the real python bot,
gateway, curl.
"""
import gwtest
import harness
from gwtest import check, curl, post_json, wait_until


def main():
    with harness.Stack("gateway-stats-retries") as s:
        s.broker(redis=False)
        s.worker("--type", "python", "--concurrency", "1")
        s.wait_workers(1, bot_type="python")
        g = gwtest.gateway(s)
        u = g.url

        def stats():
            r = curl(u + "/stats", show=False)
            check(r.status == 200, "GET /stats", r)
            return r.json["types"]["python"]["retries"], r.json["totals"]["retried"]

        check(stats() == (0, 0), "nothing retried yet", stats())
        # A bot that fails, 2 runs allowed: one automatic retry.
        r = post_json(u + "/invoke", {"botType": "python", "payload": {"fail": "boom"}, "attempts": 2,
                                      "backoff": {"type": "fixed", "delayMs": 50}})
        check(r.status == 202, "invoke a failing job with 2 runs", r)
        job = r.json["jobId"]
        wait_until(lambda: curl(u + "/job/" + job, show=False).json.get("state") == "failed", 30,
                   "the job to fail after its 2 runs")
        check(stats() == (1, 0), "one automatic retry: retries 1, totals.retried 0", stats())
        # A RETRY request: totals.retried counts it.
        r = curl("-X", "POST", u + "/job/%s/retry" % job)
        check(r.status in (200, 202), "POST /job/{id}/retry", r)
        retries, retried = stats()
        check(retried == 1, "a RETRY request: totals.retried 1", (retries, retried))
        # The job runs again (2 more runs): the automatic retry counts in retries only.
        wait_until(lambda: stats()[0] == 2, 30, "the second run's automatic retry")
        wait_until(lambda: curl(u + "/job/" + job, show=False).json.get("state") == "failed", 30,
                   "the job to fail again")
        check(stats() == (2, 1), "retries 2 (automatic), totals.retried 1 (by request)", stats())
        gwtest.stop_clean(g)


if __name__ == "__main__":
    harness.main(main)

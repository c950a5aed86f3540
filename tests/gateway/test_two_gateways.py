"""Two gateways on different ports, one broker: both serve at once, the
ids are all distinct, and each sees the other's jobs."""
import concurrent.futures
import json
import urllib.request

import harness
from gwtest import check, curl, gateway, start_workers, stop_clean, wait_until

N = 60


def invoke(url, i):
    req = urllib.request.Request(url + "/invoke", method="POST",
                                 data=json.dumps({"botType": "node", "payload": {"i": i}}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=20) as r:
        return r.status, json.loads(r.read())["jobId"]


def main():
    with harness.Stack("gw-two") as s:
        s.redis()
        s.broker()
        start_workers(s, ["node"])
        a = gateway(s, name="gateway-a")
        b = gateway(s, name="gateway-b")
        check(a.port != b.port, "two ports", a.port, b.port)
        urls = [a.url, b.url]
        with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:
            results = list(pool.map(lambda i: (i % 2, invoke(urls[i % 2], i)), range(N)))
        check(all(st == 202 for _, (st, _) in results), "both gateways accept at once")
        ids = [job for _, (_, job) in results]
        check(len(set(ids)) == N, "%d distinct ids across both" % N)
        # A job sent through A, read through B, and the other way round.
        from_a = next(job for side, (_, job) in results if side == 0)
        from_b = next(job for side, (_, job) in results if side == 1)
        for url, job in ((b.url, from_a), (a.url, from_b)):
            rec = wait_until(lambda: (lambda r: r.json if r.json.get("state") == "completed" else None)(
                curl(url + "/job/" + job, show=False)), 20, "job %s completed" % job)
            check(rec["jobId"] == job, "each gateway reads the other's job", rec)
        sa, sb = curl(a.url + "/stats").json, curl(b.url + "/stats").json
        check(sa["totals"]["submitted"] == sb["totals"]["submitted"] >= N, "same broker behind both",
              sa["totals"], sb["totals"])
        stop_clean(a)
        stop_clean(b)


if __name__ == "__main__":
    harness.main(main)

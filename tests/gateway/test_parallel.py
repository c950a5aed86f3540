"""200 POST /invoke at once (200 client threads, one connection each):
200 distinct job ids, and every job reaches completed."""
import concurrent.futures
import json
import urllib.error
import urllib.request

import harness
from gwtest import check, curl, gateway, log, start_workers, stop_clean, wait_until

N = 200
TYPES = ["python", "node", "java"]


def invoke(url, i):
    body = json.dumps({"botType": TYPES[i % 3], "payload": {"i": i},
                       "priority": i % 4}).encode()
    req = urllib.request.Request(url + "/invoke", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, {"jobId": None, "error": e.read().decode(errors="replace")}


def main():
    with harness.Stack("gw-parallel") as s:
        s.redis()
        s.broker()
        start_workers(s, TYPES)
        g = gateway(s, env={"GATEWAY_THREADS": "128"})
        with concurrent.futures.ThreadPoolExecutor(max_workers=N) as pool:
            results = list(pool.map(lambda i: invoke(g.url, i), range(N)))
        statuses = [st for st, _ in results]
        ids = [body["jobId"] for _, body in results]
        check(statuses == [202] * N, "200 parallel POST /invoke all 202",
              {st: statuses.count(st) for st in set(statuses)},
              [b for st, b in results if st != 202][:3])
        check(len(set(ids)) == N, "200 distinct job ids", len(set(ids)))

        def all_completed():
            r = curl(g.url + "/jobs?state=completed&limit=500", show=False)
            done = {j["jobId"] for j in r.json["jobs"]}
            missing = set(ids) - done
            return not missing or None
        wait_until(all_completed, 60, "all 200 jobs to complete", interval=0.2)
        check(True, "all 200 jobs completed")
        r = curl(g.url + "/job/" + ids[-1])
        check(r.json["state"] == "completed", "a job record says completed", r)
        r = curl(g.url + "/metrics", show=False)
        line = [l for l in r.body.splitlines()
                if l.startswith('gateway_http_requests_total{route="/invoke",code="202"}')]
        check(line and float(line[0].split()[-1]) == N, "metrics count 200 accepted invokes", line)
        stop_clean(g)


if __name__ == "__main__":
    harness.main(main)

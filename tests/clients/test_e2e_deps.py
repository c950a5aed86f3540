"""The clients' dependsOn end to end: a real redis-server and broker and a
botmesh-worker whose bot (type "dep", tests/broker/depbot.py) answers
with what it was given.  Python: submit(depends_on=..., dependency_results=
True) marks the id waiting_children, the third job completes with both
results, submit_many takes depends_on, a bad depends_on or a
dependency_results that is not a bool is a TypeError before anything is sent, an unknown id is Rejected bad_request naming
dependsOn[0], list(state="waiting-children") is accepted.  botmesh-client
submit --depends-on (twice) --dependency-results --wait prints the completed
record with both results.  Node: the same through e2e_node_deps.js.
"""
import os
import subprocess

from e2elib import harness, botmesh, cli, cli_run, need_node, RUN_NODE, HERE, ROOT
from harness import check

BOT = "/usr/bin/python3 " + os.path.join(ROOT, "tests", "broker", "depbot.py")


def main():
    need_node()
    with harness.Stack("clients-deps") as s:
        s.redis()
        s.broker()
        s.worker("--type", "dep", "--concurrency", "3", env={"BOT_DEP_CMD": BOT})
        s.wait_workers(1, "dep")
        c = botmesh.Client(s.endpoint, timeout=5)
        a = c.submit("dep", {"n": "a", "sleepMs": 300})
        b = c.submit("dep", {"n": "b", "sleepMs": 500})
        cj = c.submit("dep", {"n": "c"}, depends_on=[a, b], dependency_results=True)
        check(cj.waiting_children and not a.waiting_children, "the id says waiting_children", cj)
        check(cj in [j["jobId"] for j in c.list(state="waiting-children")],
              "list(state='waiting-children') lists it")
        rec = c.wait(cj, timeout=30)
        ra, rb = c.status(a), c.status(b)
        check(rec["state"] == "completed" and rec["result"]["got"] == {
            "payload": {"n": "c"}, "dependencies": {a: ra["result"], b: rb["result"]}},
            "C got its payload and both results", rec)
        out = c.submit_many([{"bot_type": "dep", "payload": 1, "depends_on": [cj]},
                             {"bot_type": "dep", "payload": 2, "depends_on": ["no-such-job"]}])
        check(isinstance(out[0], str) and isinstance(out[1], botmesh.Rejected)
              and "dependsOn[0]" in out[1].message, "submit_many: one accepted, one refused", out)
        try:
            c.submit("dep", 1, depends_on=a)
            check(False, "a str depends_on raises")
        except TypeError as e:
            check("depends_on" in str(e), "a str depends_on is a TypeError", e)
        for bad in (1, "yes", None):
            try:
                c.submit("dep", 1, depends_on=[a], dependency_results=bad)
                check(False, "dependency_results=%r raises" % (bad,))
            except TypeError as e:
                check("dependency_results" in str(e), "dependency_results=%r is a TypeError" % (bad,), e)
        try:
            c.submit("dep", 1, depends_on=["no-such-job"])
            check(False, "an unknown id raises")
        except botmesh.Rejected as e:
            check(e.code == "bad_request" and "dependsOn[0]" in e.message,
                  "an unknown id: Rejected bad_request naming dependsOn[0]", e.message)
        # botmesh-client: --depends-on (twice) and --dependency-results, --wait
        out = cli(s, "submit", "dep", '{"n": "cli"}', "--depends-on", a, "--depends-on", b,
                  "--dependency-results", "--wait")
        check(out["state"] == "completed" and out["result"]["got"]["dependencies"]
              == {a: ra["result"], b: rb["result"]}, "botmesh-client submit --depends-on", out)
        bad = cli_run(s, "submit", "dep", "1", "--depends-on", "has space")
        check(bad.returncode == 2 and "--depends-on" in bad.stderr, "a bad --depends-on is a usage error",
              bad.returncode, bad.stderr)
        c.close()

        r = subprocess.run(["sh", RUN_NODE, os.path.join(HERE, "e2e_node_deps.js"), s.endpoint],
                           capture_output=True, text=True, timeout=100)
        print(r.stdout, r.stderr, flush=True)
        check(r.returncode == 0 and "NODE DEPS PASS" in r.stdout, "the Node client's checks pass",
              r.returncode)


if __name__ == "__main__":
    harness.main(main)

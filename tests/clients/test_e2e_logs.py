"""The clients' logs(): a job's log as BullMQ's getJobLogs gives it, end to
end: a real redis-server and broker, a C worker running a spawned bot that
writes lines on stderr (or nothing), the Python client's checks here and
the Node client's in e2e_node_logs.js (skipped when Node cannot run).

Before, neither client had logs() (AttributeError, TypeError) and the
record had no log.
"""
import os
import subprocess

from e2elib import harness, botmesh, need_node, RUN_NODE, HERE
from harness import check

BOT = r"""import json, sys
payload = json.load(sys.stdin)
for line in payload.get("err", []):
    sys.stderr.write(line + "\n")
sys.stderr.flush()
print(json.dumps({"done": True}))
"""


def main():
    with harness.Stack("clients-logs") as s:
        bot = os.path.join(s.dir, "bot.py")
        with open(bot, "w") as f:
            f.write(BOT)
        s.redis()
        s.broker()
        s.worker("--type", "lg", env={"BOT_LG_CMD": "/usr/bin/python3 " + bot})
        s.wait_workers(1)
        c = botmesh.Client(s.endpoint, timeout=5)
        lines = ["step one", "", "step three"]
        logged = c.submit("lg", {"err": lines}, idempotency_key="py-logged")
        quiet = c.submit("lg", {})
        check(c.wait(logged, timeout=20)["state"] == "completed"
              and c.wait(quiet, timeout=20)["state"] == "completed", "both jobs complete")
        r = c.logs(logged)
        check(r == {"jobId": logged, "logs": lines, "count": 3},
              "Python logs(job_id): its stderr lines, BullMQ-shaped", r)
        r = c.logs(key="py-logged")
        check(r["jobId"] == logged and r["count"] == 3, "Python logs(key=): the same job", r)
        r = c.logs(quiet)
        check(r == {"jobId": quiet, "logs": [], "count": 0},
              "Python logs() of a bot that wrote nothing: no lines", r)
        try:
            c.logs("no-such-job")
            raise harness.TestFailure("logs() of an unknown job should raise Rejected")
        except botmesh.Rejected as e:
            check(e.code == "not_found", "Python logs() of an unknown job: not_found", e.code)

        node_logged = c.submit("lg", {"err": lines}, idempotency_key="node-logged")
        check(c.wait(node_logged, timeout=20)["state"] == "completed", "the Node job completes")
        c.close()
        need_node()
        r = subprocess.run(["sh", RUN_NODE, os.path.join(HERE, "e2e_node_logs.js"), s.endpoint,
                            node_logged, quiet], capture_output=True, text=True, timeout=150)
        print(r.stdout, r.stderr, flush=True)
        check(r.returncode == 0 and "NODE LOGS PASS" in r.stdout, "the Node client's logs() checks pass",
              r.returncode)


if __name__ == "__main__":
    harness.main(main)

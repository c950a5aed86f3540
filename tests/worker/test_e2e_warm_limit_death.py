"""A pool process that dies of its resource limit (here: out of files under
BOT_<TYPE>_MAX_FILES, Python's "OSError: [Errno 24] Too many open files" and
exit 1) is counted bot_recycles_total{reason="limit"}, as its job failed
with resource_limit, not reason="died".

A real broker (no Redis), a real worker with its /metrics, and a pool bot
written by hand that opens files until it fails when the payload asks.
The job fails with resource_limit (limit files); the worker's /metrics
counts one recycle for the limit and none as died; the next job runs on a
new process.  Before, the recycle was counted reason="died".
"""
import os

import harness
from harness import check, wait_until
import wlib

FILEHOG = """import json, os, sys
sys.stdout.write('{"ready": true}\\n')
sys.stdout.flush()
held = []
for line in sys.stdin:
    frame = json.loads(line)
    if frame["payload"].get("hog"):
        while True:
            held.append(open("/dev/null"))
    sys.stdout.write(json.dumps({"result": {"pid": os.getpid()}, "job": frame["job"]}) + "\\n")
    sys.stdout.flush()
"""


def main():
    bots = harness.tempdir("warm-limit-death-")
    bot = os.path.join(bots, "filehog.py")
    with open(bot, "w") as f:
        f.write(FILEHOG)
    with harness.Stack("worker-e2e-warm-limit-death") as s:
        s.broker(redis=False)
        env = {"BOT_FHOG_CMD": "%s %s" % (wlib.PY, bot), "BOT_FHOG_MODE": "pool",
               "BOT_FHOG_MAX_PROCS": "1", "BOT_FHOG_MAX_FILES": "32", "WORKER_METRICS_PORT": "-1"}
        w = s.worker("--type", "fhog", "--concurrency", "1", env=env)
        port = w.listening("metrics")
        s.wait_workers(1)
        c = s.client()
        before = wlib.run_job(c, "fhog", {}, attempts=1)
        check(before["state"] == "completed", "a job of the bot completes", before)
        rec = wlib.run_job(c, "fhog", {"hog": True}, attempts=1)
        err = rec.get("error") or {}
        check(rec["state"] == "failed" and err.get("code") == "resource_limit"
              and "limit of 32 open files" in err.get("message", ""),
              "the job whose process ran out of files fails with resource_limit naming the limit", rec)

        def counted():
            limit = wlib.metric(port, "bot_recycles_total", bot_type="fhog", reason="limit")
            died = wlib.metric(port, "bot_recycles_total", bot_type="fhog", reason="died")
            return (limit, died) if limit + died >= 1 else None
        limit, died = wait_until(counted, 10, "the dead process counted on the worker's /metrics")
        check(limit == 1 and died == 0,
              "bot_recycles_total counts it reason=\"limit\" (1), not reason=\"died\" (0)",
              {"limit": limit, "died": died})
        after = wlib.run_job(c, "fhog", {}, attempts=1)
        check(after["state"] == "completed" and after["result"]["pid"] != before["result"]["pid"],
              "the next job completes on a new process", after)
        c.close()
        check(w.alive(), "worker still running")


if __name__ == "__main__":
    harness.main(main)

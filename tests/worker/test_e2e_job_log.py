"""A job's log: the tail of what its bot wrote on stderr, kept with every
outcome (DONE `log`, the record's `log`, docs/bots.md "stderr is a job's
log").

A real Redis, broker and worker; bots that write lines on stderr, spawned
(one process per job) and pooled (a pool process speaking the pool
protocol):

- a job that completes: its record's `log` holds those lines, in memory
  (STATUS) and in its Redis record, and still after a broker restart
  (read back from Redis); LIST leaves it out;
- a job that fails (exit 3): error.message is the stderr tail as before,
  and `log` holds the same lines;
- a bot that wrote nothing on stderr: no `log`;
- a job cancelled while its bot runs: `log` holds what the bot wrote
  before (the DONE of the stopped run brings it), in memory, in Redis and
  after a restart;
- more than the cap: a spawned bot with BOT_STDERR_TAIL_BYTES=65536 that
  writes 40,000 bytes of numbered lines: the log is its last 16,384 bytes
  (BM_MAX_JOB_LOG_LEN), ending with its last line;
- BOT_<TYPE>_KEEP_LOG=0: no `log`, the failed job's message as before;
- a worker whose DONE carries a `log` that is not a string (a fake worker
  on the same broker): the job still completes, without a log, and the
  broker logs a WARN line naming it; a DONE_MANY item's log is its job's.

Before, a worker sent no `log` and the broker kept none: every check of a
`log` failed (the completed job's first: "spawn: the completed job's log
holds its stderr lines", None).
"""
import os

import fakeworker
import harness as h
import wlib
from harness import check, log

SPAWN_BOT = r"""import json, sys, time
payload = json.load(sys.stdin)
for line in payload.get("err", []):
    sys.stderr.write(line + "\n")
if payload.get("bulk"):
    sys.stderr.write("".join("line %05d\n" % i for i in range(payload["bulk"])))
sys.stderr.flush()
if payload.get("mark"):
    open(payload["mark"], "w").close()
    time.sleep(60)
if payload.get("exit"):
    sys.exit(payload["exit"])
print(json.dumps({"done": True}))
"""

POOL_BOT = r"""import json, sys, time
sys.stdout.write('{"ready": true}\n')
sys.stdout.flush()
for line in sys.stdin:
    payload = json.loads(line)["payload"]
    for out in payload.get("err", []):
        sys.stderr.write(out + "\n")
    sys.stderr.flush()
    if payload.get("mark"):
        open(payload["mark"], "w").close()
        time.sleep(60)
    if payload.get("exit"):
        sys.stdout.write(json.dumps({"exit": payload["exit"]}) + "\n")
    else:
        sys.stdout.write(json.dumps({"result": {"done": True}}) + "\n")
    sys.stdout.flush()
"""


DONE_MANY = 0x0B


def run(c, bot_type, payload):
    job_id = c.submit(bot_type, payload, attempts=1)
    return c.wait(job_id, timeout=30)


def main():
    with h.Stack("worker-e2e-job-log") as s:
        spawn_path = os.path.join(s.dir, "spawnbot.py")
        pool_path = os.path.join(s.dir, "poolbot.py")
        with open(spawn_path, "w") as f:
            f.write(SPAWN_BOT)
        with open(pool_path, "w") as f:
            f.write(POOL_BOT)
        s.redis()
        broker = s.broker()
        env = {"BOT_SP_CMD": "%s %s" % (wlib.PY, spawn_path),
               "BOT_PL_CMD": "%s %s" % (wlib.PY, pool_path), "BOT_PL_MODE": "pool",
               "BOT_PL_MAX_PROCS": "1",
               "BOT_OFF_CMD": "%s %s" % (wlib.PY, spawn_path), "BOT_OFF_KEEP_LOG": "0"}
        s.worker("--type", "sp,pl,off", "--concurrency", "3", env=env)
        s.wait_workers(1)
        c = s.client()
        lines = ["first line", "second line: \u00e9t\u00e9"]
        kept = {}
        cancelled = {}
        for bot_type, mode in (("sp", "spawn"), ("pl", "pool")):
            log("=== %s mode" % mode)
            rec = run(c, bot_type, {"err": lines})
            check(rec["state"] == "completed" and rec["result"] == {"done": True},
                  "%s: the job completes" % mode, rec)
            check(rec.get("log") == "\n".join(lines),
                  "%s: the completed job's log holds its stderr lines" % mode, rec.get("log"))
            stored = h.job_record(s.redis_port, rec["jobId"])
            check(stored.get("log") == "\n".join(lines),
                  "%s: its Redis record holds the log" % mode, stored)
            kept[mode] = rec["jobId"]

            rec = run(c, bot_type, {"err": ["why it failed"], "exit": 3})
            check(rec["state"] == "failed" and rec["error"]["message"] == "why it failed",
                  "%s: a failed job's error.message is its stderr tail, as before" % mode,
                  rec.get("error"))
            check(rec.get("log") == "why it failed", "%s: and its log holds it too" % mode,
                  rec.get("log"))

            rec = run(c, bot_type, {})
            check(rec["state"] == "completed" and "log" not in rec,
                  "%s: a bot that wrote nothing on stderr: no log" % mode, rec)

            # Cancelled while its bot sleeps: the log its stopped run's DONE
            # brings, once the worker has stopped the bot.
            mark = os.path.join(s.dir, "cancel-mark-" + mode)
            job_id = c.submit(bot_type, {"err": ["before the cancel"], "mark": mark}, attempts=1)
            h.wait_until(lambda: os.path.exists(mark), 15, "%s: the bot to write on stderr" % mode)
            cmd, reply = c.request(h.CANCEL, {"jobId": job_id})
            check(cmd == h.REPLY and reply["job"]["state"] == "cancelled",
                  "%s: the running job is cancelled" % mode, cmd, reply)
            rec = h.wait_until(lambda: (lambda r: r if r.get("log") else None)(c.status(job_id)),
                               15, "%s: the cancelled job's log" % mode)
            check(rec["state"] == "cancelled" and rec["log"] == "before the cancel",
                  "%s: a cancelled job's log holds what its bot wrote before the cancel" % mode,
                  rec)
            h.wait_until(lambda: (h.job_record(s.redis_port, job_id) or {}).get("log")
                         == "before the cancel", 10, "%s: the cancelled job's log in Redis" % mode)
            cancelled[mode] = job_id

        log("=== LIST leaves the log out")
        cmd, reply = c.request(h.LIST, {"limit": 500})
        listed = [j for j in reply["jobs"] if j["jobId"] == kept["spawn"]]
        check(listed and "log" not in listed[0], "LIST: the job without its log", listed)

        log("=== over the cap: the log is the last 16,384 bytes")
        s.worker("--type", "big", "--concurrency", "1",
                 env={"BOT_BIG_CMD": "%s %s" % (wlib.PY, spawn_path),
                      "BOT_STDERR_TAIL_BYTES": "65536"})
        s.wait_workers(1, "big")
        rec = run(c, "big", {"bulk": 4000})         # 4,000 lines of 11 bytes
        text = rec.get("log") or ""
        check(rec["state"] == "completed" and len(text) == 16384 and text.endswith("line 03999"),
              "a log over the cap: its last 16,384 bytes (the trailing newline trimmed)",
              len(text), text[-40:])

        log("=== BOT_OFF_KEEP_LOG=0")
        rec = run(c, "off", {"err": lines})
        check(rec["state"] == "completed" and "log" not in rec,
              "KEEP_LOG=0: a completed job has no log", rec)
        rec = run(c, "off", {"err": ["why it failed"], "exit": 3})
        check(rec["state"] == "failed" and rec["error"]["message"] == "why it failed"
              and "log" not in rec, "KEEP_LOG=0: a failed job keeps its message, no log", rec)

        log("=== a DONE whose log is not a string")
        fw = fakeworker.FakeWorker(s.endpoint, "fake-w", ["fake"], 1)
        s.wait_workers(1, "fake")
        job_id = c.submit("fake", {"n": 1}, attempts=1)
        job = fw.recv_job(10)
        check(job and job["jobId"] == job_id, "the fake worker got the job", job)
        fw.send(h.DONE, {"jobId": job_id, "ok": True, "result": 1, "attempt": job["attempt"],
                         "log": {"not": "a string"}})
        rec = c.wait(job_id)
        check(rec["state"] == "completed" and rec["result"] == 1 and "log" not in rec,
              "the job still completes, without a log", rec)
        h.wait_until(lambda: "its log is not a string: left out" in broker.output(), 10,
                     "the broker's WARN line about the log")
        # DONE_MANY: each item's log is its job's.
        job_id = c.submit("fake", {"n": 2}, attempts=1)
        job = fw.recv_job(10)
        check(job and job["jobId"] == job_id, "the fake worker got the second job", job)
        fw.send(DONE_MANY, {"jobs": [{"jobId": job_id, "ok": True, "result": 2,
                                      "attempt": job["attempt"], "log": "from a batch"}]})
        rec = c.wait(job_id)
        check(rec["state"] == "completed" and rec.get("log") == "from a batch",
              "a DONE_MANY item's log is its job's", rec)
        fw.close()

        log("=== after a broker restart: read back from Redis")
        broker.stop()
        broker = s.broker()
        c.close()
        c = s.client()
        for mode, job_id in kept.items():
            rec = c.status(job_id)
            check(rec and rec.get("log") == "\n".join(lines),
                  "%s: the log, read back from Redis after a restart" % mode, rec)
        for mode, job_id in cancelled.items():
            rec = c.status(job_id)
            check(rec and rec["state"] == "cancelled" and rec.get("log") == "before the cancel",
                  "%s: the cancelled job's log, read back from Redis after a restart" % mode, rec)
        c.close()


if __name__ == "__main__":
    h.main(main)

"""The Python client submits jobs that the C worker (botmesh-worker) runs
with the example Python bot: results, notify + wait, failures (bot_failed
with the bot's stderr), run-time timeout, cancel of a running job,
idempotency keys, priorities (lower first), list/stats.
"""
import os
import time

from e2elib import harness, botmesh, wait_worker, ROOT
from harness import check, wait_until

PYBOT = "/usr/bin/python3 " + os.path.join(ROOT, "workers", "bots", "python", "bot.py")


def main():
    with harness.Stack("clients-cworker") as s:
        s.redis()
        s.broker(env={"MAX_PYTHON_BOTS": "3", "MAX_PYSERIAL_BOTS": "1"})
        s.worker("--type", "python,pyserial", "--concurrency", "3", "--name", "c-worker",
                 env={"BOT_PYSERIAL_CMD": PYBOT, "BOTMESH_ROOT": ROOT})
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "c-worker")

        # results, pushed (notify) and polled
        ids = [c.submit("python", {"task": "data_analysis", "dataset": "sales_%d" % i, "size": 100},
                        notify=(i % 2 == 0)) for i in range(4)]
        for i, jid in enumerate(ids):
            rec = c.wait(jid, timeout=30)
            check(rec["state"] == "completed" and rec["worker"] == "c-worker" and rec["attempts"] == 1,
                  "job %d completed on the C worker (%s)" % (i, "push" if i % 2 == 0 else "poll"), rec)
            check(isinstance(rec["result"], dict) and rec["result"].get("jobId") == jid and
                  rec["result"].get("dataset") == "sales_%d" % i, "job %d: the bot's result (it saw its job id and payload)" % i,
                  rec["result"])
            check(rec["createdAt"] <= rec["startedAt"] <= rec["finishedAt"], "timestamps in order", rec)
        same = c.run("python", {"task": "data_analysis", "dataset": "sales_1", "size": 100}, timeout=30)
        first = c.status(ids[1])["result"]
        check(same["stats"] == first["stats"] and same["dataset"] == "sales_1",
              "run() returns the result; the same dataset gives the same numbers", same, first)

        # the bot fails: JobFailed with the bot's stderr
        try:
            c.run("python", {"task": "data_analysis", "fail": "dataset is corrupt"}, timeout=30)
            raise harness.TestFailure("a failing bot did not raise")
        except botmesh.JobFailed as e:
            check(e.code == "bot_failed" and "dataset is corrupt" in e.message, "bot_failed carries the stderr", str(e))

        # run-time limit
        jid = c.submit("python", {"task": "data_analysis", "sleepMs": 10000}, timeout_ms=300, max_attempts=1)
        rec = c.wait(jid, timeout=20)
        check(rec["state"] == "failed" and rec["error"]["code"] == "timeout", "timeoutMs ends the job: timeout", rec)

        # cancel a running job; the worker's credit comes back
        jid = c.submit("python", {"task": "data_analysis", "sleepMs": 10000})
        wait_until(lambda: c.status(jid)["state"] == "running", 10, "the job to run")
        rec = c.cancel(jid)
        check(rec["state"] == "cancelled", "cancel of a running job", rec)
        check(c.wait(jid, timeout=5)["state"] == "cancelled", "it stays cancelled")
        wait_until(lambda: c.stats()["types"]["python"]["usage"] == 0, 10, "the permit to come back")

        # idempotency
        a = c.submit("python", {"task": "data_analysis"}, idempotency_key="order-42")
        b = c.submit("python", {"task": "data_analysis"}, idempotency_key="order-42")
        check(a == b and not a.duplicate and b.duplicate, "same idempotencyKey: same job, duplicate flag", a, b)
        c.wait(a, timeout=20)
        t0 = time.monotonic()
        again = c.submit("python", {"task": "data_analysis"}, idempotency_key="order-42", notify=True)
        rec = c.wait(again, timeout=20)
        el = time.monotonic() - t0
        check(again == a and again.duplicate and rec["state"] == "completed" and el < 1.5,
              "a duplicate of an ended job with notify: wait() does not wait for a push that never comes", el)

        # priorities: pyserial has one permit; while a blocker runs, queue 5, 1, 3: they run 1, 3, 5
        blocker = c.submit("pyserial", {"task": "data_analysis", "sleepMs": 700})
        wait_until(lambda: c.status(blocker)["state"] == "running", 10, "the blocker to run")
        prio = {p: c.submit("pyserial", {"task": "data_analysis", "size": 10}, priority=p) for p in (5, 1, 3)}
        recs = {p: c.wait(j, timeout=30) for p, j in prio.items()}
        order = sorted(prio, key=lambda p: recs[p]["startedAt"])
        check(all(r["state"] == "completed" for r in recs.values()) and order == [1, 3, 5],
              "lower priority runs first", order)

        listed = c.list(bot_type="pyserial", limit=10)
        check({j["jobId"] for j in listed} == set(prio.values()) | {blocker} and
              all("payload" not in j and "result" not in j for j in listed), "LIST by botType, without payloads")
        st = c.stats()
        check(st["types"]["pyserial"]["limit"] == 1 and st["types"]["python"]["limit"] == 3,
              "STATS shows the semaphores", st["types"]["pyserial"])
        c.close()


if __name__ == "__main__":
    harness.main(main)

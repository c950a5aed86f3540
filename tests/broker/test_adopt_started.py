"""A job adopted after a broker restart keeps its run's startedAt, not the
adoption's: while it runs, the one its Redis record had for that run;
once its DONE comes, the DONE's startedAt and finishedAt (the worker's
clock), and the duration histogram observes that run's length.

Real redis and broker, killed (SIGKILL) and started again on the same
port; a fake python worker whose every frame the test sends.  The
worker's run took 6 s by its DONE: the record must say 6000 ms, and
bot_execution_duration_seconds_sum 6.
"""
import re

import harness as h
from fakeworker import FakeWorker

ENV = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5", "BROKER_SAVE_RUNNING_MS": "0"}


def duration_sum(port):
    code, _, body = h.http("GET", "http://127.0.0.1:%d/metrics" % port)
    h.check(code == 200, "broker /metrics answers", code)
    m = re.search(r'^bot_execution_duration_seconds_sum\{bot_type="python"\} (\S+)$', body, re.M)
    return float(m.group(1)) if m else None


def test():
    with h.Stack("adopt-started") as s:
        s.redis()
        broker = s.broker(env=ENV)
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1)
        s.wait_workers(1, "python")
        a = c.submit("python", {"n": "a"})
        job = w1.recv_job()
        h.check(job and job["jobId"] == a, "w1 runs a", job)
        h.wait_until(lambda: s.redis_cli("HGET", "botmesh:{bm}:job:" + a, "state") == "running", 5,
                     "redis to record a running")
        started = c.status(a)["startedAt"]
        c.close()
        w1.close()

        broker.kill()
        broker = s.broker(env=ENV, name="broker-2")
        h.wait_until(lambda: "recovered 1 unfinished jobs" in broker.output(), 10,
                     "the restarted broker to recover a")
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1, ready=False)
        w1.send(h.READY, {"name": "w1", "types": ["python"], "credit": 1, "running": [a]})
        rec = h.wait_until(lambda: (lambda r: r if r and r["state"] == "running" else None)(
            c.status(a)), 5, "a to be adopted (running)")
        h.check(rec["attempts"] == 1 and rec.get("worker") == "w1", "a adopted by w1, attempt 1",
                rec)
        h.check(rec.get("startedAt") == started,
                "adopted a keeps the startedAt its record had (%s), not the adoption's" % started,
                rec)

        # The worker's clock: its run began a second before the broker's
        # dispatch said, and took 6 s.
        run_start = started - 1000
        w1.send(h.DONE, {"jobId": a, "ok": True, "result": {"n": "a"}, "attempt": 1,
                         "startedAt": run_start, "finishedAt": run_start + 6000})
        rec = c.wait(a, 10)
        h.check(rec["state"] == "completed", "w1's DONE completes a", rec)
        h.check(rec.get("startedAt") == run_start and rec.get("finishedAt") == run_start + 6000,
                "a's record has the DONE's startedAt and finishedAt (6000 ms)", rec)
        h.wait_equal(lambda: duration_sum(broker.metrics_port), 6.0, 5,
                     "bot_execution_duration_seconds_sum{python} to be the run's 6 s")
        w1.close()
        c.close()


if __name__ == "__main__":
    h.main(test)

"""SIGTERM while Redis does not answer: the broker's Redis writes still
pending end as it stops, and "broker stopped" is its last line.  The line
for a job whose end Redis never took says what happens next (the next
broker recovers it), at WARN, before "broker stopped".

A real redis-server, stopped (SIGSTOP) once the broker has recorded a
job running; a fake worker's DONE then leaves the job's completed write
pending (broker_store_pending 1); BROKER_SHUTDOWN_MS=300 bounds the
flush that cannot happen.
"""
import re
import signal

import harness as h
from fakeworker import FakeWorker

ENV = {"BROKER_SAVE_RUNNING_MS": "0", "BROKER_SHUTDOWN_MS": "300", "REDIS_TIMEOUT_MS": "60000"}


def pending(c):
    """broker_store_pending, as METRICS renders it (set as it answers)."""
    m = re.search(r"^broker_store_pending (\d+)$", c.request(h.METRICS)[1]["text"], re.M)
    return int(m.group(1)) if m else None


def test():
    with h.Stack("stop-log-order") as s:
        redis = s.redis()
        broker = s.broker(env=ENV)
        c = s.client()
        w = FakeWorker(s.endpoint, "w1", ["python"], 1)
        s.wait_workers(1, "python")
        a = c.submit("python", {"n": "a"})
        job = w.recv_job()
        h.check(job and job["jobId"] == a, "w1 runs a", job)
        h.wait_until(lambda: s.redis_cli("HGET", "botmesh:{bm}:job:" + a, "state") == "running", 5,
                     "redis to record a running")
        h.wait_until(lambda: pending(c) == 0, 5, "no redis write pending")
        redis.signal(signal.SIGSTOP)
        try:
            w.done(a, {"n": "a"})
            h.wait_until(lambda: (pending(c) or 0) >= 1, 5,
                         "a's completed write to be pending (redis stopped)")
            rc = broker.stop(timeout=20)
        finally:
            redis.signal(signal.SIGCONT)
        out = broker.output()
        h.check(rc == 0, "the broker exits 0 on SIGTERM", rc, out[-1500:])
        lines = [line for line in out.splitlines() if line.strip()]
        h.check(lines and lines[-1].endswith("broker stopped"),
                "\"broker stopped\" is the broker's last line", lines[-5:])
        job_lines = [line for line in lines if ("job=" + a) in line and "terminal state" in line]
        h.check(len(job_lines) == 1 and " WARN " in job_lines[0]
                and "the next broker recovers it" in job_lines[0],
                "one WARN line says a's end was not written and the next broker recovers it",
                job_lines)
        w.close()
        c.close()


if __name__ == "__main__":
    h.main(test)

"""semaphore_waiting / waitingForPermit: jobs that wait because every
permit of their type is in use.

A real broker (no Redis) with MAX_JAVA_BOTS=1 and a fake worker of credit
1, as a real worker sizes its credit from the limit.  Three slow jobs: one
runs, two wait for the permit, and STATS `waitingForPermit` and the
broker's /metrics `semaphore_waiting{semaphore_name="java"}` both say 2
(the workers' credit does not matter).  A delayed job is not counted, a
cancelled one leaves the count, and the count falls to 0 as the permit
frees and the queue empties.
"""
import re

import harness as h
from fakeworker import FakeWorker


def test():
    env = {"HEARTBEAT_INTERVAL_MS": "1000", "HEARTBEAT_LIVENESS": "30", "MAX_JAVA_BOTS": "1"}
    with h.Stack("semwait") as s:
        broker = s.broker(redis=False, env=env)
        c = s.client()
        url = "http://127.0.0.1:%d/metrics" % broker.metrics_port

        def gauge():
            status, _, text = h.http("GET", url)
            h.check(status == 200, "GET /metrics on the broker's metrics port", status)
            m = re.search(r'^semaphore_waiting\{semaphore_name="java"\} (\d+)$', text, re.M)
            return int(m.group(1)) if m else None

        def both_say(n, what):
            def agree():
                st = c.stats()["types"].get("java", {})
                got = (st.get("waitingForPermit"), gauge())
                return got if got == (n, n) else None
            try:
                h.wait_until(agree, 10, what)
            except h.TestFailure:
                st = c.stats()["types"].get("java")
                raise h.TestFailure("FAILED: %s: STATS java %r, semaphore_waiting %r" % (what, st, gauge()))
            h.log("ok:", what)

        w = FakeWorker(s.endpoint, "w-java", ["java"], 1)
        s.wait_workers(1, "java")
        ids = [c.submit("java", {"n": i}) for i in range(3)]
        first = w.recv_job()
        h.check(first is not None and first["jobId"] == ids[0], "the first job runs (the only permit)", first)
        both_say(2, "3 jobs, MAX_JAVA_BOTS=1: waitingForPermit 2 and semaphore_waiting 2")
        st = c.stats()["types"]["java"]
        h.check(st["usage"] == 1 and st["limit"] == 1 and st["waiting"] == 2,
                "STATS java: usage 1 of limit 1, 2 waiting", st)

        delayed = c.submit("java", {"later": 1}, delayMs=60000)
        h.check(c.stats()["types"]["java"]["delayed"] == 1, "one delayed java job")
        both_say(2, "a delayed job does not wait for a permit: still 2")

        cmd, r = c.request(h.CANCEL, {"jobId": ids[2]})
        h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "CANCEL of a queued job", r)
        both_say(1, "one queued job cancelled: 1")

        w.done(first["jobId"], {"ok": 1})
        second = w.recv_job()
        h.check(second is not None and second["jobId"] == ids[1], "the permit freed: the next job runs", second)
        both_say(0, "nothing left queued: 0")
        w.done(second["jobId"], {"ok": 1})
        h.check(c.wait(ids[1], timeout=10)["state"] == "completed", "the second job completed")
        both_say(0, "a permit free: 0")
        cmd, r = c.request(h.CANCEL, {"jobId": delayed})
        h.check(cmd == h.REPLY, "CANCEL of the delayed job", r)
        w.close()
        c.close()


if __name__ == "__main__":
    h.main(test)

"""RATE_<TYPE>=N/PERIOD: at most N job starts of a type in any window of PERIOD.

A real redis-server and broker (RATE_PYTHON=5/1s, MAX_PYTHON_BOTS=20) and a
fake worker of credit 20 that completes each job as it gets it.  20 python
jobs of mixed priorities are queued before the worker connects; then:

- no 1 s window holds more than 5 starts, by the broker's dispatch time
  (each JOB's deadline less its timeoutMs) and by when the worker got it;
- the broker wakes when the window has room (a timer), not a second later;
- the jobs start in priority order (FIFO within a priority), all complete;
- a worker that takes batches (JOB_MANY) gets no more at once than the
  window has room for (RATE_JAVA=3/1s: batches of 3, 3, 1, a second apart);
- STATS python says rate {max 5, periodMs 1000} and rateLimited > 0 while
  jobs are held back; /metrics bot_rate_limited_total{bot_type="python"}
  counts the 15 starts the limit delayed.

At run time: QUEUE {action: "rate", rate: "2/1s"} limits node (4 jobs: 2,
then 2 a second later), "0" lifts it, "abc" is bad_request.

Settings: other spellings are read (100/m, 5/200ms, 3/1500, 2/h), the
gateway's RATE_LIMIT_* are no type's rate, and a bad value (abc, 0/s, a
negative N, a zero period, 5 alone; RATE_WEBHOOK: deliveries have none)
makes the broker exit 2 naming it.
"""
import re
import subprocess
import time

import harness as h
from fakeworker import FakeWorker

JOBS, RATE, PERIOD = 20, 5, 1.0
JOB_MANY, DONE_MANY = 0x0A, 0x0B
QUEUE = 0x0B


def metric(port, name, bot_type):
    status, _, text = h.http("GET", "http://127.0.0.1:%d/metrics" % port)
    h.check(status == 200, "GET /metrics", status)
    m = re.search(r'^%s\{bot_type="%s"\} (\d+)$' % (name, bot_type), text, re.M)
    return int(m.group(1)) if m else None


def windows(times, what, low, high):
    """Every RATE+1 consecutive starts span at least low (no window of
    PERIOD holds more than RATE) and at most high (the wake is prompt)."""
    spans = [round(times[i + RATE] - times[i], 4) for i in range(len(times) - RATE)]
    h.log("%s: spans of %d starts: %s" % (what, RATE + 1, spans))
    h.check(all(span >= low for span in spans),
            "%s: no %.0f s window holds more than %d starts" % (what, PERIOD, RATE), spans)
    h.check(all(span <= high for span in spans),
            "%s: each start waits no longer than its window needs (a timer wakes dispatch)" % what,
            spans)


def spaced_starts():
    env = {"RATE_PYTHON": "5/1s", "MAX_PYTHON_BOTS": str(JOBS), "HEARTBEAT_LIVENESS": "30"}
    with h.Stack("rate") as s:
        s.redis()
        broker = s.broker(env=env)
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "broker connected to redis")
        # Queued before any worker: priorities 2, 0, 1 in turn.
        priorities = [(2, 0, 1)[i % 3] for i in range(JOBS)]
        ids = [c.submit("python", {"n": i}, priority=priorities[i]) for i in range(JOBS)]
        want = [ids[i] for i in sorted(range(JOBS), key=lambda i: (priorities[i], i))]

        w = FakeWorker(s.endpoint, "w-rate", ["python"], JOBS)
        got, at_worker, at_broker, held_back = [], [], [], []
        deadline = time.monotonic() + 30
        while len(got) < JOBS and time.monotonic() < deadline:
            job = w.recv_job(timeout=max(0.1, deadline - time.monotonic()))
            if job is None:
                break
            at_worker.append(time.monotonic())
            at_broker.append((job["deadline"] - job["timeoutMs"]) / 1000.0)
            got.append(job["jobId"])
            w.done(job["jobId"], {"ok": 1})
            if len(got) == RATE:
                st = c.stats()["types"]["python"]
                held_back.append(st.get("rateLimited"))
                h.log("STATS python after %d starts: waiting %d, rateLimited %s"
                      % (RATE, st["waiting"], st.get("rateLimited")))
        h.check(len(got) == JOBS, "the worker got all %d jobs within 30 s" % JOBS, len(got))
        # The broker stamps whole ms (wall and monotonic clocks: 2 ms apart
        # at most); the worker's times carry the socket's delivery and this
        # process's scheduling too (0.1 s allowed).
        windows(at_broker, "dispatch times at the broker", PERIOD - 0.002, PERIOD + 0.5)
        windows(at_worker, "receive times at the worker", PERIOD - 0.1, PERIOD + 0.5)
        h.check(got == want, "jobs started in priority order, FIFO within one", got, want)
        rate = c.stats()["types"]["python"].get("rate")
        h.check(rate == {"max": RATE, "periodMs": 1000}, "STATS python rate: 5 per 1000 ms", rate)
        h.check(held_back and held_back[0] > 0,
                "STATS rateLimited > 0 while the window is full and jobs wait", held_back)
        for job_id in ids:
            h.check(c.wait(job_id, timeout=15)["state"] == "completed", "job %s completed" % job_id)
        h.wait_equal(lambda: metric(broker.metrics_port, "bot_rate_limited_total", "python"),
                     JOBS - RATE, 10, "bot_rate_limited_total{bot_type=\"python\"}: 15 starts delayed")
        st = c.stats()["types"]["python"]
        h.check(st["rateLimited"] == 0 and st["waiting"] == 0, "nothing held back at the end", st)
        h.check(c.stats()["types"]["node"]["rate"] is None, "node has no rate limit: rate null")
        w.close()
        c.close()


def batch_worker():
    """A worker that takes batches gets JOB_MANYs of at most the window's
    room: RATE_JAVA=3/1s, 7 queued jobs, credit 20: 3, then 3 a second
    later, then 1."""
    with h.Stack("ratebatch") as s:
        s.redis()
        s.broker(env={"RATE_JAVA": "3/1s", "MAX_JAVA_BOTS": "20", "HEARTBEAT_LIVENESS": "30"})
        c = s.client()
        h.wait_until(lambda: c.request(h.PING)[1]["redis"], 10, "broker connected to redis")
        ids = [c.submit("java", {"n": i}) for i in range(7)]
        w = FakeWorker(s.endpoint, "w-many", ["java"], 20, ready=False)
        w.send(h.READY, {"name": "w-many", "types": ["java"], "credit": 20, "batch": True})
        sizes, stamps, got = [], [], []
        deadline = time.monotonic() + 20
        while len(got) < 7 and time.monotonic() < deadline:
            msg = w.recv(timeout=max(0.1, deadline - time.monotonic()))
            h.check(msg is not None and msg[0] in (JOB_MANY, h.JOB), "jobs arrive", msg and msg[0])
            jobs = msg[1]["jobs"] if msg[0] == JOB_MANY else [msg[1]]
            sizes.append(len(jobs))
            stamps.append(min(j["deadline"] - j["timeoutMs"] for j in jobs) / 1000.0)
            got += [j["jobId"] for j in jobs]
            w.send(DONE_MANY, {"jobs": [{"jobId": j["jobId"], "ok": True, "result": 1} for j in jobs]})
        h.log("batch worker: messages of %s jobs at %s" % (sizes, [round(t - stamps[0], 3) for t in stamps]))
        h.check(sizes == [3, 3, 1], "JOB_MANYs hold at most the window's room: 3, 3, 1", sizes)
        h.check(all(b - a >= PERIOD - 0.002 for a, b in zip(stamps, stamps[1:])),
                "each batch a window after the one before", stamps)
        h.check(got == ids, "in queue order", got)
        for job_id in ids:
            h.check(c.wait(job_id, timeout=15)["state"] == "completed", "job %s completed" % job_id)
        w.close()
        c.close()


def at_run_time():
    """QUEUE {action: rate, rate: "N/PERIOD"} sets a type's limit while the
    broker runs (no RATE_NODE): 2/1s, then 4 node jobs start as 2, and 2 a
    second later; "0" lifts it; a bad value is bad_request naming rate."""
    with h.Stack("raterun") as s:
        s.broker(redis=False, env={"HEARTBEAT_LIVENESS": "30", "MAX_NODE_BOTS": "10"})
        c = s.client()
        h.check(c.stats()["types"]["node"].get("rate", "absent") is None,
                "node: no rate limit at start (STATS rate nil)")
        cmd, r = c.request(QUEUE, {"botType": "node", "action": "rate", "rate": "2/1s"})
        h.check(cmd == h.REPLY and r.get("rate") == {"max": 2, "periodMs": 1000},
                "QUEUE rate 2/1s answered with the new rate", cmd, r)
        h.check(c.stats()["types"]["node"]["rate"] == {"max": 2, "periodMs": 1000},
                "STATS node rate: 2 per 1000 ms")
        w = FakeWorker(s.endpoint, "w-node", ["node"], 10)

        def run_four(what):
            """Submit 4 node jobs, take and complete them: their dispatch times."""
            ids = [c.submit("node", {"n": i}) for i in range(4)]
            stamps = []
            for _ in range(4):
                job = w.recv_job(timeout=10)
                h.check(job is not None, "%s: a node job arrives" % what, len(stamps))
                stamps.append((job["deadline"] - job["timeoutMs"]) / 1000.0)
                w.done(job["jobId"], {"ok": 1})
            for job_id in ids:
                h.check(c.wait(job_id, timeout=15)["state"] == "completed", "job %s completed" % job_id)
            return stamps

        stamps = run_four("2/1s")
        h.log("node starts at %s" % [round(t - stamps[0], 3) for t in stamps])
        h.check(stamps[2] - stamps[0] >= PERIOD - 0.002 and stamps[3] - stamps[1] >= PERIOD - 0.002,
                "no 1 s window holds more than 2 node starts", stamps)
        cmd, r = c.request(QUEUE, {"botType": "node", "action": "rate", "rate": "abc"})
        h.check(cmd == h.REJECTED and r["code"] == "bad_request" and "rate" in r["message"],
                "QUEUE rate abc: bad_request naming rate", cmd, r)
        h.check(c.stats()["types"]["node"]["rate"] == {"max": 2, "periodMs": 1000},
                "a refused value changes nothing")
        cmd, r = c.request(QUEUE, {"botType": "node", "action": "rate", "rate": "0"})
        h.check(cmd == h.REPLY and r.get("rate", 1) is None, "QUEUE rate 0 lifts the limit", cmd, r)
        got = run_four("unlimited")
        h.check(max(got) - min(got) < PERIOD / 2, "unlimited: the 4 start together", got)
        w.close()
        c.close()


def settings():
    with h.Stack("rateconf") as s:
        env = {"RATE_PYTHON": "100/m", "RATE_NODE": "5/200ms", "RATE_JAVA": "3/1500",
               "RATE_REPORT": "2/h", "RATE_DAILY": "1/24h", "RATE_LIMIT_BURST": "100",
               "RATE_LIMIT_RPS": "50"}
        broker = s.broker(redis=False, env=env)
        c = s.client()
        types = c.stats()["types"]
        got = {t: types.get(t, {}).get("rate") for t in ("python", "node", "java", "report")}
        h.check(got == {"python": {"max": 100, "periodMs": 60000}, "node": {"max": 5, "periodMs": 200},
                        "java": {"max": 3, "periodMs": 1500}, "report": {"max": 2, "periodMs": 3600000}},
                "RATE_<TYPE> spellings read", got)
        h.check(not any(t.startswith("limit") for t in types),
                "the gateway's RATE_LIMIT_* make no type", sorted(types))
        c.close()
        # Each limit's log line says it in words: "1 start", the period in
        # the largest unit it is a whole number of.
        out = broker.output()
        for line in ("RATE_DAILY: bot type daily: at most 1 start in any 24 h",
                     "RATE_PYTHON: bot type python: at most 100 starts in any 1 min",
                     "RATE_NODE: bot type node: at most 5 starts in any 200 ms",
                     "RATE_JAVA: bot type java: at most 3 starts in any 1500 ms",
                     "RATE_REPORT: bot type report: at most 2 starts in any 1 h"):
            h.check(line in out, "the broker logs %r" % line,
                    [l for l in out.splitlines() if "RATE_" in l])

        bad = [("RATE_PYTHON", v) for v in ("abc", "0/s", "-1/s", "5/0s", "5")]
        for name, value in bad + [("RATE_WEBHOOK", "10/s")]:
            p = s.spawn("broker-bad", [s.bin("botmesh-broker")],
                        {"BROKER_ENDPOINT": "tcp://127.0.0.1:%d" % h.free_port(),
                         "BROKER_METRICS_PORT": "0", "REDIS_URL": "none", name: value})
            try:
                code = p.p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                raise h.TestFailure("FAILED: %s=%s: the broker started anyway" % (name, value))
            out = p.output()
            h.check(code == 2, "%s=%s: the broker exits 2" % (name, value), code, out[-1000:])
            said = [l for l in out.splitlines() if name in l and ("'%s'" % value) in l]
            h.check(said, "%s=%s: its log names the variable and the value" % (name, value),
                    out[-1000:])
            h.log("ok: %s=%s refused: %s" % (name, value, said[-1]))


def test():
    spaced_starts()
    batch_worker()
    at_run_time()
    settings()


if __name__ == "__main__":
    h.main(test)

"""A Redis that stops answering (SIGSTOP) with its TCP connection open is
noticed: the broker gives it REDIS_TIMEOUT_MS, then counts it as down.

- REDIS_TIMEOUT_MS not a number or out of range: the broker exits 2 at
  start, naming it.

- A client submits python jobs one after another, without pause.  Once
  40 are accepted, redis-server is stopped (SIGSTOP): its kernel keeps
  the connection open and accepts new ones, and nothing answers.
- Within REDIS_TIMEOUT_MS (800 here) and some slack the broker logs one
  ERROR "redis HOST:PORT: no answer for N ms; reconnecting with backoff",
  its /ready answers 503 redis_unavailable and its redis_up gauge is 0;
  the client's SUBMITs meanwhile are refused store_unavailable, none
  hangs.
- Frozen for 3 s more (several reconnects to a Redis that still does not
  answer): still that one line.
- SIGCONT: the broker reconnects ("available again"), /ready answers 200,
  redis_up is 1; the new connection killed the old one (CLIENT KILL ADDR)
  before it wrote, so what the old one had sent cannot run after it.
- Then a worker runs everything: every job accepted, before or during the
  freeze, is in Redis and runs once, and no refused one runs.

A real redis-server and a real broker; a fake worker the test drives.
"""
import re
import signal
import subprocess
import threading
import time
import harness as h
from fakeworker import FakeWorker

TIMEOUT_MS = 800
SLACK_S = 2.0
LINE = re.compile(r"ERROR.*redis 127\.0\.0\.1:\d+: no answer for (\d+) ms; reconnecting with backoff")


def key(job_id):
    return "botmesh:{bm}:job:" + job_id


class Submitter:
    """Submits python jobs one after another on its own thread; keeps the
    ids accepted and the codes refused, in order."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.accepted, self.refused, self.slowest = [], [], 0.0
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        c = h.Client(self.endpoint)
        n = 0
        while self.running:
            n += 1
            start = time.monotonic()
            cmd, r = c.try_submit("python", {"n": n}, timeout=10)
            self.slowest = max(self.slowest, time.monotonic() - start)
            if cmd == h.ACCEPTED:
                self.accepted.append(r["jobId"])
            else:
                self.refused.append(r.get("code"))
                time.sleep(0.02)        # a client backing off after a refusal
        c.close()

    def stop(self):
        self.running = False
        self.thread.join(15)


def redis_up(broker):
    st, _, text = h.http("GET", "http://127.0.0.1:%d/metrics" % broker.metrics_port)
    m = re.search(r"^redis_up (\d+)", text, re.M)
    return m and int(m.group(1))


def frozen(broker, sub, ready):
    """While Redis is stopped: the line, /ready 503, redis_up 0, SUBMITs
    refused, and no more lines; returns how many were accepted before."""
    frozen_at = time.monotonic()
    before = len(sub.accepted)
    h.log("redis-server stopped (SIGSTOP) after %d jobs accepted" % before)

    m = h.wait_until(lambda: LINE.search(broker.output()), TIMEOUT_MS / 1000.0 + SLACK_S,
                     "the broker to log that Redis does not answer")
    noticed = time.monotonic() - frozen_at
    h.log("logged after %.2f s: %s" % (noticed, m.group(0)))
    h.check(int(m.group(1)) >= TIMEOUT_MS, "it waited REDIS_TIMEOUT_MS at least", m.group(0))
    st, _, body = h.http("GET", ready)
    h.check(st == 503 and body.get("redis") is False
            and body["error"]["code"] == "redis_unavailable",
            "/ready answers 503 redis_unavailable", st, body)
    h.check(redis_up(broker) == 0, "redis_up is 0")
    h.wait_until(lambda: "store_unavailable" in sub.refused, 5,
                 "a SUBMIT during the freeze to be refused store_unavailable")

    time.sleep(3.0)     # the freeze goes on: several reconnects, no answer
    out = broker.output()
    h.check(len(LINE.findall(out)) == 1 and "available again" not in out,
            "3 s later: still that one line, and no reconnect taken for success",
            LINE.findall(out))
    h.check(h.http("GET", ready)[0] == 503 and redis_up(broker) == 0, "still not ready")
    return before


def bad_values(s):
    """A value out of range or not a number stops the broker at start:
    exit 2, naming the variable."""
    for value in ("abc", "-1", "600001"):
        p = subprocess.run([s.bin("botmesh-broker")], capture_output=True, text=True, timeout=20,
                           env=dict(s.env, REDIS_URL="none", REDIS_TIMEOUT_MS=value,
                                    BROKER_ENDPOINT="tcp://127.0.0.1:0", BROKER_METRICS_PORT="0"))
        h.check(p.returncode == 2 and "REDIS_TIMEOUT_MS must be an integer from 0 to 600000" in p.stderr,
                "REDIS_TIMEOUT_MS=%s: exit 2 naming the variable" % value, p.returncode, p.stderr[-300:])


def test():
    with h.Stack("redis-frozen") as s:
        bad_values(s)
        redis = s.redis()
        broker = s.broker(env={"REDIS_TIMEOUT_MS": str(TIMEOUT_MS), "HEARTBEAT_INTERVAL_MS": "200"})
        ready = "http://127.0.0.1:%d/ready" % broker.metrics_port
        h.wait_until(lambda: h.http("GET", ready)[0] == 200, 10, "the broker's /ready to answer 200")
        h.check(redis_up(broker) == 1, "redis_up is 1")

        sub = Submitter(s.endpoint)
        h.wait_until(lambda: len(sub.accepted) >= 40, 15, "40 jobs accepted")
        redis.signal(signal.SIGSTOP)
        try:
            before = frozen(broker, sub, ready)
        finally:
            redis.signal(signal.SIGCONT)        # (also when a check failed)
        h.log("redis-server continued (SIGCONT)")
        h.wait_until(lambda: "available again" in broker.output(), 10, "the broker to reconnect")
        h.wait_until(lambda: h.http("GET", ready)[0] == 200, 10, "/ready to answer 200 again")
        h.check(redis_up(broker) == 1, "redis_up is 1 again")
        # What the dropped connection had sent waited in its socket and ran
        # when Redis woke up: the new connection killed it first, before
        # sending anything again (so none of it can run after newer writes).
        stats = s.redis_cli("INFO", "commandstats")
        kills = re.search(r"cmdstat_client\|kill:calls=(\d+)", stats)
        h.check(kills and int(kills.group(1)) >= 1 and "refused CLIENT KILL" not in broker.output(),
                "the new connection killed the old one (CLIENT KILL ADDR)", kills and kills.group(0))
        h.wait_until(lambda: len(sub.accepted) >= before + 20, 15, "SUBMITs accepted again")
        sub.stop()
        accepted = list(sub.accepted)
        h.log("%d accepted (%d before the freeze), %d refused (%s); slowest answer %.2f s"
              % (len(accepted), before, len(sub.refused), sorted(set(sub.refused)), sub.slowest))
        h.check(sub.slowest < TIMEOUT_MS / 1000.0 + SLACK_S, "no SUBMIT waited much beyond the bound",
                sub.slowest)
        h.check(len(set(accepted)) == len(accepted), "every accepted id is distinct")

        missing = [j for j in accepted if (h.job_record(s.redis_port, j) or {}).get("state") != "queued"]
        h.check(not missing, "all %d accepted jobs are in Redis, queued" % len(accepted), missing[:5])

        w = FakeWorker(s.endpoint, "w1", ["python"], 50)
        runs = {}
        while True:
            msg = w.recv(timeout=2.0)
            if msg is None:
                break
            h.check(msg[0] == h.JOB, "the worker gets JOBs only", msg)
            job = msg[1]
            runs[job["jobId"]] = runs.get(job["jobId"], 0) + 1
            w.done(job["jobId"], {"ok": True})
        twice = {j: n for j, n in runs.items() if n != 1}
        h.check(not twice, "no job ran twice", twice)
        h.check(sorted(runs) == sorted(accepted),
                "the worker ran every accepted job (%d) and nothing else" % len(accepted),
                sorted(set(accepted) - set(runs))[:5], sorted(set(runs) - set(accepted))[:5])
        h.wait_until(lambda: all(s.redis_cli("HGET", key(j), "state") == "completed"
                                 for j in accepted[-5:] + accepted[:5]), 10,
                     "their completions in Redis")
        w.close()

        broker.signal(signal.SIGTERM)
        h.check(broker.p.wait(10) == 0, "the broker exits 0 on SIGTERM")


if __name__ == "__main__":
    h.main(test)

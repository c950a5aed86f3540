"""Chaos: a steady load of webhook jobs through two gateways while kill -9
takes down, in turn, a worker, the broker, the webhook manager, a gateway
and Redis; each comes back.  At the end nothing acknowledged is missing.

The stack: Redis (AOF, appendfsync everysec), one broker, two simulated
workers (botmesh-worker --simulate, 5-100 ms, 5 % of runs fail), the
webhook manager, two gateways, the mock receiver failing 10 % of
deliveries (503).  The load: CHAOS_RATE jobs/s (default 150; 100 when the
binaries are built with ASan) for CHAOS_SECONDS (default 60), every job
POSTed to /invoke with a webhookUrl pointing at the mock, alternating
between the two gateways.  A request that got no 202 (connection refused or
reset, 503 while Redis or the broker is away, 504) counts as not accepted:
the client was told nothing, so the system owes it nothing (such a job may
still exist: it is reported as "created without a 202", and checked too).

What must hold at the end (the test fails otherwise):
- every job that got a 202 has its record in Redis (else: LOST), in a
  terminal state (completed, failed or cancelled; else: STUCK), and its
  webhook state is "delivered";
- the mock received a 2xx delivery for every one of them (else: WEBHOOK
  LOST); extra deliveries (at-least-once) are counted and reported;
- the counts agree where they must.  kill -9 resets a process's in-memory
  counters, so the truth is Redis (it survives every kill) and the mock
  (never killed).  Hence:
    * Redis's set of jobs ⊇ the 202 set; all of Redis's jobs are terminal
      and its "unfinished" set is empty;
    * the mock's set of job ids with a 2xx delivery == Redis's set of jobs
      (every job the system holds delivered its webhook; the mock got
      nothing for a job Redis does not know);
    * each gateway process counted (gateway_invoke_accepted_total) exactly
      the 202s the load received from it: the gateway that was never
      killed over the whole run, the restarted one since its restart;
    * the last broker and the last webhook manager hold nothing: no job
      waiting or running, no delivery held or in flight.
- every process we did not kill is still alive, and no sanitizer report.

It prints the figures: accepted, not accepted (by reason), completed,
failed (by code), jobs run more than once, webhook deliveries beyond the
first, lost = 0."""
import collections
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "webhook"))
sys.path.insert(0, os.path.join(HERE, "..", "gateway"))
import harness                      # noqa: E402
from harness import check, log, wait_until  # noqa: E402
import gwtest                       # noqa: E402
import whlib                        # noqa: E402
import msgpack                      # noqa: E402

PREFIX = "botmesh:{bm}:"
TYPES = ("python", "node", "java")
HB = {"HEARTBEAT_INTERVAL_MS": "250", "HEARTBEAT_LIVENESS": "4"}
BROKER_ENV = dict(HB, MAX_PYTHON_BOTS="20", MAX_NODE_BOTS="20", MAX_JAVA_BOTS="20")
WORKER_ENV = dict(HB, SIM_DURATION_MS="5-100", SIM_FAIL_RATE="0.05")
# Fast retries so that every delivery ends within the drain; 10 retries:
# at a 10 % failure rate, all 11 attempts fail once in 10^11.
WEBHOOK_ENV = dict(HB, WEBHOOK_RETRY_DELAY="100", WEBHOOK_MAX_DELAY="1000",
                   WEBHOOK_MAX_RETRIES="10", WEBHOOK_TIMEOUT_MS="5000")
GATEWAY_ENV = {"GATEWAY_THREADS": "64", "BROKER_TIMEOUT_MS": "4000",
               "BROKER_CONNECT_TIMEOUT_MS": "1000"}
HTTP_TIMEOUT = 10                   # > BROKER_TIMEOUT_MS: the gateway answers first
LOAD_THREADS = 24


def asan_build(path):
    try:
        out = subprocess.run(["ldd", path], capture_output=True, text=True, timeout=10).stdout
        return "libasan" in out
    except (OSError, subprocess.SubprocessError):
        return False


redis_pipeline = harness.redis_pipeline


def redis_scan_jobs(port):
    """Every job id Redis holds (delivery jobs <id>.whN apart)."""
    jobs, cursor = set(), b"0"
    while True:
        cursor, keys = redis_pipeline(port, [["SCAN", cursor, "MATCH", PREFIX + "job:*",
                                              "COUNT", "2000"]])[0]
        jobs.update(k.decode()[len(PREFIX) + 4:] for k in keys)
        if cursor == b"0":
            return jobs


def redis_jobs(port, ids):
    """id -> {state, attempts, errorCode, webhook (decoded)} or None."""
    replies = redis_pipeline(port, [["HGETALL", PREFIX + "job:" + j] for j in ids])
    out = {}
    for j, r in zip(ids, replies):
        if not r:
            out[j] = None
            continue
        try:
            rec = harness.record_from_hash(r)
        except Exception as exc:                  # a record we cannot read is a finding
            rec = {"state": "undecodable", "webhook": {"undecodable": repr(exc)}}
        out[j] = {"state": rec.get("state"), "attempts": int(rec.get("attempts") or 0),
                  "errorCode": rec.get("errorCode"), "webhook": rec.get("webhook")}
    return out


# --- the load ----------------------------------------------------------------

class Load:
    """CHAOS_RATE POST /invoke a second, spread over two gateways, from
    LOAD_THREADS threads with keep-alive connections.  Never retries a POST
    (a retry could create a second job): a failure is recorded as such."""

    def __init__(self, ports, hook, rate, seconds):
        self.ports = ports                  # [gateway A port, gateway B port]
        self.hook = hook
        self.rate = rate
        self.seconds = seconds
        self.lock = threading.Lock()
        self.next = 0
        self.records = []                   # (gw, t_sent, t_done, outcome, jobId)
        self.threads = []
        self.t0 = None

    def start(self):
        self.t0 = time.monotonic()
        for _ in range(LOAD_THREADS):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self.threads.append(t)

    def join(self):
        for t in self.threads:
            t.join(HTTP_TIMEOUT + 5)
        check(not any(t.is_alive() for t in self.threads), "the load threads ended")

    def _ticket(self):
        with self.lock:
            i = self.next
            self.next += 1
        due = self.t0 + i / self.rate
        return (i, due) if due < self.t0 + self.seconds else (None, None)

    def _run(self):
        conns = {}
        while True:
            i, due = self._ticket()
            if i is None:
                break
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            gw = i % 2
            body = json.dumps({"botType": TYPES[i % 3], "payload": {"i": i},
                               "webhookUrl": self.hook, "priority": i % 4}).encode()
            t_sent = time.monotonic()
            outcome, job = None, None
            try:
                conn = conns.get(gw)
                if conn is None:
                    conn = conns[gw] = http.client.HTTPConnection("127.0.0.1", self.ports[gw],
                                                                  timeout=HTTP_TIMEOUT)
                conn.request("POST", "/invoke", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                outcome = resp.status
                if resp.status == 202:
                    job = json.loads(data)["jobId"]
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conns.pop(gw, None)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                outcome = type(exc).__name__
                c = conns.pop(gw, None)
                if c:
                    c.close()
            with self.lock:
                self.records.append((gw, t_sent, time.monotonic(), outcome, job))
        for c in conns.values():
            c.close()


def metric(text, name, labels=""):
    """The value of one sample of a Prometheus text, or 0 when absent."""
    key = name + labels
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return 0.0


def main():
    bin_asan = asan_build(os.path.join(harness.BIN, "botmesh-broker"))
    rate = float(os.environ.get("CHAOS_RATE", "100" if bin_asan else "150"))
    seconds = float(os.environ.get("CHAOS_SECONDS", "60"))
    #  CHAOS_KILLS: which kills to make (to bisect a finding); default all.
    kills = set(os.environ.get("CHAOS_KILLS", "worker,broker,webhook,gateway,redis").split(","))
    with harness.Stack("chaos") as s:
        redis = s.redis()
        broker = s.broker(env=BROKER_ENV)
        workers = [s.worker("--simulate", "--type", ",".join(TYPES), "--concurrency", "30",
                            env=WORKER_ENV, name="worker-%s" % n) for n in "ab"]
        mock = whlib.mock(s, env={"MOCK_THREADS": "64"})
        whlib.mock_mode(mock, failRate=0.1, status=503)
        wh = whlib.manager(s, WEBHOOK_ENV, name="webhook-1")
        gws = [gwtest.gateway(s, env=GATEWAY_ENV, name="gateway-a1"),
               gwtest.gateway(s, env=GATEWAY_ENV, name="gateway-b")]
        s.wait_workers(3)
        log("stack up; load: %g jobs/s for %gs%s" % (rate, seconds, " (ASan build)" if bin_asan else ""))

        load = Load([g.port for g in gws], mock.url + "/chaos", rate, seconds)
        load.start()
        killed = set()                        # processes we killed on purpose
        events = []

        def at(fraction):
            wait = load.t0 + seconds * fraction - time.monotonic()
            if wait > 0:
                time.sleep(wait)

        def kill(proc):
            proc.signal(signal.SIGKILL)
            wait_until(lambda: not proc.alive(), 10, "%s to die" % proc.name)
            killed.add(proc)
            t = time.monotonic() - load.t0
            events.append((t, proc.name))
            log("kill -9 %s at t=%.1fs" % (proc.name, t))
            return time.monotonic()

        gw_a_killed_at = 0
        if "worker" in kills:
            at(0.10)
            kill(workers[0])
            at(0.13)
            workers[0] = s.worker("--simulate", "--type", ",".join(TYPES), "--concurrency", "30",
                                  env=WORKER_ENV, name="worker-a2")
        if "broker" in kills:
            at(0.27)
            kill(broker)
            broker = s.broker(env=BROKER_ENV, name="broker-2")
            log("broker back at t=%.1fs" % (time.monotonic() - load.t0))
        if "webhook" in kills:
            at(0.43)
            kill(wh)
            at(0.45)
            wh = whlib.manager(s, WEBHOOK_ENV, name="webhook-2")
        if "gateway" in kills:
            at(0.60)
            gw_a_killed_at = kill(gws[0])
            at(0.63)
            gws[0] = gwtest.gateway(s, env=GATEWAY_ENV, name="gateway-a2", port=gws[0].port)
            log("gateway A back at t=%.1fs" % (time.monotonic() - load.t0))
        if "redis" in kills:
            at(0.77)
            kill(redis)
            redis = s.redis()
            log("redis back at t=%.1fs" % (time.monotonic() - load.t0))
        load.join()
        t_load = time.monotonic() - load.t0

        # --- what the clients were told --------------------------------------
        accepted = [r[4] for r in load.records if r[3] == 202]
        not_accepted = collections.Counter(str(r[3]) for r in load.records if r[3] != 202)
        check(len(accepted) == len(set(accepted)), "every 202 carried a distinct jobId")
        check(len(accepted) > rate * seconds * 0.5, "most requests were accepted (%d of %d)"
              % (len(accepted), len(load.records)), dict(not_accepted))
        log("load done in %.1fs: %d requests, %d accepted (202), not accepted: %s"
            % (t_load, len(load.records), len(accepted), dict(not_accepted)))

        # --- drain: every accepted job terminal and its webhook at the mock ----
        def mock_success_ids():
            got = whlib.get_json(mock.url + "/deliveries?limit=100000")["deliveries"]
            ok = collections.Counter(d["jobId"] for d in got if 200 <= d["status"] < 300)
            return got, ok

        pending = {"jobs": None, "hooks": None}

        def drained():
            recs = redis_jobs(s.redis_port, accepted)
            open_jobs = [j for j, r in recs.items() if r is None or r["state"] not in harness.TERMINAL]
            _, ok = mock_success_ids()
            no_hook = [j for j in accepted if not ok.get(j)]
            pending["jobs"], pending["hooks"] = len(open_jobs), len(no_hook)
            return not open_jobs and not no_hook
        t_drain = time.monotonic()
        try:
            wait_until(drained, 45 if bin_asan else 30,
                       "every accepted job to end and its webhook to reach the mock",
                       interval=1)
        except harness.TestFailure:
            log("not drained: %s jobs not terminal, %s webhooks missing" % (pending["jobs"], pending["hooks"]))
        log("drained in %.1fs" % (time.monotonic() - t_drain))

        # --- the figures ------------------------------------------------------
        recs = redis_jobs(s.redis_port, accepted)
        lost = sorted(j for j, r in recs.items() if r is None)
        stuck = sorted(j for j, r in recs.items() if r is not None and r["state"] not in harness.TERMINAL)
        states = collections.Counter(r["state"] for r in recs.values() if r)
        fail_codes = collections.Counter(r["errorCode"] for r in recs.values() if r and r["state"] == "failed")
        reruns = sum(1 for r in recs.values() if r and r["attempts"] > 1)
        hook_states = collections.Counter((r["webhook"] or {}).get("state") for r in recs.values() if r)
        deliveries, ok = mock_success_ids()
        hook_lost = sorted(j for j in accepted if not ok.get(j))
        hook_dups = sum(n - 1 for n in ok.values() if n > 1)
        ms = whlib.get_json(mock.url + "/stats")

        all_jobs = {j for j in redis_scan_jobs(s.redis_port) if ".wh" not in j}
        extra = sorted(all_jobs - set(accepted))
        extra_recs = redis_jobs(s.redis_port, extra) if extra else {}
        extra_open = sorted(j for j, r in extra_recs.items() if not r or r["state"] not in harness.TERMINAL)
        live = redis_pipeline(s.redis_port, [["SCARD", PREFIX + "unfinished"]])[0]

        print("\n===== chaos figures =====")
        print("load               %d requests in %.0fs (%g/s target), kills at %s"
              % (len(load.records), t_load, rate, ", ".join("%s t=%.0fs" % (n, t) for t, n in events)))
        print("accepted (202)     %d" % len(accepted))
        print("not accepted       %d %s" % (sum(not_accepted.values()), dict(not_accepted)))
        print("completed          %d" % states.get("completed", 0))
        print("failed             %d %s" % (states.get("failed", 0), dict(fail_codes)))
        print("cancelled          %d" % states.get("cancelled", 0))
        print("run more than once %d jobs (attempts > 1: at-least-once after a kill)" % reruns)
        print("webhooks           %d delivered to the mock; %d extra 2xx deliveries (duplicates); "
              "mock: %d arrivals, %d answered 503, %d dropped" % (len(ok), hook_dups, ms["received"],
              ms["byStatus"].get("503", 0), ms["dropped"]))
        print("webhook states     %s" % dict(hook_states))
        print("created w/o 202    %d (in Redis, no 202 reached the client: answer lost in a kill)"
              % len(extra))
        print("LOST               %d jobs, %d webhooks; stuck (not terminal) %d"
              % (len(lost), len(hook_lost), len(stuck)))
        print("=========================\n", flush=True)

        check(not lost, "LOST: no accepted job is missing from Redis", lost[:20])
        check(not stuck, "every accepted job is terminal", {j: recs[j] for j in stuck[:20]})
        check(not hook_lost, "every accepted job's webhook reached the mock with a 2xx",
              hook_lost[:20], {j: recs.get(j) for j in hook_lost[:5]})
        check(hook_states.get("delivered", 0) == len(accepted),
              "Redis says every accepted job's webhook was delivered", dict(hook_states))
        check(ms["duplicates"] == hook_dups, "the mock's duplicate count (%d) matches its records (%d)"
              % (ms["duplicates"], hook_dups))
        check(not extra_open, "the jobs created without a 202 are terminal too", extra_open[:20])
        check(set(ok) == all_jobs, "the mock's delivered job ids == Redis's jobs (%d)" % len(all_jobs),
              sorted(set(ok) ^ all_jobs)[:20])
        check(live == 0, "Redis's live set (unfinished jobs) is empty", live)

        # Each gateway process counted exactly the 202s the load got from it.
        got_b = sum(1 for r in load.records if r[0] == 1 and r[3] == 202)
        got_a2 = sum(1 for r in load.records if r[0] == 0 and r[3] == 202 and r[1] > gw_a_killed_at)
        for g, expect in ((gws[1], got_b), (gws[0], got_a2)):
            status, _, text = harness.http("GET", g.url + "/metrics")
            counted = metric(text, "gateway_invoke_accepted_total")
            check(status == 200 and counted == expect, "%s counted %d accepted invokes, the load got "
                  "%d 202s from it" % (g.name, counted, expect))
        # The last broker and webhook manager hold nothing.
        c = s.client()
        st = c.stats()
        c.close()
        busy = {t: (v["waiting"], v["running"]) for t, v in st["types"].items()
                if v["waiting"] or v["running"]}
        check(not busy, "the broker has nothing waiting or running", busy)
        ws = whlib.get_json(wh.url + "/stats")
        check(ws["held"] == 0 and ws["inFlight"] == 0, "the webhook manager holds nothing", ws)
        # Everything we did not kill is still up.
        dead = [p.name for p in s.procs if p not in killed and not p.alive()]
        check(not dead, "every process not killed on purpose is alive", dead)
        log("lost = 0")


if __name__ == "__main__":
    harness.main(main)

"""After a failover the webhook manager's DONEs sent again are no warnings.

Two brokers (BROKER_HA=redis, LOG_LEVEL debug) on one real redis-server, a
noop worker, the webhook manager and the mock receiver, every peer given
both brokers.  20 jobs with a webhook run and their deliveries end (each
delivery's record is deleted from Redis when it ends); the leader is then
killed with SIGKILL.  The manager, on its new connection to the new
leader, sends its recent DONEs again, as every worker does: the new leader
finds no record for those deliveries, which is what a delivery that ended
looks like.  Each is logged at debug level ("sent again for a webhook
delivery that has ended"), not as a WARN "rejected DONE ... not_owner",
and not counted in broker_frames_rejected_total{reason="not_owner"}; each
webhook reached the mock once.  A DONE for a job that does not exist at
all (not a delivery) is still a WARN, counted.

Before: the new leader logged a WARN "rejected DONE from worker hooks ...:
not_owner" for each delivery (hundreds after a busy minute), though every
webhook had been delivered once.
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "broker"))
import harness                      # noqa: E402
from harness import check, log, wait_until  # noqa: E402
import hatest                       # noqa: E402
import whlib                        # noqa: E402
from fakeworker import FakeWorker   # noqa: E402

N = 20
HB = {"HEARTBEAT_INTERVAL_MS": "500", "HEARTBEAT_LIVENESS": "5"}


def not_owner_count(proc):
    text = harness.http("GET", "http://127.0.0.1:%d/metrics" % proc.metrics_port)[2]
    m = re.search(r'^broker_frames_rejected_total\{reason="not_owner"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def main():
    with harness.Stack("ha-resent-done") as s:
        s.redis()
        pair = hatest.HaPair(s, env=dict(HB, LOG_LEVEL="debug"))
        leader = pair.wait_leader()
        eps = pair.endpoints()
        s.endpoint = eps
        s.worker("--noop", "--type", "python", "--concurrency", "4",
                 env=dict(HB, BROKER_ENDPOINT=eps))
        mock = whlib.mock(s)
        whlib.manager(s, dict(HB, BROKER_ENDPOINT=eps), name="hooks")
        c = harness.Client(pair.endpoint(leader))
        wait_until(lambda: len(c.stats()["workers"]) >= 2, 15, "the worker and the manager to register")
        hook = mock.url + "/hook"
        ids = [c.submit("python", {"i": i}, webhookUrl=hook) for i in range(N)]

        def delivered():
            got = whlib.get_json(mock.url + "/deliveries?limit=1000")["deliveries"]
            return len({d["jobId"] for d in got if 200 <= d["status"] < 300}) == N
        wait_until(delivered, 20, "the %d webhooks at the mock" % N)
        wait_until(lambda: all(s.redis_cli("EXISTS", "botmesh:{bm}:job:%s.wh1" % j) == "0" for j in ids),
                   10, "every delivery's record deleted (its DONE taken)")
        c.close()

        pair.procs[leader].kill()
        log("leader %s killed with SIGKILL" % leader)
        new = pair.wait_leader(timeout=15, other_than=leader)
        proc = pair.procs[new]
        before = not_owner_count(proc)
        wait_until(lambda: "sent again for a webhook delivery that has ended" in proc.output(), 20,
                   "the new leader to take the manager's DONEs sent again as ended deliveries")
        out = proc.output()
        quiet = len(re.findall(r"sent again for a webhook delivery that has ended", out))
        log("the new leader logged %d DONEs sent again for ended deliveries (debug)" % quiet)
        warned = [l for l in out.splitlines() if "not_owner" in l and ".wh" in l and " WARN " in l]
        check(not warned, "no WARN not_owner for a delivery's DONE sent again", warned[:5])
        check(not_owner_count(proc) == before, "none counted as a rejected frame",
              before, not_owner_count(proc))
        got = whlib.get_json(mock.url + "/deliveries?limit=1000")["deliveries"]
        ok = [d["jobId"] for d in got if 200 <= d["status"] < 300]
        check(sorted(ok) == sorted(ids), "each webhook reached the mock once", len(ok))

        # A real not_owner stays a warning, counted.
        w = FakeWorker(pair.endpoint(new), "intruder", ["python"], 1)
        w.done("no-such-job-1", {"ok": 1})
        msg = w.recv(timeout=5)
        check(msg and msg[0] == harness.NACK and msg[1]["code"] == "not_owner",
              "a DONE for a job nobody holds: NACK not_owner", msg)
        wait_until(lambda: re.search(r" WARN .*no-such-job-1.*not_owner", proc.output()), 10,
                   "its WARN line")
        check(not_owner_count(proc) == before + 1, "and it is counted")
        w.sock.close()


if __name__ == "__main__":
    harness.main(main)

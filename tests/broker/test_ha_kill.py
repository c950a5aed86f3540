"""A standby broker takes over from a leader killed with SIGKILL.

Two real brokers with BROKER_HA=redis on one real redis-server.  One leads;
the other answers every message REJECTED / NACK not_leader naming the
leader.  200 jobs are accepted by the leader (no worker yet, so they stay
queued), the leader is killed with SIGKILL: the standby must lead within
6 s (BROKER_LEASE_MS 2000: the lease runs out within 2 s and a standby
tries for it every 250 ms; the bound is a liveness check with room for a
loaded machine, the failover time itself is bench/failover.py's), with all 200 jobs recovered from Redis; a
worker then runs every one of them.  The killed broker, started again, is
a standby naming the new leader (its redis_up gauge 1: it reaches Redis);
the lease epoch went up by one.

Then Redis is killed: no broker can hold the lease.  Neither broker's
/ready says another broker holds it (each says it cannot reach Redis),
and a gateway given both brokers answers 503 broker_unavailable saying no
broker leads, not that the broker is not reachable: both answer.
"""
import os
import sys
import time
import harness as h
import hatest
from fakeworker import FakeWorker

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gateway"))
import gwtest                       # noqa: E402

N = 200


def ready_url(pair, name):
    return "http://127.0.0.1:%d/ready" % pair.procs[name].metrics_port


def ready(pair, name):
    """The broker's /ready, or None while it restarts (a leader that lost
    its lease executes itself again as a standby)."""
    try:
        return h.http("GET", ready_url(pair, name), timeout=2)
    except OSError:
        return None


def test():
    with h.Stack("ha-kill") as s:
        redis = s.redis()
        pair = hatest.HaPair(s)
        first = pair.wait_leader()
        second = pair.other(first)
        h.log("leader: %s, standby: %s" % (first, second))

        # The standby refuses clients and workers alike, naming the leader.
        cmd, r = h.wait_until(lambda: (lambda x: x if x and x[1].get("leader") else None)(
            hatest.ping(pair.endpoint(second))), 10, "the standby to learn the leader")
        h.check(cmd == h.REJECTED and r["code"] == "not_leader", "standby answers PING not_leader", r)
        h.check(r["leader"] == pair.endpoint(first), "not_leader names the leader's endpoint", r)
        # GET /ready on the metrics ports: only the leader is ready.
        st, _, body = h.http("GET", ready_url(pair, second))
        h.check(st == 503 and body["error"]["code"] == "standby" and body["leader"] is False,
                "the standby's /ready: 503 standby", (st, body))
        st, _, body = h.wait_until(lambda: (lambda r: r if r[0] == 200 else None)(
            h.http("GET", ready_url(pair, first))), 10, "the leader's /ready to answer 200")
        h.check(body == {"status": "ready", "leader": True, "redis": True},
                "the leader's /ready: ready, leader, redis", body)
        sc = h.Client(pair.endpoint(second))
        cmd, r = sc.try_submit("python", {"n": 0})
        h.check(cmd == h.REJECTED and r["code"] == "not_leader", "standby refuses SUBMIT", r)
        sc.close()
        w = FakeWorker(pair.endpoint(second), "w-standby", ["python"], 5)
        msg = w.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "not_leader",
                "standby answers a worker's READY with NACK not_leader", msg)
        w.sock.close()
        h.check(s.redis_cli("GET", "botmesh:{bm}:epoch") == "1", "first reign is epoch 1")

        c = h.Client(pair.endpoint(first))
        ids = [c.submit("python", {"i": i}) for i in range(N)]
        h.check(len(set(ids)) == N, "%d jobs accepted by the leader" % N)
        c.close()

        pair.procs[first].kill()
        killed = time.monotonic()
        h.log("leader %s killed with SIGKILL" % first)
        pair.wait_leader(timeout=10, other_than=first)
        took = time.monotonic() - killed
        h.log("failover time: %.2f s" % took)
        h.check(took <= 6.0, "the standby leads within 6 s (%.2f s)" % took)
        h.check(s.redis_cli("GET", "botmesh:{bm}:epoch") == "2", "the new reign is epoch 2")
        h.wait_until(lambda: h.http("GET", ready_url(pair, second))[0] == 200, 10,
                     "the new leader's /ready to answer 200")

        c = h.Client(pair.endpoint(second))
        st = c.stats()["types"]["python"]
        h.check(st["waiting"] == N, "all %d queued jobs recovered by the new leader" % N, st)
        metrics = h.http("GET", "http://127.0.0.1:%d/metrics" % pair.procs[second].metrics_port)[2]
        h.check("broker_leader 1" in metrics, "broker_leader is 1 on the new leader")
        h.check("broker_failovers_total 1" in metrics, "broker_failovers_total counts the takeover")

        w = FakeWorker(pair.endpoint(second), "w1", ["python"], 50)
        seen = set()
        while len(seen) < N:
            msg = w.recv(timeout=10)
            if not msg or msg[0] != h.JOB:
                h.check(False, "a JOB for every recovered job (%d so far)" % len(seen), msg)
            job = msg[1]
            seen.add(job["jobId"])
            w.done(job["jobId"], {"ok": 1})
        h.check(seen == set(ids), "the worker ran exactly the accepted jobs")
        h.wait_until(lambda: int(s.redis_cli("SCARD", "botmesh:{bm}:unfinished")) == 0, 20,
                     "every job terminal in Redis")
        for i in (0, N // 2, N - 1):
            h.check(c.status(ids[i])["state"] == "completed", "job %d completed" % i)

        # The killed broker comes back as a standby that names the leader.
        pair.start(first)
        cmd, r = h.wait_until(lambda: (lambda x: x if x and x[1].get("leader") else None)(
            hatest.ping(pair.endpoint(first))), 10, "restarted broker to know the leader")
        h.check(cmd == h.REJECTED and r["code"] == "not_leader"
                and r["leader"] == pair.endpoint(second), "restarted broker is a standby", r)
        metrics = h.http("GET", "http://127.0.0.1:%d/metrics" % pair.procs[first].metrics_port)[2]
        h.check("broker_leader 0" in metrics, "broker_leader is 0 on the standby")
        h.check("\nredis_up 1" in metrics, "redis_up is 1 on the standby: it reaches Redis")
        w.sock.close()
        c.close()

        # Redis dies: the leader's lease runs out, no broker can take it.
        g = gwtest.gateway(s, endpoint=pair.endpoints(),
                           env={"BROKER_CONNECT_TIMEOUT_MS": "1500"})
        redis.kill()
        h.log("redis killed with SIGKILL")
        for name in (first, second):
            st, _, body = h.wait_until(lambda: (lambda r: r if r and r[2].get("leader") is False
                                                and "Redis" in r[2]["error"]["message"]
                                                else None)(ready(pair, name)),
                                       15, "broker %s's /ready to say it cannot reach Redis" % name)
            h.log("broker %s /ready: %d %s" % (name, st, body))
            h.check(st == 503 and body["error"]["code"] == "standby"
                    and "another broker holds the lease" not in body["error"]["message"],
                    "broker %s does not claim another broker holds the lease" % name, body)
        st, hdrs, body = h.http("POST", g.url + "/invoke", {"botType": "python", "payload": {}})
        h.check(st == 503 and body["error"]["code"] == "broker_unavailable"
                and body["error"]["message"].startswith("no broker leads")
                and hdrs.get("Retry-After") == "1",
                "the gateway: 503 broker_unavailable, no broker leads (both brokers answer)",
                (st, hdrs, body))
        st, _, body = h.http("GET", g.url + "/ready")
        h.check(st == 503 and body["error"]["message"].startswith("no broker leads"),
                "the gateway's /ready says the same", (st, body))


if __name__ == "__main__":
    h.main(test)

"""hatest.py - two brokers on one Redis (BROKER_HA=redis), for the HA tests.

    with h.Stack("ha") as s:
        s.redis()
        pair = HaPair(s)                 # brokers "a" and "b", one leads
        leader, standby = pair.roles()   # Proc objects, by asking PING
"""
import time
import harness as h
from fakeworker import FakeWorker

HA_ENV = {"BROKER_HA": "redis", "BROKER_LEASE_MS": "2000",
          "HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "5"}


def ping(endpoint, timeout=0.5):
    """(command, reply) of PING at endpoint, or None when nobody answers."""
    c = h.Client(endpoint)
    try:
        c.req += 1
        c.send(h.PING, {"req": c.req})
        if not c.sock.poll(int(timeout * 1000)):
            return None
        return c.recv(0.1)
    finally:
        c.close()


def leads(endpoint):
    """True when the broker at endpoint serves (PING answered REPLY, redis up)."""
    r = ping(endpoint)
    return bool(r and r[0] == h.REPLY and r[1].get("redis"))


class HaPair:
    def __init__(self, stack, env=None):
        self.s = stack
        self.env = dict(HA_ENV, **(env or {}))
        # Fixed ports, not 0: a broker that steps down restarts itself
        # (exec) with the same environment and must bind the same endpoint.
        self.ports = {"a": h.free_port(), "b": h.free_port()}
        self.procs = {}
        for name in ("a", "b"):
            self.start(name)

    def endpoint(self, name):
        return "tcp://127.0.0.1:%d" % self.ports[name]

    def endpoints(self):
        return ",".join(self.endpoint(n) for n in ("a", "b"))

    def start(self, name):
        env = dict(self.env, BROKER_ENDPOINT=self.endpoint(name),
                   BROKER_METRICS_PORT=str(h.free_port()))
        p = self.s.spawn("broker-" + name, [self.s.bin("botmesh-broker")], env)
        p.metrics_port = int(env["BROKER_METRICS_PORT"])
        self.procs[name] = p
        h.wait_until(lambda: ping(self.endpoint(name)), 15, "broker %s to answer" % name)
        return p

    def leader_name(self):
        names = [n for n in ("a", "b") if self.procs[n].alive() and leads(self.endpoint(n))]
        return names[0] if len(names) == 1 else None

    def wait_leader(self, timeout=15, other_than=None):
        def one():
            n = self.leader_name()
            return n if n and n != other_than else None
        return h.wait_until(one, timeout, "one broker to lead", interval=0.02)

    def other(self, name):
        return "b" if name == "a" else "a"

    def worker(self, bot_type, env, name="w1"):
        """A botmesh-worker of bot_type given both brokers' endpoints (env:
        its own variables); returns the leader's name and a Client to it
        once the worker registered there."""
        leader = self.wait_leader()
        self.s.spawn("worker", [self.s.bin("botmesh-worker"), "--type", bot_type, "--name", name],
                     dict(env, BROKER_ENDPOINT=self.endpoints()))
        c = h.Client(self.endpoint(leader))
        h.wait_until(lambda: len(c.stats()["workers"]) == 1, 15, "the worker to register")
        return leader, c

    def fail_over(self, leader):
        """Kill leader (SIGKILL); a Client to the other broker once it leads."""
        self.procs[leader].kill()
        self.wait_leader(timeout=10, other_than=leader)
        return h.Client(self.endpoint(self.other(leader)))


def wait_status(c, job_id, field, what, timeout=10):
    """STATUS of job_id once its answer has field (a new leader knows the
    job only once its recovery read it)."""
    return h.wait_until(lambda: (lambda r: r if r and r.get(field) else None)(c.status(job_id)),
                        timeout, what)


def register(endpoint, name, types):
    """A worker (credit 0: it takes no job) registered at endpoint."""
    w = FakeWorker(endpoint, name, types, 0)
    c = h.Client(endpoint)
    h.wait_until(lambda: any(x.get("name") == name for x in c.stats()["workers"]), 10,
                 "worker %s to register" % name)
    c.close()
    return w


def run_jobs(endpoint, name, ids):
    """A worker on endpoint runs the jobs; each must come exactly once."""
    w = FakeWorker(endpoint, name, ["python"], 10)
    seen = []
    while len(seen) < len(ids):
        job = w.recv_job(timeout=10)
        h.check(job is not None, "a JOB for each of the %d jobs (%d so far)" % (len(ids), len(seen)))
        seen.append(job["jobId"])
        w.done(job["jobId"], {"ok": 1})
    extra = w.recv_job(timeout=1)
    h.check(extra is None, "no job dispatched twice", extra)
    h.check(sorted(seen) == sorted(ids), "the worker ran exactly the queued jobs", seen)
    w.sock.close()


def submit_queue(c, bot_type, count):
    """count jobs of bot_type submitted through the client c, pipelined
    (the answers read after all are sent); their ids, in order."""
    reqs = [c.send_request(h.SUBMIT, {"botType": bot_type, "payload": {"i": i}})
            for i in range(count)]
    ids = []
    while len(ids) < len(reqs):
        cmd, reply = c.recv(10)
        h.check(cmd == h.ACCEPTED, "each queued job accepted", reply)
        ids.append(reply["jobId"])
    return ids


def all_completed(redis_port, ids):
    """True when every job of ids is completed in the Redis on redis_port."""
    states = h.redis_pipeline(redis_port, [["HGET", "botmesh:{bm}:job:" + j, "state"] for j in ids])
    return all(st == b"completed" for st in states)

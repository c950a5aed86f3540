"""Who may act as a worker, and who may finish a running job.

A real broker and raw DEALER workers the test drives step by step:
- with CURVE, a worker name is bound to the key that registered it: a
  READY from another key under that live name (even one naming the job in
  its running list) is refused NACK name_in_use, logged with both keys'
  short forms, and never takes the job: the real worker's DONE completes it;
- with CURVE and Redis, a run lost with its worker (declared dead) is
  reclaimed only by the key that ran it, not by another key under the name;
  and when more runs are lost at once than the broker keeps keys for
  (10,000), the oldest runs' keys are dropped, one by one: such a run is
  then reclaimed by no key (it runs again), never by any key;
- with CURVE, once such a job runs again on another worker, the DONE of the
  lost run (its `attempt` the earlier one) is taken only from the key that
  ran it; and a READY listing a queued job in `running` adopts it only from
  that key: another key's is answered CANCEL not_owner and the job waits;
- with CURVE_WORKERS_DIR, a key not in it is refused NACK not_a_worker (a
  client's key cannot register as a worker); set without CURVE, the broker
  does not start.
(Without CURVE a new connection under a live name replaces the old one:
test_worker_names.py.)
"""
import os
import re
import subprocess
import harness as h
from fakeworker import FakeWorker

SUBMIT_MANY, ACCEPTED_MANY = 0x0A, 0x85


def keygen(d, name):
    out = subprocess.run([os.path.join(h.BIN, "botmesh-client"), "keygen", d, name],
                         capture_output=True, text=True, timeout=10)
    h.check(out.returncode == 0, "keygen %s" % name, out.stderr)
    return re.search(r"public key:\s+(\S+)", out.stdout).group(1)


def named(c, name):
    return [w for w in c.stats()["workers"] if w["name"] == name]


def lost_run(c, endpoint, name, bot_type, payload, curve):
    """A worker under name (CURVE key curve) takes a job, then goes silent
    until the broker declares it dead: the job's id and its JOB."""
    w = FakeWorker(endpoint, name, [bot_type], 1, curve=curve)
    h.wait_until(lambda: named(c, name), 10, "%s to register" % name)
    job_id = c.submit(bot_type, payload)
    job = w.recv_job()
    h.check(job and job["jobId"] == job_id, "%s runs the job" % name, job)
    h.wait_until(lambda: not named(c, name), 10, "the silent %s to be declared dead" % name)
    w.close()
    return job_id, job


def curve_broker(s, name, env):
    broker = s.spawn(name, [s.bin("botmesh-broker")],
                     dict({"REDIS_URL": "none"}, **env, BROKER_ENDPOINT="tcp://127.0.0.1:0",
                          BROKER_METRICS_PORT="-1"))
    endpoint = "tcp://127.0.0.1:%d" % broker.listening("zmq")
    h.wait_until(lambda: "CURVE on" in broker.output(), 10, "%s says CURVE is on" % name)
    return broker, endpoint


def test():
    with h.Stack("worker_trust") as s:
        allowed = os.path.join(s.dir, "allowed")       # CURVE_CLIENTS_DIR
        workers = os.path.join(s.dir, "workers")       # CURVE_WORKERS_DIR
        secrets = os.path.join(s.dir, "secrets")
        server_pub = keygen(secrets, "broker")
        keys = {n: keygen(allowed, n) for n in ("worker1", "worker2", "stranger", "client")}
        for n in keys:
            os.rename(os.path.join(allowed, n + ".key_secret"), os.path.join(secrets, n + ".key_secret"))
        os.makedirs(workers)
        with open(os.path.join(allowed, "worker1.key")) as src, \
                open(os.path.join(workers, "worker1.key"), "w") as dst:
            dst.write(src.read())

        def cred(n):
            return (server_pub, os.path.join(secrets, n + ".key_secret"))
        env = {"CURVE_SERVER_CERT": os.path.join(secrets, "broker.key_secret"),
               "CURVE_CLIENTS_DIR": allowed}

        # 1. CURVE: a name is bound to its key.
        broker, endpoint = curve_broker(s, "broker", env)
        c = h.Client(endpoint, curve=cred("client"))
        real = FakeWorker(endpoint, "vm-1047", ["python"], 1, curve=cred("worker1"))
        h.wait_until(lambda: named(c, "vm-1047"), 10, "vm-1047 to register")
        job_id = c.submit("python", {"n": 1})
        job = real.recv_job()
        h.check(job and job["jobId"] == job_id, "vm-1047 runs the job", job)
        evil = FakeWorker(endpoint, "vm-1047", ["evil"], 1, ready=False, curve=cred("stranger"))
        evil.send(h.READY, {"name": "vm-1047", "types": ["evil"], "credit": 1, "running": [job_id]})
        msg = evil.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "name_in_use",
                "a READY under a live name from another key: NACK name_in_use", msg)
        h.wait_until(lambda: "name_in_use" in broker.output(), 5, "the refusal to be logged")
        line = [l for l in broker.output().splitlines() if "name_in_use" in l][0]
        h.check(keys["worker1"][:8] in line and keys["stranger"][:8] in line,
                "the refusal names both keys' short forms", line)
        evil.done(job_id, {"forged": True})
        msg = evil.recv(timeout=5)
        h.check(msg and msg[0] in (h.DISCONNECT, h.NACK),
                "the stranger's DONE is not taken (it is not a registered worker)", msg)
        rec = c.status(job_id)
        h.check(rec["state"] == "running", "the job still runs on the real worker", rec)
        h.check(len(named(c, "vm-1047")) == 1 and named(c, "vm-1047")[0]["types"] == ["python"],
                "only the real vm-1047 is registered", c.stats()["workers"])
        real.done(job_id, {"real": 1})
        rec = c.wait(job_id, timeout=10)
        h.check(rec["state"] == "completed" and rec["result"] == {"real": 1},
                "the real worker's result completes the job", rec)
        # The same key reconnecting (new socket, same name) is not refused:
        # it replaces the old connection.
        again = FakeWorker(endpoint, "vm-1047", ["python"], 0, curve=cred("worker1"))
        h.wait_until(lambda: [w["credit"] for w in named(c, "vm-1047")] == [0], 10,
                     "vm-1047 registers again with its key, replacing its old connection")
        for w in (real, evil, again):
            w.close()
        c.close()

        # 1b. CURVE, Redis: a worker declared dead; another key under its
        # name cannot reclaim the lost run, its own key (reconnecting) can.
        s.redis()
        broker1b, endpoint = curve_broker(s, "broker1b", dict(env, REDIS_URL=s.redis_url,
                                          HEARTBEAT_INTERVAL_MS="100", HEARTBEAT_LIVENESS="3"))
        c = h.Client(endpoint, curve=cred("client"))
        job_id, _ = lost_run(c, endpoint, "vm-2000", "python", {"n": 4}, cred("worker1"))
        evil = FakeWorker(endpoint, "vm-2000", ["evil"], 0, curve=cred("stranger"))
        h.wait_until(lambda: named(c, "vm-2000"), 10, "the stranger registers the free name")
        evil.done(job_id, {"forged": True})
        msg = evil.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "not_owner",
                "another key cannot reclaim the lost run: NACK not_owner", msg)
        h.check(c.status(job_id)["state"] == "queued", "the job is still queued", c.status(job_id))
        evil.send(h.DISCONNECT, {})
        evil.close()
        h.wait_until(lambda: not named(c, "vm-2000"), 10, "the stranger to leave")
        back = FakeWorker(endpoint, "vm-2000", ["python"], 0, curve=cred("worker1"))
        h.wait_until(lambda: named(c, "vm-2000"), 10, "vm-2000 back with its key")
        back.done(job_id, {"real": 2})
        rec = c.wait(job_id, timeout=10)
        h.check(rec["state"] == "completed" and rec["result"] == {"real": 2},
                "its own key reclaims the lost run", rec)
        back.close()
        c.close()
        # One broker at a time on this Redis: a broker without BROKER_HA
        # does not run beside another that holds the lease.
        broker1b.stop()

        # 1d. CURVE: a lost run's job runs again on vm-4001; a stranger's
        # DONE for the lost attempt is not taken, the key that ran it is.
        broker1d, endpoint = curve_broker(s, "broker1d", dict(env, REDIS_URL=s.redis_url,
                                          HEARTBEAT_INTERVAL_MS="200", HEARTBEAT_LIVENESS="5"))
        c = h.Client(endpoint, curve=cred("client"))
        job_id, job = lost_run(c, endpoint, "vm-4000", "python", {"n": 5}, cred("worker1"))
        h.check(job["attempt"] == 1, "vm-4000 ran attempt 1", job)
        second = FakeWorker(endpoint, "vm-4001", ["python"], 1, curve=cred("worker2"))
        job = second.recv_job()
        h.check(job and job["jobId"] == job_id and job["attempt"] == 2, "vm-4001 runs attempt 2", job)
        evil = FakeWorker(endpoint, "vm-4002", ["evil"], 0, curve=cred("stranger"))
        h.wait_until(lambda: named(c, "vm-4002"), 10, "a stranger registers")
        second.heartbeat()
        evil.send(h.DONE, {"jobId": job_id, "ok": True, "result": {"forged": True}, "attempt": 1})
        msg = evil.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "not_owner",
                "another key's DONE for the lost attempt 1: NACK not_owner", msg)
        rec = c.status(job_id)
        h.check(rec["state"] == "running" and rec["worker"] == "vm-4001" and rec["attempts"] == 2,
                "attempt 2 still runs on vm-4001", rec)
        back = FakeWorker(endpoint, "vm-4000", ["python"], 0, curve=cred("worker1"))
        h.wait_until(lambda: named(c, "vm-4000"), 10, "vm-4000 back with its key")
        back.send(h.DONE, {"jobId": job_id, "ok": True, "result": {"real": 5}, "attempt": 1})
        rec = c.wait(job_id, timeout=10)
        h.check(rec["state"] == "completed" and rec["result"] == {"real": 5},
                "the key that ran attempt 1 has its result taken", rec)
        msg = second.recv(timeout=5)
        h.check(msg and msg[0] == h.WCANCEL and msg[1] == {"jobId": job_id, "reason": "duplicate"},
                "vm-4001 is told to stop attempt 2 (CANCEL duplicate)", msg)
        for w in (second, evil, back):
            w.send(h.DISCONNECT, {})
            w.close()

        # READY running: a queued job whose lost run vm-5000 ran is not
        # adopted by a stranger's READY (CANCEL not_owner: it waits), and is
        # by vm-5000's key.
        job_id, _ = lost_run(c, endpoint, "vm-5000", "trust", {"n": 6}, cred("worker1"))
        h.check(c.status(job_id)["state"] == "queued", "its job waits", c.status(job_id))
        evil = FakeWorker(endpoint, "vm-5001", ["trust"], 1, ready=False, curve=cred("stranger"))
        evil.send(h.READY, {"name": "vm-5001", "types": ["trust"], "credit": 1, "running": [job_id]})
        msg = evil.recv(timeout=5)
        h.check(msg and msg[0] == h.WCANCEL and msg[1] == {"jobId": job_id, "reason": "not_owner"},
                "a stranger's READY running the queued job: CANCEL not_owner", msg)
        rec = c.status(job_id)
        h.check(rec["state"] == "queued" and rec["attempts"] == 1, "the job is not adopted: it waits", rec)
        h.wait_until(lambda: "not adopted" in broker1d.output(), 5, "the refusal to be logged")
        evil.send(h.DISCONNECT, {})
        evil.close()
        h.wait_until(lambda: not named(c, "vm-5001"), 10, "the stranger to leave")
        back = FakeWorker(endpoint, "vm-5000", ["trust"], 1, ready=False, curve=cred("worker1"))
        back.send(h.READY, {"name": "vm-5000", "types": ["trust"], "credit": 1, "running": [job_id]})
        h.wait_until(lambda: c.status(job_id)["state"] == "running", 10, "vm-5000's READY to adopt it")
        rec = c.status(job_id)
        h.check(rec["worker"] == "vm-5000" and rec["attempts"] == 1,
                "adopted by the key that ran it, same attempt", rec)
        back.done(job_id, {"real": 6})
        rec = c.wait(job_id, timeout=10)
        h.check(rec["state"] == "completed" and rec["result"] == {"real": 6}, "its DONE completes it", rec)
        back.close()
        c.close()
        broker1d.stop()

        # 1c. CURVE, Redis: 10,001 runs lost at once, one more than the
        # broker keeps keys for.  A stranger under the dead worker's name
        # reclaims none of them; the worker's own key reclaims the runs
        # whose key is kept, not the oldest one's (dropped: it runs again).
        broker1c, endpoint = curve_broker(s, "broker1c", dict(env, REDIS_URL=s.redis_url,
                                          HEARTBEAT_INTERVAL_MS="200", HEARTBEAT_LIVENESS="10",
                                          MAX_PYTHON_BOTS="20000"))
        c = h.Client(endpoint, curve=cred("client"))
        total = 10001
        ids = []
        for first in range(0, total, 1000):
            cmd, r = c.request(SUBMIT_MANY, {"jobs": [{"botType": "python", "payload": {"n": n}}
                                                      for n in range(first, min(first + 1000, total))]},
                               timeout=30)
            h.check(cmd == ACCEPTED_MANY and all("jobId" in j for j in r["jobs"]),
                    "a batch of jobs accepted", cmd, [j for j in r.get("jobs", []) if "jobId" not in j][:3])
            ids += [j["jobId"] for j in r["jobs"]]
        real = FakeWorker(endpoint, "vm-3000", ["python"], total, curve=cred("worker1"))
        taken = set()
        while len(taken) < total:
            msg = real.recv(10)
            if not msg or msg[0] != h.JOB:      # (one check line, not 10,001)
                h.check(False, "vm-3000 receives all %d jobs (%d so far)" % (total, len(taken)), msg)
            taken.add(msg[1]["jobId"])
            if len(taken) % 200 == 0:
                real.heartbeat()            # alive while the jobs stream in
        h.check(taken == set(ids), "vm-3000 runs every job")
        h.wait_until(lambda: not named(c, "vm-3000"), 15, "the silent vm-3000 to be declared dead")
        real.close()
        h.wait_until(lambda: "is no longer kept" in broker1c.output(), 10,
                     "the broker to say it dropped the oldest lost run's key")
        oldest, middle, newest = ids[0], ids[5000], ids[-1]
        evil = FakeWorker(endpoint, "vm-3000", ["evil"], 0, curve=cred("stranger"))
        h.wait_until(lambda: named(c, "vm-3000"), 10, "the stranger registers the free name")
        for job_id, which in ((oldest, "the oldest lost run (its key dropped)"),
                              (middle, "a lost run in the middle"), (newest, "the newest lost run")):
            evil.done(job_id, {"forged": True})
            msg = evil.recv(timeout=5)
            h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "not_owner",
                    "another key cannot reclaim %s: NACK not_owner" % which, msg)
            rec = c.status(job_id)
            h.check(rec["state"] == "queued", "that job is still queued", rec)
        evil.send(h.DISCONNECT, {})
        evil.close()
        h.wait_until(lambda: not named(c, "vm-3000"), 10, "the stranger to leave")
        back = FakeWorker(endpoint, "vm-3000", ["python"], 0, curve=cred("worker1"))
        h.wait_until(lambda: named(c, "vm-3000"), 10, "vm-3000 back with its key")
        back.done(newest, {"real": 3})
        rec = c.wait(newest, timeout=10)
        h.check(rec["state"] == "completed" and rec["result"] == {"real": 3},
                "its own key reclaims a lost run whose key is kept", rec)
        back.done(oldest, {"real": 4})
        msg = back.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "not_owner",
                "the oldest run, its key dropped, is reclaimed by no key: NACK not_owner", msg)
        h.check(c.status(oldest)["state"] == "queued", "it waits to run again", c.status(oldest))
        back.close()
        c.close()
        broker1c.stop()

        # 2. CURVE_WORKERS_DIR: only its keys register as workers.
        broker2, endpoint2 = curve_broker(s, "broker2", dict(env, CURVE_WORKERS_DIR=workers))
        c = h.Client(endpoint2, curve=cred("client"))
        sneaky = FakeWorker(endpoint2, "w-client", ["python"], 1, curve=cred("client"))
        msg = sneaky.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1].get("code") == "not_a_worker"
                and "CURVE_WORKERS_DIR" in msg[1].get("message", ""),
                "a client's key READY: NACK not_a_worker naming CURVE_WORKERS_DIR", msg)
        good = FakeWorker(endpoint2, "w-good", ["python"], 1, curve=cred("worker1"))
        h.wait_until(lambda: named(c, "w-good"), 10, "a key in CURVE_WORKERS_DIR registers")
        h.check(not named(c, "w-client"), "the client's key is not a worker", c.stats()["workers"])
        job_id = c.submit("python", {"n": 2})
        job = good.recv_job()
        h.check(job and job["jobId"] == job_id, "the allowed worker gets the job", job)
        for w in (sneaky, good):
            w.close()
        c.close()
        out = subprocess.run([s.bin("botmesh-broker")], capture_output=True, text=True, timeout=30,
                             env=dict(os.environ, CURVE_WORKERS_DIR=workers, REDIS_URL="none",
                                      BROKER_ENDPOINT="tcp://127.0.0.1:0", BROKER_METRICS_PORT="-1"))
        h.check(out.returncode != 0 and "CURVE_WORKERS_DIR" in out.stdout + out.stderr,
                "CURVE_WORKERS_DIR without CURVE: the broker does not start, naming it",
                (out.returncode, out.stderr[-400:]))


if __name__ == "__main__":
    h.main(test)

"""Workers reconnect after a broker restart (new DEALER + READY) and keep
serving: a Python worker in this process and a Node worker process.
A job running while the broker restarts still completes (at least once).
"""
import signal
import time

from e2elib import harness, botmesh, need_node, nodeworker, wait_worker
from harness import check, wait_until

HB = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "3"}


def main():
    need_node()
    with harness.Stack("clients-restart") as s:
        s.redis()
        broker = s.broker(env=dict(HB, MAX_PYWORK_BOTS="4", MAX_NODEWORK_BOTS="4"))

        def handle(payload, job):
            job.cancelled.wait(payload.get("sleepMs", 0) / 1000.0)
            return {"attempt": job.attempt, "echo": payload}

        w = botmesh.Worker(["pywork"], handle, credit=2, endpoint=s.endpoint, name="py-restart",
                           heartbeat_ms=200, liveness=3).start()
        nodeworker(s, "node-restart", types="nodework", credit=2, env=HB)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-restart")
        wait_worker(c, "node-restart")
        check(c.run("pywork", {"before": 1}, timeout=10)["echo"] == {"before": 1}, "python worker serves before")
        waiter = botmesh.Client(s.endpoint, timeout=5)        # stays open across the crash
        long_id = waiter.submit("pywork", {"sleepMs": 1500}, notify=True)
        wait_until(lambda: c.status(long_id)["state"] == "running", 10, "long job to run")
        connects = w.connects
        broker.signal(signal.SIGKILL)           # a crash, not a clean stop
        broker.p.wait(5)
        t0 = time.monotonic()
        broker = s.broker(env=dict(HB, MAX_PYWORK_BOTS="4", MAX_NODEWORK_BOTS="4"))   # same port, same Redis
        harness.log("broker restarted in %.2fs" % (time.monotonic() - t0))
        c.close()
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-restart", timeout=15)
        wait_worker(c, "node-restart", timeout=15)
        check(w.connects > connects, "the Python worker opened a new socket and sent READY",
              w.connects, connects)
        check(c.run("pywork", {"after": 1}, timeout=10)["echo"] == {"after": 1}, "python worker serves after")
        r = c.run("nodework", {"after": 2}, timeout=10)
        check(r["echo"] == {"after": 2} and r["worker"] == "node-restart", "node worker serves after", r)
        rec = waiter.wait(long_id, timeout=30)
        check(rec["state"] == "completed", "the job running during the crash completed; wait() across the crash "
              "(RESULT push or STATUS fallback) returns it", rec)
        waiter.close()
        harness.log("long job: attempts %s, result %s" % (rec["attempts"], rec["result"]))
        check(w.stop(timeout=10), "the Python worker stops")
        c.close()


if __name__ == "__main__":
    harness.main(main)

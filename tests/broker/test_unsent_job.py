"""A JOB that cannot be sent leaves its job queued as it was: when the job
had lost a run, that run's DONE, sent again by its worker, is still taken.

w1 runs the job, w2 waits with credit; w2's connection closes (no
DISCONNECT: the broker still counts it registered) and w1 sends
DISCONNECT.  The job, queued again with w1's lost run, is dispatched to
w2: the JOB cannot go out and the job goes back to its queue.  w1 comes
back (credit 0) and sends the DONE of its run: the job completes with it,
attempt 1, and runs no second time.

Real redis and broker; fake python workers whose every frame the test
sends.  HEARTBEAT_INTERVAL_MS=5000: no heartbeat reaches w2's closed
connection before the JOB does (a failed heartbeat would mark w2 so).
"""
import subprocess

import harness as h
from fakeworker import FakeWorker

ENV = {"HEARTBEAT_INTERVAL_MS": "5000", "HEARTBEAT_LIVENESS": "3", "BROKER_SAVE_RUNNING_MS": "0"}


def broker_side_peers(port):
    """The client ports of the broker's open TCP connections."""
    out = subprocess.run(["ss", "-Htn", "state", "all", "( sport = :%d )" % port],
                         capture_output=True, text=True, check=True).stdout
    peers = set()
    for line in out.splitlines():
        cols = line.split()
        if cols and cols[0] in ("ESTAB", "CLOSE-WAIT"):
            peers.add(int(cols[-1].rsplit(":", 1)[1]))
    return peers


def test():
    with h.Stack("unsent-job") as s:
        s.redis()
        broker = s.broker(env=ENV)
        port = int(s.endpoint.rsplit(":", 1)[1])
        c = s.client()
        w1 = FakeWorker(s.endpoint, "w1", ["python"], 1)
        s.wait_workers(1, "python")
        j = c.submit("python", {"n": 1}, maxAttempts=3)
        job = w1.recv_job()
        h.check(job and job["jobId"] == j and job["attempt"] == 1, "w1 runs attempt 1", job)

        before = broker_side_peers(port)
        w2 = FakeWorker(s.endpoint, "w2", ["python"], 1)
        h.wait_until(lambda: len(c.stats()["workers"]) == 2, 5, "w2 to register")
        mine = broker_side_peers(port) - before
        h.check(len(mine) == 1, "w2's connection found among the broker's", mine)
        w2.close()
        h.wait_until(lambda: not (broker_side_peers(port) & mine), 5,
                     "the broker to close its end of w2's connection")
        h.check(len(c.stats()["workers"]) == 2, "w2 still registered (no DISCONNECT)")

        w1.send(h.DISCONNECT, {"reason": "test"})
        h.wait_until(lambda: "worker w2 is not connected" in broker.output(), 5,
                     "the JOB to w2 to fail (w2 not connected)")
        rec = c.status(j)
        h.check(rec["state"] == "queued" and rec["attempts"] == 1,
                "the job is queued again, attempt 1 its latest", rec)

        w1 = FakeWorker(s.endpoint, "w1", ["python"], 0, ready=False)
        w1.send(h.READY, {"name": "w1", "types": ["python"], "credit": 0, "running": []})
        w1.send(h.DONE, {"jobId": j, "ok": True, "attempt": 1, "result": {"n": 1}})
        reply = w1.recv(timeout=0.5)
        h.check(reply is None or reply[0] != h.NACK, "w1's DONE of its lost run is not refused",
                reply)
        rec = c.wait(j, 10)
        h.check(rec["state"] == "completed" and rec["result"] == {"n": 1}
                and rec["attempts"] == 1, "the job completes with w1's run, attempt 1", rec)
        h.check(c.stats()["types"]["python"]["usage"] == 0, "python usage 0 at the end")
        w1.close()


if __name__ == "__main__":
    h.main(test)

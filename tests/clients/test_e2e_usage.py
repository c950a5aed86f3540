"""The Python and Node clients as clients/README.md shows them to an app
developer, end to end: a real redis-server, broker, gateway, a Python worker
serving 'pywork', and worker processes pointed at a port nobody listens on.

Python: list() state filters checked as GET /jobs checks them (same code and
message), BullMQ's backoff {"type", "delay"} accepted, a malformed endpoint
named, job.progress() refusing what is not a number, and a worker that never
reached a broker never logging that it connected.  Node: the same through
e2e_node_usage.js, and its worker logging the dead broker too.
"""
import os
import re
import subprocess
import threading

from e2elib import harness, botmesh, need_node, pyworker, wait_worker, gateway, RUN_NODE, HERE
from harness import check, wait_until, http


def expect_raise(fn, exc_type):
    try:
        fn()
    except exc_type as exc:
        return exc
    raise harness.TestFailure("%s did not raise %s" % (fn, exc_type.__name__))


def main():
    with harness.Stack("clients-usage") as s:
        s.redis()
        s.broker()
        live = pyworker(s, "py-use", credit=2)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-use")
        base = gateway(s)

        # --- list(): state filters as GET /jobs checks them -------------------
        st, _, body = http("GET", base + "/jobs?state=bogus")
        check(st == 400 and body["error"]["code"] == "invalid_state", "GET /jobs?state=bogus is 400 invalid_state",
              st, body)
        http_message = body["error"]["message"]
        for bad in ("bogus", "Completed"):
            exc = expect_raise(lambda: c.list(bad), botmesh.Rejected)
            check(exc.code == "invalid_state" and exc.message == http_message,
                  "python list(%r) raises invalid_state with GET /jobs' message" % bad, exc.code, exc.message)
        for i in range(3):
            check(c.wait(c.submit("pywork", {"i": i}, notify=True), timeout=30)["state"] == "completed",
                  "job %d completed" % i)
        jobs = c.list("completed", "pywork", 2)
        check(len(jobs) == 2 and all(j["state"] == "completed" for j in jobs), "python list('completed', 'pywork', 2)",
              jobs)
        check(all(j["state"] == "queued" for j in c.list("waiting")), "python list('waiting') reads as queued")

        # --- backoff as BullMQ writes it -----------------------------------------
        jid = c.submit("pywork", {"fail": True}, attempts=2, backoff={"type": "fixed", "delay": 400})
        rec = c.wait(jid, timeout=30, poll_interval=0.1)
        check(rec["state"] == "failed" and rec["attempts"] == 2 and rec["finishedAt"] - rec["createdAt"] >= 400,
              "python backoff {type: fixed, delay: 400} accepted: 2 runs, 400 ms apart at least", rec)
        exc = expect_raise(lambda: c.submit("pywork", {}, backoff={"type": "fixed", "delay": 1, "delayMs": 1}),
                           botmesh.Rejected)
        check(exc.code == "bad_request" and "backoff.delay and backoff.delayMs" in exc.message,
              "python backoff with delay and delayMs raises bad_request naming both", exc)

        # --- a malformed endpoint -------------------------------------------------
        for bad in ("localhost:15755", "tcp://localhost", "tcp:/127.0.0.1:5555"):
            for make in (lambda: botmesh.Client(endpoint=bad), lambda: botmesh.Worker(["pywork"], len, endpoint=bad)):
                exc = expect_raise(make, ValueError)
                check(repr(bad) in str(exc) and "tcp://host:port" in str(exc),
                      "python endpoint %s raises naming it and tcp://host:port" % bad, str(exc))

        # --- job.progress(): a number 0..100 -------------------------------------
        gate, outcome = threading.Event(), {}

        def handle(payload, job):
            try:
                job.progress({"pct": 50})
            except TypeError as exc:
                outcome["refused"] = str(exc)
            job.progress(40)
            gate.wait(30)
            return "ok"

        w = botmesh.Worker(["pyuse"], handle, endpoint=s.endpoint, name="py-inproc").start()
        wait_worker(c, "py-inproc")
        jid = c.submit("pyuse", {})
        wait_until(lambda: c.status(jid).get("progress") == 40, 30, "progress 40 recorded while pyuse runs")
        gate.set()
        check(c.wait(jid, timeout=30)["state"] == "completed", "the pyuse job completed")
        check("progress must be a number" in outcome.get("refused", ""),
              "python job.progress({...}) raises TypeError", outcome)
        w.stop()

        # --- JobError("permanent_failure"): no retry; another code: retried ---
        def perm(payload, job):
            raise botmesh.JobError(payload["code"], "asked to fail")

        w = botmesh.Worker(["pyperm"], perm, endpoint=s.endpoint, name="py-perm").start()
        wait_worker(c, "py-perm")
        for code, runs in (("permanent_failure", 1), ("bad_input", 3)):
            rec = c.wait(c.submit("pyperm", {"code": code}, attempts=3, backoff={"type": "fixed", "delay": 50}),
                         timeout=30, poll_interval=0.1)
            check(rec["state"] == "failed" and rec["error"]["code"] == code and len(rec["attemptErrors"]) == runs,
                  "JobError(%r) with attempts 3: %d run(s)" % (code, runs), rec)
        w.stop()

        # --- workers pointed at a dead broker: only what is true ---------------
        dead = "tcp://127.0.0.1:%d" % harness.free_port()
        fast = {"HEARTBEAT_INTERVAL_MS": "100", "HEARTBEAT_LIVENESS": "3"}
        pdead = s.spawn("py-dead", ["/usr/bin/python3",
                                    os.path.join(HERE, "pyworker.py"), "--types", "pywork", "--name", "py-dead",
                                    "--endpoint", dead], fast)
        wait_until(lambda: "sent READY again to %s; waiting for the broker" % dead in pdead.output(), 30,
                   "the Python worker on a dead broker to try again")
        out = pdead.output()
        check("no answer from the broker at %s" % dead in out, "python worker: 'no answer from the broker' logged", out)
        check(not re.search(r"\b(re)?connected to", out), "python worker on a dead broker never logs 'connected'", out)
        check(re.search(r"connected to %s \(the broker answered\)" % re.escape(s.endpoint), live.output()),
              "python worker on a live broker logs 'connected' once it answered", live.output())
        pdead.stop()
        c.close()

        # --- Node ------------------------------------------------------------------
        need_node()
        r = subprocess.run(["sh", RUN_NODE, os.path.join(HERE, "e2e_node_usage.js"), s.endpoint, http_message],
                           capture_output=True, text=True, timeout=150)
        print(r.stdout, r.stderr, flush=True)
        check(r.returncode == 0 and "NODE USAGE PASS" in r.stdout, "the Node client's usage checks pass",
              r.returncode)
        ndead = s.spawn("node-dead", ["sh", RUN_NODE, os.path.join(HERE, "nodeworker.js"), "--types", "nodework",
                                      "--name", "node-dead", "--endpoint", dead], fast)
        wait_until(lambda: "sent READY again to %s; waiting for the broker" % dead in ndead.output(), 60,
                   "the Node worker on a dead broker to try again")
        out = ndead.output()
        check("no answer from the broker at %s" % dead in out and "WARNING" in out,
              "node worker: 'no answer from the broker' logged at WARNING on stderr", out)
        check("(the broker answered)" not in out, "node worker on a dead broker never logs 'connected'", out)
        ndead.stop()


if __name__ == "__main__":
    harness.main(main)

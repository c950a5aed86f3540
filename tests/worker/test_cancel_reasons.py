"""The DONE of a run botmesh-worker stopped for a CANCEL keeps the CANCEL's
reason apart: code `cancelled` only for a CANCEL `cancelled`, `timeout` for a
CANCEL `timeout`, `stopped` for any other reason (`unknown`, `finished`,
`duplicate`, `not_owner`: the broker had given the job to another worker, or
did not know it).  A broker that takes such a DONE (one holding the job for
that worker again, after a recovery or a failover) ends the job `cancelled`
on code `cancelled` only: a run stopped because a broker could not read Redis
must not end its job cancelled when no one cancelled it.

Against a fake broker (a ROUTER in this test): JOB with a bot that sleeps,
then CANCEL with each reason; the DONE's error code and message.
"""
import harness
from harness import check, log
from wlib import JOB, DONE, WCANCEL, NACK, FakeBroker, job, worker_env, start_worker, wait_until, children, alive

CASES = (("cancelled", "cancelled"), ("timeout", "timeout"), ("unknown", "stopped"),
         ("finished", "stopped"), ("duplicate", "stopped"), ("not_owner", "stopped"))


def main():
    with harness.Stack("worker-cancel-reasons") as s:
        fb = FakeBroker()
        w = start_worker(s, fb.endpoint, "--type", "python", "--concurrency", "1", "--name", "w-reasons",
                         env=worker_env())
        ident, _ = fb.ready()
        for reason, code in CASES:
            job_id = "j-%s" % reason
            fb.send(ident, JOB, job(job_id, payload={"sleepMs": 20000}))
            pid = wait_until(lambda: children(w.pid), 5, "the bot of %s to start" % job_id)[0]
            fb.send(ident, WCANCEL, {"jobId": job_id, "reason": reason})
            _, _, body = fb.recv(5, want=DONE)
            log("CANCEL %s -> DONE %s" % (reason, body.get("error")))
            check(body["jobId"] == job_id and body["ok"] is False and body["error"]["code"] == code
                  and body["error"]["message"] == "stopped by the broker (%s)" % reason,
                  "CANCEL %s -> DONE code %s, the message naming the reason" % (reason, code), body)
            wait_until(lambda: not alive(pid), 5, "the bot of %s to be gone" % job_id)
            fb.send(ident, NACK, {"code": "not_owner", "message": "job %s is not yours" % job_id})
        check(w.alive(), "the worker is alive")
        fb.close()
        w.stop()


if __name__ == "__main__":
    harness.main(main)

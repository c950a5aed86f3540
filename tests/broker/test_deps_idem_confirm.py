"""A SUBMIT that waits for an earlier same-key SUBMIT's confirmation is
answered the state the job has once confirmed: failed, when a dependency
had failed already.

A real redis-server, broker and botmesh-worker (depbot.py, type "dep"):
G fails. redis-server is stopped (SIGSTOP); W is submitted with dependsOn
[G] and idempotencyKey k, then another SUBMIT with k (it waits for W's
confirmation); a STATUS answered after both says the broker has them.
redis-server goes on (SIGCONT): W is confirmed and fails dependency_failed
at once, so both SUBMITs are answered ACCEPTED, W, state failed (before:
the second was answered waiting-children, woken before W was failed).
"""
import os
import signal
import harness as h

HERE = os.path.dirname(os.path.abspath(__file__))
BOT = "/usr/bin/python3 " + os.path.join(HERE, "depbot.py")


def test():
    with h.Stack("deps-idem-confirm") as s:
        redis = s.redis()
        s.broker()
        s.worker("--type", "dep", "--name", "w1", env={"BOT_DEP_CMD": BOT})
        s.wait_workers(1)
        c = s.client()
        g = c.submit("dep", {"fail": True})
        h.check(c.wait(g)["state"] == "failed", "G failed")

        redis.signal(signal.SIGSTOP)
        try:
            body = {"botType": "dep", "payload": {"n": "w"}, "dependsOn": [g],
                    "idempotencyKey": "k"}
            first = c.send_request(h.SUBMIT, body)
            second = c.send_request(h.SUBMIT, body)
            sync = c.send_request(h.STATUS, {"jobId": g})
            answers = {}
            h.wait_until(lambda: (lambda a: answers.setdefault(a[1].get("req"), a)
                                  and sync in answers)(c.recv(10)), 10,
                         "STATUS of G answered while redis-server is stopped")
        finally:
            redis.signal(signal.SIGCONT)
        h.wait_until(lambda: (lambda a: answers.setdefault(a[1].get("req"), a)
                              and first in answers and second in answers)(c.recv(10)), 15,
                     "both SUBMITs answered once redis-server goes on")
        cmd1, r1 = answers[first]
        cmd2, r2 = answers[second]
        h.check(cmd1 == h.ACCEPTED and r1.get("state") == "failed", "W accepted, failed", r1)
        h.check(cmd2 == h.ACCEPTED and r2.get("jobId") == r1["jobId"]
                and r2.get("state") == "failed",
                "the same-key SUBMIT answered W, failed (as W is)", r2)
        rec = c.wait(r1["jobId"])
        h.check(rec["error"]["code"] == "dependency_failed", "W failed dependency_failed", rec)


if __name__ == "__main__":
    h.main(test)

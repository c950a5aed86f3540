"""Two workers' DONEs for two runs of one job reach a restarted broker
before its recovery reached the job: the earlier run completed, the later
one failed.  A completed DONE beats a failed one (as while the job runs
again, where an earlier run's completed DONE is taken and a failed one is
not), then the later attempt wins.

Set-up as in test_early_done_later.py (two_runs_then_restart): a real
redis and broker, the broker killed and started again while redis-server
is stopped, so that the recovery waits for the DONEs; fake workers.

Before the restart j runs on w1 (attempt 1); w1 goes away and is declared
lost; j runs on w2 (attempt 2, in Redis).  While the recovery waits, both
come back and send their kept DONEs: w1 attempt 1 completed, w2 attempt 2
failed (bot_failed), in one order, then (a second stack) the other.  What
must hold: w2's failed DONE is answered NACK not_owner, w1's is kept; once
Redis answers, j is completed with attempt 1's result, and no JOB is sent
for it again.  (Before: w1 first: w2's later DONE replaced it and j failed
its run, delayed for a retry; w2 first: w1's DONE was refused, "WARN ...
which keeps the DONE w2 sent already".)
"""
import signal

import harness as h
from test_early_done import read_up_to_barrier as answered_before
from test_early_done_later import back, two_runs_then_restart, wait_end

COMPLETED = {"ok": True, "attempt": 1, "result": {"attempt": 1}}
FAILED = {"ok": False, "attempt": 2, "error": {"code": "bot_failed", "message": "attempt 2 failed"}}


def scenario(completed_first):
    with h.Stack("early-done-completed") as s:
        redis, broker, j = two_runs_then_restart(s, attempts=3)

        order = [("w1", COMPLETED), ("w2", FAILED)]
        if not completed_first:
            order.reverse()
        workers, answers = {}, {"w1": [], "w2": []}
        for name, body in order:
            workers[name] = back(s.endpoint, name)
            workers[name].send(h.DONE, dict(body, jobId=j))
            # The sender's barrier first: once answered, the broker has taken
            # its DONE, and any NACK that made for the other is on its way.
            for other in sorted(workers, key=lambda n: n != name):
                answers[other] += answered_before(workers[other])
        h.check("unfinished jobs from redis" not in broker.output(), "the recovery has not ended yet")
        h.check(answers["w1"] == [], "w1's completed DONE (attempt 1) is not answered: kept", answers)
        h.check(len(answers["w2"]) == 1 and answers["w2"][0][0] == h.NACK
                and answers["w2"][0][1]["code"] == "not_owner",
                "w2's failed DONE (attempt 2) is answered NACK not_owner", answers)
        redis.signal(signal.SIGCONT)
        h.log("redis-server continued (SIGCONT)")

        c = s.client()
        rec, jobs = wait_end(c, j, list(workers.values()))
        h.check(rec["state"] == "completed" and rec["result"] == {"attempt": 1},
                "j completed with attempt 1's DONE", rec)
        h.check(jobs == [], "no JOB sent for j after the restart", jobs)
        warned = [l for l in broker.output().splitlines() if " WARN " in l and j in l]
        h.check(warned == [], "no WARN about j's two DONEs", warned)
        c.close()
        for w in workers.values():
            w.close()


def test():
    for completed_first in (True, False):
        h.log("=== the completed DONE %s" % ("first" if completed_first else "second"))
        scenario(completed_first)


if __name__ == "__main__":
    h.main(test)

"""Jobs that finish while the broker is down are taken once, not run again.

Real redis-server (AOF), a real broker, a real botmesh-worker whose bot
(type "slow", spawn mode) writes a line to a file when it starts and one
when it ends, with the attempt it ran.

1. Three jobs start; the broker is killed (SIGKILL) while they run.  They
   end while it is down: the worker keeps their DONEs.  A new broker
   recovers them from Redis as running and queued again, and the worker
   comes back, READY with nothing running, then sends the kept DONEs
   again, each saying which attempt it ends.  The broker may have
   dispatched a job again meanwhile (attempt 2): the DONE of attempt 1
   is then taken as the job's result, and the worker answers the JOB of
   attempt 2 with that DONE rather than run the bot again.  Each job
   completes with attempt 1's result, its bot starts and ends once, and
   the worker never gets a job it has no room for (the broker's count of
   its free slots stays right).  Each record keeps the times of the run
   that ended while the broker was down (its DONE carries them), not the
   time the DONE reached the new broker; and the DONEs the worker sends
   before the recovery reached their jobs are no warnings.
2. A worker stopped with SIGTERM while a job runs finishes it: its DONE
   reaches the broker before its DISCONNECT, so the job is not counted as
   lost and run again.
"""
import os
import signal
import time
import harness as h

BOT = r'''
import json, os, sys, time
job, attempt = os.environ["BOT_JOB_ID"], os.environ.get("BOT_ATTEMPT", "?")
def note(what):
    with open(%r, "a") as f:
        f.write("%%s %%s %%s %%d\n" %% (what, job, attempt, time.time() * 1000))
note("start")
payload = json.load(sys.stdin)
time.sleep(payload.get("sleepMs", 0) / 1000.0)
note("end")
print(json.dumps({"ran": job, "attempt": attempt}))
'''


def notes(path, what):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [l.split()[1:] for l in f if l.startswith(what + " ")]


def note_ms(path, what, job):
    return [int(e[2]) for e in notes(path, what) if e[0] == job][0]


def test():
    hb = {"HEARTBEAT_INTERVAL_MS": "200", "HEARTBEAT_LIVENESS": "10"}
    benv = dict(hb, BROKER_SAVE_RUNNING_MS="0")
    with h.Stack("restart-done") as s:
        s.redis()
        broker = s.broker(env=benv)
        notes_file = os.path.join(s.dir, "notes.txt")
        bot = os.path.join(s.dir, "slowbot.py")
        with open(bot, "w") as f:
            f.write(BOT % notes_file)
        worker = s.worker("--type", "slow", "--concurrency", "3", "--name", "w1",
                          env=dict(hb, BOT_SLOW_CMD="/usr/bin/python3 " + bot))
        s.wait_workers(1, "slow")
        c = s.client()

        # 1. Three jobs end while the broker is down.
        jobs = [c.submit("slow", {"sleepMs": 1500}) for _ in range(3)]
        h.wait_until(lambda: len(notes(notes_file, "start")) == 3, 15, "the three bots to start")
        h.wait_until(lambda: all(s.redis_cli("HGET", "botmesh:{bm}:job:" + j, "state") == "running"
                                 for j in jobs), 5, "the jobs' running state in Redis")
        c.close()
        broker.kill()
        h.log("broker killed with SIGKILL, three jobs running")
        h.wait_until(lambda: len(notes(notes_file, "end")) == 3, 15,
                     "the three bots to end while the broker is down")
        h.wait_until(lambda: worker.output().count(" completed in ") == 3, 15,
                     "the worker to record the three runs' ends")
        restart_ms = int(time.time() * 1000)
        broker = s.broker(env=benv)
        c = s.client()
        recs = [c.wait(j, timeout=30) for j in jobs]
        for rec in recs:
            h.check(rec["state"] == "completed" and rec["result"]["attempt"] == "1",
                    "job %s completed with the result of attempt 1" % rec["jobId"], rec)
            start, end = (note_ms(notes_file, w, rec["jobId"]) for w in ("start", "end"))
            h.log("job %s: bot ran %d..%d, record says startedAt %d finishedAt %d (%d ms); "
                  "the new broker started at %d" % (rec["jobId"], start, end, rec["startedAt"],
                  rec["finishedAt"], rec["finishedAt"] - rec["startedAt"], restart_ms))
            # finishedAt is the worker's clock at the run's end, which it
            # logged before restart_ms was read: the same millisecond at most
            h.check(rec["startedAt"] <= start and end <= rec["finishedAt"] <= restart_ms,
                    "job %s keeps its run's times, not the restart's" % rec["jobId"], rec)
        h.wait_until(lambda: c.stats()["types"]["slow"]["running"] == 0, 15,
                     "no job of the worker left running (a stopped second attempt ended)")
        starts, ends = notes(notes_file, "start"), notes(notes_file, "end")
        h.log("bot runs started: %s, ended: %s" % (starts, ends))
        h.check(sorted(e[0] for e in starts) == sorted(jobs), "each job's bot started once", starts)
        h.check(sorted(e[0] for e in ends) == sorted(jobs), "each job's bot ended once", ends)
        blog, wlog = broker.output(), worker.output()
        h.log("broker took %d result(s) of attempt 1 while attempt 2 was dispatched; "
              "the worker answered %d JOB(s) of a job it had completed with its DONE"
              % (blog.count("which completed: taken"), wlog.count("after we completed it")))
        early = [l for l in blog.splitlines() if "before the recovery reached the job" in l]
        h.log("DONEs that came before the recovery reached their job: %d (INFO)" % len(early))
        h.check(not [l for l in blog.splitlines() if "rejected DONE" in l],
                "no DONE of the restart is logged as rejected",
                [l for l in blog.splitlines() if "rejected DONE" in l][:5])
        h.check("no credit left" not in wlog,
                "the broker never sent the worker a job it had no room for",
                [l for l in wlog.splitlines() if "no credit left" in l][:5])

        # The worker takes new jobs as before, all three slots.
        more = [c.submit("slow", {"sleepMs": 300}) for _ in range(3)]
        for j in more:
            rec = c.wait(j, timeout=20)
            h.check(rec["state"] == "completed" and rec["attempts"] == 1,
                    "a new job runs once after the restart", rec)

        # 2. SIGTERM to the worker while a job runs: DONE before DISCONNECT.
        last = c.submit("slow", {"sleepMs": 1000})
        h.wait_until(lambda: any(e[:2] == [last, "1"] for e in notes(notes_file, "start")), 15,
                     "the last job to start")
        worker.signal(signal.SIGTERM)
        rec = c.wait(last, timeout=20)
        h.check(rec["state"] == "completed" and rec["attempts"] == 1,
                "the job a stopping worker finished completed once", rec)
        h.wait_until(lambda: not worker.alive(), 15, "the worker to exit")
        h.check("worker_lost" not in broker.output(),
                "the broker did not count the job as lost with the worker",
                [l for l in broker.output().splitlines() if "worker_lost" in l])
        c.close()


if __name__ == "__main__":
    h.main(test)

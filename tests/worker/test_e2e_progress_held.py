"""Progress the worker's rate limit holds back (at most one PROGRESS every
100 ms a job) reaches the broker when the 100 ms are over, and a value still
held when the job ends travels in its DONE.

A real broker (no Redis), a real worker with a long heartbeat (5 s), and a
spawned bot that writes "PROGRESS 10" and, 30 ms later, "PROGRESS 60",
waits for the test to open a gate, then writes "PROGRESS 80" and fails at
once.  The job's progress must read 60 within 2.5 s (0.1 s here, the heartbeat 5 s) while it runs, and its
failed record must keep 80.  Before, a held value waited for the worker's
next heartbeat (60 showed after up to 5 s) and one still held when the job
ended was dropped (the failed record said 60).

Then a pooled bot that writes 2.4 MB of progress lines as fast as it can
(200,000 lines) in each of three jobs: each completes within 5 s (some 10 to
50 ms here).  A pool process's fd 3 is left unread for 100 ms after a read
(progress goes out at most every 100 ms), except for a process that writes
fast, which is read as it writes: before that exception such a job took
14.4 s, its bot waiting on a full pipe after each pause.
"""
import os
import sys
import time

import harness
from harness import check

BOT = r'''
import os, sys, time
gate = sys.argv[1]
os.write(3, b"PROGRESS 10\n")
time.sleep(0.03)
os.write(3, b"PROGRESS 60\n")
while not os.path.exists(gate):
    time.sleep(0.01)
os.write(3, b"PROGRESS 80\n")
sys.stderr.write("failing after 80\n")
sys.exit(1)
'''

CHATTY = r'''
import os
def main():
    line = b"PROGRESS 50\n" * 100
    for _ in range(2000):
        os.write(3, line)
    return {"lines": 200000}
'''

SLOW_BEAT = {"HEARTBEAT_INTERVAL_MS": "5000", "HEARTBEAT_LIVENESS": "3"}


def main():
    tmp = harness.tempdir("progress-held-")
    bot = os.path.join(tmp, "bot.py")
    with open(bot, "w") as f:
        f.write(BOT)
    gate = os.path.join(tmp, "gate")
    with harness.Stack("worker-e2e-progress-held") as s:
        s.broker(redis=False, env=SLOW_BEAT)
        env = dict(SLOW_BEAT, BOT_HELD_CMD="%s %s %s" % (sys.executable, bot, gate))
        s.worker("--type", "held", "--concurrency", "1", env=env)
        s.wait_workers(1)
        c = s.client()
        job = c.submit("held", {}, attempts=1)
        started = time.monotonic()
        rec = harness.wait_until(lambda: (lambda r: r if r and r.get("progress") == 60 else None)(c.status(job)),
                                 2.5, "the job's progress to read 60 within 2.5 s (the value held back "
                                 "by the 100 ms rate limit)")
        check(rec["state"] == "running", "the job still runs when its progress reads 60", rec)
        print("progress 60 after %.2f s" % (time.monotonic() - started))
        open(gate, "w").close()
        rec = c.wait(job, timeout=30)
        check(rec["state"] == "failed", "the job fails as its bot does", rec)
        check(rec.get("progress") == 80,
              "the failed record keeps 80, the value written just before the end (sent with the DONE)", rec)

        chatty = os.path.join(tmp, "chatty.py")
        with open(chatty, "w") as f:
            f.write(CHATTY)
        forkserver = os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py")
        s.worker("--type", "chatty", "--concurrency", "1", name="chatty",
                 env={"BOT_CHATTY_CMD": "%s %s --pool %s" % (sys.executable, forkserver, chatty),
                      "BOT_CHATTY_MODE": "pool", "BOT_CHATTY_MAX_PROCS": "1"})
        s.wait_workers(2)
        for n in range(3):
            job = c.submit("chatty", {}, attempts=1)
            started = time.monotonic()
            rec = c.wait(job, timeout=30)
            took = time.monotonic() - started
            check(rec["state"] == "completed" and rec.get("result") == {"lines": 200000},
                  "chatty job %d completes" % (n + 1), rec)
            check(took < 5, "chatty job %d, 2.4 MB of progress lines, done within 5 s (never left "
                  "waiting on a full progress pipe)" % (n + 1), "%.2f s" % took)
            print("chatty job %d: %.3f s" % (n + 1, took))
        c.close()


if __name__ == "__main__":
    harness.main(main)

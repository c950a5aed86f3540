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
        c.close()


if __name__ == "__main__":
    harness.main(main)

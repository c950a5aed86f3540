"""The worker's WARN line for a pool process that died by itself says how
it ended (exit status or signal) and how many bytes it wrote on stderr,
never what: a bot's stderr may be secret and is never in the worker's own
log (the job's error holds its tail), nor in the job's "failed" line.

A real broker (no Redis), a real worker, and a pool bot written by hand
that, when the payload asks, writes two lines on stderr and exits 3 while
it runs the job ("die"), or answers and then, idle, writes a line and dies
of SIGABRT ("idle").  The WARN line of each death names the exit and the
byte count; a process that wrote nothing on stderr is said to have; no
line of the worker's log holds what the bot wrote on stderr.

Before, the line quoted the bot's last stderr line ("; its last stderr
line: 'fatal: the disk is on fire'"): it failed at "the WARN line of the
death in a job counts its stderr bytes".
"""
import os
import re

import harness
from harness import check, wait_until
import wlib

DIER = """import json, os, signal, sys, threading, time
sys.stdout.write('{"ready": true}\\n')
sys.stdout.flush()
for line in sys.stdin:
    frame = json.loads(line)
    how = frame["payload"].get("how")
    if how == "die":
        sys.stderr.write("loading the model\\nfatal: the disk is on fire\\n")
        sys.stderr.flush()
        os._exit(3)
    if how == "quiet":
        os._exit(4)
    sys.stdout.write(json.dumps({"result": {"pid": os.getpid()}, "job": frame["job"]}) + "\\n")
    sys.stdout.flush()
    if how == "idle":
        time.sleep(0.1)
        sys.stderr.write("watchdog: lost the GPU\\n")
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGABRT)
"""


def main():
    bots = harness.tempdir("warm-death-log-")
    bot = os.path.join(bots, "dier.py")
    with open(bot, "w") as f:
        f.write(DIER)
    with harness.Stack("worker-e2e-warm-death-log") as s:
        s.broker(redis=False)
        env = {"BOT_DIER_CMD": "%s %s" % (wlib.PY, bot), "BOT_DIER_MODE": "pool",
               "BOT_DIER_MAX_PROCS": "1"}
        w = s.worker("--type", "dier", "--concurrency", "1", env=env)
        s.wait_workers(1)
        c = s.client()

        def warn(pattern, what):
            regex = re.compile(pattern)
            return wait_until(lambda: next((l for l in w.output().splitlines()
                                            if " WARN " in l and regex.search(l)), None),
                              10, what)

        job_id = c.submit("dier", {"how": "die"}, attempts=1)
        rec = c.wait(job_id, timeout=30)
        check(rec["state"] == "failed", "the job whose process exited 3 fails", rec)
        line = warn(r"dier process pid=\d+ exited with status 3 while running a job",
                    "a WARN line for the process that exited 3 in a job")
        check(line.endswith("; it wrote 45 bytes on stderr in the job "
                            "(their tail is in the job's error)"),
              "the WARN line of the death in a job counts its stderr bytes", line)
        check("job=%s " % job_id in line, "and names the job", line)
        check("the disk is on fire" in rec["error"]["message"],
              "the job's error holds the stderr tail", rec["error"])

        rec = wlib.run_job(c, "dier", {"how": "quiet"}, attempts=1)
        check(rec["state"] == "failed", "the job whose process exited 4 fails", rec)
        line = warn(r"dier process pid=\d+ exited with status 4 while running a job",
                    "a WARN line for the process that exited 4 in a job")
        check(line.endswith("; nothing on its stderr in the job"),
              "the WARN line of a death with nothing on stderr says so", line)

        rec = wlib.run_job(c, "dier", {"how": "idle"}, attempts=1)
        check(rec["state"] == "completed", "the job answered before the process died completes", rec)
        line = warn(r"dier process pid=%d killed by signal SIGABRT while idle" % rec["result"]["pid"],
                    "a WARN line for the process killed by SIGABRT while idle")
        check(line.endswith("; it wrote 23 bytes on stderr since its last job began"),
              "the WARN line of the death while idle counts its stderr bytes", line)
        failed = [l for l in w.output().splitlines() if "job=%s failed in" % job_id in l]
        check(len(failed) == 1 and failed[0].endswith(
                  "bot_failed: [44 bytes of the bot's stderr, in the job's error]"),
              "the job's failed line counts the bytes of its message from the bot's stderr",
              failed)
        for secret in ("loading the model", "the disk is on fire", "lost the GPU"):
            check(secret not in w.output(), "no line of the worker's log holds the bot's "
                  "stderr (%r)" % secret, w.output()[-3000:])
        c.close()
        check(w.alive(), "worker still running")


if __name__ == "__main__":
    harness.main(main)

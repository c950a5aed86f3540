"""Slips of a warm bot's author that used to leave a job waiting or named
the wrong problem, end to end with the real broker (no Redis) and a real
worker; each job has a 60 s timeout, which none may wait for.

- a pooled bot whose answer line is not valid UTF-8 (Perl's JSON::PP
  without ->utf8 writes "e acute" as the Latin-1 byte 0xE9): bad_output
  naming invalid UTF-8, the byte and its offset (before: "not a JSON
  object");
- a pool bot that answers {"signal": 24} itself, with no CPU time used:
  bot_failed, not resource_limit (before: "the kernel sent SIGXCPU at the
  limit", counted in bot_limit_kills_total);
- a garbage line on stdout while a job runs: bad_output with jansson's
  error text;
- a pool process killed with -9 in a job (a lost attempt): its WARN line
  no longer says the stderr tail "is in the job's error" (none has it);
- a custom fork server that answers a job with a line that is not a JSON
  object: its job fails at once with bad_output (before: the line was
  ignored and the job waited for its timeout);
- a pool bot that closes its stdout and sleeps on: its job fails within
  a few seconds with bad_output saying so, the process is replaced and
  the next job completes (before: the job waited for the process's exit,
  30 s here);
- a fork server's child that writes PROGRESS 33 on fd 3 and fails at
  once: each of 50 failed records shows progress 33 (before: the value
  read only with the answer was dropped, 0 in about half of them).
"""
import os
import re
import signal
import time

import harness
from harness import check, log, wait_until
import wlib

PY = "/usr/bin/python3"

# A pool bot: per job, what its payload's "how" says.
SLIPBOT = r'''import json, os, sys, time
sys.stdout.write('{"ready": true}\n')
sys.stdout.flush()
for line in sys.stdin:
    frame = json.loads(line)
    how = frame["payload"]["how"]
    out = sys.stdout.buffer
    if how == "latin1":
        out.write(b'{"job": "' + frame["job"].encode() + b'", "result": {"name": "caf\xe9"}}\n')
    elif how == "hang":
        sys.stderr.write("hanging\n")
        sys.stderr.flush()
        with open(frame["payload"]["pidfile"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(30)
    elif how == "xcpu":
        out.write(json.dumps({"job": frame["job"], "signal": 24}).encode() + b"\n")
    elif how == "garbage":
        out.write(b'{"job": 1, oops}\n')
    elif how == "close":
        sys.stderr.write("closing stdout\n")
        sys.stderr.flush()
        out.flush()
        os.close(1)
        time.sleep(30)
        sys.exit(0)
    else:
        out.write(json.dumps({"job": frame["job"], "result": {"pid": os.getpid()}}).encode() + b"\n")
    out.flush()
'''

# A fork server of its own, as a bot author may write one: it answers every
# job with a line that is not a JSON object.
# With a payload naming a pidfile, it first forks the job's child in a
# process group of its own (which writes its pid there and sleeps) and says
# it started.
BADFORK = r'''import json, os, sys, time
sys.stdout.write(json.dumps({"ready": True, "mode": "fork"}) + "\n")
sys.stdout.flush()
for line in sys.stdin:
    frame = json.loads(line)
    pidfile = (frame.get("payload") or {}).get("pidfile")
    if pidfile:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.setpgid(0, 0)
            with open(pidfile + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.rename(pidfile + ".tmp", pidfile)
            os.write(w, b"x")
            time.sleep(60)
            os._exit(0)
        os.read(r, 1)
        sys.stdout.write(json.dumps({"started": pid}) + "\n")
        sys.stdout.flush()
    sys.stdout.write("answer: done\n")
    sys.stdout.flush()
'''

# A bot for forkserver.py: progress 33, then it fails at once.
PROGRESSBOT = r'''import os, sys
def main():
    os.write(3, b"PROGRESS 33\n")
    sys.stderr.write("failing after 33\n")
    sys.exit(1)
'''


def write(directory, name, text):
    path = os.path.join(directory, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def main():
    tmp = harness.tempdir("warm-slips-")
    slipbot = write(tmp, "slipbot.py", SLIPBOT)
    badfork = write(tmp, "badfork.py", BADFORK)
    progressbot = write(tmp, "progressbot.py", PROGRESSBOT)
    forkserver = os.path.join(harness.ROOT, "workers", "bots", "python", "forkserver.py")
    with harness.Stack("worker-e2e-warm-slips") as s:
        s.broker(redis=False)
        w = s.worker("--type", "slip", "--concurrency", "1", name="slip",
                     env={"BOT_SLIP_CMD": "%s %s" % (PY, slipbot), "BOT_SLIP_MODE": "pool",
                          "BOT_SLIP_MAX_PROCS": "1"})
        s.worker("--type", "badfork", "--concurrency", "1", name="badfork",
                 env={"BOT_BADFORK_CMD": "%s %s" % (PY, badfork), "BOT_BADFORK_MODE": "fork",
                      "BOT_BADFORK_MAX_PROCS": "1"})
        s.worker("--type", "prog", "--concurrency", "1", name="prog",
                 env={"BOT_PROG_CMD": "%s %s %s" % (PY, forkserver, progressbot),
                      "BOT_PROG_MODE": "fork", "BOT_PROG_MAX_PROCS": "1"})
        s.wait_workers(3)
        c = s.client()

        def run(bot_type, payload, within):
            started = time.monotonic()
            rec = wlib.run_job(c, bot_type, payload, timeout=within + 5, attempts=1, timeoutMs=60000)
            took = time.monotonic() - started
            check(took < within, "%s %r ends within %d s, not at its 60 s timeout"
                  % (bot_type, payload, within), "%.1f s" % took)
            return rec

        rec = run("slip", {"how": "latin1"}, 10)
        message = (rec.get("error") or {}).get("message", "")
        check(rec["state"] == "failed" and rec["error"]["code"] == "bad_output",
              "an answer line in Latin-1 fails its job with bad_output", rec)
        check("not valid UTF-8" in message and "0xE9" in message and re.search(r"byte \d+ of the line", message),
              "its message names invalid UTF-8, the byte and where it is", message)
        check("not a JSON object" not in message, "and does not call it 'not a JSON object'", message)

        rec = run("slip", {"how": "xcpu"}, 10)
        check(rec["state"] == "failed" and rec["error"]["code"] == "bot_failed"
              and not rec["error"].get("limit"),
              "a bot that reports SIGXCPU itself, its CPU time far under the 3600 s budget, fails "
              "with bot_failed, not resource_limit (no limit was hit)", rec)

        rec = run("slip", {"how": "garbage"}, 10)
        message = (rec.get("error") or {}).get("message", "")
        check(rec["state"] == "failed" and rec["error"]["code"] == "bad_output"
              and "not a JSON object (" in message and "at byte" in message,
              "a garbage line fails its job with bad_output and the parser's error", rec)

        rec = run("slip", {"how": "close"}, 10)
        message = (rec.get("error") or {}).get("message", "")
        check(rec["state"] == "failed" and rec["error"]["code"] == "bad_output"
              and "closed its stdout while it ran the job" in message,
              "a pool bot that closes its stdout fails its job at once with bad_output saying so", rec)
        check("closing stdout" in (rec.get("log") or ""), "the job keeps its log", rec)
        wait_until(lambda: "it closed its stdout while it runs a job: it can never answer: killed"
                   in w.output(), 10, "a WARN line saying the process was killed for it")
        rec = run("slip", {"how": "answer"}, 15)
        check(rec["state"] == "completed", "the next job completes on the process that replaced it",
              rec)

        pidfile = os.path.join(tmp, "hang.pid")
        job = c.submit("slip", {"how": "hang", "pidfile": pidfile}, attempts=1, maxAttempts=1,
                       timeoutMs=60000)
        pid = int(wait_until(lambda: os.path.exists(pidfile) and open(pidfile).read(), 10,
                             "the hanging bot to write its pid"))
        os.kill(pid, signal.SIGKILL)
        rec = c.wait(job, timeout=15)
        check(rec["state"] == "failed" and rec["error"]["code"] == "worker_lost",
              "a pool process killed with -9 from outside: a lost attempt (worker_lost, maxAttempts 1)", rec)
        line = wait_until(lambda: next((l for l in w.output().splitlines()
                                        if "pid=%d killed by signal SIGKILL" % pid in l), None),
                          10, "the WARN line of the process killed with -9")
        check(line.endswith("; it wrote 8 bytes on stderr in the job (a lost attempt: no error or "
                            "log keeps them)"),
              "it does not claim the stderr tail is in the job's error", line)

        rec = run("badfork", {}, 10)
        message = (rec.get("error") or {}).get("message", "")
        check(rec["state"] == "failed" and rec["error"]["code"] == "bad_output"
              and "fork server" in message and "'answer: done'" in message,
              "a fork server's answer that is not a JSON object fails its job at once, quoting it",
              rec)
        pidfile = os.path.join(tmp, "child.pid")
        rec = run("badfork", {"pidfile": pidfile}, 10)
        check(rec["state"] == "failed" and rec["error"]["code"] == "bad_output",
              "the same with the job's child started in a process group of its own", rec)
        child = int(open(pidfile).read())

        def gone():
            try:
                with open("/proc/%d/stat" % child) as f:
                    return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
            except OSError:
                return True
        wait_until(gone, 10, "the failed job's child (pid %d, its own process group) killed with "
                   "the fork server" % child)
        log("the job's child pid=%d is gone" % child)

        jobs = [c.submit("prog", {}, attempts=1, timeoutMs=60000) for _ in range(50)]
        lost = []
        for job in jobs:
            rec = c.wait(job, timeout=60)
            check(rec["state"] == "failed", "each progress job fails as its bot does", rec)
            if rec.get("progress") != 33:
                lost.append((job, rec.get("progress")))
        check(not lost, "all 50 failed records keep progress 33, written on fd 3 before the answer",
              lost)
        c.close()


if __name__ == "__main__":
    harness.main(main)

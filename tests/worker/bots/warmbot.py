"""warmbot.py - a Python bot for the pool and fork mode tests, run under
workers/bots/python/forkserver.py (BOT_<TYPE>_CMD).

Module state: a job counter and a list of held memory, which persist from
job to job in pool mode and never in fork mode.  Payload:
    leakMb    keep that many MiB (resident) for as long as the process lives
    setEnv    set WARMBOT_LEAK in os.environ (must not reach later jobs)
    sleepMs   sleep first (progress 10, then 90)
    pidFile   write the pid of the process running the job there first
    runLog    append the pid of the process running the job to that file
    crash     a signal name (SIGSEGV, ...): write "report: about to crash"
              on stderr, then kill its own process with that signal
Its result also holds a random.random() draw (children of a fork server
must not all draw the same) and whether a fork server's warm-up run
(BOT_<TYPE>_FORK_WARMUP: BOT_JOB_ID "warmup") happened in this process or
before it was forked.
    forkKids  fork that many children (os.fork) that sleep kidSleep s (5)
    popen     start `sleep 301` (subprocess.Popen) and put its pid in the
              result as popenPid
    session   start `sleep 302` in a session of its own
              (start_new_session=True): its pid is sessionPid
    daemon    daemonise `sleep 303` (fork, setsid, fork, the middle process
              exits at once): its pid is daemonPid
    extraFile write sessionPid and daemonPid (JSON) to that file once they
              are started, before sleepMs (a job that never answers)
    binary    write these bytes (hex) with sys.stdout.buffer and nothing else
    bigBytes  write a result of about that many bytes
    shell     run that shell command (os.system: it inherits fd 0 and fd 1,
              as a spawned bot's subprocess does) before the result; its
              exit status is the result's shellStatus; with quiet, the
              bot writes nothing itself (the command's output is all)
    importStdout  write the result through IMPORT_STDOUT, the sys.stdout of
              the import (as `from sys import stdout` at the top of a bot
              does; under a fork server, not the job's), with no flush
The payload is read with sys.stdin.buffer (a spawned bot's stdin has one).
With WARMBOT_IMPORT_PRINT set, the bot prints its value while it loads.
With WARMBOT_LOAD_LOG set, each load appends "time pid" to that file; with
WARMBOT_CRASH_AT_LOAD also set, loading fails (a missing model, say).
"""
import json
import os
import random
import signal
import sys
import time

STATE = {"jobs": 0, "warmedUp": False}
HELD = []
IMPORT_STDOUT = sys.stdout

if os.environ.get("WARMBOT_IMPORT_PRINT"):
    print(os.environ["WARMBOT_IMPORT_PRINT"])
if os.environ.get("WARMBOT_LOAD_LOG"):
    with open(os.environ["WARMBOT_LOAD_LOG"], "a") as log:
        log.write("%.3f %d\n" % (time.time(), os.getpid()))
if os.environ.get("WARMBOT_CRASH_AT_LOAD"):
    raise RuntimeError("cannot load the model: /nonexistent/model.bin")


def progress(value):
    try:
        os.write(int(os.environ.get("BOT_PROGRESS_FD", "3")), b"PROGRESS %d\n" % value)
    except OSError:
        pass


def main():
    payload = json.loads(sys.stdin.buffer.read().decode("utf-8") or "null") or {}
    if payload.get("binary"):
        sys.stdout.buffer.write(bytes.fromhex(payload["binary"]))
        return
    if payload.get("bigBytes"):
        print(json.dumps({"blob": "x" * payload["bigBytes"]}))
        return
    extra = {}
    for _ in range(payload.get("forkKids", 0)):
        if os.fork() == 0:
            time.sleep(payload.get("kidSleep", 5))
            os._exit(0)
    if payload.get("popen"):
        import subprocess
        extra["popenPid"] = subprocess.Popen(["sleep", "301"]).pid
    if payload.get("session"):
        import subprocess
        extra["sessionPid"] = subprocess.Popen(["sleep", "302"], start_new_session=True).pid
    if payload.get("daemon"):
        r, w = os.pipe()
        if os.fork() == 0:
            os.setsid()
            pid = os.fork()
            if pid == 0:
                os.execvp("sleep", ["sleep", "303"])
            os.write(w, b"%d" % pid)
            os._exit(0)
        os.close(w)
        extra["daemonPid"] = int(os.read(r, 32))
        os.close(r)
    if payload.get("extraFile"):
        with open(payload["extraFile"] + ".tmp", "w") as f:
            json.dump(extra, f)
        os.rename(payload["extraFile"] + ".tmp", payload["extraFile"])
    STATE["jobs"] += 1
    if payload.get("shell"):
        extra["shellStatus"] = os.waitstatus_to_exitcode(os.system(payload["shell"]))
        if payload.get("quiet"):
            return
    if os.environ.get("BOT_JOB_ID") == "warmup":
        STATE["warmedUp"] = True
    if payload.get("leakMb"):
        HELD.append(b"x" * (payload["leakMb"] << 20))
    leaked = os.environ.get("WARMBOT_LEAK")
    if payload.get("pidFile"):
        with open(payload["pidFile"], "w") as f:
            f.write(str(os.getpid()))
    if payload.get("runLog"):
        with open(payload["runLog"], "a") as f:
            f.write("%d\n" % os.getpid())
    if payload.get("crash"):
        sys.stderr.write("report: about to crash\n")
        sys.stderr.flush()
        os.kill(os.getpid(), getattr(signal, payload["crash"]))
    if payload.get("setEnv"):
        os.environ["WARMBOT_LEAK"] = "yes"
    if payload.get("sleepMs"):
        progress(10)
        time.sleep(payload["sleepMs"] / 1000.0)
    progress(90)
    out = IMPORT_STDOUT if payload.get("importStdout") else sys.stdout
    out.write(json.dumps({"jobs": STATE["jobs"], "pid": os.getpid(), "leakedEnv": leaked,
                          "heldMb": sum(len(h) for h in HELD) >> 20,
                          "jobId": os.environ.get("BOT_JOB_ID"),
                          "attempt": int(os.environ.get("BOT_ATTEMPT", "0")),
                          "random": random.random(), "warmedUp": STATE["warmedUp"], **extra}) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""testbot.py - a bot that misbehaves on request, for the worker's tests.

Flags (fixed per bot type through BOT_<TYPE>_CMD):
  --pidfile PATH   append our pid (and our children's) to PATH
  --no-stdin       never read stdin
  --flood BYTES    write BYTES bytes of non-JSON to stdout, then exit 0
  --fork N         start N children (same process group) that sleep 600 s,
                   then exit 0 with a result at once
  --ignore-term    ignore SIGTERM (children too) and sleep forever

Without a flag that decides, the payload (JSON on stdin) drives it:
  sleepMs   sleep first          exit     exit with this code
  stallAttempt  on this attempt (BOT_ATTEMPT) only: ignore SIGTERM and sleep
            until killed
  stderr    write this to stderr stdout   write this instead of the result
  signal    kill itself with this signal name ("SEGV")
  progress  list of values to write as PROGRESS lines on BOT_PROGRESS_FD
The result: {pid, startedAt, finishedAt, attempt, jobId, botType, payloadBytes}.
"""
import json
import os
import signal
import sys
import time


def now_ms():
    return int(time.time() * 1000)


def note_pids(path, pids):
    if path:
        with open(path, "a") as f:
            f.write("".join("%d\n" % p for p in pids))


def result(started, extra=None):
    out = {"pid": os.getpid(), "startedAt": started, "finishedAt": now_ms(),
           "attempt": int(os.environ.get("BOT_ATTEMPT", "0")),
           "jobId": os.environ.get("BOT_JOB_ID"), "botType": os.environ.get("BOT_TYPE")}
    out.update(extra or {})
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()


def main():
    started = now_ms()
    args = sys.argv[1:]
    opts = {}
    while args:
        a = args.pop(0)
        if a in ("--pidfile", "--flood", "--fork"):
            opts[a] = args.pop(0)
        else:
            opts[a] = True
    pidfile = opts.get("--pidfile")
    note_pids(pidfile, [os.getpid()])

    if "--ignore-term" in opts:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        kids = []
        for _ in range(2):
            pid = os.fork()
            if pid == 0:
                while True:
                    time.sleep(1)
            kids.append(pid)
        note_pids(pidfile, kids)
        while True:
            time.sleep(1)

    if "--fork" in opts:
        kids = []
        for _ in range(int(opts["--fork"])):
            pid = os.fork()
            if pid == 0:
                # Hold stdout and stderr open, as a careless daemon would.
                time.sleep(600)
                os._exit(0)
            kids.append(pid)
        note_pids(pidfile, kids)
        result(started, {"children": kids})
        os._exit(0)

    if "--flood" in opts:
        left = int(opts["--flood"])
        chunk = b"x" * 65536
        out = sys.stdout.buffer
        try:
            while left > 0:
                out.write(chunk[:left])
                left -= len(chunk)
            out.flush()
        except BrokenPipeError:
            os._exit(3)
        return

    payload = {}
    raw = b""
    if "--no-stdin" not in opts:
        raw = sys.stdin.buffer.read()
        try:
            payload = json.loads(raw) if raw.strip() else {}
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
    if payload.get("stallAttempt") == int(os.environ.get("BOT_ATTEMPT", "0")):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(1)
    fd = os.environ.get("BOT_PROGRESS_FD")
    for value in payload.get("progress", []):
        if fd:
            os.write(int(fd), b"PROGRESS %d\n" % value)
            time.sleep(0.15)
    if payload.get("sleepMs"):
        time.sleep(payload["sleepMs"] / 1000.0)
    if payload.get("stderr"):
        sys.stderr.write(payload["stderr"])
        sys.stderr.flush()
    if payload.get("signal"):
        os.kill(os.getpid(), getattr(signal, "SIG" + payload["signal"]))
    if "stdout" in payload:
        sys.stdout.write(payload["stdout"])
        sys.stdout.flush()
    else:
        result(started, {"payloadBytes": len(raw)})
    sys.exit(payload.get("exit", 0))


if __name__ == "__main__":
    main()

"""crashbot.py - a bot that dies the ways the crash tests want.

Arguments:
    --crash-at-load   write "crashbot: crashing at load" on stderr and kill
                      its own process with SIGSEGV before anything else (a
                      JVM that cannot reserve its heap dies so at start)
Payload (a spawned run, on stdin):
    crash             kill its own process with SIGSEGV
    exit              exit with that status, writing nothing
else it answers {"ok": true}.
"""
import json
import os
import signal
import sys

if "--crash-at-load" in sys.argv[1:]:
    sys.stderr.write("crashbot: crashing at load\n")
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGSEGV)

payload = json.loads(sys.stdin.read() or "null") or {}
if payload.get("crash"):
    os.kill(os.getpid(), signal.SIGSEGV)
if "exit" in payload:
    sys.exit(int(payload["exit"]))
print(json.dumps({"ok": True}))

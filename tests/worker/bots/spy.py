#!/usr/bin/python3
"""spy.py - a bot that looks around, for the sandbox tests.

Payload: {"read": PATH, "connect": [HOST, PORT]}.  Writes what it could do:
{"read": "ok: <text>" | "error: ...", "connect": "ok" | "error: ...",
 "env": [names], "uid": N, "tmp": "ok" | "error: ...", "home": $HOME}
"""
import json
import os
import socket
import sys


def attempt(fn):
    try:
        value = fn()
        return "ok" + (": %s" % value if value is not None else "")
    except Exception as e:  # noqa: BLE001 - any failure is the answer
        return "error: %s: %s" % (type(e).__name__, e)


def main():
    payload = json.loads(sys.stdin.read() or "{}")
    out = {"env": sorted(os.environ), "uid": os.getuid(), "home": os.environ.get("HOME")}
    if payload.get("read"):
        out["read"] = attempt(lambda: open(payload["read"]).read().strip())

    def connect():
        with socket.create_connection(tuple(payload["connect"]), timeout=3) as s:
            s.sendall(b"hello from the bot\n")
    if payload.get("connect"):
        out["connect"] = attempt(lambda: connect())

    def tmp():
        path = os.path.join(os.environ.get("TMPDIR", "/tmp"), "spy-%d" % os.getpid())
        with open(path, "w") as f:
            f.write("x")
        os.unlink(path)
    out["tmp"] = attempt(tmp)
    print(json.dumps(out))


if __name__ == "__main__":
    main()

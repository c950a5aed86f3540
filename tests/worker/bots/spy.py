#!/usr/bin/python3
"""spy.py - a bot that looks around, for the sandbox tests.

Payload: {"read": PATH, "reads": [PATH...], "connect": [HOST, PORT], "fill":
MiB, "fillDir": DIR, "stats": [PATH...], "create": [PATH...], "semaphore":
true, "leave": NAME, "tempfile": true}; "reads" answers {PATH: "ok: <text>" | "error:
..."}, "stats" {PATH: "file" | "dir" | "chardev" | "other" | "missing"},
"create" {PATH: "ok" | "error: ..."} (a file opened for writing and
removed again, /dev/null but written), "semaphore" whether a
multiprocessing lock can be made, "found" {DIR: [names]} the files
named left-by-* in /tmp and in $TMPDIR ("tmpdir"), which "leave" writes
there (left-by-NAME) after looking, "tempfile" the directory of a file
tempfile.mkstemp() made ("ok: DIR"); "pid" and "ppid" its own.  Writes what
it could do: {"read": "ok: <text>" | "error: ...", "connect": "ok" | "error:
...", "env": [names], "parentEnv": [names in its parent's /proc environ],
"uid": N, "tmp": "ok" | "error: ...", "home": $HOME, "fill": "ok: N" |
"error: ..."}; fill writes that many MiB to a file in $TMPDIR or fillDir (the error
says how many MiB were written first).  With a main() it also runs under
forkserver.py (pool and fork modes).
"""
import json
import os
import socket
import stat
import sys


def attempt(fn):
    try:
        value = fn()
        return "ok" + (": %s" % value if value is not None else "")
    except Exception as e:  # noqa: BLE001 - any failure is the answer
        return "error: %s: %s" % (type(e).__name__, e)


def kind(path):
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return "error: %s" % e
    return ("file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode)
            else "chardev" if stat.S_ISCHR(mode) else "other")


def main():
    payload = json.loads(sys.stdin.read() or "{}")
    out = {"env": sorted(os.environ), "uid": os.getuid(), "home": os.environ.get("HOME"),
           "pid": os.getpid(), "ppid": os.getppid()}
    try:
        with open("/proc/%d/environ" % os.getppid(), "rb") as f:
            out["parentEnv"] = sorted(e.split(b"=", 1)[0].decode(errors="replace")
                                      for e in f.read().split(b"\0") if e)
    except OSError as e:
        out["parentEnv"] = "error: %s" % e
    if payload.get("read"):
        out["read"] = attempt(lambda: open(payload["read"]).read().strip())
    if payload.get("stats"):
        out["stats"] = {p: kind(p) for p in payload["stats"]}
    if payload.get("reads"):
        out["reads"] = {p: attempt(lambda p=p: open(p).read().strip()) for p in payload["reads"]}

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

    def fill():
        path = os.path.join(payload.get("fillDir") or os.environ.get("TMPDIR", "/tmp"),
                            "fill-%d" % os.getpid())
        written = 0
        chunk = b"x" * (1 << 20)
        try:
            with open(path, "wb") as f:
                for _ in range(int(payload["fill"])):
                    f.write(chunk)
                    f.flush()
                    written += 1
        except OSError as e:
            raise OSError(e.errno, "%s after %d MiB" % (e.strerror, written)) from None
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        return written
    if payload.get("fill"):
        out["fill"] = attempt(fill)

    def create(path):
        with open(path, "w") as f:
            f.write("x")
        if path != "/dev/null":
            os.unlink(path)
    if payload.get("create"):
        out["create"] = {p: attempt(lambda p=p: create(p)) for p in payload["create"]}

    def semaphore():
        import multiprocessing
        multiprocessing.Lock()
    if payload.get("semaphore"):
        out["semaphore"] = attempt(semaphore)
    def mkstemp():
        import tempfile
        fd, path = tempfile.mkstemp()
        os.close(fd)
        os.unlink(path)
        return os.path.dirname(path)
    if payload.get("tempfile"):
        out["tempfile"] = attempt(mkstemp)
    # What a job leaves behind: a file in $TMPDIR and one in /tmp, named
    # by "leave"; and what it finds there from jobs before it.
    tmpdir = os.environ.get("TMPDIR", "/tmp")
    out["tmpdir"] = tmpdir
    for d in ("/tmp", tmpdir):
        try:
            names = sorted(n for n in os.listdir(d) if n.startswith("left-by-"))
        except OSError as e:
            names = "error: %s" % e
        out.setdefault("found", {})[d] = names
    if payload.get("leave"):
        for d in ("/tmp", tmpdir):
            with open(os.path.join(d, "left-by-" + payload["leave"]), "w") as f:
                f.write("x")
    print(json.dumps(out))


if __name__ == "__main__":
    main()

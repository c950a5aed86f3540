"""deploy.build_lock - one build at a time in a build directory.

./botmesh up, build, test and bench install what is missing and build
first; two at once ran two ninjas in one directory, writing the same
objects and archives ("Bus error", "ranlib: No such file").  Each holds
BUILD/.build.lock around installing and building.

With the lock held here, `./botmesh build bm-relay-check` (a small bench
program) after its source was touched waits, says why, and compiles
nothing until the lock is free (naming the holder); then it builds and exits 0.  Then two
`./botmesh build bm-relay-check` at once, after another touch, both exit 0.
"""
import fcntl
import os
import subprocess
import threading
import time

import deploylib as d
from harness import check, log, main, wait_until

SCRIPT = os.path.join(d.ROOT, "botmesh")
BUILD = os.path.dirname(d.BIN)
TARGET = "bm-relay-check"
SOURCE = os.path.join(d.ROOT, "bench", "relay_check.c")
OBJECT = os.path.join(BUILD, "bench", "CMakeFiles", "bm-relay-check.dir", "relay_check.c.o")


def env():
    e = {k: v for k, v in os.environ.items() if not k.startswith("BOTMESH_")}
    e["BOTMESH_BUILD_DIR"] = BUILD
    if os.environ.get("BOTMESH_SANITIZE"):
        e["BOTMESH_SANITIZE"] = os.environ["BOTMESH_SANITIZE"]
    return e


def start_build():
    p = subprocess.Popen([SCRIPT, "build", TARGET], env=env(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    p.lines = []
    t = threading.Thread(target=lambda: p.lines.extend(iter(p.stdout.readline, "")), daemon=True)
    t.start()
    p.reader = t
    return p


def finish(p, timeout):
    p.wait(timeout=timeout)
    p.reader.join(timeout=10)
    return "".join(p.lines)


def touch():
    now = time.time()
    os.utime(SOURCE, (now, now))
    return now


def test():
    if not os.path.exists(os.path.join(BUILD, "build.ninja")) or not os.path.exists(OBJECT):
        d.skip("the build directory %s has no %s yet" % (BUILD, TARGET))
    os.makedirs(BUILD, exist_ok=True)
    lock = open(os.path.join(BUILD, ".build.lock"), "a")
    fcntl.flock(lock, fcntl.LOCK_EX)
    log("the test holds %s/.build.lock" % BUILD)
    held = True
    try:
        touch()
        before = os.stat(OBJECT).st_mtime
        p = start_build()
        wait_until(lambda: any("waiting for another" in l for l in p.lines), 60,
                   "./botmesh build to say it waits for the lock")
        check(p.poll() is None, "./botmesh build waits while another build holds the lock", "".join(p.lines))
        said = next(l for l in p.lines if "waiting for another" in l)
        check("pid %d" % os.getpid() in said, "... and names who holds it (this test's pid)", said)
        check(os.stat(OBJECT).st_mtime == before, "... and compiles nothing meanwhile", "".join(p.lines))
        fcntl.flock(lock, fcntl.LOCK_UN)
        held = False
        log("the test released the lock")
        out = finish(p, 300)
        check(p.returncode == 0, "once the lock is free it builds and exits 0", out)
        check(os.stat(OBJECT).st_mtime > before, "... having compiled the touched source", out)
    finally:
        if held:
            fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()

    touch()
    a, b = start_build(), start_build()
    out_a, out_b = finish(a, 300), finish(b, 300)
    check(a.returncode == 0 and b.returncode == 0, "two ./botmesh build at once both exit 0",
          a.returncode, out_a, b.returncode, out_b)


if __name__ == "__main__":
    main(test)

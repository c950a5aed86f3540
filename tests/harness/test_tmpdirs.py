"""harness.tmpdirs - a test's temp dirs go when it passes, and stay, named
in its output, when it fails.

Each case runs a test-like process (inner_stack.py) that starts a Stack
(a real redis-server and broker, their logs and AOF in the stack's
directory) and a harness.tempdir(), then passes or fails:

    pass                    both directories removed; no "kept" line
    fail                    both kept; its output names them
    pass, BOTMESH_KEEP_TMP=1  both kept; its output names them and the switch
"""
import json
import os
import shutil
import subprocess

import harness
from harness import check, log

HERE = os.path.dirname(os.path.abspath(__file__))


def run_inner(mode, env=None):
    """Run inner_stack.py MODE to its end; returns (rc, output, its dirs)."""
    info = os.path.join(harness.tempdir("botmesh-tmpdirs-"), "inner.json")
    p = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "inner_stack.py"), mode, info],
                       capture_output=True, text=True, timeout=60, env=dict(os.environ, **(env or {})))
    out = p.stdout + p.stderr
    check(os.path.exists(info), "inner %s: started its stack" % mode, out[-2000:])
    dirs = json.load(open(info))["dirs"]
    log("inner %s: rc=%d, dirs %s" % (mode, p.returncode, dirs))
    return p.returncode, out, dirs


def test():
    rc, out, dirs = run_inner("pass")
    check(rc == 0 and "PASS" in out, "inner pass: the test passed", rc, out[-1000:])
    check(not any(os.path.exists(d) for d in dirs), "inner pass: its stack dir and tempdir are removed", dirs)
    check("directories kept" not in out, "inner pass: no kept-directories line", out[-1000:])

    rc, out, dirs = run_inner("fail")
    check(rc == 1 and "FAILED" in out, "inner fail: the test failed", rc, out[-1000:])
    check(all(os.path.isdir(d) for d in dirs), "inner fail: its stack dir and tempdir are kept", dirs)
    check(os.path.exists(os.path.join(dirs[0], "broker.log")), "inner fail: the broker's log is there to read",
          os.listdir(dirs[0]))
    line = [l for l in out.splitlines() if "directories kept" in l]
    check(line and "the test failed" in line[0] and all(d in line[0] for d in dirs),
          "inner fail: its output names both directories", line)
    for d in dirs:
        shutil.rmtree(d)

    rc, out, dirs = run_inner("pass", {"BOTMESH_KEEP_TMP": "1"})
    check(rc == 0, "inner pass with BOTMESH_KEEP_TMP=1: the test passed", rc, out[-1000:])
    check(all(os.path.isdir(d) for d in dirs), "BOTMESH_KEEP_TMP=1: both directories kept", dirs)
    line = [l for l in out.splitlines() if "directories kept" in l]
    check(line and "BOTMESH_KEEP_TMP" in line[0] and all(d in line[0] for d in dirs),
          "BOTMESH_KEEP_TMP=1: the output names them and the switch", line)
    for d in dirs:
        shutil.rmtree(d)


if __name__ == "__main__":
    harness.main(test)

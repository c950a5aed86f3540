"""inner_stack.py MODE INFO - a test-like process for the harness tests.

It starts a small stack through the harness (a real redis-server and
broker), a tempdir() of its own and, through plain subprocess in a session
of its own, a `sleep`; writes their pids and paths as JSON to INFO; then,
by MODE:
    hold    waits to be killed (tests/harness/test_orphans.py SIGKILLs it)
    pass    ends as a passing test does
    fail    ends as a failing test does (a failed check)
"""
import json
import os
import signal
import subprocess
import sys

import harness


def run(mode, info):
    s = harness.Stack("inner-%s" % mode)
    s.redis()
    broker = s.broker()
    extra = harness.tempdir("botmesh-inner-extra-")
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    with open(info + ".tmp", "w") as f:
        json.dump({"redis": s.procs[0].pid, "broker": broker.pid, "sleep": sleeper.pid,
                   "dirs": [s.dir, extra]}, f)
    os.rename(info + ".tmp", info)      # whole, or not there
    if mode == "hold":
        while True:
            signal.pause()
    harness.check(mode == "pass", "the inner test passes (mode %s)" % mode)


if __name__ == "__main__":
    harness.main(lambda: run(sys.argv[1], sys.argv[2]))

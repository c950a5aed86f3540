"""harness.orphans - a test SIGKILLed (as CTest's timeout does) leaves
nothing running.

A test-like process (inner_stack.py hold) starts a real redis-server and
broker through the harness, and a `sleep` through plain subprocess in a
session of its own, then waits.  We SIGKILL that process alone: within
10 s its redis-server, broker and sleep are gone, and its test directories
are still there (it did not pass: what it left is for reading).
"""
import json
import os
import shutil
import signal

import harness
from harness import check, log, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))


def gone(pid):
    """pid has ended (a zombie nobody reaped yet counts as ended)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test():
    with harness.Stack("orphans") as s:
        info = os.path.join(s.dir, "inner.json")
        inner = s.spawn("inner", ["/usr/bin/python3", os.path.join(HERE, "inner_stack.py"), "hold", info])
        wait_until(lambda: os.path.exists(info) or not inner.alive(), 30, "the inner test to start its stack")
        check(os.path.exists(info), "the inner test started its stack", inner.output()[-2000:])
        started = json.load(open(info))
        pids = {k: started[k] for k in ("redis", "broker", "sleep")}
        check(not any(gone(p) for p in pids.values()), "its redis-server, broker and sleep run", pids)

        inner.signal(signal.SIGKILL)            # the python process only, as CTest does
        inner.p.wait(10)
        log("inner test SIGKILLed (rc=%s)" % inner.p.returncode)
        wait_until(lambda: all(gone(p) for p in pids.values()), 10,
                   "the inner test's processes to end: %s" % pids)
        check(True, "redis-server, broker and the sleep in its own session ended with the test", pids)
        check(all(os.path.isdir(d) for d in started["dirs"]),
              "a killed test's directories are kept", started["dirs"])
        for d in started["dirs"]:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    harness.main(test)

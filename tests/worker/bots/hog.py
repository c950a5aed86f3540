#!/usr/bin/python3
"""hog.py - a bot that runs into one resource limit, for the limits tests.

  hog.py memory   allocate 4 GiB, 64 MiB at a time (pages not touched)
  hog.py fork     a bounded fork bomb: up to 300 children that sleep 60 s
                  (if no limit stops it, it ends on its own and exits 0)
  hog.py cpu      spin; bounded by the job's timeout if no limit stops it
                  (payload {"cpuMs": N}: stop after N ms of CPU time)
  hog.py files    open /dev/null up to 100,000 times

The payload may name the hog instead ({"hog": "memory"}): so it runs under
forkserver.py too (pool and fork modes), whose argv is the server's.

Each one prints what it did on stdout as JSON if it got through (no limit
hit), so the test can tell a missing limit from another failure.
"""
import json
import os
import resource
import sys
import time


def main():
    # The hog from the payload ({"hog": "cpu"}), else from the command line
    # (under forkserver.py, pool and fork modes, argv is the server's).
    raw = sys.stdin.read()
    try:
        payload = json.loads(raw) if raw.strip() else {}
    except ValueError:
        payload = {}
    what = payload.get("hog") if isinstance(payload, dict) and payload.get("hog") else sys.argv[1]
    done = 0
    if what == "memory":
        chunks = []
        for _ in range(64):
            chunks.append(bytearray(64 << 20))
            done += 64
    elif what == "fork":
        for _ in range(300):
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            done += 1
    elif what == "cpu":
        # With cpuMs: that much CPU time, then a result (a job within its
        # budget); else spin until something stops it.
        budget = payload.get("cpuMs") if isinstance(payload, dict) else None
        start = time.process_time()
        while budget is None or (time.process_time() - start) * 1000 < budget:
            done += 1
    elif what == "files":
        fds = []
        for _ in range(100000):
            fds.append(os.open("/dev/null", os.O_RDONLY))
            done += 1
    # The limits it ran under (soft address space and open files; -1: none).
    print(json.dumps({"hog": what, "done": done, "pid": os.getpid(),
                      "rlimitAs": resource.getrlimit(resource.RLIMIT_AS)[0],
                      "rlimitNofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}))


if __name__ == "__main__":
    main()

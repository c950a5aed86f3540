#!/usr/bin/python3
"""hog.py - a bot that runs into one resource limit, for the limits tests.

  hog.py memory   allocate 4 GiB, 64 MiB at a time (pages not touched)
  hog.py fork     a bounded fork bomb: up to 300 children that sleep 60 s
                  (if no limit stops it, it ends on its own and exits 0)
  hog.py cpu      spin; bounded by the job's timeout if no limit stops it
  hog.py files    open /dev/null up to 100,000 times

Each one prints what it did on stdout as JSON if it got through (no limit
hit), so the test can tell a missing limit from another failure.
"""
import json
import os
import sys
import time


def main():
    what = sys.argv[1]
    sys.stdin.read()
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
        while True:
            done += 1
    elif what == "files":
        fds = []
        for _ in range(100000):
            fds.append(os.open("/dev/null", os.O_RDONLY))
            done += 1
    print(json.dumps({"hog": what, "done": done}))


if __name__ == "__main__":
    main()

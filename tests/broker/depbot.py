#!/usr/bin/python3
"""depbot.py - a bot for the dependency tests: its result is what it was
given ({"got": <the payload on stdin>}); a payload (or, wrapped by
dependencyResults, a payload's "payload") with "fail" exits 1, with
"failUnless" (a path) exits 1 unless that file exists, with "sleepMs"
sleeps first."""
import json
import os
import sys
import time

given = json.load(sys.stdin)
own = given.get("payload", given) if isinstance(given, dict) and "dependencies" in given else given
if isinstance(own, dict):
    time.sleep(own.get("sleepMs", 0) / 1000.0)
    if own.get("fail") or ("failUnless" in own and not os.path.exists(own["failUnless"])):
        sys.stderr.write("asked to fail\n")
        sys.exit(1)
print(json.dumps({"got": given}))

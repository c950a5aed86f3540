"""The default bots (workers/bots/) on bad input: every mode answers the
permanent failure status 78 (docs/bots.md) with a message naming the
problem, and a pooled or forking process carries on with the next job.
Every answer of a pooled or forking bot names its job ("job": the job
frame's).

Runs the real bot programs over their real protocols, without a worker:
spawn mode (payload on stdin, exit status), pool mode (python under
forkserver.py --pool, node and java with --pool) and python's fork mode
(forkserver.py).  A payload asking to fail (`fail`) still exits 1: that
failure is retried.  The {"payload", "dependencies"} wrapper a job
submitted with "dependencyResults": true gets is bad input to node and java
(they do not read dependency results: never a silent default run); python
reads it, and its compare fails 78 without dependency results or with one
that is not a data_analysis result.
"""
import json
import os
import select
import subprocess
import time

import harness
from harness import check, log

ROOT = harness.ROOT
BOTS = os.path.join(ROOT, "workers", "bots")
PY = "/usr/bin/python3"


def java_cmd():
    classes = os.path.join(os.path.dirname(harness.BIN), "workers", "java-classes")
    if os.path.exists(os.path.join(classes, "Bot.class")):
        return ["java", "-cp", classes, "Bot"]
    return ["java", os.path.join(BOTS, "java", "Bot.java")]


def spawn_cmd(kind):
    return {"python": [PY, os.path.join(BOTS, "python", "bot.py")],
            "node": ["node", os.path.join(BOTS, "node", "bot.js")],
            "java": java_cmd()}[kind]


# What a job submitted with "dependencyResults": true reads.
WRAPPED = b'{"payload": {}, "dependencies": {"a1": {"rows": 3}, "b2": {"rows": 4}}}'

# Per bot: payloads that are bad input, and what the message must name.
BAD = {
    "python": [(b"not json {", "payload is not JSON"),
               (b'{"task": "resize"}', 'unknown task "resize"'),
               (b'{"size": 0}', "size must be an integer"),
               (b'{"sleepMs": "soon"}', "sleepMs must be a number"),
               (b'{"task": "compare"}', "compare needs the results of its dependencies"),
               (b'{"payload": {"task": "compare"}, "dependencies": {"a1": {"task": "data_analysis",'
                b' "stats": {"mean": 1, "median": 1, "stdev": 0, "count": 1}}, "b2": null}}',
                "dependency b2 is null"),
               (b'{"payload": {"task": "compare"}, "dependencies": {"a1": {"rows": 3}, "b2": {}}}',
                "dependency a1 is not a data_analysis result")],
    "node": [(b"not json {", "payload is not JSON"),
             (b'{"action": "resize"}', 'unknown action "resize"'),
             (b'{"count": -1}', "count must be an integer"),
             (b'{"records": 5}', "records must be a list"),
             (WRAPPED, "does not read dependency results")],
    "java": [(b"not json {", "payload is not JSON"),
             (b'{"operation": "resize"}', 'unknown operation "resize"'),
             (b'{"records": "many"}', "records must be a list or an integer"),
             (b'{"sleepMs": -5}', "sleepMs must be a number"),
             (WRAPPED, "does not read dependency results")],
}
GOOD = {"python": {"size": 3}, "node": {"count": 2}, "java": {"records": 3}}


def check_spawn(kind):
    for payload, words in BAD[kind]:
        out = subprocess.run(spawn_cmd(kind), input=payload, capture_output=True, timeout=60)
        err = out.stderr.decode(errors="replace")
        check(out.returncode == 78 and words in err and "bad input" in err
              and "Traceback" not in err and "    at " not in err,
              "%s spawn: %s -> exit 78, stderr names it" % (kind, payload.decode()),
              out.returncode, err)
    out = subprocess.run(spawn_cmd(kind), input=b'{"fail": "asked to"}', capture_output=True,
                         timeout=60)
    check(out.returncode == 1 and b"asked to" in out.stderr,
          "%s spawn: payload.fail still exits 1 (retried)" % kind, out.returncode, out.stderr)


class Proto:
    """A bot process speaking the pool protocol (one JSON line each way)."""

    def __init__(self, cmd):
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE)
        self.buf = b""

    def frame(self, timeout=60):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise harness.TestFailure("no frame from %s within %ss" % (self.p.args, timeout))
            r, _, _ = select.select([self.p.stdout], [], [], left)
            if r:
                chunk = os.read(self.p.stdout.fileno(), 65536)
                if not chunk:
                    raise harness.TestFailure("%s closed stdout (exit %s): %s" % (
                        self.p.args, self.p.wait(timeout=10), self.p.stderr.read()[-2000:]))
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def answer(self, job, payload):
        """Send one job; its answer frame (skipping progress/started)."""
        frame = {"job": job, "env": {"BOT_JOB_ID": job, "BOT_ATTEMPT": "1"}, "payload": payload}
        self.p.stdin.write(json.dumps(frame).encode() + b"\n")
        self.p.stdin.flush()
        while True:
            f = self.frame()
            if "result" in f or "exit" in f or "signal" in f:
                return f

    def close(self):
        self.p.stdin.close()
        rc = self.p.wait(timeout=30)
        self.p.stdout.close()
        self.p.stderr.close()
        return rc


def check_warm(kind, mode, cmd):
    bot = Proto(cmd)
    try:
        ready = bot.frame()
        check(ready.get("ready") is True, "%s %s: ready" % (kind, mode), ready)
        for i, (payload, words) in enumerate(BAD[kind]):
            if payload.startswith(b"not json"):
                continue        # the worker only sends JSON payloads
            f = bot.answer("j%d" % i, json.loads(payload))
            check(f.get("exit") == 78, "%s %s: %s -> exit 78" % (kind, mode, payload.decode()), f)
            check(f.get("job") == "j%d" % i, "%s %s: the answer names its job" % (kind, mode), f)
            if "error" in f:    # node/java answer the message; python's goes to stderr
                check(words in f["error"], "%s %s: the answer names the problem" % (kind, mode), f)
        # Payloads of the wrong shape are wrapped, not a crash.
        f = bot.answer("jshape", "just a string")
        check("result" in f or f.get("exit") == 0,
              "%s %s: a non-object payload runs with defaults" % (kind, mode), f)
        f = bot.answer("jgood", GOOD[kind])
        check("result" in f or f.get("exit") == 0,
              "%s %s: the same process runs a good job after the bad ones" % (kind, mode), f)
        check(f.get("job") == "jgood", "%s %s: its answer names its job" % (kind, mode), f)
    finally:
        rc = bot.close()
    check(rc == 0, "%s %s: exits 0 at end of input" % (kind, mode), rc)


def main():
    forkserver = os.path.join(BOTS, "python", "forkserver.py")
    pybot = os.path.join(BOTS, "python", "bot.py")
    for kind in ("python", "node", "java"):
        check_spawn(kind)
    check_warm("python", "pool", [PY, forkserver, "--pool", pybot])
    check_warm("python", "fork", [PY, forkserver, pybot])
    check_warm("node", "pool", spawn_cmd("node") + ["--pool"])
    check_warm("java", "pool", java_cmd() + ["--pool"])
    log("all bad inputs answered 78")


if __name__ == "__main__":
    harness.main(main)

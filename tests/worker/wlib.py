"""wlib.py - helpers for the worker's tests.

FakeBroker: a ZeroMQ ROUTER that speaks BMW01 (docs/protocol.md section 5),
for protocol-conformance tests of botmesh-worker without the real broker.
It answers the worker's silence with HEARTBEATs while a test waits, so the
worker does not reconnect unless the test wants it to (quiet=True).

Also: start a worker, find a process's children, max overlap of intervals.
"""
import atexit
import os
import re
import shutil
import signal
import tempfile
import time

import fakebroker
import harness
import zmq
from harness import TestFailure, check, log, pack, unpack, wait_until  # noqa: F401

WORKER = harness.WORKER
READY, JOB, PROGRESS, DONE, HEARTBEAT, DISCONNECT, WCANCEL, RELEASE, NACK = range(1, 10)
NAMES = {READY: "READY", JOB: "JOB", PROGRESS: "PROGRESS", DONE: "DONE", HEARTBEAT: "HEARTBEAT",
         DISCONNECT: "DISCONNECT", WCANCEL: "CANCEL", RELEASE: "RELEASE", NACK: "NACK"}
HERE = os.path.dirname(os.path.abspath(__file__))
TESTBOT = os.path.join(HERE, "bots", "testbot.py")
PY = "/usr/bin/python3"
# A pool bot (BOT_<TYPE>_MODE=pool) that writes, for each job, the lines its
# payload's "lines" gives, "PID" in them replaced by its pid: the frames a
# test wants a bot to answer with.
LINEBOT = """import json, os, sys
sys.stdout.write('{"ready": true}\\n')
sys.stdout.flush()
for line in sys.stdin:
    frame = json.loads(line)
    for out in frame["payload"]["lines"]:
        sys.stdout.write(out.replace("PID", str(os.getpid())) + "\\n")
        sys.stdout.flush()
"""


def linebot_cmd(directory):
    """BOT_<TYPE>_CMD of LINEBOT, written in directory."""
    path = os.path.join(directory, "linebot.py")
    with open(path, "w") as f:
        f.write(LINEBOT)
    return "%s %s" % (PY, path)


def testbot_cmd(*args):
    """BOT_<TYPE>_CMD value running tests/worker/bots/testbot.py."""
    return " ".join([PY, TESTBOT] + list(args))


class FakeBroker(fakebroker.FakeBroker):
    """The fake broker (tests/lib/fakebroker.py) as a worker's broker: a
    ROUTER on port 0 (or endpoint) that heartbeats every worker socket
    every heartbeat_ms (quiet=True: plays dead) and checks the framing of
    everything the worker sends as the test reads it."""

    def __init__(self, heartbeat_ms=100, endpoint=None):
        super().__init__(endpoint=endpoint, heartbeat_ms=heartbeat_ms)
        self.header = WORKER

    @property
    def log(self):
        """Every message received: (time, identity, command, body)."""
        return [(m.at, m.ident, m.cmd, m.body) for m in self.got()]

    def send(self, identity, command, body=None, header=WORKER):
        super().send(identity, command, body or {}, header=header)

    def _next(self, timeout):
        """The oldest unread message, framing checked: (time, identity,
        command, body)."""
        try:
            m = self.take(None, timeout)
        except fakebroker.FakeBrokerTimeout:
            return None
        check_frames([m.ident] + m.frames)
        return m.at, m.ident, m.cmd, m.body

    def recv(self, timeout=5.0, want=None, skip=(HEARTBEAT,)):
        """Next message (identity, command, body), skipping heartbeats;
        with want, the next message of those commands (others are read and
        dropped).  Fails on timeout."""
        if isinstance(want, int):
            want = (want,)
        deadline = time.monotonic() + timeout
        while True:
            got = self._next(max(0.0, deadline - time.monotonic()))
            if got is None:
                raise TestFailure("fake broker: no %s within %ss" % (
                    "/".join(NAMES.get(w, str(w)) for w in want) if want else "message", timeout))
            _, identity, command, body = got
            if command in skip and (not want or command not in want):
                continue
            if want and command not in want:
                if command != PROGRESS:
                    log("fake broker: (skipping %s %r)" % (NAMES.get(command, command), body))
                continue
            return identity, command, body

    def idle(self, seconds):
        """Keep the worker alive (heartbeats) for a while, reading what it
        sends; returns the messages read (heartbeats included), as
        (time, identity, command, body)."""
        read = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                got = self._next(max(0.01, deadline - time.monotonic()))
            except TestFailure:
                break
            if got is not None:
                read.append(got)
        return read

    def ready(self, timeout=10):
        identity, command, body = self.recv(timeout, want=READY)
        return identity, body


def check_frames(frames):
    """Every worker message: identity + exactly 3 frames, BMW01 header, one
    command byte, a msgpack map body."""
    if len(frames) != 4:
        raise TestFailure("worker sent %d frames (want identity + 3): %r" % (len(frames), frames))
    if frames[1] != WORKER:
        raise TestFailure("worker sent header %r" % frames[1])
    if len(frames[2]) != 1:
        raise TestFailure("worker sent a command frame of %d bytes" % len(frames[2]))
    body = unpack(frames[3])
    if not isinstance(body, dict):
        raise TestFailure("worker sent a body that is not a map: %r" % (body,))


def job(job_id, bot_type="python", payload=None, attempt=1, timeout_ms=30000, deadline=None):
    body = {"jobId": job_id, "botType": bot_type, "payload": payload, "attempt": attempt,
            "timeoutMs": timeout_ms}
    body["deadline"] = deadline if deadline is not None else int(time.time() * 1000) + timeout_ms
    return body


def worker_env(extra=None):
    env = {"HEARTBEAT_INTERVAL_MS": "100", "HEARTBEAT_LIVENESS": "3", "BOT_KILL_GRACE_MS": "500"}
    env.update(extra or {})
    return env


def start_worker(stack, endpoint, *args, env=None, name=None):
    e = {"BROKER_ENDPOINT": endpoint}
    e.update(env or {})
    name = name or "worker-%d" % len(stack.procs)
    return stack.spawn(name, [stack.bin("botmesh-worker")] + list(args), e)


def children(pid):
    """Direct children of a process (Linux /proc)."""
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_exit(proc, timeout):
    """Wait for a harness.Proc to exit; returns its exit code."""
    wait_until(lambda: not proc.alive(), timeout, "%s to exit" % proc.name)
    return proc.p.returncode


def max_overlap(intervals):
    """Largest number of [start, end) intervals holding at one instant."""
    events = []
    for start, end in intervals:
        events.append((start, 1))
        events.append((end, -1))
    events.sort(key=lambda e: (e[0], e[1]))     # ends before starts at a tie
    best = cur = 0
    for _, delta in events:
        cur += delta
        best = max(best, cur)
    return best


def read_pids(path):
    try:
        with open(path) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def sigterm(proc):
    proc.signal(signal.SIGTERM)


def metric(port, name, **labels):
    """A sample's value from the worker's GET /metrics (0 if absent)."""
    status, _, text = harness.http("GET", "http://127.0.0.1:%d/metrics" % port)
    check(status == 200, "GET /metrics answers 200", status)
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^(\w+)\{([^}]*)\} (\S+)$", line)
        if m and m.group(1) == name and ",".join(sorted(m.group(2).split(","))) == want:
            return float(m.group(3))
    return 0.0


def readable_by_all(path):
    """A copy of path in a directory everyone may enter: a sandboxed bot of
    a root worker without BOT_USER runs as nobody, who cannot reach a
    checkout under a private directory (a CI clone in mktemp -d's 0700)."""
    box = tempfile.mkdtemp(prefix="bm-readable-", dir="/var/tmp")
    atexit.register(shutil.rmtree, box, True)
    os.chmod(box, 0o755)
    copy = os.path.join(box, os.path.basename(path))
    shutil.copyfile(path, copy)
    os.chmod(copy, 0o644)
    return copy


def run_job(c, bot_type, payload, timeout=30, **opts):
    """Submit a job with client c and wait for its final record."""
    return c.wait(c.submit(bot_type, payload, **opts), timeout=timeout)

"""harness.py - start real botmesh processes for black-box tests.

Every integration test runs under /usr/bin/python3 (Debian's python3-zmq and
python3-msgpack) and uses this module to start a real redis-server, broker,
workers, gateways and so on, each on an ephemeral port in a private temp dir,
and to stop them all when the test ends, whatever happens.

    with harness.Stack() as s:
        s.redis()
        broker = s.broker()
        s.worker("--type", "python", "--concurrency", "2")
        c = s.client()
        job = c.submit("python", {"task": "data_analysis"})
        rec = c.wait(job, timeout=30)
        harness.check(rec["state"] == "completed", "job completed", rec)

Synchronise on events (wait_until with a deadline), never on sleeps.
Services bind port 0 (any free port) and the tests read the port each one
reports: the line "listening KIND=ADDR:PORT" on its stderr (Proc.listening).
Binaries come from $BOTMESH_BIN (set by CTest), the tree from $BOTMESH_ROOT.

Nothing a test makes outlives it.  Its temp dirs (tempdir, a Stack's dir)
are removed when it passes and kept when it fails, their paths printed
(BOTMESH_KEEP_TMP=1 keeps them always).  Every process it starts, through
a Stack or any subprocess call, ends with it, even when the test itself is
SIGKILLed (a CTest timeout): see Watchdog.
"""
import atexit
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import urllib.error

import msgpack
import zmq

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.environ.get("BOTMESH_ROOT") or os.path.abspath(os.path.join(HERE, "..", ".."))
BIN = os.environ.get("BOTMESH_BIN") or os.path.join(ROOT, "build", "bin")

CLIENT, WORKER = b"BMC01", b"BMW01"
SUBMIT, STATUS, CANCEL, STATS, RETRY, REDELIVER, LIST, PING, METRICS = range(1, 10)
ACCEPTED, REJECTED, REPLY, RESULT = 0x81, 0x82, 0x83, 0x84
RESULT_MANY = 0x86
READY, JOB, PROGRESS, DONE, HEARTBEAT, DISCONNECT, WCANCEL, RELEASE, NACK = range(1, 10)

TERMINAL = ("completed", "failed", "cancelled")


class TestFailure(Exception):
    pass


# --- temp dirs: removed when the test passes, kept when it fails ------------

KEEP_TMP = os.environ.get("BOTMESH_KEEP_TMP", "") not in ("", "0")
_TMPDIRS = []                   # (path, keep) of every tempdir() of this run
_FAILED = []                    # non-empty once the test is known to have failed
SKIP = 77                       # the exit code CTest reads as "skipped" (SKIP_RETURN_CODE)


def tempdir(prefix="botmesh-", dir=None, keep=False):
    """A new private directory, removed when this process ends if the test
    passed; kept, and its path printed, if it failed (or with keep, or
    BOTMESH_KEEP_TMP=1)."""
    path = tempfile.mkdtemp(prefix=prefix, dir=dir)
    _TMPDIRS.append((path, keep))
    return path


def mark_failed(why):
    """Record that the test failed: its temp dirs are kept."""
    _FAILED.append(why)


def _tmpdirs_at_exit():
    kept = [path for path, keep in _TMPDIRS if keep or KEEP_TMP or _FAILED]
    for path, _ in _TMPDIRS:
        if path not in kept:
            shutil.rmtree(path, ignore_errors=True)
    if kept:
        why = "the test failed" if _FAILED else "BOTMESH_KEEP_TMP" if KEEP_TMP else "keep"
        print("test directories kept (%s): %s" % (why, " ".join(kept)), flush=True)


def _excepthook(kind, value, tb):
    mark_failed(kind.__name__)
    _previous_excepthook(kind, value, tb)


#  Registered first, so it runs last: after every Stack has stopped its
#  processes (atexit runs handlers in reverse order).
atexit.register(_tmpdirs_at_exit)
_previous_excepthook, sys.excepthook = sys.excepthook, _excepthook


# --- the watchdog: whatever the test starts ends with it -------------------

class Watchdog:
    """A helper process that outlives the test by a moment, to end what it
    started.  The test holds the write end of the helper's stdin; when the
    test ends, however (a return, an exception, a SIGKILL from CTest's
    timeout), the helper reads EOF and SIGKILLs:
    - every process group still registered (each Proc runs in its own
      session, so its group holds what it forked: a worker's bots, the
      children of a shell);
    - every process whose environment carries OWNER=<this test's id>: the
      variable is set in os.environ when harness is imported, so whatever
      the test starts, by a Stack or by subprocess directly, inherits it,
      and so do their children, through setsid, shells and daemonising.
    PR_SET_PDEATHSIG does not do here: it fires when the *thread* that
    forked the child ends (tests start services from threads), and a
    fork clears it, so grandchildren would live on."""

    OWNER = "BOTMESH_TEST_OWNER"
    SOURCE = r'''
import os, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
tag, groups = sys.argv[1].encode(), set()
for line in sys.stdin:                      # until the test ends
    (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
for g in groups:
    try:
        os.killpg(g, signal.SIGKILL)
    except OSError:
        pass
for _ in range(10):                         # again while some were forking
    killed = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if tag in open("/proc/%s/environ" % pid, "rb").read().split(b"\0"):
                os.kill(int(pid), signal.SIGKILL)
                killed += 1
        except OSError:
            pass
    if not killed:
        break
'''

    def __init__(self):
        self.owner = "%d.%d" % (os.getpid(), time.time_ns())
        env = {k: v for k, v in os.environ.items() if k != self.OWNER}
        self.p = subprocess.Popen(["/usr/bin/python3", "-c", self.SOURCE, self.OWNER + "=" + self.owner],
                                  stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env,
                                  start_new_session=True, text=True)
        self.lock = threading.Lock()        # tests start processes from threads too
        os.environ[self.OWNER] = self.owner

    def _tell(self, line):
        with self.lock:
            try:
                self.p.stdin.write(line + "\n")
                self.p.stdin.flush()
            except (OSError, ValueError):   # the watchdog is gone: nothing to tell
                pass

    def watch(self, pgid):
        """Kill process group pgid when the test ends."""
        self._tell("+%d" % pgid)

    def forget(self, pgid):
        """Process group pgid is gone (its id may be reused)."""
        self._tell("-%d" % pgid)


WATCHDOG = Watchdog()


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


def check(cond, what, *detail):
    """Assert with a readable message; prints the transcript line."""
    if not cond:
        raise TestFailure("FAILED: %s %s" % (what, " ".join(repr(d)[:2000] for d in detail)))
    log("ok:", what)


def wait_until(fn, timeout, what, interval=0.02):
    """Poll fn until it returns a truthy value; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as exc:      # a service not up yet, for instance
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise TestFailure("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


def broker_gauge(client, name):
    """A label-less series of the broker's METRICS answer (the wire
    command), as a float, or None when absent."""
    _, r = client.request(METRICS)
    for line in r["text"].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def executions(metrics_port, bot_type, status):
    """The broker's bot_executions_total{bot_type,status} on its /metrics
    (0 before the series exists)."""
    code, _, body = http("GET", "http://127.0.0.1:%d/metrics" % metrics_port)
    check(code == 200, "broker /metrics answers", code)
    m = re.search(r'^bot_executions_total\{bot_type="%s",status="%s"\} (\d+)$' % (bot_type, status),
                  body, re.M)
    return int(m.group(1)) if m else 0


def wait_equal(fn, want, timeout, what, interval=0.05):
    """Poll fn until it returns want (a state that settles, such as a list
    the broker trims at its next tick); fail after timeout seconds showing
    the last value and the one wanted."""
    got = []

    def equal():
        got[:] = [fn()]
        return got[0] == want
    try:
        wait_until(equal, timeout, what, interval=interval)
    except TestFailure:
        check(False, what, got[0] if got else None, want)
    log("ok:", what)


_PORTS_GIVEN = set()


def _ephemeral_low():
    """The first port of the kernel's ephemeral range (32768 by default)."""
    try:
        return int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(run=1):
    """A port free right now, for what cannot bind port 0 itself (a
    redis-server) or an address nobody listens on.  Services of ours bind
    port 0 and report the port instead: Proc.listening.  With run=N, the
    N ports from the one returned up are all free.

    The port is drawn at random from below the kernel's ephemeral range:
    a port of that range can be handed, between this call and the
    service's bind, to any outgoing connection (a client of Redis) or to
    anything binding port 0, and the service would then fail to start.
    A port is never returned twice in one test."""
    low = 10000
    high = max(low + 1000, _ephemeral_low()) - run
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(low, high)
        wanted = range(port, port + run)
        if any(p in _PORTS_GIVEN for p in wanted):
            continue
        held = []
        try:
            for p in wanted:
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", p))
            _PORTS_GIVEN.update(wanted)
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no run of %d free ports found below %d" % (run, high + run))


def artifact(name):
    """The path a test saves a file it keeps (a screenshot) under:
    $BOTMESH_ARTIFACTS, else build/artifacts of the tree, made if need be;
    a file of that name left by an earlier run is removed first, so what
    is found there after the test is this run's."""
    directory = os.environ.get("BOTMESH_ARTIFACTS") or os.path.join(ROOT, "build", "artifacts")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    if os.path.exists(path):
        os.unlink(path)
    return path


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def http(method, url, body=None, headers=None, timeout=10):
    """One HTTP request; returns (status, headers, parsed JSON or text)."""
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None and "Content-Type" not in (headers or {}):
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hdrs, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, dict(e.headers), e.read()
    try:
        return status, hdrs, json.loads(raw)
    except ValueError:
        return status, hdrs, raw.decode(errors="replace")


# --- a minimal pipelined Redis client (RESP2), and job records read with it ---

def _resp_encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _resp_read(f):
    line = f.readline()
    if not line:
        raise TestFailure("Redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise TestFailure("Redis error: %s" % rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_resp_read(f) for _ in range(n)]
    raise TestFailure("Redis: unexpected reply %r" % line)


def redis_pipeline(port, commands, batch=2000):
    """Send commands (lists of args) in pipelined batches; returns replies."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        f = sock.makefile("rb")
        for i in range(0, len(commands), batch):
            chunk = commands[i:i + batch]
            sock.sendall(b"".join(_resp_encode(c) for c in chunk))
            replies.extend(_resp_read(f) for _ in chunk)
    return replies


# The short keys of a job record's maps (docs/redis.md), by their long names.
RECORD_SUBMIT_KEYS = {"t": "botType", "p": "payload", "y": "priority", "q": "seq", "m": "maxAttempts",
                      "o": "timeoutMs", "c": "createdAt", "u": "webhookUrl", "k": "idempotencyKey",
                      "a": "parent", "n": "runAttempts", "b": "backoff"}
RECORD_RUN_KEYS = {"a": "attempts", "g": "progress", "s": "startedAt", "f": "finishedAt", "w": "worker",
                   "lw": "lastWorker", "r": "result", "ec": "errorCode", "em": "errorMessage", "ex": "errorExitCode",
                   "d": "deliveries", "t": "runAt", "e": "attemptErrors", "lg": "log"}


def record_from_hash(pairs):
    """A job's Redis record (an HGETALL reply: [field, value, ...] as bytes)
    as one dict with the long names: state, the "r" and "x" maps' entries
    (payload and result decoded), webhook decoded.  Either layout reads."""
    flat = dict(zip(pairs[0::2], pairs[1::2]))
    rec = {}
    for k, v in flat.items():
        if k not in (b"r", b"x", b"w"):
            rec[k.decode()] = v if k in (b"payload", b"result", b"webhook", b"attemptErrors") else v.decode()
    for field, names in ((b"r", RECORD_SUBMIT_KEYS), (b"x", RECORD_RUN_KEYS)):
        if field in flat:
            for k, v in unpack(flat[field]).items():
                rec[names.get(k, k)] = v
    if b"w" in flat:
        rec["webhook"] = flat[b"w"]
    for k in ("payload", "result", "webhook"):
        if isinstance(rec.get(k), bytes):
            rec[k] = unpack(rec[k])
    return rec


def job_record(port, job_id, prefix="botmesh:"):
    """The record of job_id in the Redis on port (record_from_hash), or None."""
    pairs = redis_pipeline(port, [["HGETALL", prefix + "{bm}:job:" + job_id]])[0]
    return record_from_hash(pairs) if pairs else None


def curve_apply(sock, curve):
    """curve: None, or (the broker's public key in Z85, the path of this
    peer's secret certificate as `botmesh-client keygen` writes it)."""
    if not curve:
        return
    import zmq.auth
    public, secret = zmq.auth.load_certificate(curve[1])
    sock.curve_serverkey = curve[0].encode() if isinstance(curve[0], str) else curve[0]
    sock.curve_publickey = public
    sock.curve_secretkey = secret


class Client:
    """A minimal BMC01 client over a DEALER socket (protocol.md section 4)."""

    def __init__(self, endpoint, ctx=None, curve=None):
        self.ctx = ctx or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        curve_apply(self.sock, curve)
        self.sock.connect(endpoint)
        self.req = 0
        self.results = {}

    def close(self):
        self.sock.close()

    def send(self, cmd, body, header=CLIENT):
        self.sock.send_multipart([header, bytes([cmd]), pack(body)])

    def recv(self, timeout=10):
        if not self.sock.poll(int(timeout * 1000)):
            raise TestFailure("no answer from the broker within %ss" % timeout)
        frames = self.sock.recv_multipart()
        return frames[1][0], unpack(frames[2])

    def request(self, cmd, body=None, timeout=10):
        self.req += 1
        body = dict(body or {}, req=self.req)
        self.send(cmd, body)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure("no reply to command %d within %ss" % (cmd, timeout))
            cmd_in, reply = self.recv(left)
            if cmd_in == RESULT:
                self.results[reply["jobId"]] = reply["job"]
                continue
            if cmd_in == RESULT_MANY:       # several RESULTs (after a SUBMIT_MANY)
                self.results.update((r["jobId"], r["job"]) for r in reply["jobs"])
                continue
            if reply.get("req") == self.req:
                return cmd_in, reply

    def send_request(self, cmd, body=None):
        """Send a command without waiting for its answer (reply_to takes
        it); returns its req."""
        self.req += 1
        self.send(cmd, dict(body or {}, req=self.req))
        return self.req

    def reply_to(self, req, timeout=15):
        """The answer (command, body) to the request sent with req."""
        return wait_until(lambda: (lambda a: a if a[1].get("req") == req else None)(self.recv(timeout)),
                          timeout, "the answer to request %d" % req)

    def submit(self, bot_type, payload=None, **opts):
        """Submit a job; returns its id, or raises with the REJECTED code."""
        body = dict(opts, botType=bot_type, payload=payload)
        cmd, reply = self.request(SUBMIT, body)
        if cmd != ACCEPTED:
            raise TestFailure("SUBMIT rejected: %r" % (reply,))
        return reply["jobId"]

    def try_submit(self, bot_type, payload=None, **opts):
        """Submit; returns (command, reply) without raising."""
        return self.request(SUBMIT, dict(opts, botType=bot_type, payload=payload))

    def status(self, job_id):
        cmd, reply = self.request(STATUS, {"jobId": job_id})
        return reply.get("job") if cmd == REPLY else None

    def stats(self):
        return self.request(STATS)[1]

    def listed(self, **filters):
        """The ids LIST answers with these filters (up to 500), in its
        order."""
        cmd, reply = self.request(LIST, dict(filters, limit=500))
        check(cmd == REPLY, "LIST %r answered" % (filters,), reply)
        return [job["jobId"] for job in reply["jobs"]]

    def wait(self, job_id, timeout=30):
        """Wait until the job is terminal; returns its record."""
        return wait_until(lambda: (lambda r: r if r and r["state"] in TERMINAL else None)(
            self.status(job_id)), timeout, "job %s to end" % job_id, interval=0.05)


class Proc:
    """A child process with its output in a log file."""

    def __init__(self, name, args, env, logdir):
        self.name = name
        self.args = args
        self.logpath = os.path.join(logdir, name + ".log")
        self.logfile = open(self.logpath, "ab")
        self.log_start = self.logfile.tell()    # a restart appends to the same log
        self.p = subprocess.Popen(args, env=env, stdout=self.logfile, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        WATCHDOG.watch(self.p.pid)

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def stop(self, timeout=15):
        """SIGTERM, wait; SIGKILL the group if it does not end in time."""
        if self.alive():
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                log("%s ignored SIGTERM for %ss, killing" % (self.name, timeout))
                self.kill()
        self._reap_group()
        return self.p.returncode

    def kill(self):
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.p.wait()

    def _reap_group(self):
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        WATCHDOG.forget(self.p.pid)

    def output(self):
        self.logfile.flush()
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    LISTENING = re.compile(r" listening ([a-z]+)=(\S+):(\d+)$", re.M)

    def listening(self, kind, timeout=15):
        """The port this process reports for KIND (http, metrics, zmq) in
        its line "listening KIND=ADDR:PORT", once it has written it."""
        deadline = time.monotonic() + timeout
        while True:
            with open(self.logpath, "rb") as f:
                f.seek(self.log_start)
                text = f.read().decode(errors="replace")
            for m in self.LISTENING.finditer(text):
                if m.group(1) == kind:
                    return int(m.group(3))
            if not self.alive():
                raise TestFailure("%s exited (rc=%s) before reporting its %s port:\n%s"
                                  % (self.name, self.p.returncode, kind, text[-2000:]))
            if time.monotonic() >= deadline:
                raise TestFailure("%s did not report its %s port within %ss:\n%s"
                                  % (self.name, kind, timeout, text[-2000:]))
            time.sleep(0.02)


class Stack:
    """A set of processes for one test, torn down on exit."""

    def __init__(self, name=None, keep=False):
        self.dir = tempdir("botmesh-%s-" % (name or "test"), keep=keep)
        log("test directory", self.dir)
        self.procs = []
        self.env = dict(os.environ)
        self.env.setdefault("LOG_LEVEL", "info")
        # A failed run ends its job at once, as these tests were written
        # for; the broker's default is 3 runs with backoff from 2 s, and the
        # tests of retries (tests/broker/test_retries.py) set what they need.
        self.env.setdefault("RETRY_ATTEMPTS", "1")
        self.redis_url = None
        self.redis_port = None
        self.endpoint = None
        self.keep = keep
        atexit.register(self.close)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            mark_failed(exc_type.__name__)
            self.dump()
            try:
                self.close()
            except TestFailure as e:
                print(e)
            return False
        self.close()
        return False

    def dump(self, tail=60):
        """Print the tail of every process log (on failure)."""
        for p in self.procs:
            lines = p.output().splitlines()[-tail:]
            print("----- %s (%s) -----" % (p.name, "alive" if p.alive() else "rc=%s" % p.p.returncode))
            print("\n".join(lines))

    def close(self):
        for p in reversed(self.procs):
            p.stop(timeout=10)
        reports = self.sanitizer_reports()
        self.procs = []
        if reports:
            mark_failed("sanitizer reports")
            for name, text in reports:
                print("----- %s: sanitizer report -----\n%s" % (name, text))
            raise TestFailure("FAILED: sanitizer reports in %s" % ", ".join(n for n, _ in reports))

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                       "WARNING: ThreadSanitizer")

    def sanitizer_reports(self):
        """(process name, report) for every process whose log holds a
        sanitizer report: under ASan/UBSan a test fails on any of them."""
        found = []
        for p in self.procs:
            out = p.output()
            for mark in self.SANITIZER_MARKS:
                i = out.find(mark)
                if i >= 0:
                    found.append((p.name, out[max(0, i - 200):i + 3000]))
                    break
        return found

    def spawn(self, name, args, env=None):
        e = dict(self.env)
        e.update(env or {})
        p = Proc(name, args, e, self.dir)
        self.procs.append(p)
        return p

    def bin(self, name):
        return os.path.join(BIN, name)

    # --- services -------------------------------------------------------

    def redis(self, appendonly=True, port=None, args=()):
        """Start a real redis-server on a free port (or port, as before: a
        restart), with more of its flags in args; sets REDIS_URL."""
        self.redis_port = port or self.redis_port or free_port()
        args = ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                "--dir", self.dir, "--save", "", "--daemonize", "no",
                "--appendonly", "yes" if appendonly else "no", "--appendfsync", "everysec"] + list(args)
        p = self.spawn("redis", args)
        self.redis_url = "redis://127.0.0.1:%d/0" % self.redis_port
        self.env["REDIS_URL"] = self.redis_url
        wait_until(lambda: self.redis_cli("PING") == "PONG", 10, "redis to answer PING")
        return p

    def redis_cli(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.redis_port)] + list(args),
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    def broker(self, *args, env=None, port=None, name="broker", redis=True, wait_recovered=True):
        """Start botmesh-broker on a free_port(), or on port, or, when this
        stack had a broker, on its port again (a restart); waits until it
        serves (wait_ping: Redis taken and its queues read back), or with
        wait_recovered=False only until it answers PING.  Sets
        self.endpoint.  Not port 0: a port the kernel gives is of its
        ephemeral range, which an outgoing connection may take while the
        broker is down between a kill and its restart."""
        port = port or (int(self.endpoint.rsplit(":", 1)[1]) if self.endpoint else free_port())
        e = {"BROKER_ENDPOINT": "tcp://127.0.0.1:%d" % port, "BROKER_METRICS_PORT": "-1"}
        if not redis:
            e["REDIS_URL"] = "none"
        e.update(env or {})
        p = self.spawn(name, [self.bin("botmesh-broker")] + list(args), e)
        if e["BROKER_ENDPOINT"].startswith("tcp://"):
            self.endpoint = "tcp://127.0.0.1:%d" % p.listening("zmq")
        else:
            self.endpoint = e["BROKER_ENDPOINT"]
        metrics = int(e["BROKER_METRICS_PORT"])
        p.metrics_port = p.listening("metrics") if metrics < 0 else metrics
        self.wait_ping(recovered=wait_recovered)
        return p

    def wait_ping(self, timeout=15, recovered=True):
        """Wait until the broker at self.endpoint answers PING and, with
        recovered (the default), until that answer says it serves: `redis`
        true and `recovering` false (absent: false), that is Redis takes its
        writes and its queues are read back, so a SUBMIT is not refused
        store_unavailable.  `recovering` false alone is not that: a broker
        that has not reached Redis yet says so too.  recovered=False waits
        for any answer: a broker whose Redis is down, stalled or refusing
        writes, one that waits for another broker's lease, an HA standby."""
        want = "PING answered with redis true, recovering false" if recovered else "an answer to PING"
        last = ["no PING sent"]

        def ping():
            c = Client(self.endpoint)
            try:
                c.req += 1
                c.send(PING, {"req": c.req})
                if not c.sock.poll(300):
                    last[0] = "no answer within 0.3 s"
                    return False
                cmd, reply = c.recv(0.1)
                last[0] = (cmd, reply)
                return not recovered or (cmd == REPLY and reply.get("redis") is True
                                         and not reply.get("recovering", False))
            finally:
                c.close()
        try:
            wait_until(ping, timeout, want)
        except TestFailure:
            raise TestFailure("timed out after %ss waiting for the broker at %s: %s (last: %r)"
                              % (timeout, self.endpoint, want, last[0]))

    def worker(self, *args, env=None, name=None):
        e = {"BROKER_ENDPOINT": self.endpoint}
        e.update(env or {})
        name = name or "worker-%d" % len(self.procs)
        return self.spawn(name, [self.bin("botmesh-worker")] + list(args), e)

    def client(self):
        return Client(self.endpoint)

    def webhooks(self):
        """Start botmesh-mock (the webhook receiver) and botmesh-webhook
        (the manager, on this stack's broker); waits until the manager
        serves the broker.  Returns the mock's base URL."""
        mock_port = free_port()
        self.spawn("mock", [self.bin("botmesh-mock")], {"MOCK_WEBHOOK_PORT": str(mock_port),
                                                         "MOCK_LISTEN_ADDR": "127.0.0.1"})
        mock = "http://127.0.0.1:%d" % mock_port
        wait_until(lambda: http("GET", mock + "/health")[0] == 200, 15, "mock /health")
        self.spawn("webhook", [self.bin("botmesh-webhook")], {
            "WEBHOOK_MANAGER_PORT": str(free_port()), "WEBHOOK_LISTEN_ADDR": "127.0.0.1",
            "WEBHOOK_ALLOW_PRIVATE": "1", "BROKER_ENDPOINT": self.endpoint})
        self.wait_workers(1, "webhook")
        return mock

    def wait_workers(self, count, bot_type=None, timeout=15):
        """Wait until the broker lists count workers (serving bot_type)."""
        c = self.client()
        try:
            def enough():
                ws = c.stats()["workers"]
                if bot_type:
                    ws = [w for w in ws if bot_type in w["types"]]
                return len(ws) >= count
            wait_until(enough, timeout, "%d workers to register" % count)
        finally:
            c.close()


def mock_deliveries(mock, job_id):
    """What the mock webhook receiver at base URL mock got for job_id
    (oldest first), each with its headers keyed in lower case in "hdr"."""
    status, _, body = http("GET", mock + "/deliveries?jobId=" + job_id)
    check(status == 200, "the mock lists the deliveries of %s" % job_id, body)
    for d in body["deliveries"]:
        d["hdr"] = {k.lower(): v for k, v in d["headers"].items()}
    return body["deliveries"]


def main(fn):
    """Run one test function; exit 0/1 with a clear closing line."""
    try:
        fn()
    except TestFailure as e:
        mark_failed("TestFailure")
        print(e, flush=True)
        sys.exit(1)
    except SystemExit as e:
        if e.code not in (None, 0, SKIP):
            mark_failed("exit %s" % e.code)
        raise
    print("PASS", flush=True)
    sys.exit(0)

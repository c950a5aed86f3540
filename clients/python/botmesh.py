"""botmesh.py - Python client and worker for the botmesh broker.

Written from docs/protocol.md alone (BMC01 for clients, BMW01 for workers):
three frames per message (header, 1-byte command, msgpack map), over a
ZeroMQ DEALER socket connected to the broker's ROUTER.

Needs pyzmq and msgpack (Debian: python3-zmq, python3-msgpack); run with
/usr/bin/python3 when the python3 on PATH cannot see them.

Client: submit a job and wait for its result

    import botmesh
    with botmesh.Client("tcp://127.0.0.1:5555") as c:
        job_id = c.submit("python", {"task": "data_analysis"}, notify=True)
        job = c.wait(job_id, timeout=60)
        print(job["state"], job.get("result"))

Worker: serve a bot type natively

    def handle(payload, job):
        job.progress(50)
        return {"echo": payload}

    botmesh.Worker(["pywork"], handle, credit=2).run_forever()

    # isolation="process": each job runs in its own process (forkserver), so a
    # timeout or a cancel kills it; handle must then be a module-level function.
    botmesh.Worker(["pywork"], handle, credit=2, isolation="process").run_forever()

Every wait is bounded; every failure raises a BotmeshError (or a subclass)
carrying .code and .message:

    Rejected       the broker answered REJECTED (code from the broker:
                   unknown_bot_type, bad_request, not_found, conflict, ...)
    BrokerTimeout  code "broker_timeout": no reply within the timeout
                   (broker down, unreachable or overloaded)
    WaitTimeout    code "wait_timeout": the job did not end in time
    JobFailed      raised by Client.run(): the job ended failed/cancelled;
                   code is the job's error code (bot_failed, timeout, ...)
"""
import collections
import logging
import multiprocessing
import numbers
import os
import pickle
import random
import re
import signal
import socket as _socket
import sys
import threading
import time
import weakref

try:
    import msgpack
    import zmq
except ImportError as _exc:     # say what to install, for this interpreter
    raise ImportError(
        "botmesh.py needs msgpack and pyzmq, which %s cannot import (%s): on Debian "
        "run it with /usr/bin/python3 after apt-get install python3-zmq python3-msgpack, "
        "or in this Python: pip install pyzmq msgpack" % (sys.executable, _exc)) from _exc

__all__ = [
    "Client", "Worker", "Job", "JobError",
    "BotmeshError", "Rejected", "FlowRejected", "BrokerTimeout", "WaitTimeout", "JobFailed",
    "ProtocolError",
    "TERMINAL_STATES", "default_endpoint",
]
__version__ = "0.1.0"

log = logging.getLogger("botmesh")

# --- protocol constants (docs/protocol.md sections 2, 4, 5) ----------------

CLIENT_HEADER = b"BMC01"
WORKER_HEADER = b"BMW01"

# client commands (BMC01)
SUBMIT, STATUS, CANCEL, STATS, RETRY, REDELIVER, LIST, PING, METRICS = range(0x01, 0x0A)
ACCEPTED, REJECTED, REPLY, RESULT = 0x81, 0x82, 0x83, 0x84
# batches (section 4a): several jobs in one message
SUBMIT_MANY, ACCEPTED_MANY, RESULT_MANY = 0x0A, 0x85, 0x86
# time and control (section 4): a bot type's queue, one job, schedules
QUEUE, REMOVE, PROMOTE, SCHEDULE = 0x0B, 0x0C, 0x0D, 0x0E
# live job events (section 4, SUBSCRIBE): pushed EVENTs while subscribed
SUBSCRIBE, UNSUBSCRIBE, EVENT = 0x0F, 0x10, 0x87
MAX_BATCH = 1000                     # items of one batch message
BATCH_BYTES = 1 << 20                # a batch message's jobs, encoded: at most this much
                                     # (half of MAX_FRAME_BYTES' default), one large job alone
FLOW_MAX_DEPTH = 32                  # levels of a flow() tree, as the gateway's POST /flows
MAX_DEPENDS = 100                    # job ids one job may wait for (depends_on)
ID_RE = re.compile(r"[\x21-\x7e]{1,128}")      # a job id or idempotency key: printable ASCII, no spaces
# Refusals a later call may not meet (the broker away, busy or full): the
# same call again can complete what they stopped.  Any other refusal
# (a bad job, a key naming another job) meets the same call again.
RETRYABLE_CODES = frozenset(("queue_full", "store_unavailable", "shutting_down", "not_leader",
                             "broker_timeout", "broker_unavailable", "protocol_error"))

# worker commands (BMW01)
W_READY, W_JOB, W_PROGRESS, W_DONE, W_HEARTBEAT, W_DISCONNECT, W_CANCEL, W_RELEASE, W_NACK = \
    range(0x01, 0x0A)

TERMINAL_STATES = frozenset(("completed", "failed", "cancelled"))
# The states list() filters on, and BullMQ's names of them (as GET /jobs reads them).
JOB_STATES = ("queued", "running", "delayed", "waiting-children", "completed", "failed", "cancelled")
STATE_ALIASES = {"waiting": "queued", "wait": "queued", "active": "running"}
INVALID_STATE_MESSAGE = ("state must be one of: queued (or waiting, wait), running (or active), delayed, "
                         "waiting-children, completed, failed, cancelled")
# The states of a job's webhook list() filters on (as GET /jobs?webhook= reads them).
WEBHOOK_STATES = ("pending", "retrying", "delivered", "failed")
INVALID_WEBHOOK_MESSAGE = "webhook must be one of: pending, retrying, delivered, failed"
ENDPOINT_RE = re.compile(r"^(tcp://(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):(\d{1,5}|\*)|ipc://\S+|inproc://\S+)$")

BOT_TYPE_RE = re.compile(r"^[a-z0-9_-]{1,32}$")
MAX_PAYLOAD_BYTES = 1 << 20          # protocol default of MAX_PAYLOAD_BYTES
DEFAULT_HEARTBEAT_MS = 1000          # protocol default of HEARTBEAT_INTERVAL_MS
DEFAULT_LIVENESS = 3                 # protocol default of HEARTBEAT_LIVENESS
JOB_LOG_MAX_BYTES = 16384            # the tail of a job's log sent with DONE (as the C worker's)
# Recent DONEs a worker keeps for a reconnect, as the C worker: at most
# DONE_KEEP_MAX of at most DONE_KEEP_BYTES of bodies (msgpack), the oldest
# dropped first: the DONEs of its last 12 s (heartbeat 1 s x liveness 3,
# 4 times) up to ~8,000 jobs/s.
DONE_KEEP_MAX = 100000
DONE_KEEP_BYTES = 64 << 20
# Replaced (DISCONNECT replaced): another live process registered under this
# worker's name.  Registering again at once, both would take the name from
# each other in a loop; the wait doubles from 1 s to 30 s while it goes on
# (half of it plus up to half at random), and a streak ends after 90 s
# unreplaced (protocol.md section 5, as the C worker).
REPLACED_FIRST_S, REPLACED_MAX_S, REPLACED_QUIET_S = 1.0, 30.0, 90.0
REQ_WRAP = 1 << 31                   # keep req a small positive integer


# --- errors -----------------------------------------------------------------

class BotmeshError(Exception):
    """Any botmesh failure: .code (short string) and .message (text)."""

    def __init__(self, code, message, body=None):
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.body = body          # the broker's reply body, when there is one

    def __str__(self):
        return "%s: %s" % (self.code, self.message)


class Rejected(BotmeshError):
    """The broker answered REJECTED {code, message}."""


class BrokerTimeout(BotmeshError):
    """No reply from the broker in time (it is down, unreachable or overloaded)."""


class WaitTimeout(BotmeshError):
    """The job did not reach a terminal state in time; .job is the last record seen."""

    def __init__(self, code, message, job=None):
        super().__init__(code, message)
        self.job = job


class JobFailed(BotmeshError):
    """Client.run(): the job ended failed or cancelled; .job is its record."""

    def __init__(self, code, message, job=None):
        super().__init__(code, message)
        self.job = job


class FlowRejected(Rejected):
    """flow(): the broker refused a node: .flow_key names the flow to
    submit again, .created maps the created nodes' paths ("" the top node,
    "1.0" its second child's first child) to job ids, .retryable says
    whether the same call again can complete it (else the refused node
    needs correcting first)."""
    def __init__(self, code, message, flow_key, created):
        super().__init__(code, message)
        self.flow_key = flow_key
        self.created = created
        self.retryable = code in RETRYABLE_CODES


class ProtocolError(BotmeshError):
    """The broker sent something this client cannot understand."""


class JobError(Exception):
    """Raise from a worker handler to end the job with a chosen error code."""

    def __init__(self, code, message):
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self):
        return "%s: %s" % (self.code, self.message)


# --- helpers ------------------------------------------------------------------

def now_ms():
    """Milliseconds since the Unix epoch (the protocol's timestamps)."""
    return int(time.time() * 1000)


def default_endpoint(client=False):
    """$BROKER_ENDPOINT (a bind address like tcp://*:5555 becomes 127.0.0.1) or tcp://127.0.0.1:5555;
    for a client (client=True) $BROKER_CLIENT_ENDPOINT first, as botmesh-client reads it."""
    ep = ((client and os.environ.get("BROKER_CLIENT_ENDPOINT")) or os.environ.get("BROKER_ENDPOINT")
          or "tcp://127.0.0.1:5555")
    return ep.replace("://*:", "://127.0.0.1:").replace("://0.0.0.0:", "://127.0.0.1:")


class Endpoints:
    """A list of brokers, one of which leads (BROKER_ENDPOINT "tcp://b1:5555,tcp://b2:5555").

    A peer moves to the next endpoint (or the leader a standby names) on
    not_leader or a silent broker, waiting a backoff of 100 ms doubling to
    2 s until a leader answers (docs/protocol.md section 7b).  The standby
    that answers not_leader right after our leader went silent is the one
    about to take over: it is asked again every 100 ms, QUICK_TRIES times
    (longer than a lease), as the C peers do.
    """

    BACKOFF, BACKOFF_MAX = 0.1, 2.0
    QUICK_TRIES = 40

    def __init__(self, spec):
        if not isinstance(spec, str):
            raise TypeError("endpoint must be a string like tcp://host:port, not %r" % (spec,))
        items = [e.strip() for e in spec.split(",")]
        if not items or any(not e for e in items):
            raise ValueError("bad broker endpoint list %r" % (spec,))
        for e in items:
            if not ENDPOINT_RE.match(e):
                raise ValueError("bad broker endpoint %r: expected tcp://host:port (e.g. tcp://127.0.0.1:5555; "
                                 "several brokers: tcp://b1:5555,tcp://b2:5555)" % (e,))
        self.items = items
        self.index = 0
        self.backoff = self.BACKOFF
        self.silent = None      # the one that went silent last (a standby names it until its lease ends)
        self.quick = 0          # quick asks left of the standby about to lead

    def __len__(self):
        return len(self.items)

    @property
    def current(self):
        return self.items[self.index]

    def next(self, leader=None, silent=False):
        """Move on; returns the seconds to wait before connecting."""
        if silent:
            self.silent = self.index
            self.quick = self.QUICK_TRIES
        if isinstance(leader, str) and leader in self.items and self.items.index(leader) != self.silent:
            self.index = self.items.index(leader)
        else:
            self.index = (self.index + 1) % len(self.items)
            if not silent and self.index == self.silent and len(self.items) > 1:
                self.index = (self.index - 1) % len(self.items)   # this standby is about to take over
                if self.quick > 0:
                    self.quick -= 1
                    return self.BACKOFF
                self.silent = None      # longer than a lease: it holds its lease after all
        wait, self.backoff = self.backoff, min(self.backoff * 2, self.BACKOFF_MAX)
        return wait

    def served(self):
        self.backoff = self.BACKOFF
        self.silent = None
        self.quick = 0


def _pack(obj):
    try:
        # surrogateescape: a str decoded from non-UTF-8 bytes goes out as those bytes again
        return msgpack.packb(obj, use_bin_type=True, unicode_errors="surrogateescape")
    except (TypeError, ValueError, OverflowError) as exc:
        raise BotmeshError("bad_request", "cannot encode message as msgpack: %s" % exc) from None


def _hashable(key):
    """A map key Python can hold: an array key as a tuple (its items the
    same way), a map key as its text (str of the dict)."""
    if isinstance(key, list):
        return tuple(_hashable(k) for k in key)
    if isinstance(key, dict):
        return str(key)
    return key


def _lenient_map(pairs):
    out = {}
    for key, value in pairs:
        try:
            out[key] = value
        except TypeError:                 # unhashable: a list or dict key
            out[_hashable(key)] = value
    return out


def _unpack(data):
    """Decode any msgpack value leniently: a str that is not UTF-8 keeps its
    bytes as surrogate escapes (sent back byte for byte), any map key is kept
    (_hashable). Raises on input that is not msgpack."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False, unicode_errors="surrogateescape",
                           object_pairs_hook=_lenient_map)


def _unpack_map(data):
    """Decode a body frame; None if it is not a msgpack map."""
    try:
        obj = _unpack(data)
    except Exception:                 # any malformed input: ignore the message
        return None
    if not isinstance(obj, dict):
        return None
    return obj


def _job_id_of(data):
    """The jobId of a body frame that does not decode as a whole, or None."""
    try:
        unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
        unpacker.feed(data)
        for _ in range(unpacker.read_map_header()):
            if unpacker.unpack() == b"jobId":
                job_id = unpacker.unpack()
                return job_id.decode() if isinstance(job_id, bytes) and job_id else None
            unpacker.skip()
    except Exception:
        pass
    return None


def _decode(frames, header):
    """(command, body) for a well-formed message from the broker, else None."""
    if len(frames) != 3 or frames[0] != header or len(frames[1]) != 1:
        return None
    body = _unpack_map(frames[2])
    if body is None:
        return None
    return frames[1][0], body


def _setup_socket(sock, curve, identity=None):
    sock.setsockopt(zmq.LINGER, 0)
    if identity:
        sock.setsockopt(zmq.IDENTITY, identity if isinstance(identity, bytes) else identity.encode())
    if curve:
        # curve = {"server_key": z85, "public_key": z85, "secret_key": z85}
        sock.curve_serverkey = _z85(curve["server_key"])
        sock.curve_publickey = _z85(curve["public_key"])
        sock.curve_secretkey = _z85(curve["secret_key"])


def _z85(key):
    return key.encode() if isinstance(key, str) else key


def _env_int(name, default, lo, hi):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        val = int(raw)
    except ValueError:
        raise ValueError("%s must be an integer, got %r" % (name, raw)) from None
    if not lo <= val <= hi:
        raise ValueError("%s must be in %d..%d, got %d" % (name, lo, hi, val))
    return val


_BACKOFF_MAX_MS = 86400000       # the longest backoff delay the broker takes (a day)


def _bad_argument(message, kind=ValueError):
    """A ValueError (or kind) for an argument refused before anything is sent,
    with .code "bad_request" and .message, as the broker's refusal of it has."""
    exc = kind(message)
    exc.code = "bad_request"
    exc.message = message
    return exc


def _flow_refusal(path, code, message, kind=ValueError):
    """A flow() tree refused before anything is sent, with the code and
    words of the gateway's POST /flows, the message starting with the
    node's path ("children[1].children[0]: ...", none for the top node)."""
    exc = _bad_argument("%s: %s" % (path, message) if path else message, kind)
    exc.code = code
    return exc


def _flow_nodes(tree):
    """Read and check a flow() tree as POST /flows does, the whole of it
    before any job is made.  Returns (nodes, flow_key): the nodes depth
    first, the top one first, each a dict {"job" (its submit_many job, its
    idempotency_key set), "path" (child indexes), "where", "kids",
    "height" (0: a leaf), "id" (None)}.  Raises ValueError or TypeError
    with .code: invalid_flow (children not a list, deeper than
    FLOW_MAX_DEPTH), too_many_jobs (more than MAX_BATCH nodes),
    invalid_dependencies (children and depends_on past MAX_DEPENDS),
    invalid_idempotency_key (a bad key, two nodes with one key), or
    bad_request (a node's options, as submit() checks them)."""
    too_many = ("the flow holds more than %d jobs; at most %d go in one request (MAX_BATCH)"
                % (MAX_BATCH, MAX_BATCH))
    nodes = []
    slots = [0]                 # children seen so far: every node but the top is one

    def walk(node, path, depth):
        where = ".".join("children[%d]" % i for i in path)
        if depth > FLOW_MAX_DEPTH:
            raise _flow_refusal(where, "invalid_flow", "the tree is deeper than %d levels" % FLOW_MAX_DEPTH)
        if len(nodes) == MAX_BATCH:
            raise _flow_refusal("", "too_many_jobs", too_many)
        if not isinstance(node, dict):
            raise _flow_refusal(where, "invalid_body", "a node must be a dict (a submit_many job with "
                                "\"children\")", TypeError)
        children = node.get("children")
        children = [] if children is None else children
        if not isinstance(children, list):
            raise _flow_refusal(where, "invalid_flow", "children must be a list of nodes (submit_many jobs)",
                                TypeError)
        own = node.get("depends_on")
        own = len(own) if isinstance(own, (list, tuple)) else 0
        if len(children) + own > MAX_DEPENDS:
            raise _flow_refusal(where, "invalid_dependencies", "%d children and %d depends_on: a job waits "
                                "for at most %d jobs" % (len(children), own, MAX_DEPENDS))
        # counted before they are walked: a tree too large is refused at once
        if slots[0] + len(children) > MAX_BATCH - 1:
            raise _flow_refusal(where, "too_many_jobs", too_many)
        slots[0] += len(children)
        entry = {"job": {k: v for k, v in node.items() if k != "children"}, "path": path,
                 "where": where or "the top node", "kids": [], "height": 0, "id": None}
        nodes.append(entry)
        for i, child in enumerate(children):
            kid = walk(child, path + [i], depth + 1)
            entry["kids"].append(kid)
            entry["height"] = max(entry["height"], kid["height"] + 1)
        return entry

    top = walk(tree, [], 1)
    flow_key = top["job"].get("idempotency_key")
    if flow_key is None:
        flow_key = "flow-" + os.urandom(10).hex()
    keys = []
    for entry in nodes:
        job = entry["job"]
        key = job.get("idempotency_key")
        path = ".".join(map(str, entry["path"]))
        if key is None:
            key = flow_key if entry is top else flow_key + "/" + path
            if len(key) > 128:
                raise _flow_refusal(entry["where"] if path else "", "invalid_idempotency_key",
                                    "the job's derived idempotency key (flow key \"/\" its path %s) is longer "
                                    "than 128 characters: give the flow a shorter idempotency_key, or the node "
                                    "its own" % path)
            job["idempotency_key"] = key
        if not isinstance(key, str) or not ID_RE.fullmatch(key):
            raise _flow_refusal(entry["where"] if path else "", "invalid_idempotency_key",
                                "idempotency_key must be 1 to 128 printable ASCII characters without spaces",
                                TypeError if not isinstance(key, str) else ValueError)
        keys.append(key)
    # Two nodes with one key would be one job to the broker: a parent
    # answered with its child's id, or waiting twice for one id, refused
    # half-way for ever.  The first pair in key order is named (as the
    # gateway does).
    order = sorted(range(len(nodes)), key=lambda i: (keys[i], i))
    for first, second in zip(order, order[1:]):
        if keys[first] == keys[second]:
            raise _flow_refusal(nodes[second]["where"], "invalid_idempotency_key",
                                "its idempotency key \"%s\" is also the key of %s: each job of a flow needs "
                                "its own (a node's own key must differ from the flow's, from the other nodes' "
                                "and from the derived \"<flowKey>/<path>\" ones)"
                                % (keys[second], nodes[first]["where"]))
    for entry in nodes:
        job = entry["job"]
        if entry["kids"]:
            job.setdefault("dependency_results", True)
        # each job as submit_many will send it: a bad one is refused now
        named = {("bot_type" if k == "botType" else k): v for k, v in job.items()}
        if "bot_type" not in named:
            raise _bad_argument("%s must have a bot_type (or botType)" % entry["where"], TypeError)
        try:
            Client._submit_body(**named)
        except TypeError as exc:
            raise _bad_argument("%s: %s" % (entry["where"], exc), TypeError) from exc
    return nodes, flow_key


def _flow_halfway(message, code, flow_key, created, count):
    """The words of a flow() refused after it was checked: what stopped
    it, what was made, and how to go on, by the refusal's kind."""
    if code in RETRYABLE_CODES:
        return ("%s; %d of the flow's %d jobs were created: submit the same tree with idempotency_key %r "
                "on its top node to complete it" % (message, len(created), count, flow_key))
    return ("%s; %d of the flow's %d jobs were created; the same tree again would be refused the same "
            "way: correct the refused node (the created jobs' nodes must stay as they are) and submit "
            "the tree with idempotency_key %r on its top node to make the rest of the flow"
            % (message, len(created), count, flow_key))


def _wire_backoff(backoff):
    """The backoff as the broker reads it, as the HTTP API reads BullMQ's forms:
    a number N (a fixed delay) becomes {"type": "fixed", "delayMs": N},
    {"type", "delay"} becomes {"type", "delayMs"}; other shapes go as given
    (the broker names what is wrong with them).  A number that is not such a
    delay, or a value of another kind, is a ValueError naming backoff."""
    if backoff is None:
        return None
    if isinstance(backoff, (int, float)) and not isinstance(backoff, bool):
        if not isinstance(backoff, int) or not 0 <= backoff <= _BACKOFF_MAX_MS:
            raise _bad_argument("backoff as a number is a fixed delay: an integer from 0 to %d (ms), not %r"
                             % (_BACKOFF_MAX_MS, backoff))
        return {"type": "fixed", "delayMs": backoff}
    if not isinstance(backoff, dict):
        raise _bad_argument("backoff must be a dict ({\"type\", \"delayMs\" or \"delay\", \"jitter\"}) "
                         "or an integer (a fixed delay in ms), not %r" % (backoff,))
    if "delay" not in backoff:
        return backoff
    if "delayMs" in backoff:
        raise Rejected("bad_request", "backoff.delay and backoff.delayMs are the same field: give one")
    out = {k: v for k, v in backoff.items() if k != "delay"}
    out["delayMs"] = backoff["delay"]
    return out


def _stopped_error(reason):
    """The DONE error of a run the broker stopped with CANCEL (timeout,
    cancelled, duplicate, ...): what the handler returned does not count,
    and the job's next dispatch runs the handler again. The code is
    "cancelled" only for a CANCEL "cancelled" (a broker ends the job
    cancelled on it), "timeout" for a timeout, and "stopped" for any other
    reason (the broker had given the job to another worker, or did not know
    it): no one cancelled the job, so a broker that takes this DONE counts a
    failed run."""
    reason = reason or "cancelled"
    code = reason if reason in ("timeout", "cancelled") else "stopped"
    return {"code": code, "message": "stopped by the broker (%s)" % reason}


def _list_state(state):
    """list()'s state as the broker filters on it (BullMQ's names read as
    ours); Rejected invalid_state for a state no job can have."""
    if not isinstance(state, str) or state == "":
        return state
    state = STATE_ALIASES.get(state, state)
    if state not in JOB_STATES:
        raise Rejected("invalid_state", INVALID_STATE_MESSAGE)
    return state


# --- client -------------------------------------------------------------------

class JobId(str):
    """A job id as returned by submit(); .duplicate and .delayed are the broker's flags
    (.delayed: the job waits for its delay_ms / run_at; .waiting_children: for the jobs
    of its depends_on)."""
    duplicate = False
    delayed = False
    waiting_children = False


class EventStream:
    """What Client.events() returns: an iterator of event dicts (close() it
    to unsubscribe), with last_id, the id of the last event yielded (or,
    before the first, of the last event the broker had when it subscribed,
    or the since it was given): keep it to resume with events(since=...)
    after a restart of this process."""

    def __init__(self, gen, state, stop):
        self._gen, self._state, self._stop = gen, state, stop

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._gen)

    def close(self):
        """Unsubscribe.  From another thread than the one iterating: that
        loop ends (unsubscribing) within 1 s."""
        self._stop.set()
        try:
            self._gen.close()
        except ValueError:
            pass                    # running in another thread: the stop flag ends it

    @property
    def last_id(self):
        return self._state["last_id"]


class Client:
    """A BMC01 client on one DEALER socket. Not thread-safe: one per thread.

    timeout: seconds to wait for the broker's reply to one request. When it
    passes, BrokerTimeout is raised and the socket is replaced (Lazy Pirate),
    so a request queued for a dead broker is not sent later by surprise.
    """

    def __init__(self, endpoint=None, timeout=10.0, context=None, curve=None, identity=None):
        self.endpoint = endpoint or default_endpoint(client=True)
        self._eps = Endpoints(self.endpoint)
        self._event_gens = weakref.WeakKeyDictionary()     # events() generator -> its stop flag
        self.timeout = float(timeout)
        self.curve = curve
        self.identity = identity
        self._ctx = context or zmq.Context.instance()
        self._sock = None
        self._req = 0
        self._results = collections.OrderedDict()   # jobId -> record, from RESULT pushes
        self._notified = set()                      # jobs submitted with notify on this socket
        self._max_results = 10000
        self._events = collections.deque(maxlen=10000)   # EVENT pushes (events())

    # context manager / lifecycle
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Close the socket (the next request opens a new one) and end this
        client's events() generators, which unsubscribes them."""
        for gen, stop in list(self._event_gens.items()):
            stop.set()              # (one being iterated in another thread ends within 1 s)
            try:
                gen.close()
            except ValueError:
                pass                # that one: it is running right now
        self._close_socket()

    def _close_socket(self):
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def _socket(self):
        if self._sock is None:
            s = self._ctx.socket(zmq.DEALER)
            _setup_socket(s, self.curve, self.identity)
            s.connect(self._eps.current)
            self._sock = s
        return self._sock

    def _reset(self):
        """Drop the socket (and what it queued); the next request opens a new one.
        Not close(): this client's events() generators live on (a request
        that timed out or moved to another broker must not end them; they
        see their subscription lost and subscribe again)."""
        self._close_socket()
        self._notified.clear()

    # low level
    def _next_req(self):
        self._req = self._req % REQ_WRAP + 1
        return self._req

    def _stash(self, body):
        job_id, job = body.get("jobId"), body.get("job")
        if not isinstance(job_id, str) or not isinstance(job, dict):
            return
        self._results[job_id] = job
        self._notified.discard(job_id)
        while len(self._results) > self._max_results:
            self._results.popitem(last=False)

    def _recv(self, timeout):
        """One well-formed message within timeout seconds, else None."""
        sock = self._socket()
        if not sock.poll(max(0, int(timeout * 1000))):
            return None
        frames = sock.recv_multipart()
        msg = _decode(frames, CLIENT_HEADER)
        if msg is None:
            log.warning("botmesh: ignoring a malformed message from the broker (%d frames)", len(frames))
        return msg

    def request(self, command, body=None, timeout=None):
        """Send one request and return (command, body) of its answer.

        REJECTED raises Rejected; no answer in time raises BrokerTimeout.
        RESULT pushes that arrive meanwhile are kept for wait().
        """
        timeout = self.timeout if timeout is None else float(timeout)
        req = self._next_req()
        msg = dict(body or {})
        msg["req"] = req
        data = _pack(msg)
        deadline = time.monotonic() + timeout
        # With several brokers each gets a share of the time, so that a
        # silent one leaves time to ask the next (the request is sent again
        # there: give a SUBMIT an idempotency_key to make that safe).
        share = max(0.5, timeout / len(self._eps)) if len(self._eps) > 1 else timeout

        def send():
            try:
                self._socket().send_multipart([CLIENT_HEADER, bytes([command]), data], flags=zmq.NOBLOCK)
            except zmq.Again:
                self._reset()
                raise BrokerTimeout("broker_timeout", "cannot send to the broker at %s (queue full; "
                                    "is it running?)" % self._eps.current) from None
            return min(deadline, time.monotonic() + share)

        def switch(leader=None, silent=False):
            """On to the next broker; False when no time is left for it."""
            self._reset()
            wait = self._eps.next(leader, silent=silent)
            if time.monotonic() + wait >= deadline:
                return False
            time.sleep(wait)
            return True

        attempt_deadline = send()
        while True:
            left = attempt_deadline - time.monotonic()
            if left <= 0:
                if len(self._eps) > 1 and switch(silent=True):
                    attempt_deadline = send()
                    continue
                self._reset()
                raise BrokerTimeout("broker_timeout", "no reply from the broker at %s within %gs "
                                    "(is it running there? set the endpoint with "
                                    "Client(endpoint=...) or BROKER_CLIENT_ENDPOINT, the wait with "
                                    "timeout=)" % (self.endpoint, timeout))
            got = self._recv(left)
            if got is None:
                continue
            cmd, reply = got
            if cmd == RESULT:
                self._stash(reply)
                continue
            if cmd == RESULT_MANY:
                for item in reply.get("jobs") or ():
                    if isinstance(item, dict):
                        self._stash(item)
                continue
            if cmd == EVENT:
                self._events.append(reply)  # for events(), on its own client
                continue
            rreq = reply.get("req")
            # A REJECTED without req answers a message the broker could not parse:
            # with one request in flight, it is ours.
            if rreq != req and not (cmd == REJECTED and rreq is None):
                continue                    # a late answer to an earlier, timed-out request
            reply.pop("req", None)          # the protocol's, not the caller's
            if cmd == REJECTED and reply.get("code") == "not_leader" and switch(reply.get("leader")):
                attempt_deadline = send()       # a standby did nothing with it
                continue
            self._eps.served()
            if cmd == REJECTED:
                code = reply.get("code") if isinstance(reply.get("code"), str) else "rejected"
                message = reply.get("message") if isinstance(reply.get("message"), str) else ""
                raise Rejected(code, message, reply)
            return cmd, reply

    def _reply(self, command, body=None, timeout=None, expect=REPLY):
        cmd, reply = self.request(command, body, timeout)
        if cmd != expect:
            raise ProtocolError("protocol_error", "expected command 0x%02x, got 0x%02x" % (expect, cmd), reply)
        return reply

    # --- API ---------------------------------------------------------------

    @staticmethod
    def _submit_body(bot_type, payload=None, *, webhook_url=None, priority=None, idempotency_key=None,
                     timeout_ms=None, max_attempts=None, notify=False, attempts=None, backoff=None,
                     delay_ms=None, run_at=None, depends_on=None, on_dependency_failure=None,
                     dependency_results=False):
        body = {"botType": bot_type, "payload": payload}
        if depends_on is not None:
            if isinstance(depends_on, str) or not all(isinstance(i, str) for i in depends_on):
                raise _bad_argument("depends_on must be a list of job ids (str)", TypeError)
            body["dependsOn"] = list(depends_on)
        if on_dependency_failure is not None:
            body["onDependencyFailure"] = on_dependency_failure
        if not isinstance(dependency_results, bool):
            raise _bad_argument("dependency_results must be True or False, got %r" % (dependency_results,),
                                TypeError)
        if dependency_results:
            body["dependencyResults"] = True
        if webhook_url is not None:
            body["webhookUrl"] = webhook_url
        if priority is not None:
            body["priority"] = priority
        if idempotency_key is not None:
            body["idempotencyKey"] = idempotency_key
        if timeout_ms is not None:
            body["timeoutMs"] = timeout_ms
        if max_attempts is not None:
            body["maxAttempts"] = max_attempts
        backoff = _wire_backoff(backoff)
        for key, value in (("attempts", attempts), ("backoff", backoff), ("delayMs", delay_ms),
                           ("runAt", run_at)):
            if value is not None:
                body[key] = value
        if notify:
            body["notify"] = True
        return body

    def _accepted(self, reply, notify):
        job_id = reply.get("jobId")
        if not isinstance(job_id, str):
            raise ProtocolError("protocol_error", "ACCEPTED without a jobId", reply)
        jid = JobId(job_id)
        jid.duplicate = bool(reply.get("duplicate", False))
        jid.delayed = bool(reply.get("delayed", False))
        jid.waiting_children = reply.get("state") == "waiting-children"
        if notify and not jid.duplicate:
            # (the broker does not push RESULT for a duplicate: wait() polls for those)
            self._notified.add(job_id)
        return jid

    def submit(self, bot_type, payload=None, *, webhook_url=None, priority=None, idempotency_key=None,
               timeout_ms=None, max_attempts=None, notify=False, timeout=None, attempts=None,
               backoff=None, delay_ms=None, run_at=None, depends_on=None, on_dependency_failure=None,
               dependency_results=False):
        """SUBMIT a job; returns its id (a str with .duplicate). Raises Rejected.

        attempts: runs allowed when the bot fails; backoff: {"type":
        "exponential"|"fixed", "delayMs": N, "jitter": bool or 0..1}; delay_ms or
        run_at (ms since the epoch, the broker's clock): the job is delayed
        until then.  depends_on: job ids; the job waits (waiting-children)
        until they all completed; on_dependency_failure "fail" (default) or
        "ignore"; dependency_results: its bot's payload becomes {"payload":
        payload, "dependencies": {job_id: result}} (docs/protocol.md section 3,
        Dependencies)."""
        body = self._submit_body(bot_type, payload, webhook_url=webhook_url, priority=priority,
                                 idempotency_key=idempotency_key, timeout_ms=timeout_ms,
                                 max_attempts=max_attempts, notify=notify, attempts=attempts,
                                 backoff=backoff, delay_ms=delay_ms, run_at=run_at,
                                 depends_on=depends_on, on_dependency_failure=on_dependency_failure,
                                 dependency_results=dependency_results)
        return self._accepted(self._reply(SUBMIT, self._keyed(body), timeout, expect=ACCEPTED), notify)

    def _keyed(self, body):
        """With several brokers a request with no answer is sent again to the
        next one: a SUBMIT without an idempotency key gets a random one first,
        so that both sends make one job."""
        if len(self._eps) > 1 and "idempotencyKey" not in body:
            body["idempotencyKey"] = "auto-" + os.urandom(16).hex()
        return body

    def submit_many(self, jobs, timeout=None):
        """SUBMIT_MANY: several jobs, MAX_BATCH to a message (protocol.md 4a).

        jobs: dicts with submit()'s keywords (bot_type or botType, payload, webhook_url,
        priority, idempotency_key, timeout_ms, max_attempts, notify, attempts,
        backoff, delay_ms, run_at, depends_on, on_dependency_failure,
        dependency_results).  A
        message holds at most MAX_BATCH jobs and BATCH_BYTES of them.
        Returns one outcome per job, in order: its JobId (with .duplicate)
        when accepted, or a Rejected (not raised) naming why not.  A fault
        of the whole message (e.g. no jobs) raises Rejected; a job that is
        not a dict with a bot_type raises TypeError, a bad backoff ValueError,
        before anything is sent.
        """
        jobs = list(jobs)
        if not jobs:
            raise Rejected("bad_request", "submit_many needs at least one job")
        bodies = []
        for i, job in enumerate(jobs):
            if isinstance(job, dict) and "botType" in job:
                if "bot_type" in job:
                    raise _bad_argument("jobs[%d] gives both bot_type and botType: give one" % i, TypeError)
                job = {("bot_type" if k == "botType" else k): v for k, v in job.items()}
            if not isinstance(job, dict) or "bot_type" not in job:
                raise _bad_argument("jobs[%d] must be a dict with a bot_type (or botType)" % i, TypeError)
            bodies.append(self._keyed(self._submit_body(**job)))
        chunks, chunk, size = [], [], 0
        for body in bodies:
            n = len(_pack(body))
            if chunk and (len(chunk) == MAX_BATCH or size + n > BATCH_BYTES):
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(body)
            size += n
        chunks.append(chunk)
        out = []
        for chunk in chunks:
            reply = self._reply(SUBMIT_MANY, {"jobs": chunk}, timeout, expect=ACCEPTED_MANY)
            outcomes = reply.get("jobs")
            if not isinstance(outcomes, list) or len(outcomes) != len(chunk):
                raise ProtocolError("protocol_error", "ACCEPTED_MANY does not list every job", reply)
            for body, o in zip(chunk, outcomes):
                if isinstance(o, dict) and "code" in o:
                    out.append(Rejected(str(o.get("code")), str(o.get("message", "")), o))
                elif isinstance(o, dict):
                    out.append(self._accepted(o, body.get("notify", False)))
                else:
                    raise ProtocolError("protocol_error", "an ACCEPTED_MANY item is not a map", reply)
        return out

    def flow(self, tree, timeout=None):
        """A tree of jobs, as BullMQ's FlowProducer.add and the gateway's
        POST /flows: a node is a submit_many() job dict plus "children": [node,
        ...]; a node runs after all its children completed (its depends_on
        is its own, then its children's ids; dependency_results defaults to
        True for a node with children).  The whole tree is checked first, with
        POST /flows' limits and codes: at most MAX_BATCH nodes, FLOW_MAX_DEPTH
        levels, MAX_DEPENDS children and depends_on a node, one idempotency key
        a node; a bad tree raises ValueError or TypeError (.code as the
        gateway's: invalid_flow, too_many_jobs, invalid_dependencies,
        invalid_idempotency_key, bad_request) naming the node, and nothing is
        sent.  Then the jobs go by height, leaves first, each height in
        submit_many messages (MAX_BATCH jobs and BATCH_BYTES a message).

        Idempotent: the top node's idempotency_key names the flow (made up,
        "flow-<20 hex>", when it has none); a node without a key of its own
        gets "<flow key>/<path>" ("k/1.0": the second child's first child).
        Returns {"jobId", "flowKey", "children": [{"jobId", "children"?}, ...]}
        (the JobIds, with .duplicate).  A node refused raises FlowRejected
        (a Rejected) naming it; any other error of a submit_many
        (BrokerTimeout, a Rejected of the whole message) is raised as it is.
        Either carries .flow_key, .created ({path: job id}) and .retryable:
        submit the same tree with that key on its top node to complete the
        flow on the jobs made (when not retryable, after correcting the
        refused node)."""
        nodes, flow_key = _flow_nodes(tree)

        def created():
            return {".".join(map(str, e["path"])): e["id"] for e in nodes if e["id"]}
        for height in range(nodes[0]["height"] + 1):
            level = [e for e in nodes if e["height"] == height]
            jobs = []
            for entry in level:
                job = dict(entry["job"])
                depends = list(job.pop("depends_on", None) or []) + [k["id"] for k in entry["kids"]]
                if depends:
                    job["depends_on"] = depends
                jobs.append(job)
            try:
                outcomes = self.submit_many(jobs, timeout)
            except BotmeshError as exc:
                # The jobs made so far stay: the error says how to go on on them.
                made = created()
                exc.message = _flow_halfway(exc.message, exc.code, flow_key, made, len(nodes))
                exc.args = (exc.code, exc.message)
                exc.flow_key, exc.created = flow_key, made
                exc.retryable = exc.code in RETRYABLE_CODES
                raise
            refused = None
            for entry, outcome in zip(level, outcomes):
                if isinstance(outcome, Rejected):
                    refused = refused or (entry, outcome)
                else:
                    entry["id"] = outcome
            if refused:
                entry, outcome = refused
                made = created()
                raise FlowRejected(outcome.code, _flow_halfway("%s: %s" % (entry["where"], outcome.message),
                                                               outcome.code, flow_key, made, len(nodes)),
                                   flow_key, made)

        def answer(entry):
            out = {"jobId": entry["id"]}
            if entry["kids"]:
                out["children"] = [answer(k) for k in entry["kids"]]
            return out
        return dict(answer(nodes[0]), flowKey=flow_key)

    def status(self, job_id=None, timeout=None, *, key=None):
        """The job's record (a dict): by its id, or with key= by the
        idempotency_key (BullMQ's jobId) it was submitted with, while that
        job exists. Raises Rejected('not_found')."""
        if (job_id is None) == (key is None):
            raise _bad_argument("status() takes a job_id or key=, not both nor neither", TypeError)
        if key is not None:
            return self._job_record(self._reply(STATUS, {"idempotencyKey": key}, timeout))
        return self._job_reply(STATUS, job_id, timeout)

    def logs(self, job_id=None, timeout=None, *, key=None):
        """The job's log as BullMQ's getJobLogs gives it: {"jobId", "logs":
        [lines], "count"}, the tail of what its bot wrote on stderr during
        its last run (the record's "log", split on newlines, an empty last
        line dropped; no lines when it has none). By id or key=, as
        status(). Raises Rejected('not_found')."""
        job = self.status(job_id, timeout, key=key)
        text = job.get("log")
        lines = text.split("\n") if isinstance(text, str) else []
        if lines and lines[-1] == "":
            lines.pop()
        return {"jobId": job.get("jobId"), "logs": lines, "count": len(lines)}

    def cancel(self, job_id, timeout=None):
        """Cancel a queued or running job; returns its record (state 'cancelled').
        Raises Rejected: not_found, conflict if it had already ended, or
        store_unavailable (the broker is reading it back from Redis after a
        start or a failover, or cannot reach Redis): not final, cancel again
        shortly."""
        return self._job_reply(CANCEL, job_id, timeout)

    def _job_reply(self, command, job_id, timeout):
        return self._job_record(self._reply(command, {"jobId": job_id}, timeout))

    @staticmethod
    def _job_record(reply):
        job = reply.get("job")
        if not isinstance(job, dict):
            raise ProtocolError("protocol_error", "REPLY without a job record", reply)
        return job

    def retry(self, job_id, timeout=None):
        """Queue a failed or cancelled job again; returns its id. Raises Rejected('conflict')."""
        reply = self._reply(RETRY, {"jobId": job_id}, timeout, expect=ACCEPTED)
        return JobId(reply.get("jobId") or job_id)

    def redeliver(self, job_id, timeout=None):
        """Deliver an ended job's webhook again. Raises Rejected('conflict')."""
        self._reply(REDELIVER, {"jobId": job_id}, timeout, expect=ACCEPTED)

    def stats(self, timeout=None):
        """STATS: {types, workers, totals, redis, uptimeMs}."""
        return self._reply(STATS, None, timeout)

    def list(self, state=None, bot_type=None, limit=None, timeout=None, webhook=None):
        """Recent jobs, newest first (records without payload and result).

        state: queued (or waiting, wait), running (or active), delayed,
        completed, failed or cancelled; any other raises Rejected
        ("invalid_state"), as GET /jobs answers 400.  webhook: pending,
        retrying, delivered or failed, the jobs whose webhook is in that
        state, newest to reach it first (failed: the failed webhooks list);
        any other raises Rejected("invalid_webhook")."""
        body = {}
        if state is not None and state != "":
            body["state"] = _list_state(state)
        if webhook is not None and webhook != "":
            if webhook not in WEBHOOK_STATES:
                raise Rejected("invalid_webhook", INVALID_WEBHOOK_MESSAGE)
            body["webhook"] = webhook
        if bot_type is not None:
            body["botType"] = bot_type
        if limit is not None:
            body["limit"] = limit
        return self._reply(LIST, body, timeout).get("jobs", [])

    def _queue(self, bot_type, action, timeout, **extra):
        return self._reply(QUEUE, dict(extra, botType=bot_type, action=action), timeout)

    def pause(self, bot_type, timeout=None):
        """Dispatch nothing of bot_type (queued and delayed jobs stay, running ones
        finish); returns {botType, paused, removed}. Raises Rejected('unknown_bot_type')."""
        return self._queue(bot_type, "pause", timeout)

    def resume(self, bot_type, timeout=None):
        """Dispatch bot_type again; returns {botType, paused, removed}."""
        return self._queue(bot_type, "resume", timeout)

    def drain(self, bot_type, timeout=None):
        """Remove bot_type's queued jobs; returns {botType, paused, removed}."""
        return self._queue(bot_type, "drain", timeout)

    def clean(self, bot_type, state, older_than_ms=0, timeout=None):
        """Remove bot_type's jobs that ended in state ("completed", "failed" or
        "cancelled") more than older_than_ms ago, in memory and in Redis; returns
        {removed, ...}."""
        return self._queue(bot_type, "clean", timeout, state=state, olderThanMs=older_than_ms)

    def retry_jobs(self, bot_type, state="failed", older_than_ms=0, limit=None, timeout=None):
        """Run bot_type's jobs that ended in state ("failed" or "cancelled") at least
        older_than_ms ago again, each as retry() does, the oldest first, at most limit
        (1..1000, default 1000) a call (BullMQ's queue.retryJobs); returns {botType,
        retried, more, ...}: while more is true, call again. Raises Rejected:
        bad_request naming the field (also for the webhook type), unknown_bot_type,
        store_unavailable."""
        extra = {"state": state, "olderThanMs": older_than_ms}
        if limit is not None:
            extra["limit"] = limit
        return self._queue(bot_type, "retry", timeout, **extra)

    def remove(self, job_id, timeout=None):
        """Delete a job that is not running. Raises Rejected: not_found, conflict."""
        self._reply(REMOVE, {"jobId": job_id}, timeout)

    def promote(self, job_id, timeout=None):
        """A delayed job is due now; returns its record. Raises Rejected('conflict')."""
        return self._job_reply(PROMOTE, job_id, timeout)

    def add_schedule(self, key, bot_type, payload=None, *, cron=None, tz=None, every_ms=None, limit=None,
                     start_at=None, end_at=None, priority=None, webhook_url=None, timeout=None):
        """Create (or replace) a repeatable job: cron (5 fields, in tz) or every_ms;
        returns the schedule record (runs, nextAt, ended). Raises Rejected naming the field."""
        body = {"action": "add", "key": key, "botType": bot_type, "payload": payload}
        for name, value in (("cron", cron), ("tz", tz), ("everyMs", every_ms), ("limit", limit),
                            ("startAt", start_at), ("endAt", end_at), ("priority", priority),
                            ("webhookUrl", webhook_url)):
            if value is not None:
                body[name] = value
        return self._reply(SCHEDULE, body, timeout).get("schedule")

    def schedules(self, timeout=None):
        """The schedules, each with its runs and nextAt."""
        return self._reply(SCHEDULE, {"action": "list"}, timeout).get("schedules", [])

    def remove_schedule(self, key, timeout=None):
        """Remove a schedule. Raises Rejected('not_found')."""
        self._reply(SCHEDULE, {"action": "remove", "key": key}, timeout)

    def ping(self, timeout=None):
        """PING: {redis: bool, uptimeMs}."""
        return self._reply(PING, None, timeout)

    def metrics(self, timeout=None):
        """The broker's metrics in the Prometheus text format."""
        return self._reply(METRICS, None, timeout).get("text", "")

    # answers to a SUBSCRIBE (or its renewal) that mean "subscribe again",
    # not "this subscription is wrong": events() yields a reset for them
    _EVENTS_LOST = ("not_found", "shutting_down", "not_leader", "store_unavailable")
    _EVENTS_BACKOFF, _EVENTS_BACKOFF_MAX = 0.1, 2.0

    def events(self, bot_types=None, job_ids=None, events=None, ttl_ms=30000, since=None):
        """Live job events (protocol.md, SUBSCRIBE): an EventStream, an
        iterator of dicts, BullMQ's QueueEvents.  Each is the broker's EVENT
        ({"event", "id", "jobId", "botType", "seq", "at", "attempt", ...})
        or one of two notices: {"event": "gap", "missed": N} (events were
        lost: the broker's queue for this client was full) and {"event":
        "reset"} (events in between are lost: the subscription was lost and
        the broker no longer had them, to a restart or a failover, or
        since is older than its history; the events the broker holds
        follow it).  Whenever it subscribes again it
        asks for the events since the last one yielded, which the broker
        replays while it still has them (protocol.md, SUBSCRIBE since):
        no reset then.  since: an event id (an event's "id", or a former
        EventStream's last_id, kept across a restart of this process): the
        events after it come first.  For guarantees wait() for the job, or
        use a webhook.

        Runs on a socket of its own (this client's requests are not
        disturbed), renews the subscription every third of ttl_ms and
        subscribes again, on the next broker when there are several, when
        a renewal fails (no answer, or the broker answers not_found,
        shutting_down, not_leader or store_unavailable; backing off 0.1 s
        doubling to 2 s).  Filters: lists of bot types, job ids, event names
        (waiting, active, progress, completed, failed, delayed, removed,
        stalled, cancelled, waiting-children).  Bad filters (or a since that is no event id)
        raise Rejected bad_request; close the stream (or leave the for
        loop, or close this client) to unsubscribe.
        """
        stop = threading.Event()
        state = {"last_id": since}
        gen = self._event_loop(bot_types, job_ids, events, ttl_ms, stop, state)
        self._event_gens[gen] = stop
        return EventStream(gen, state, stop)

    def _event_loop(self, bot_types, job_ids, events, ttl_ms, stop, state):
        body = {"ttlMs": int(ttl_ms)}
        for key, value in (("botTypes", bot_types), ("jobIds", job_ids), ("events", events)):
            if value:
                body[key] = list(value)
        sub = Client(self.endpoint, self.timeout, self._ctx, self.curve)
        sid, last, lost, renew_at = None, 0, False, 0.0
        backoff = self._EVENTS_BACKOFF
        try:
            while not stop.is_set():
                if sid is None or time.monotonic() >= renew_at:
                    since = state["last_id"] if sid is None else None
                    try:
                        reply = sub._reply(SUBSCRIBE, dict(body, subscription=sid) if sid else
                                           dict(body, since=since) if since else body)
                    except Rejected as e:
                        if e.code not in self._EVENTS_LOST:
                            raise
                        lost = lost or sid is not None or e.code == "not_found"
                        sid = None
                        if e.code != "not_found":       # (lapsed, or another broker: at once)
                            # a broker stopping, a standby, a store away: the next broker, later
                            sub._reset()
                            sub._eps.next()
                            time.sleep(backoff)
                            backoff = min(backoff * 2, self._EVENTS_BACKOFF_MAX)
                        continue
                    except BrokerTimeout:
                        sid, lost = None, lost or sid is not None
                        time.sleep(backoff)
                        backoff = min(backoff * 2, self._EVENTS_BACKOFF_MAX)
                        continue
                    backoff = self._EVENTS_BACKOFF
                    if reply.get("subscription") != sid:
                        sid, last = reply.get("subscription"), reply.get("seq") or 0
                        if since:       # replayed after since, or reset: not in the history
                            lost = reply.get("reset", True)
                        # (after a reset the broker's whole history follows: the ids come with it)
                        if not since or (lost and not reply.get("replayed")):
                            state["last_id"] = reply.get("eventId") or state["last_id"]
                        if lost:
                            yield {"event": "reset"}
                        lost = False
                    renew_at = time.monotonic() + ttl_ms / 3000.0
                while sub._events:
                    ev = sub._events.popleft()
                    seq = ev.get("seq")
                    if ev.get("subscription") != sid or not isinstance(seq, int):
                        continue                        # an earlier subscription's
                    if seq > last + 1:
                        yield {"event": "gap", "missed": seq - last - 1}
                    last = max(last, seq)
                    state["last_id"] = ev.get("id") or state["last_id"]
                    yield ev
                got = sub._recv(max(0.0, min(1.0, renew_at - time.monotonic())))
                if got is not None and got[0] == EVENT:
                    sub._events.append(got[1])
        finally:
            if sid is not None:
                try:
                    sub._reply(UNSUBSCRIBE, {"subscription": sid}, timeout=1)
                except BotmeshError:
                    pass
            sub.close()

    def wait(self, job_id, timeout=60.0, poll_interval=0.5):
        """Wait until the job ends; returns its record (completed, failed or cancelled).

        Uses the RESULT push when the job was submitted here with notify=True,
        and STATUS polling otherwise (and as a fallback every few seconds,
        since a push is lost when the broker restarts). Raises WaitTimeout
        when the job is still not terminal after timeout seconds, or
        BrokerTimeout if the broker did not answer at all meanwhile.
        """
        deadline = time.monotonic() + float(timeout)
        last, last_err = None, None
        next_poll = time.monotonic()
        if job_id in self._notified:
            next_poll += max(2.0, poll_interval)     # the push should come first
        while True:
            if job_id in self._results:
                return self._results.pop(job_id)
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_poll:
                try:
                    rec = self.status(job_id, timeout=min(self.timeout, max(0.05, deadline - now)))
                except BrokerTimeout as exc:
                    last_err = exc
                else:
                    last_err = None
                    last = rec
                    if rec.get("state") in TERMINAL_STATES:
                        self._results.pop(job_id, None)
                        self._notified.discard(job_id)
                        return rec
                interval = poll_interval if job_id not in self._notified else max(2.0, poll_interval)
                next_poll = time.monotonic() + interval
                continue
            got = self._recv(min(next_poll, deadline) - now)
            if got is not None and got[0] == RESULT:
                self._stash(got[1])
            elif got is not None and got[0] == RESULT_MANY:
                for item in got[1].get("jobs") or ():
                    if isinstance(item, dict):
                        self._stash(item)
        if last is None and last_err is None:
            # Only the push was awaited (notify): ask once where the job is, to say so.
            try:
                last = self.status(job_id, timeout=min(self.timeout, 2.0))
            except BrokerTimeout as exc:
                last_err = exc
            else:
                if last.get("state") in TERMINAL_STATES:
                    return last
        if last_err is not None:
            raise BrokerTimeout("broker_timeout", "waiting for job %s: no reply from the broker at %s "
                                "(is it running?)" % (job_id, self.endpoint))
        state = last.get("state")
        raise WaitTimeout("wait_timeout", "job %s did not end within %gs (state: %s)" % (job_id, timeout, state),
                          job=last)

    def run(self, bot_type, payload=None, timeout=60.0, **options):
        """Submit with notify, wait, and return the job's result.
        Raises JobFailed (code = the job's error code) if it failed or was cancelled."""
        options.setdefault("notify", True)
        job_id = self.submit(bot_type, payload, **options)
        rec = self.wait(job_id, timeout=timeout)
        if rec.get("state") != "completed":
            err = rec.get("error") if isinstance(rec.get("error"), dict) else {}
            raise JobFailed(err.get("code") or rec.get("state", "failed"),
                            err.get("message") or "job %s %s" % (job_id, rec.get("state")), job=rec)
        return rec.get("result")


# --- worker -------------------------------------------------------------------

class Job:
    """One job handed to a worker handler."""

    def __init__(self, worker, body):
        self._worker = worker
        self.id = body["jobId"]
        self.bot_type = body.get("botType")
        self.payload = body.get("payload")
        self.attempt = body.get("attempt", 1)
        self.done_attempt = self.attempt         # the attempt its DONE ends (a JOB again may raise it)
        self.timeout_ms = body.get("timeoutMs")
        self.deadline = body.get("deadline")       # the broker's clock, ms since the epoch
        self.received_at = now_ms()
        # The attempt ends timeoutMs after it arrived, on this host's monotonic
        # clock (the same in a job's own process): no clocks of two hosts compared.
        self.expires_mono = (time.monotonic() + self.timeout_ms / 1000.0
                             if isinstance(self.timeout_ms, int) else None)
        self.cancelled = threading.Event()       # set when the broker sends CANCEL
        self.cancel_reason = None
        self.released = False                    # handed back to the broker (worker stopping)
        self._log = bytearray()                  # the tail of its log (job.log), UTF-8
        self._log_lock = threading.Lock()

    def progress(self, percent):
        """Report progress to the broker: a number 0..100 (outside: clamped).
        Anything else raises TypeError."""
        self._worker._emit(W_PROGRESS, {"jobId": self.id, "progress": _percent(percent)})

    def log(self, text):
        """Add a line to the job's log (BullMQ's job.log): sent with the run's
        DONE, whatever its outcome, as the record's log (GET /job/{id}/logs,
        logs()). The last JOB_LOG_MAX_BYTES are kept. Text that is not a
        str raises TypeError."""
        line = _log_line(text)
        with self._log_lock:
            _log_append(self._log, line)

    def _log_text(self):
        with self._log_lock:
            return self._log.decode("utf-8", "replace") if self._log else None

    def is_cancelled(self):
        return self.cancelled.is_set()

    def time_left(self):
        """Seconds until the attempt's timeoutMs runs out (None if unknown)."""
        if self.expires_mono is None:
            return None
        return max(0.0, self.expires_mono - time.monotonic())

    def __repr__(self):
        return "<Job %s %s attempt %s>" % (self.id, self.bot_type, self.attempt)


def _log_line(text):
    """job.log()'s argument as the bytes of one line of the log."""
    if not isinstance(text, str):
        raise TypeError("log takes a str, not %r" % (type(text).__name__,))
    return text.encode("utf-8", "replace") + b"\n"


def _log_append(log, line):
    """Append line to log (a bytearray), keeping its last JOB_LOG_MAX_BYTES,
    cut at the start of a character."""
    log += line
    if len(log) > JOB_LOG_MAX_BYTES:
        cut = len(log) - JOB_LOG_MAX_BYTES
        while cut < len(log) and (log[cut] & 0xC0) == 0x80:
            cut += 1
        del log[:cut]


def _percent(percent):
    """job.progress()'s argument as the wire's integer 0..100."""
    if isinstance(percent, bool) or not isinstance(percent, numbers.Real) or percent != percent:
        raise TypeError("progress must be a number from 0 to 100, not %r" % (percent,))
    return int(max(0, min(100, percent)))


class _ProcessJob:
    """The job as a handler sees it in its own process (isolation="process"):
    the same attributes as Job; progress goes to the worker through a pipe.
    cancelled is a multiprocessing Event the worker sets on CANCEL, just
    before it sends the process SIGTERM (a handler that wants to clean up
    handles SIGTERM; by default the process just ends)."""

    def __init__(self, job, cancelled):
        self.id = job.id
        self.bot_type = job.bot_type
        self.payload = job.payload
        self.attempt = job.attempt
        self.timeout_ms = job.timeout_ms
        self.deadline = job.deadline
        self.received_at = job.received_at
        self.expires_mono = job.expires_mono
        self.cancelled = cancelled
        self._conn = None

    def progress(self, percent):
        self._conn.send(("progress", _percent(percent)))

    def log(self, text):
        self._conn.send(("log", _log_line(text).decode("utf-8")))

    def is_cancelled(self):
        return self.cancelled.is_set()

    time_left = Job.time_left

    def __repr__(self):
        return "<Job %s %s attempt %s (process %d)>" % (self.id, self.bot_type, self.attempt, os.getpid())


# The signals that mean a job's process was killed from outside (as the C
# worker reads them): a crash of its own (SIGSEGV, SIGABRT) fails the job.
_LOST_SIGNALS = (signal.SIGKILL, signal.SIGTERM)


class _Lost:
    """_run_in_process's error for a process killed from outside."""

    def __init__(self, signum):
        self.signal = int(signum)


def _process_job_main(handler, job, conn):
    """Entry point of a job's process: run the handler, send its outcome."""
    # Ctrl-C reaches the whole process group: the worker stops gracefully,
    # and the job goes on in its grace rather than dying of KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    job._conn = conn
    try:
        outcome = ("ok", handler(job.payload, job))
    except JobError as exc:
        outcome = ("error", str(exc.code), str(exc.message)[-4000:])
    except BaseException as exc:           # the handler's failure is the job's failure
        outcome = ("error", "bot_failed", ("%s: %s" % (type(exc).__name__, exc))[-4000:])
    try:
        conn.send(outcome)
    except Exception as exc:               # the result cannot be pickled
        conn.send(("error", "bad_output", "result cannot be sent back: %s" % exc))
    conn.close()


class Worker:
    """A BMW01 worker: serves bot types with handler(payload, job) -> result.

    Each job runs in its own thread (at most `credit` at once); the socket
    lives in the thread that calls run(). The handler returns the result
    (any msgpack value) or raises: JobError(code, message) chooses the
    error code, any other exception ends the job with 'bot_failed'.
    isolation="thread" (the default): the handler runs in a thread of this
    process. A cancelled job (CANCEL from the broker: cancelled or timeout)
    has job.cancelled set; Python cannot kill a thread, so the handler should
    look at it, and its credit returns only when the handler returns.
    isolation="process": each job runs in a process of its own (started by a
    multiprocessing forkserver, so the handler must be a module-level
    function and its result picklable). A cancel, a timeout or a stop past
    its grace kills that process (SIGTERM, then SIGKILL after kill_grace
    seconds) and the credit returns at once; a process that dies without
    an answer fails the job with bot_crashed.
    """
    _count = 0                                # workers made in this process, for default names
    _count_lock = threading.Lock()

    def __init__(self, types, handler, credit=1, endpoint=None, name=None, heartbeat_ms=None, liveness=None,
                 context=None, curve=None, max_result_bytes=MAX_PAYLOAD_BYTES, stop_grace=10.0,
                 isolation="thread", kill_grace=2.0):
        if isinstance(types, str):
            types = [types]
        types = list(types)
        if not types:
            raise ValueError("a worker needs at least one bot type")
        for t in types:
            if not isinstance(t, str) or not BOT_TYPE_RE.match(t):
                raise ValueError("bad bot type %r: 1-32 characters of [a-z0-9_-]" % (t,))
        if not isinstance(credit, int) or credit < 0:
            raise ValueError("credit must be an integer >= 0")
        if not callable(handler):
            raise TypeError("handler must be callable: handler(payload, job) -> result")
        if isolation not in ("thread", "process"):
            raise ValueError("isolation must be 'thread' or 'process', not %r" % (isolation,))
        if isolation == "process":
            try:
                pickle.dumps(handler)
            except Exception as exc:
                raise TypeError("isolation='process' needs a handler that can be pickled "
                                "(a module-level function): %s" % exc) from None
        self.isolation = isolation
        self.kill_grace = kill_grace
        self._mp = multiprocessing.get_context("forkserver") if isolation == "process" else None
        self.types = types
        self.handler = handler
        self.credit = credit
        self.endpoint = endpoint or default_endpoint()
        self._eps = Endpoints(self.endpoint)
        if not name:
            with Worker._count_lock:
                Worker._count += 1
                n = Worker._count
            name = "%s-%d-py%s" % (_socket.gethostname(), os.getpid(), "" if n == 1 else n)
        if not isinstance(name, str) or not re.fullmatch(r"[\x21-\x7e]{1,128}", name):
            raise ValueError("worker name %r: 1 to 128 printable ASCII characters without spaces" % (name,))
        self.name = name
        self.error = None                     # the broker refused READY: the BotmeshError run() raised
        self.heartbeat_ms = heartbeat_ms or _env_int("HEARTBEAT_INTERVAL_MS", DEFAULT_HEARTBEAT_MS, 10, 3600000)
        self.liveness = liveness or _env_int("HEARTBEAT_LIVENESS", DEFAULT_LIVENESS, 1, 1000)
        self.curve = curve
        self.max_result_bytes = max_result_bytes
        self.stop_grace = stop_grace
        self._ctx = context or zmq.Context.instance()
        self._sock = None
        self._watch = None                    # socket monitor: the broker's connection closing
        self._jobs = {}                       # jobId -> Job, running here
        self._lock = threading.Lock()
        self._inbox = collections.deque()     # (command, body) from handler threads
        self._outbox = collections.deque()    # (command, body) waiting for the socket
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self._retired = False                 # replaced while stopping: run() ends, nothing sent
        self._stop_grace = stop_grace
        self._thread = None
        self._done = threading.Event()
        self._pending_credit = None
        self._answered = False                # the broker answered on the current socket
        # Recent DONEs, to send again after READY on a new socket (the broker
        # may have missed them: it restarted, or the old socket closed with
        # them queued): [monotonic time sent, body, its size], oldest first,
        # at most DONE_KEEP_MAX of at most DONE_KEEP_BYTES. One ages only
        # while a broker connection is up, from
        # when it was sent or the last READY on a new socket, whichever is
        # later, and goes after 4 x heartbeat x liveness of that (twice a
        # broker's hold of a lost worker's jobs, so that the JOB it sends
        # after the hold still finds the DONE): a broker
        # away for long still gets the DONEs of the runs that ended
        # meanwhile. The completed ones are found by job id: a JOB for a job
        # completed here is answered with its DONE instead of running the
        # handler again.
        self._kept = collections.deque()
        self._kept_completed = {}             # jobId -> its completed entry in _kept
        self._kept_bytes = 0                  # the msgpack bytes of the bodies in _kept
        self._link_up = True                  # a socket to a broker is open (not between two)
        self._replaced_count = 0              # replaced in a row (DISCONNECT replaced)
        self._replaced_at = 0.0               # monotonic time of the last
        self._up_since = time.monotonic()     # the last READY on a new socket
        self._heard = None                    # when the broker last sent anything
        # counters, for tests and monitoring
        self.connects = 0
        self.jobs_done = 0
        self.jobs_lost = 0                    # runs whose process was killed from outside (RELEASE lost)
        self.dones_sent_again = 0             # kept DONEs sent again after a reconnect
        self.jobs_answered_again = 0          # JOBs answered with a kept DONE (handler not run)
        self.nacks = []

    def __del__(self):
        for fd in (getattr(self, "_wake_r", None), getattr(self, "_wake_w", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass

    # --- public ---------------------------------------------------------------

    def start(self):
        """Run the worker in a background thread; returns self."""
        self._thread = threading.Thread(target=self.run, name="botmesh-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, grace=None, wait=True, timeout=None):
        """Graceful stop: credit 0, let running jobs finish (up to grace seconds),
        RELEASE the rest, DISCONNECT. Thread- and signal-safe. With wait=True and
        start() used, joins the worker thread (up to timeout seconds)."""
        if grace is not None:
            self._stop_grace = grace
        self._stop.set()
        self._wake()
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout if timeout is not None else self._stop_grace + 5)
            return not self._thread.is_alive()
        return True

    def set_credit(self, credit):
        """Change the credit (sends READY again). Thread-safe."""
        self._pending_credit = int(credit)
        self._wake()

    @property
    def running(self):
        with self._lock:
            return len(self._jobs)

    def run_forever(self):
        """run() with SIGTERM/SIGINT mapped to a graceful stop (main thread only)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop(wait=False))
        self.run()

    # --- internals --------------------------------------------------------------

    def _wake(self):
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass                                  # a wake-up is already pending

    def _emit(self, command, body):
        """From any thread: queue a message for the socket thread."""
        self._inbox.append((command, body))
        self._wake()

    def _ready_body(self, running=False):
        body = {"name": self.name, "types": self.types, "credit": self.credit, "pid": os.getpid()}
        if running:
            # READY on a new socket lists the jobs we run: a broker that took
            # over (or restarted) adopts them instead of running them again.
            with self._lock:
                ids = list(self._jobs)[:10000]
            if ids:
                body["running"] = ids
        return body

    def _unwatch(self, poller):
        if self._watch is not None:
            poller.unregister(self._watch)
            try:
                self._sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._watch.close(0)
            self._watch = None

    def _broker_closed(self):
        """True if the socket monitor says the broker closed the connection."""
        gone = False
        while True:
            try:
                frames = self._watch.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return gone
            event = int.from_bytes(frames[0][:2], "little") if frames and len(frames[0]) >= 2 else 0
            gone = gone or event == zmq.EVENT_DISCONNECTED

    def _connect(self, poller):
        if self._sock is not None:
            self._unwatch(poller)
            poller.unregister(self._sock)
            self._sock.close(0)
        s = self._ctx.socket(zmq.DEALER)
        _setup_socket(s, self.curve)
        # Queue only on a live connection: what the broker cannot take yet stays
        # in our outbox (and survives the next reconnect) instead of in a dead pipe.
        s.setsockopt(zmq.IMMEDIATE, 1)
        s.connect(self._eps.current)
        self._sock = s
        poller.register(s, zmq.POLLIN)
        # With several brokers, a leader that dies (the kernel closes its
        # connections) is left at once for the next one, not after
        # HEARTBEAT_LIVENESS silent intervals; a host that vanishes closes
        # nothing, and heartbeats remain the net under this.
        if len(self._eps) > 1:
            try:
                self._watch = s.get_monitor_socket(zmq.EVENT_DISCONNECTED)
                poller.register(self._watch, zmq.POLLIN)
            except zmq.ZMQError as exc:
                log.debug("botmesh worker %s: no socket monitor (%s): heartbeats only", self.name, exc)
                self._watch = None
        self.connects += 1
        self._prune_kept(time.monotonic())    # what aged on the connection just closed
        self._link_up, self._up_since = True, time.monotonic()
        # READY first on every new socket; HEARTBEATs queued for the old one are stale.
        pending = [m for m in self._outbox if m[0] not in (W_HEARTBEAT, W_READY)]
        self._outbox.clear()
        self._outbox.append((W_READY, self._ready_body(running=True)))
        # Then the recent DONEs the broker may have missed, oldest first (one
        # it already has is answered NACK not_owner), and what still waits.
        waiting = {id(body) for command, body in pending if command == W_DONE}
        again = [(W_DONE, entry[1]) for entry in self._kept if id(entry[1]) not in waiting]
        self._outbox.extend(again)
        self.dones_sent_again += len(again)
        self._outbox.extend(pending)
        now = time.monotonic()
        self._last_recv = now
        self._last_send = now
        self._answered = False                # "connected" once the broker answers on this socket
        self._registered = False              # the broker sent something but NACK/DISCONNECT on it
        if self.connects > 1:
            log.info("botmesh worker %s: sent READY again to %s; waiting for the broker", self.name,
                     self._eps.current)

    def _keep_done(self, body, now):
        try:
            size = len(_pack(body))
        except BotmeshError:
            size = None
        if size is None or size > DONE_KEEP_BYTES:
            return                            # not kept: a replay is best effort
        while self._kept and self._kept_bytes + size > DONE_KEEP_BYTES:
            self._drop_kept("more than %d bytes kept" % DONE_KEEP_BYTES)
        entry = [now, body, size]
        self._kept.append(entry)
        self._kept_bytes += size
        if body.get("ok") is True:
            self._kept_completed[body["jobId"]] = entry
        while len(self._kept) > DONE_KEEP_MAX:
            self._drop_kept("more than %d kept" % DONE_KEEP_MAX)
        self._prune_kept(now)

    def _last_sent(self, entry):
        """When the kept DONE was last sent: at its run's end, or again
        after the last READY on a new socket."""
        return max(entry[0], self._up_since)

    def _drop_kept(self, why):
        """Forget the oldest kept DONE; a WARN names its job when no live
        broker got it (the broker said nothing on its socket since)."""
        entry = self._kept.popleft()
        self._kept_bytes -= entry[2]
        job_id = entry[1].get("jobId")
        if self._kept_completed.get(job_id) is entry:
            del self._kept_completed[job_id]
        if not (self._link_up and self._heard is not None and self._heard > self._last_sent(entry)):
            log.warning("botmesh worker %s: job %s: its DONE is dropped (%s) before a broker confirmed it: "
                        "the job may run again", self.name, job_id, why)

    def _prune_kept(self, now):
        """While a broker connection is up, forget the DONEs last sent more
        than the time a broker holds a lost worker's jobs (or those it
        recovered from Redis) ago: past that, sending them again could not
        help. Between connections none ages."""
        if not self._link_up:
            return
        horizon = now - 2 * 2 * self.heartbeat_ms * self.liveness / 1000.0
        while self._kept and self._last_sent(self._kept[0]) < horizon:
            self._drop_kept("too old")

    def _replaced_wait(self, by):
        """Another live process took our name: how long to wait before
        registering again; one ERROR a streak (the cause, the fix)."""
        now = time.monotonic()
        if not self._replaced_at or now - self._replaced_at > REPLACED_QUIET_S:
            self._replaced_count = 0
        self._replaced_count += 1
        self._replaced_at = now
        full = min(REPLACED_MAX_S, REPLACED_FIRST_S * 2 ** min(self._replaced_count - 1, 16))
        wait = full / 2 + random.uniform(0, full / 2)
        who = by if isinstance(by, str) and by else "the broker does not say which process"
        if self._replaced_count == 1:
            log.error("botmesh worker %s: the broker replaced this worker's connection: another worker "
                      "registered with the same name %s (%s); give each worker a distinct name. "
                      "Registering again in %.1fs, waiting longer each time while this goes on (up to %ds)",
                      self.name, self.name, who, wait, REPLACED_MAX_S)
        else:
            log.debug("botmesh worker %s: replaced again by %s (%d times in a row); registering again in %.1fs",
                      self.name, who, self._replaced_count, wait)
        return wait

    def _reconnect(self, poller, wait=0.0, replaced_by=False):
        """A new socket after wait seconds, during which no kept DONE ages.
        Replaced (replaced_by: the DISCONNECT's `by`) and told to stop
        meanwhile: no new socket (_retire)."""
        if wait > 0:
            self._prune_kept(time.monotonic())
            self._link_up = False
            self._stop.wait(wait)
        if replaced_by is not False and self._stop.is_set():
            self._retire(replaced_by)
            return
        self._connect(poller)

    def _retire(self, by):
        """DISCONNECT replaced while stopping: another process holds the name
        now. Registering again would replace it and queue its jobs again,
        for a worker about to exit: nothing more is sent, run() returns."""
        who = by if isinstance(by, str) and by else "the broker does not say which process"
        log.warning("botmesh worker %s: the broker replaced this worker's connection while it stops: another "
                    "process registered with the same name %s (%s); not registering again (the broker queued "
                    "this worker's %d running jobs again; their outcomes cannot be sent)",
                    self.name, self.name, who, self.running)
        with self._lock:
            held = list(self._jobs.values())
            self._jobs.clear()
        for job in held:                          # no DONE: the broker has them back
            job.released = True
            job.cancel_reason = "replaced"
            job.cancelled.set()
        self._outbox.clear()
        self._retired = True

    def _queue(self, command, body):
        if command == W_PROGRESS and len(self._outbox) > 1000:
            return                                # never let progress pile up without bound
        self._outbox.append((command, body))

    def _flush(self):
        """Send what the socket will take now."""
        while self._outbox:
            command, body = self._outbox[0]
            try:
                self._sock.send_multipart([WORKER_HEADER, bytes([command]), _pack(body)], flags=zmq.NOBLOCK)
            except zmq.Again:
                return False
            except BotmeshError as exc:           # cannot happen for our own bodies; never loop on it
                log.error("botmesh worker: dropping a message that cannot be encoded: %s", exc)
            self._outbox.popleft()
            self._last_send = time.monotonic()
        return True

    def run(self):
        """Serve jobs until stop(); returns after the graceful stop sequence."""
        poller = zmq.Poller()
        poller.register(self._wake_r, zmq.POLLIN)
        interval = self.heartbeat_ms / 1000.0
        expiry = interval * self.liveness
        self._connect(poller)
        stopping_since = None
        try:
            while True:
                now = time.monotonic()
                # what is the next thing we must do?
                t = self._last_recv + expiry
                if not self._outbox:              # else POLLOUT wakes us when the socket can take it
                    t = min(t, self._last_send + interval)
                if stopping_since is not None:
                    t = min(t, stopping_since + self._stop_grace)
                timeout_ms = max(0, int((t - now) * 1000) + 1)
                if self._outbox:
                    poller.modify(self._sock, zmq.POLLIN | zmq.POLLOUT)
                else:
                    poller.modify(self._sock, zmq.POLLIN)
                events = dict(poller.poll(timeout_ms))
                if self._wake_r in events:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                self._drain_inbox()
                if self._sock in events and events[self._sock] & zmq.POLLIN:
                    self._read_socket(poller)
                    if self._retired:
                        return
                if self._watch is not None and self._watch in events and self._broker_closed():
                    wait = self._eps.next(silent=True)
                    log.warning("botmesh worker %s: the broker closed the connection; trying %s in %.1fs",
                                self.name, self._eps.current, wait)
                    self._reconnect(poller, wait)
                now = time.monotonic()
                if now - self._last_recv > expiry:
                    if self._answered:
                        log.warning("botmesh worker %s: broker at %s silent for %.1fs, reconnecting",
                                    self.name, self._eps.current, now - self._last_recv)
                    else:
                        log.warning("botmesh worker %s: no answer from the broker at %s for %.1fs (is it "
                                    "running there?); trying again", self.name, self._eps.current,
                                    now - self._last_recv)
                    self._reconnect(poller, self._eps.next(silent=True) if len(self._eps) > 1 else 0.0)
                if self._pending_credit is not None and stopping_since is None:
                    self.credit, self._pending_credit = self._pending_credit, None
                    self._queue(W_READY, self._ready_body())
                if self._stop.is_set() and stopping_since is None:
                    stopping_since = now
                    self.credit = 0
                    self._queue(W_READY, self._ready_body())
                    log.info("botmesh worker %s: stopping (credit 0, %d jobs running)", self.name, self.running)
                if stopping_since is not None:
                    if self.running == 0 or now - stopping_since >= self._stop_grace:
                        self._finish_stop()
                        return
                if not self._outbox and now - self._last_send >= interval:
                    self._prune_kept(now)
                    self._queue(W_HEARTBEAT, {})
                if self._outbox:
                    self._flush()
        finally:
            if self._sock is not None:
                self._unwatch(poller)
                self._sock.close(0)
                self._sock = None
            self._done.set()

    def _finish_stop(self):
        # A job that ended just now has its DONE in the inbox: sent as such,
        # not released below.
        self._drain_inbox()
        with self._lock:
            held = list(self._jobs.values())
            self._jobs.clear()
        for job in held:
            # The broker gives it to another worker; ours stops (a process
            # is killed; a thread sees job.cancelled) and sends no DONE.
            job.released = True
            job.cancel_reason = "released"
            job.cancelled.set()
            self._queue(W_RELEASE, {"jobId": job.id})
        self._queue(W_DISCONNECT, {"reason": "shutdown"})
        # give the socket a moment to take the last messages (bounded)
        deadline = time.monotonic() + 1.0
        while not self._flush() and time.monotonic() < deadline:
            self._sock.poll(50, zmq.POLLOUT)
        self._sock.setsockopt(zmq.LINGER, 1000)
        log.info("botmesh worker %s: stopped (%d jobs released)", self.name, len(held))

    def _drain_inbox(self):
        while self._inbox:
            command, body = self._inbox.popleft()
            if command == W_RELEASE:              # a lost run handed back: its credit returns
                with self._lock:
                    self._jobs.pop(body["jobId"], None)
                self.jobs_lost += 1
            if command == W_DONE:
                with self._lock:
                    job = self._jobs.pop(body["jobId"], None)
                if job is not None:
                    body["attempt"] = job.done_attempt   # the broker's latest JOB for it
                    if job.cancelled.is_set() and body.get("ok") is True:
                        # CANCEL came after the handler returned: its result does not count
                        body.pop("result", None)
                        body["ok"] = False
                        body["error"] = _stopped_error(job.cancel_reason)
                self.jobs_done += 1
                self._keep_done(body, time.monotonic())
            self._queue(command, body)

    def _read_socket(self, poller):
        for _ in range(1000):                     # bounded batch, then service timers
            try:
                frames = self._sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            self._last_recv = self._heard = time.monotonic()    # any message is a sign of life
            if not self._answered:
                self._answered = True
                log.info("botmesh worker %s: connected to %s (the broker answered)", self.name,
                         self._eps.current)
            msg = _decode(frames, WORKER_HEADER)
            if msg is None:
                self._on_malformed(frames)
                continue
            command, body = msg
            if command != W_NACK:
                self._eps.served()
            if command not in (W_NACK, W_DISCONNECT):
                self._registered = True
            elif command == W_NACK and body.get("code") == "bad_request" and not self._registered:
                # Our READY refused: sending it again would be refused again.
                self.error = BotmeshError("bad_request", "the broker refused this worker's READY: %s"
                                          % body.get("message"))
                log.error("botmesh worker %s: %s; the worker ends", self.name, self.error.message)
                raise self.error
            if command == W_JOB:
                self._on_job(body)
            elif command == W_CANCEL:
                self._on_cancel(body)
            elif command == W_DISCONNECT and body.get("reason") == "replaced":
                if self._stop.is_set():
                    self._retire(body.get("by"))
                else:
                    self._reconnect(poller, self._replaced_wait(body.get("by")), replaced_by=body.get("by"))
                return
            elif command == W_DISCONNECT and body.get("reason") == "shutting_down":
                # The leader stops (SIGTERM): on to the next broker now, as
                # from one that went silent (its standby is about to lead);
                # alone, after an interval.  Running jobs go in the READY.
                wait = self._eps.next(None, True) if len(self._eps) > 1 else self.heartbeat_ms / 1000.0
                log.info("botmesh worker %s: the broker is shutting down; trying %s in %.1fs",
                         self.name, self._eps.current, wait)
                self._reconnect(poller, wait)
                return
            elif command == W_DISCONNECT:
                log.info("botmesh worker %s: broker sent DISCONNECT (%s), reconnecting",
                         self.name, body.get("reason"))
                self._connect(poller)
                return
            elif command == W_NACK and body.get("code") == "not_leader":
                wait = self._eps.next(body.get("leader"))
                log.info("botmesh worker %s: a standby answered; trying %s in %.1fs",
                         self.name, self._eps.current, wait)
                self._reconnect(poller, wait)
                return
            elif command == W_NACK:
                code, message = body.get("code"), body.get("message")
                if code != "not_owner":
                    log.warning("botmesh worker %s: NACK %s: %s", self.name, code, message)
                self.nacks.append((code, message))
                del self.nacks[:-100]
            elif command == W_HEARTBEAT:
                pass
            else:
                log.warning("botmesh worker %s: ignoring unknown command 0x%02x", self.name, command)

    def _on_malformed(self, frames):
        """A message that does not decode. A JOB among them is answered DONE
        ok:false bad_request (else its slot here and there stays taken)."""
        job_id = None
        if len(frames) == 3 and frames[0] == WORKER_HEADER and frames[1] == bytes([W_JOB]):
            job_id = _job_id_of(frames[2])
        if job_id is None:
            log.warning("botmesh worker %s: ignoring a malformed message (%d frames)", self.name, len(frames))
            return
        log.warning("botmesh worker %s: job %s: its JOB does not decode as msgpack: failed bad_request",
                    self.name, job_id)
        stamp = now_ms()
        self._queue(W_DONE, {"jobId": job_id, "ok": False, "startedAt": stamp, "finishedAt": stamp,
                             "error": {"code": "bad_request",
                                       "message": "the worker cannot decode the job's message (msgpack)"}})

    def _on_job(self, body):
        job_id = body.get("jobId")
        if not isinstance(job_id, str) or not job_id:
            log.warning("botmesh worker %s: JOB without a jobId, ignored", self.name)
            return
        with self._lock:
            if job_id in self._jobs:
                # The broker gave us back a job we still run (after a reconnect):
                # the running handler's DONE answers for this attempt (else
                # the broker would take it for an earlier run and keep the
                # slot of this one taken).
                running = self._jobs[job_id]
                if isinstance(body.get("attempt"), int):
                    running.done_attempt = body["attempt"]
                log.info("botmesh worker %s: job %s dispatched again (attempt %s) while still running here: "
                         "carrying on", self.name, job_id, body.get("attempt"))
                return
        # A job completed here moments ago: the broker lost our DONE (it
        # restarted, or took us for dead) and dispatched it again. Our DONE
        # answers for this attempt too; the handler does not run twice.
        kept = self._kept_completed.get(job_id)
        if kept is not None:
            again = dict(kept[1])
            again["attempt"] = body.get("attempt", 1)
            log.info("botmesh worker %s: job %s dispatched again (attempt %s) after we completed it: "
                     "our DONE answers for it, the handler does not run again", self.name, job_id,
                     again["attempt"])
            self.jobs_answered_again += 1
            self._queue(W_DONE, again)
            return
        with self._lock:
            over = self._stop.is_set() or len(self._jobs) >= self.credit
            if not over:
                job = Job(self, body)
                self._jobs[job_id] = job
        if over:
            log.info("botmesh worker %s: job %s beyond credit %d, released", self.name, job_id, self.credit)
            self._queue(W_RELEASE, {"jobId": job_id})
            return
        threading.Thread(target=self._run_job, args=(job,), name="botmesh-job-" + job_id, daemon=True).start()

    def _on_cancel(self, body):
        job_id = body.get("jobId")
        reason = body.get("reason") or "cancelled"
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            job.cancel_reason = reason
            job.cancelled.set()
            log.info("botmesh worker %s: job %s cancelled by the broker (%s)", self.name, job.id, reason)
            return
        kept = self._kept_completed.pop(job_id, None)
        if kept is not None:
            # Our DONE left before the CANCEL crossed it: the broker did not
            # take it, so it is neither sent again nor answers a later JOB.
            self._kept.remove(kept)
            self._kept_bytes -= kept[2]
            log.warning("botmesh worker %s: job %s: result discarded: CANCEL from the broker (%s) for the "
                        "run we completed", self.name, job_id, reason)

    def _run_in_process(self, job):
        """isolation="process": run the handler in its own process and wait
        for its outcome, a cancel, or its death. Returns (result, error)."""
        reader, writer = self._mp.Pipe(duplex=False)
        cancelled = self._mp.Event()
        proc = self._mp.Process(target=_process_job_main,
                                args=(self.handler, _ProcessJob(job, cancelled), writer),
                                name="botmesh-job-" + job.id, daemon=True)
        try:
            proc.start()
        except Exception as exc:
            reader.close()
            writer.close()
            return None, {"code": "bot_failed", "message": "cannot start the job's process: %s" % exc}
        writer.close()
        try:
            while True:
                if job.cancelled.is_set():
                    cancelled.set()
                    self._kill(proc)
                    return None, _stopped_error(job.cancel_reason)
                if reader.poll(0.05):
                    try:
                        message = reader.recv()
                    except (EOFError, OSError):
                        proc.join(self.kill_grace)
                        # Killed from outside (kill -9, the OOM killer, a
                        # stray SIGTERM): not the job's failure, a lost
                        # attempt (docs/protocol.md section 5, RELEASE lost).
                        signum = -proc.exitcode if proc.exitcode is not None and proc.exitcode < 0 else 0
                        if signum in _LOST_SIGNALS and not job.cancelled.is_set():
                            return None, _Lost(signum)
                        return None, {"code": "bot_crashed",
                                      "message": "the job's process ended without an answer (exit code %s)"
                                      % proc.exitcode}
                    if message[0] == "progress":
                        job.progress(message[1])
                    elif message[0] == "log":
                        with job._log_lock:
                            _log_append(job._log, message[1].encode("utf-8"))
                    elif message[0] == "ok":
                        return message[1], None
                    else:
                        return None, {"code": message[1], "message": message[2]}
        finally:
            reader.close()
            if proc.is_alive():
                proc.join(self.kill_grace)
                self._kill(proc)

    def _kill(self, proc):
        if proc.is_alive():
            proc.terminate()
            proc.join(self.kill_grace)
        if proc.is_alive():
            proc.kill()
            proc.join(self.kill_grace)

    def _run_job(self, job):
        done = {"jobId": job.id, "startedAt": now_ms(), "attempt": job.attempt}
        error = result = None
        if self.isolation == "process":
            result, error = self._run_in_process(job)
        else:
            try:
                result = self.handler(job.payload, job)
            except JobError as exc:
                error = {"code": str(exc.code), "message": str(exc.message)[-4000:]}
            except BaseException as exc:           # the handler's failure (sys.exit() too) is the job's failure
                error = {"code": "bot_failed", "message": ("%s: %s" % (type(exc).__name__, exc))[-4000:]}
        if job.released:
            return                                 # handed back to the broker at stop: no DONE
        if job.cancelled.is_set():
            # The broker stopped this run (timeout, cancel): a result the
            # handler returned anyway is not the job's, and is not kept.
            result, error = None, _stopped_error(job.cancel_reason)
        elif isinstance(error, _Lost):
            # Its process was killed from outside: the broker runs the job
            # again as its next attempt (past maxAttempts: worker_lost).
            log.warning("botmesh worker %s: job %s: its process was killed by signal %d from outside the "
                        "worker: handed back to the broker as a lost attempt (%s)", self.name, job.id,
                        error.signal, job.attempt)
            self._emit(W_RELEASE, {"jobId": job.id, "lost": True, "signal": error.signal})
            return
        if error is None:
            try:
                size = len(msgpack.packb(result, use_bin_type=True, unicode_errors="surrogateescape"))
            except Exception as exc:
                error = {"code": "bad_output", "message": "result cannot be encoded as msgpack: %s" % exc}
            else:
                if size > self.max_result_bytes:
                    error = {"code": "bad_output", "message": "result is %d bytes encoded, the limit is %d"
                             % (size, self.max_result_bytes)}
        if error is None:
            done["ok"] = True
            done["result"] = result
        else:
            done["ok"] = False
            done["error"] = error
        done["finishedAt"] = now_ms()
        text = job._log_text()
        if text:
            done["log"] = text
        self._emit(W_DONE, done)

"""test_brfuzz.py - a model-based random-sequence tester of the broker.

A real redis-server (AOF) and a real broker; fake workers and a client that
speak BMW01/BMC01 over ZeroMQ themselves, driven by a seeded random sequence
of operations: SUBMIT (priorities, delays, idempotency keys, retries and
timeouts), worker DONE (ok, failed, for jobs it holds or not, twice, late),
PROGRESS, workers that leave, crash, go silent or reconnect under their name,
CANCEL, PROMOTE, RETRY, STATUS, REMOVE, pause, resume and drain, malformed messages, Redis
holding writes a moment (CLIENT PAUSE WRITE), and broker restarts (SIGTERM
and SIGKILL) in the middle.  The fake workers follow the
worker's side of protocol.md section 5 (they heartbeat, keep their recent
DONEs and send them again after READY on a new socket, list their running
jobs in that READY, stop a run they are told to CANCEL with a DONE of code
timeout or cancelled, answer a JOB for a job whose completed DONE they keep
with that DONE).

Invariants (the broker's answers, STATS and Redis are the oracle):
- after every step: the broker is alive; every type's usage <= its limit;
  every worker's running <= the credit its name announced; the slots the
  workers hold are as many as the permits the types hold (plus, at most,
  the runs a READY listed that have had no answer yet: the broker may be
  asking Redis about them); a terminal state
  once seen (STATUS, CANCEL, RESULT) stays until a RETRY;
- on every frame a worker receives: no JOB beyond the connection's credit,
  none for a run the connection is told to stop, none for a job the client
  cancelled or a type it paused (once the answer is 300 ms old), no attempt
  past attempts + maxAttempts - 1; a NACK bad_* only after a malformed
  message was sent;
- at quiescence (types resumed, every worker live and answering at once):
  every accepted job is terminal, in STATUS and in Redis alike; Redis holds
  one record per accepted job and no unfinished one; a completed job's
  result is one a worker sent for it, its attempts no fewer than the
  highest attempt dispatched since its last RETRY; a job whose CANCEL was
  answered cancelled (and not retried) ends cancelled; attemptErrors names
  each failed run once, with a code the model can explain; RESULT pushes
  at most one per job per run; usage, waiting, delayed and every worker's
  running are back to 0; every malformed message was answered.

A sequence is a list of operations [name, p1, p2, p3] whose parameters are
interpreted against the state at the time (p % len(jobs), ...), so that a
shorter list still runs: shrink() removes chunks of a failing list while it
keeps failing.  Seeds: BRFUZZ_SEED (default DEFAULT_SEED, the sequences
CTest runs; "random" draws a seed; the seed is printed), BRFUZZ_RUNS (3)
sequences of BRFUZZ_OPS (60) operations, sequence k from seed + k;
BRFUZZ_RESTART_RATE (0.04) of them broker restarts;
BRFUZZ_REPLAY=file.json runs one saved sequence; with BRFUZZ_SAVE=file.json
a failing sequence is saved there (shrunk first with --shrink, at most
BRFUZZ_SHRINK_RUNS runs); BRFUZZ_TRACE=file keeps the failing run's whole
trace.  BRFUZZ_KNOWN_BUGS=1 drops the guards around known broker bugs
(GUARDS below).  Run directly: /usr/bin/python3 test_brfuzz.py [--shrink]
(BOTMESH_BIN, PYTHONPATH as CTest sets them).
"""
import json
import os
import random
import signal
import sys
import time

import zmq
import harness as h

HB_MS, LIVENESS = 250, 4
HB_S = HB_MS / 1000.0
KEEP_DONE_S = 4 * HB_S * LIVENESS          # how long a worker keeps its DONEs (protocol.md section 5)
LIMITS = {"python": 2, "node": 1}
QUEUE_CMD, REMOVE, PROMOTE = 0x0B, 0x0C, 0x0D     # BMC01 commands harness does not name
GRACE = 0.3                                 # the age of an answer before a frame contradicting it counts
BROKER_ENV = {"HEARTBEAT_INTERVAL_MS": str(HB_MS), "HEARTBEAT_LIVENESS": str(LIVENESS),
              "MAX_PYTHON_BOTS": str(LIMITS["python"]), "MAX_NODE_BOTS": str(LIMITS["node"]),
              "BROKER_SAVE_RUNNING_MS": "0", "RETRY_ATTEMPTS": "1", "LOG_LEVEL": "info"}

OPS = ["submit"] * 8 + ["done_ok"] * 5 + ["done_fail"] * 2 + ["finish_stop"] * 2 + [
    "progress", "cancel", "cancel", "promote", "retry", "pause", "resume", "done_foreign",
    "done_twice", "worker_disconnect", "worker_crash", "worker_silent", "worker_wake",
    "worker_reconnect", "worker_credit", "release", "malformed_worker", "malformed_client",
    "wait", "redis_pause", "redis_pause", "status", "status", "remove", "drain"] + ["wait"] * 3
RARE_OPS = ["restart_term", "restart_kill"]


#  Sequences that hit a broker bug already known are steered around it, so
#  that the test keeps watching everything else; BRFUZZ_KNOWN_BUGS=1 drops
#  the guards (to check a fix).  None at present.
GUARDS = os.environ.get("BRFUZZ_KNOWN_BUGS", "") in ("", "0")


class Violation(Exception):
    pass


def now():
    return time.monotonic()


def run_times():
    """A DONE's startedAt and finishedAt (the worker's clock, ms), as every
    worker sends them: sent again, a kept DONE keeps them."""
    t = int(time.time() * 1000)
    return {"startedAt": t - 5, "finishedAt": t}


class Job:
    def __init__(self, jid, btype, spec, payload):
        self.id, self.type, self.spec, self.payload = jid, btype, spec, payload
        self.cancelled_at = None            # when a CANCEL answered cancelled (None after a RETRY)
        self.results_sent = []              # results of DONE ok sent for it
        self.failed_sent = set()            # (attempt, code) of DONE ok:false sent for it
        self.max_attempt = 0                # highest JOB attempt since the last RETRY
        self.last_job_at = None             # when a worker last received a JOB for it
        self.dispatch_lost = False          # a dispatch of it may have been lost with a crash
        self.retries = 0                    # RETRY accepted
        self.pushes = 0                     # RESULT pushes received
        self.pushed = None                  # (state, retries then) of the latest RESULT
        self.terminal = None                # (state, retries then) of the latest terminal state seen
        self.removed_at = None              # when REMOVE answered removed
        self.accepted_at = now()


class Conn:
    """One connection (DEALER socket) of a fake worker."""
    seq = 0

    def __init__(self, fw, endpoint):
        Conn.seq += 1
        self.id = Conn.seq
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.fw = fw
        self.max_credit = 0
        self.last_sent = 0.0
        self.last_heard = now()
        self.expect_bad = 0                 # malformed messages sent, not yet answered
        self.stopping = {}                  # job id -> (attempt, reason): runs told to stop
        self.listed = set()                 # ids its READY listed, no CANCEL for them yet

    def send(self, cmd, body, header=h.WORKER):
        self.sock.send_multipart([header, bytes([cmd]), h.pack(body)])
        self.last_sent = now()

    def close(self):
        self.sock.close()


class FakeWorker:
    def __init__(self, fz, name, types, credit):
        self.fz, self.name, self.types, self.credit = fz, name, types, credit
        self.conn = None
        self.running = {}                   # job id -> (attempt, type)
        self.kept = {}                      # job id -> (DONE body, kept since)
        self.silent = False
        self.down = True                    # no process (left, crashed)
        self.max_credit = credit

    def connect(self):
        """A new socket and READY listing the runs it has (a READY that does
        not list them voids the credit and limit guarantees, section 5),
        then its kept DONEs again, oldest first."""
        if self.conn:
            self.conn.close()
        self.conn = Conn(self, self.fz.endpoint)
        self.down = False
        self.silent = False
        body = {"name": self.name, "types": self.types, "credit": self.credit, "pid": 4242}
        if self.running:
            body["running"] = sorted(self.running)
        self.max_credit = max(self.max_credit, self.credit)
        self.conn.max_credit = self.credit
        self.conn.send(h.READY, body)
        self.conn.listed = set(self.running)
        t = now()
        for jid in sorted(self.kept, key=lambda j: self.kept[j][1]):    # oldest first
            body, _ = self.kept[jid]
            self.kept[jid] = (body, t)
            self.conn.send(h.DONE, body)

    def held(self):
        """The slots this worker's runs take: its runs, and those it was told
        to stop but for a job the broker does not know (CANCEL unknown: no
        slot, section 5)."""
        stopping = [r for _, r in self.conn.stopping.values() if r != "unknown"] if self.conn else []
        return len(self.running) + len(stopping)


class Fuzz:
    def __init__(self, ops, binary_env=None, label=""):
        self.ops = ops
        self.label = label
        self.jobs = {}                      # id -> Job
        self.order = []                     # job ids in acceptance order
        self.keys = {}                      # idempotency key -> (type, payload, job id)
        self.paused = {}                    # type -> when the pause was answered (None: resumed)
        self.trace = []
        self.nacks = []
        self.pending = {}                   # req -> SUBMIT context, answer not read yet
        self.drains = {}                    # type -> jobs QUEUE drain said it removed
        self.drained_at = {}                # type -> when the latest drain was answered
        self.lost_submits = 0
        self.odd = set()                    # answers that differ from protocol.md but break no invariant
        self.draining = False
        self.endpoint = None
        self.broker = None
        self.restarts = 0
        self.redis_free_at = -1e9

    # --- plumbing -----------------------------------------------------

    def fail(self, what, *detail):
        raise Violation("%s %s" % (what, " ".join(repr(d)[:600] for d in detail)))

    def note(self, *args):
        self.trace.append("%.3f %s" % (now() - self.t0, " ".join(str(a) for a in args)))

    def request(self, cmd, body=None, timeout=20):
        c = self.client
        c.req += 1
        body = dict(body or {}, req=c.req)
        c.send(cmd, body)
        deadline = now() + timeout
        while True:
            left = deadline - now()
            if left <= 0 or not c.sock.poll(int(left * 1000)):
                if not self.broker.alive():
                    self.fail("the broker died", self.broker.p.returncode)
                self.fail("no answer to command %d within %ss" % (cmd, timeout), body)
            frames = c.sock.recv_multipart()
            cmd_in, reply = frames[1][0], h.unpack(frames[2])
            if cmd_in == h.RESULT:
                self.on_result(reply)
                continue
            if cmd_in == h.RESULT_MANY:
                for r in reply["jobs"]:
                    self.on_result(r)
                continue
            if reply.get("req") == c.req:
                return cmd_in, reply
            self.on_other_reply(cmd_in, reply)

    def on_other_reply(self, cmd, reply):
        ctx = self.pending.pop(reply.get("req"), None)
        if ctx is None:
            self.fail("an answer to no request in flight", cmd, reply)
        self.on_submit_reply(ctx, cmd, reply)

    def pump_client(self):
        c = self.client
        while c.sock.poll(0):
            frames = c.sock.recv_multipart()
            cmd, reply = frames[1][0], h.unpack(frames[2])
            if cmd == h.RESULT:
                self.on_result(reply)
            elif cmd == h.RESULT_MANY:
                for r in reply["jobs"]:
                    self.on_result(r)
            else:
                self.on_other_reply(cmd, reply)

    def on_result(self, r):
        j = self.jobs.get(r["jobId"])
        if j is None:
            return
        j.pushes += 1
        j.pushed = (r["job"]["state"], j.retries)
        if j.retries == 0:      # (after a RETRY, a push may be the earlier run's, held for Redis)
            self.seen_state(j, r["job"]["state"], "RESULT", r["job"])
        self.note("RESULT", j.id, r["job"]["state"])
        if j.pushes > j.retries + 1:
            self.fail("RESULT pushed %d times for job %s (retried %d times)" % (j.pushes, j.id, j.retries),
                      r["job"])

    def new_client(self):
        if getattr(self, "client", None):
            self.client.close()
        self.lost_submits += len(self.pending)      # their answers went with the old socket
        self.pending = {}
        self.client = h.Client(self.endpoint)

    def pump(self, duration):
        """Read every worker's frames and heartbeat for the live ones for
        duration seconds (at least one pass)."""
        end = now() + duration
        while True:
            for fw in self.workers:
                self.pump_worker(fw)
            self.pump_client()
            if now() >= end:
                break
            time.sleep(0.01)

    def pump_worker(self, fw):
        conn = fw.conn
        if fw.down or conn is None or fw.silent:
            return
        t = now()
        if t - conn.last_sent >= HB_S / 2:
            conn.send(h.HEARTBEAT, {})
        for jid in [j for j, (_, since) in fw.kept.items() if t - since > KEEP_DONE_S]:
            del fw.kept[jid]
        while conn.sock.poll(0):
            frames = conn.sock.recv_multipart()
            conn.last_heard = now()
            cmd, body = frames[1][0], h.unpack(frames[2])
            self.on_worker_frame(fw, conn, cmd, body)
            if fw.conn is not conn:         # it reconnected
                return
        if now() - conn.last_heard > HB_S * LIVENESS:
            self.note("worker", fw.name, "hears nothing: reconnects")
            fw.connect()

    def on_worker_frame(self, fw, conn, cmd, body):
        if cmd == h.HEARTBEAT:
            return
        if cmd == h.JOB:
            self.on_job(fw, conn, body)
        elif cmd == h.WCANCEL:
            jid = body.get("jobId")
            self.note("worker", fw.name, "CANCEL", jid, body.get("reason"))
            j = self.jobs.get(jid)
            if body.get("reason") == "unknown" and j is not None and not self.gone(j):
                # Every job the broker accepted is known to it (STATUS finds
                # it in memory or Redis: one only Redis holds is looked up).
                self.fail("CANCEL unknown to worker %s for job %s, which the broker accepted"
                          % (fw.name, jid), self.status(jid))
            conn.listed.discard(jid)
            fw.kept.pop(jid, None)
            if jid in fw.running:
                attempt, _ = fw.running.pop(jid)
                conn.stopping[jid] = (attempt, body.get("reason"))
                if self.draining:
                    self.finish_stop(fw, jid)
        elif cmd == h.NACK:
            code = body.get("code")
            self.note("worker", fw.name, "NACK", code, body.get("message"))
            self.nacks.append(code)
            if code in ("bad_request", "bad_frame", "bad_command", "bad_header"):
                if conn.expect_bad <= 0:
                    self.fail("NACK %s to a well-formed message of worker %s" % (code, fw.name), body)
                conn.expect_bad -= 1
            elif code != "not_owner":
                self.fail("unexpected NACK to worker %s" % fw.name, body)
        elif cmd == h.DISCONNECT:
            self.note("worker", fw.name, "DISCONNECT", body)
            fw.connect()
        else:
            self.fail("worker %s received unexpected command 0x%02x" % (fw.name, cmd), body)

    def on_job(self, fw, conn, body):
        jid, attempt = body["jobId"], body["attempt"]
        self.note("worker", fw.name, "JOB", jid, "attempt", attempt)
        j = self.jobs.get(jid)
        t = now()
        if jid in conn.stopping:
            self.fail("JOB %s sent to worker %s, which is stopping a run of it" % (jid, fw.name), body)
        if j is not None:
            j.max_attempt = max(j.max_attempt, attempt)
            j.last_job_at = t
            bound = j.spec["attempts"] + j.spec["maxAttempts"] - 1
            if attempt > bound:
                self.fail("JOB %s attempt %d past attempts + maxAttempts - 1 = %d" % (jid, attempt, bound), body)
            if j.cancelled_at is not None and t - j.cancelled_at > GRACE:
                self.fail("JOB for job %s, cancelled %.2fs ago" % (jid, t - j.cancelled_at), body)
            if j.removed_at is not None and t - j.removed_at > GRACE:
                self.fail("JOB for job %s, removed %.2fs ago" % (jid, t - j.removed_at), body)
        paused = self.paused.get(body["botType"])
        if paused is not None and t - paused > GRACE:
            self.fail("JOB of paused type %s (paused %.2fs ago)" % (body["botType"], t - paused), body)
        kept = fw.kept.get(jid)
        if kept and kept[0].get("ok") is True:
            done = dict(kept[0], attempt=attempt)
            self.note("worker", fw.name, "answers the JOB with its kept DONE", jid)
            fw.kept[jid] = (done, now())
            conn.send(h.DONE, done)
            return
        held = fw.held()
        if jid not in fw.running and held + 1 > conn.max_credit:
            self.fail("JOB %s beyond worker %s's credit %d (holds %d)" % (jid, fw.name, conn.max_credit,
                                                                       fw.held()), body)
        fw.running[jid] = (attempt, body["botType"])
        if self.draining:
            self.done(fw, jid, True)

    def gone(self, j):
        """Job j was removed, or may have been drained."""
        return j.removed_at is not None or (j.type in self.drained_at and j.accepted_at < self.drained_at[j.type])

    # --- worker actions -------------------------------------------------

    def done(self, fw, jid, ok, code="bot_failed", resend=False):
        attempt, _ = fw.running.pop(jid)
        body = dict({"jobId": jid, "ok": ok, "attempt": attempt}, **run_times())
        j = self.jobs.get(jid)
        if ok:
            body["result"] = {"by": fw.name, "attempt": attempt, "n": random.random(),
                              "retry": j.retries if j else 0}
            if j:
                j.results_sent.append(body["result"])
        else:
            body["error"] = {"code": code, "message": "fake failure"}
            if j:
                j.failed_sent.add((attempt, code))
        fw.kept[jid] = (body, now())
        self.note("worker", fw.name, "DONE", jid, "attempt", attempt, "ok" if ok else code,
                  "(silent: kept)" if fw.silent else "")
        if not fw.silent and not fw.down:
            fw.conn.send(h.DONE, body)
            if resend:
                fw.conn.send(h.DONE, body)

    def finish_stop(self, fw, jid):
        attempt, reason = fw.conn.stopping.pop(jid)
        code = "timeout" if reason == "timeout" else "cancelled"
        self.note("worker", fw.name, "DONE of the stopped run", jid, code)
        fw.conn.send(h.DONE, dict({"jobId": jid, "ok": False, "attempt": attempt,
                                   "error": {"code": code, "message": "stopped"}}, **run_times()))

    def live_workers(self):
        return [w for w in self.workers if not w.down and not w.silent and w.conn]

    # --- operations -----------------------------------------------------

    def pick(self, seq, p):
        seq = list(seq)
        return seq[p % len(seq)] if seq else None

    def op_submit(self, p1, p2, p3):
        btype = ("python", "node")[p1 % 2]
        r = random.Random(p2)
        spec = {"attempts": r.randint(1, 3), "maxAttempts": r.randint(1, 3)}
        body = {"botType": btype, "priority": r.choice([0, 1, 3, 3, 7]), "notify": True,
                "attempts": spec["attempts"], "maxAttempts": spec["maxAttempts"],
                "backoff": {"type": "fixed", "delayMs": r.choice([50, 200, 600])},
                "timeoutMs": r.choice([60000, 60000, 60000, 1500, 3000])}
        if r.random() < 0.25:
            body["delayMs"] = r.choice([200, 700, 1500])
        payload = {"p": p3 % 1000}
        key = None
        if r.random() < 0.3:
            key = "key-%d" % (p3 % 4)
            if key in self.keys and r.random() < 0.7:
                btype, payload = self.keys[key][0], self.keys[key][1]
                body["botType"] = btype
        body["payload"] = payload
        spec["timeoutMs"] = body["timeoutMs"]
        if key:
            body["idempotencyKey"] = key
        ctx = (body, btype, key, payload, spec)
        if p1 % 3 == 0 and not key:     # sent now, its answer read when it comes
            c = self.client
            c.req += 1
            c.send(h.SUBMIT, dict(body, req=c.req))
            self.pending[c.req] = ctx
            self.note("SUBMIT (answer later)", btype, key, "req", c.req)
            return
        cmd, reply = self.request(h.SUBMIT, body)
        self.on_submit_reply(ctx, cmd, reply)

    def on_submit_reply(self, ctx, cmd, reply):
        body, btype, key, payload, spec = ctx
        self.note("SUBMIT", btype, key, "->", reply)
        if cmd == h.REJECTED:
            if reply["code"] in ("store_unavailable", "shutting_down"):
                return
            if reply["code"] == "idempotency_key_reused":
                first = self.keys.get(key)
                if not first or (first[0], first[1]) == (btype, payload):
                    self.fail("SUBMIT refused idempotency_key_reused for the same job", body, reply, first)
                fj = self.jobs.get(first[2])
                if fj and fj.removed_at is not None:
                    self.fail("SUBMIT refused idempotency_key_reused for a key whose job was removed",
                              body, reply, first)
                return
            self.fail("SUBMIT refused", body, reply)
        if cmd != h.ACCEPTED:
            self.fail("SUBMIT answered 0x%02x" % cmd, reply)
        jid = reply["jobId"]
        if key and key in self.keys:
            first = self.keys[key]
            # A key whose job was removed (or may have been drained) is free:
            # the SUBMIT makes a new job, which the key names from then on.
            fj = self.jobs.get(first[2])
            freed = fj is not None and self.gone(fj) and jid != first[2]
            if freed and reply.get("duplicate"):
                self.fail("SUBMIT with a freed key: a duplicate of another job", body, reply, first)
            if not freed:
                if (first[0], first[1]) != (btype, payload):
                    self.fail("SUBMIT with a reused key for another job accepted", body, reply, first)
                if not reply.get("duplicate") or jid != first[2]:
                    self.fail("SUBMIT with the same key and job: not its duplicate", body, reply, first)
                return
        if reply.get("duplicate"):
            self.fail("SUBMIT without a known key answered duplicate", body, reply)
        if jid in self.jobs:
            self.fail("SUBMIT answered an existing job id", jid)
        self.jobs[jid] = Job(jid, btype, spec, payload)
        self.order.append(jid)
        if key:
            self.keys[key] = (btype, payload, jid)

    def running_pairs(self):
        return [(w, jid) for w in self.live_workers() for jid in sorted(w.running)]

    def op_done_ok(self, p1, p2, p3):
        pair = self.pick(self.running_pairs() + [(w, j) for w in self.workers if w.silent for j in sorted(w.running)], p1)
        if pair:
            self.done(pair[0], pair[1], True)

    def op_done_fail(self, p1, p2, p3):
        pair = self.pick(self.running_pairs(), p1)
        if pair:
            self.done(pair[0], pair[1], False, code=("bot_failed", "bot_failed", "permanent_failure")[p2 % 3])

    def op_done_twice(self, p1, p2, p3):
        pair = self.pick(self.running_pairs(), p1)
        if pair:
            self.done(pair[0], pair[1], p2 % 2 == 0, resend=True)

    def op_finish_stop(self, p1, p2, p3):
        pair = self.pick([(w, j) for w in self.live_workers() for j in sorted(w.conn.stopping)], p1)
        if pair:
            self.finish_stop(*pair)

    def op_progress(self, p1, p2, p3):
        pair = self.pick(self.running_pairs(), p1)
        if pair:
            pair[0].conn.send(h.PROGRESS, {"jobId": pair[1], "progress": (p2 % 140) - 20})

    def op_done_foreign(self, p1, p2, p3):
        """A DONE for a job this worker does not hold (another's, an ended
        one, an unknown id)."""
        w = self.pick(self.live_workers(), p1)
        if not w:
            return
        choices = [j for j in self.order if j not in w.running and j not in w.conn.stopping
                   and j not in w.kept]
        jid = self.pick(choices + ["0000deadbeef-0000-00000001"], p2)
        if jid in self.jobs and self.maybe_ran(w, jid):
            jid = "0000deadbeef-0000-00000001"
        self.note("worker", w.name, "DONE foreign", jid)
        w.conn.send(h.DONE, {"jobId": jid, "ok": p3 % 2 == 0, "result": {"foreign": True},
                             "error": {"code": "bot_failed", "message": "foreign"}})

    def maybe_ran(self, w, jid):
        """Whether the broker may hold worker w for the one that ran job
        jid: its record (memory or Redis) names w as its worker or as the
        worker of its lost run, or Redis holds writes (the record may lag).
        Without CURVE the broker takes a DONE for a lost run from the
        worker that ran it (protocol.md section 5), and a JOB a worker never
        read (it went silent, then reconnected) still makes it that worker's
        run: such a DONE is no foreign one."""
        if now() < self.redis_free_at + GRACE:
            return True
        rec = self.status(jid) or {}
        red = h.job_record(self.stack.redis_port, jid) or {}
        return w.name in (rec.get("worker"), red.get("worker"), red.get("lastWorker"))

    def op_release(self, p1, p2, p3):
        pair = self.pick(self.running_pairs(), p1)
        if pair:
            w, jid = pair
            w.running.pop(jid)
            body = {"jobId": jid}
            if p2 % 2:
                body.update(lost=True, signal=9)
            self.note("worker", w.name, "RELEASE", body)
            w.conn.send(h.RELEASE, body)

    def worker_ends(self, p1, disconnect):
        """A worker process ends: with DISCONNECT (it leaves) or without (it
        crashes); its runs end with it, unreported."""
        w = self.pick(self.live_workers(), p1)
        if w:
            self.note("worker", w.name, "leaves (DISCONNECT)" if disconnect else "crashes (socket closed)")
            if disconnect:
                w.conn.send(h.DISCONNECT, {"reason": "shutdown"})
            w.conn.close()
            w.conn, w.down, w.running, w.kept = None, True, {}, {}

    def op_worker_disconnect(self, p1, p2, p3):
        self.worker_ends(p1, True)

    def op_worker_crash(self, p1, p2, p3):
        self.worker_ends(p1, False)

    def op_worker_silent(self, p1, p2, p3):
        w = self.pick(self.live_workers(), p1)
        if w:
            self.note("worker", w.name, "goes silent")
            w.silent = True

    def op_worker_wake(self, p1, p2, p3):
        w = self.pick([w for w in self.workers if w.silent or w.down], p1)
        if w:
            self.note("worker", w.name, "wakes/starts: reconnects", sorted(w.running))
            w.connect()

    def op_worker_reconnect(self, p1, p2, p3):
        w = self.pick(self.live_workers(), p1)
        if w:
            self.note("worker", w.name, "reconnects (new socket)", sorted(w.running))
            old = w.conn
            w.connect()
            old.stopping.clear()        # those runs' DONEs went with the old socket

    def op_worker_credit(self, p1, p2, p3):
        w = self.pick(self.live_workers(), p1)
        if w:
            w.credit = p2 % 4
            w.max_credit = max(w.max_credit, w.credit)
            w.conn.max_credit = max(w.conn.max_credit, w.credit)
            self.note("worker", w.name, "READY again credit", w.credit)
            w.conn.send(h.READY, {"name": w.name, "types": w.types, "credit": w.credit})

    def job_request(self, cmd, p1):
        jid = self.pick(self.order, p1)
        if not jid:
            return None, None, None
        c, r = self.request(cmd, {"jobId": jid})
        if c == h.REJECTED and r.get("code") == "not_found" and cmd != REMOVE:
            rec = self.status(jid)
            if rec is None and self.gone(self.jobs[jid]):
                return jid, c, dict(r, code="conflict")
            if rec is None:
                self.fail("job %s accepted, now unknown to STATUS" % jid)
            # A job only Redis holds (ended before a restart) is acted on as one in memory.
            self.fail("command %d of job %s: not found, STATUS finds it" % (cmd, jid), rec)
        return jid, c, r

    def op_cancel(self, p1, p2, p3):
        jid, c, r = self.job_request(h.CANCEL, p1)
        if jid:
            self.note("CANCEL", jid, "->", c, r.get("code"), (r.get("job") or {}).get("state"))
            if c == h.REPLY:
                if r["job"]["state"] != "cancelled":
                    self.fail("CANCEL answered a job not cancelled", r)
                self.jobs[jid].cancelled_at = now()
                self.seen_state(self.jobs[jid], "cancelled", "CANCEL", r["job"])
            elif r.get("code") not in ("conflict",):
                self.fail("CANCEL refused", jid, r)

    def op_promote(self, p1, p2, p3):
        jid, c, r = self.job_request(PROMOTE, p1)
        if jid:
            self.note("PROMOTE", jid, "->", c, r.get("code"), (r.get("job") or {}).get("state"))
            if c != h.REPLY and r.get("code") != "conflict":
                self.fail("PROMOTE refused", jid, r)

    def op_retry(self, p1, p2, p3):
        jid, c, r = self.job_request(h.RETRY, p1)
        if jid:
            self.note("RETRY", jid, "->", c, r.get("code"))
            if c == h.ACCEPTED:
                j = self.jobs[jid]
                j.retries += 1
                j.cancelled_at = None
                j.max_attempt = 0
                j.dispatch_lost = False
                j.failed_sent = set()
            elif r.get("code") != "conflict":
                self.fail("RETRY refused", jid, r)

    def op_remove(self, p1, p2, p3):
        jid, c, r = self.job_request(REMOVE, p1)
        if jid:
            self.note("REMOVE", jid, "->", c, r.get("code"), r.get("removed"))
            j = self.jobs[jid]
            if c == h.REPLY:
                if r.get("removed") is not True:
                    self.fail("REMOVE answered without removed: true", r)
                if j.removed_at is None:
                    j.removed_at = now()
            elif r.get("code") == "not_found":
                rec = self.status(jid) if j.removed_at is None else None
                if rec is not None:
                    self.fail("REMOVE: job %s not found, STATUS finds it" % jid, rec)
                elif j.removed_at is None and not self.gone(j):
                    self.fail("REMOVE: job %s not found, never removed" % jid, r)
            elif r.get("code") != "conflict":
                self.fail("REMOVE refused", jid, r)

    def op_drain(self, p1, p2, p3):
        btype = ("python", "node")[p1 % 2]
        c, r = self.request(QUEUE_CMD, {"botType": btype, "action": "drain"})
        if c != h.REPLY:
            self.fail("QUEUE drain %s" % btype, r)
        self.note("drain", btype, "removed", r.get("removed"))
        self.drains[btype] = self.drains.get(btype, 0) + r.get("removed", 0)
        self.drained_at[btype] = now()

    def queue_action(self, p1, pause):
        btype = ("python", "node")[p1 % 2]
        action = "pause" if pause else "resume"
        c, r = self.request(QUEUE_CMD, {"botType": btype, "action": action})
        if c != h.REPLY or r.get("paused") is not pause:
            self.fail("QUEUE %s %s" % (action, btype), r)
        self.note(action, btype)
        if not pause:
            self.paused[btype] = None
        elif self.paused.get(btype) is None:
            self.paused[btype] = now()

    def op_pause(self, p1, p2, p3):
        self.queue_action(p1, True)

    def op_resume(self, p1, p2, p3):
        self.queue_action(p1, False)

    def op_malformed_worker(self, p1, p2, p3):
        w = self.pick(self.live_workers(), p1)
        if not w:
            return
        kind = p2 % 4
        if kind == 0:
            w.conn.sock.send_multipart([h.WORKER, bytes([h.DONE]), b"\xc1\xc1"])       # not msgpack
        elif kind == 1:
            w.conn.sock.send_multipart([h.WORKER, bytes([0x42]), h.pack({})])          # unknown command
        elif kind == 2:
            w.conn.sock.send_multipart([h.WORKER, bytes([h.DONE]), h.pack({"ok": True})])  # no jobId
        else:
            w.conn.sock.send_multipart([h.WORKER, bytes([h.PROGRESS])])                 # two frames
        w.conn.expect_bad += 1
        self.note("worker", w.name, "sends a malformed message, kind", kind)

    def op_malformed_client(self, p1, p2, p3):
        kind = p2 % 3
        c = self.client
        if kind == 0:
            c.sock.send_multipart([h.CLIENT, bytes([h.SUBMIT]), b"\x92\x01"])    # not a map
            want = "bad_frame"
        elif kind == 1:
            c.sock.send_multipart([h.CLIENT, bytes([0x55]), h.pack({"req": 7})])
            want = "bad_command"
        else:
            c.sock.send_multipart([h.CLIENT, bytes([h.SUBMIT]),
                                   h.pack({"req": 8, "botType": "python", "priority": "high"})])
            want = "bad_request"
        deadline = now() + 10
        while True:
            if not c.sock.poll(max(1, int((deadline - now()) * 1000))):
                self.fail("no answer to a malformed client message (%s)" % want)
            frames = c.sock.recv_multipart()
            cmd, r = frames[1][0], h.unpack(frames[2])
            if cmd == h.RESULT:
                self.on_result(r)
                continue
            if cmd != h.REJECTED or r.get("code") != want:
                self.fail("malformed client message: want REJECTED %s" % want, cmd, r)
            break

    def op_redis_pause(self, p1, p2, p3):
        ms = 150 + (p1 % 7) * 100
        self.redis_free_at = max(self.redis_free_at, now() + ms / 1000.0)
        self.note("redis CLIENT PAUSE", ms, "WRITE")
        self.stack.redis_cli("CLIENT", "PAUSE", str(ms), "WRITE")

    def op_wait(self, p1, p2, p3):
        self.pump(0.1 + (p1 % 5) * 0.1)

    def restart(self, sig):
        self.note("broker restart", "SIGKILL" if sig == signal.SIGKILL else "SIGTERM")
        self.restarts += 1
        # A dispatch whose running state Redis had not taken yet (Redis
        # holding writes, or a SIGKILL right after it) is lost with the
        # broker: the job is recovered with the attempt count before it, and
        # the run adopted as that attempt (protocol.md section 5, adopted).
        t = now()
        held = t < self.redis_free_at + GRACE
        if held or sig == signal.SIGKILL:
            since = t - (1.0 if held else GRACE)
            for j in self.jobs.values():
                if j.last_job_at is not None and j.last_job_at >= since:
                    j.dispatch_lost = True
        if sig == signal.SIGKILL:
            self.broker.kill()
        else:
            self.broker.signal(signal.SIGTERM)
            try:
                self.broker.p.wait(20)
            except Exception:
                self.fail("the broker did not exit within 20 s of SIGTERM")
            if self.broker.p.returncode != 0:
                self.fail("the broker exited %s on SIGTERM" % self.broker.p.returncode)
        self.pump(0.2 + (self.restarts % 3) * 0.3)
        self.broker = self.stack.broker(env=BROKER_ENV)
        self.new_client()
        h.wait_until(lambda: self.request(h.PING)[1].get("redis") is True, 20, "the broker to recover")

    def op_restart_term(self, p1, p2, p3):
        self.restart(signal.SIGTERM)

    def op_restart_kill(self, p1, p2, p3):
        self.restart(signal.SIGKILL)

    # --- invariants -----------------------------------------------------

    def check_stats(self):
        if not self.broker.alive():
            self.fail("the broker died", self.broker.p.returncode)
        c, st = self.request(h.STATS)
        for t, lim in LIMITS.items():
            ty = st["types"].get(t)
            # A run a worker reports in READY that the broker did not know
            # of (its dispatch never reached Redis before a crash, or its job
            # was dispatched again meanwhile: at least once, protocol.md
            # section 3) is told to stop (duplicate, finished, not_owner) and
            # keeps a slot and a permit until its DONE, on top of those the
            # type's limit gave out meanwhile.
            late = sum(1 for w in self.workers if w.conn for jid, (_, reason) in w.conn.stopping.items()
                       if reason in ("duplicate", "finished", "not_owner") and jid in self.jobs
                       and self.jobs[jid].type == t)
            if ty and ty["usage"] > lim + late:
                self.fail("type %s usage %d over its limit %d (%d reported runs told to stop)"
                          % (t, ty["usage"], lim, late), ty)
        slots = sum(w["running"] for w in st["workers"])
        usage = sum(st["types"][t]["usage"] for t in LIMITS if t in st["types"])
        # A run a READY listed that the broker does not hold is looked up in
        # Redis, its slot held (no permit: its type is not known yet) until
        # the answer: at most the listed runs still running and not answered.
        looking = sum(len(w.conn.listed & set(w.running)) for w in self.workers if w.conn)
        if not 0 <= slots - usage <= looking:
            # Each slot a worker holds (a run, or a run told to stop) holds a
            # permit of its type, and each permit is one such slot.
            self.fail("the workers hold %d slots, the types %d permits (%d listed runs not answered)"
                      % (slots, usage, looking),
                      {t: st["types"][t]["usage"] for t in LIMITS}, st["workers"])
        byname = {w.name: w for w in self.workers}
        for sw in st["workers"]:
            w = byname.get(sw["name"])
            if w and sw["running"] > w.max_credit:
                self.fail("worker %s running %d over its credit %d" % (w.name, sw["running"], w.max_credit), sw)
        return st

    def quiesce(self):
        self.note("quiescence")
        self.draining = True
        for t in ("python", "node"):
            if self.paused.get(t) is not None:
                self.op_resume(0 if t == "python" else 1, 0, 0)
        for w in self.workers:
            if w.down or w.silent:
                w.credit = max(w.credit, 1)
                w.connect()
            elif w.credit == 0:
                w.credit = 1
                w.conn.max_credit = max(w.conn.max_credit, 1)
                w.max_credit = max(w.max_credit, 1)
                w.conn.send(h.READY, {"name": w.name, "types": w.types, "credit": 1})
        for w in self.live_workers():
            for jid in sorted(w.running):
                self.done(w, jid, True)
            for jid in sorted(w.conn.stopping):
                self.finish_stop(w, jid)
        # Delayed jobs: promote them (a conflict is fine: no longer delayed).
        deadline = now() + 45
        pending = list(self.order)
        while pending:
            if now() > deadline:
                recs = {j: self.status(j) for j in pending[:5]}
                self.fail("jobs not terminal at quiescence", len(pending), recs)
            self.pump(0.05)
            self.check_stats()
            jid = pending[0]
            rec = self.status(jid)
            if rec and rec["state"] in h.TERMINAL or rec is None and self.gone(self.jobs[jid]):
                pending.pop(0)
            elif rec and rec["state"] == "delayed":
                self.request(PROMOTE, {"jobId": jid})
        self.pump(0.3)
        for w in self.live_workers():
            if w.conn.expect_bad:
                self.fail("worker %s: %d malformed message(s) never answered" % (w.name, w.conn.expect_bad))
        end = now() + 15
        while True:
            st = self.check_stats()
            got = ({t: (st["types"][t]["usage"], st["types"][t]["waiting"], st["types"][t]["delayed"])
                    for t in LIMITS}, sorted(w["running"] for w in st["workers"]))
            want = ({t: (0, 0, 0) for t in LIMITS}, [0] * len(st["workers"]))
            if got == want:
                break
            if now() > end:
                self.fail("usage/waiting/delayed/running not back to 0 at quiescence", got)
            self.pump(0.1)
        self.check_final()

    def status(self, jid):
        c, r = self.request(h.STATUS, {"jobId": jid})
        rec = r.get("job") if c == h.REPLY else None
        j = self.jobs.get(jid)
        if rec and j:
            self.seen_state(j, rec["state"], "STATUS", rec)
        return rec

    def seen_state(self, j, state, how, rec):
        """A job's terminal state, once seen, stays until a RETRY."""
        if state in h.TERMINAL:
            if j.terminal and j.terminal[1] == j.retries and j.terminal[0] != state:
                self.fail("job %s was %s, %s now says %s (no RETRY between)" % (j.id, j.terminal[0], how, state),
                          rec)
            j.terminal = (state, j.retries)
        elif j.terminal and j.terminal[1] == j.retries:
            self.fail("job %s was %s, %s now says %s (no RETRY between)" % (j.id, j.terminal[0], how, state), rec)
        if state == "running" and not rec.get("worker"):
            self.fail("job %s running with no worker" % j.id, rec)

    def op_status(self, p1, p2, p3):
        jid = self.pick(self.order, p1)
        if jid:
            rec = self.status(jid)
            if rec is None:
                if self.gone(self.jobs[jid]):
                    return
                self.fail("job %s accepted, STATUS does not find it" % jid)
            j = self.jobs[jid]
            if rec["attempts"] > j.spec["attempts"] + j.spec["maxAttempts"] - 1:
                self.fail("job %s: attempts past attempts + maxAttempts - 1" % jid, rec)

    def check_final(self):
        port = self.stack.redis_port
        keys = h.redis_pipeline(port, [["KEYS", "botmesh:{bm}:job:*"], ["SMEMBERS", "botmesh:{bm}:unfinished"]])
        ids = sorted(k.decode().rsplit(":", 1)[1] for k in keys[0])
        removed = [j for j in self.order if self.jobs[j].removed_at is not None]
        for jid in removed:
            if jid in ids:
                self.fail("job %s: REMOVE answered removed, its record is still in Redis" % jid)
        missing = sorted(set(self.order) - set(ids) - set(removed))
        for btype in LIMITS:
            gone = [j for j in missing if self.jobs[j].type == btype and self.gone(self.jobs[j])]
            if len(gone) <= self.drains.get(btype, 0):
                missing = [j for j in missing if j not in gone]
        extra = sorted(set(ids) - set(self.order))
        if missing or len(extra) > self.lost_submits:
            self.fail("Redis job records differ from the accepted jobs (%d SUBMIT answers lost in restarts)"
                      % self.lost_submits, extra, missing)
        if keys[1]:
            self.fail("Redis still lists unfinished jobs at quiescence", keys[1])
        for jid in self.order:
            j = self.jobs[jid]
            rec = self.status(jid)
            if rec is None and jid not in ids:
                continue                    # removed or drained (checked above)
            red = h.job_record(port, jid)
            if rec is None or rec["state"] not in h.TERMINAL:
                self.fail("job %s not terminal" % jid, rec)
            if red.get("state") != rec["state"]:
                self.fail("job %s: Redis says %s, STATUS %s" % (jid, red.get("state"), rec["state"]), red, rec)
            if rec["attempts"] < j.max_attempt and not j.dispatch_lost:
                self.fail("job %s: attempts %d below the highest attempt dispatched, %d"
                          % (jid, rec["attempts"], j.max_attempt), rec)
            if j.pushed and j.retries == 0 and j.pushed[0] != rec["state"]:
                self.fail("job %s: RESULT said %s, it ends %s (no RETRY between)" % (jid, j.pushed[0], rec["state"]),
                          rec)
            if j.cancelled_at is not None and rec["state"] != "cancelled":
                self.fail("job %s: CANCEL answered cancelled, ends %s" % (jid, rec["state"]), rec)
            if rec["state"] == "completed":
                if rec.get("result") not in j.results_sent:
                    self.fail("job %s completed with a result no worker sent for it" % jid, rec, j.results_sent)
                if rec["result"]["retry"] != j.retries:
                    self.fail("job %s completed with the result of a run before its RETRY" % jid, rec)
            errs = rec.get("attemptErrors") or []
            # An entry's "attempt" numbers the failed runs (1, 2, ...), not
            # the dispatches: a run counted twice shows as one entry too many.
            if [e["attempt"] for e in errs] != list(range(1, len(errs) + 1)):
                self.fail("job %s: attemptErrors not numbered 1..n" % jid, errs)
            if len(errs) > j.spec["attempts"]:
                self.fail("job %s: more failed runs than attempts %d" % (jid, j.spec["attempts"]), errs)
            sent = [c for _, c in j.failed_sent]
            for e in errs:
                ok = e["code"] == "worker_lost" or (e["code"] == "timeout" and j.spec["timeoutMs"] < 60000) or \
                    e["code"] in sent
                if not ok:
                    self.fail("job %s: attemptErrors entry the model cannot explain" % jid, e, j.failed_sent)
            if len([e for e in errs if e["code"] != "timeout"]) > len(j.failed_sent) + 1:
                self.fail("job %s: more failed runs counted than the workers reported" % jid, errs, j.failed_sent)
            if rec["state"] == "failed":
                code = rec["error"]["code"]
                ok = code == "worker_lost" or (code == "timeout" and j.spec["timeoutMs"] < 60000) or \
                    any(c == code for _, c in j.failed_sent)
                if not ok:
                    self.fail("job %s failed with %s, which the model cannot explain" % (jid, code), rec)

    # --- one sequence -------------------------------------------------

    def run(self):
        self.t0 = now()
        with h.Stack("brfuzz") as s:
            self.stack = s
            s.redis()
            self.broker = s.broker(env=BROKER_ENV)
            self.endpoint = s.endpoint
            self.new_client()
            self.workers = [FakeWorker(self, "fw%d" % i, types, credit) for i, (types, credit) in
                            enumerate([(["python"], 2), (["python", "node"], 1), (["node", "python"], 3)])]
            for w in self.workers:
                w.connect()
            s.wait_workers(3)
            try:
                for i, (name, p1, p2, p3) in enumerate(self.ops):
                    self.note("op", i, name, p1, p2, p3)
                    getattr(self, "op_" + name)(p1, p2, p3)
                    self.pump(0.03)
                    self.check_stats()
                self.quiesce()
            except (Violation, h.TestFailure) as e:
                self.error = str(e)
                s.dump(tail=30)
                return False
            finally:
                for w in self.workers:
                    if w.conn:
                        w.conn.close()
                self.client.close()
        self.error = None
        return True





DEFAULT_SEED = 20261206        # CTest's sequences; BRFUZZ_SEED=random draws new ones
RESTART_RATE = float(os.environ.get("BRFUZZ_RESTART_RATE", "0.04"))    # of the operations


def generate(seed, count):
    r = random.Random(seed)
    ops = []
    for i in range(count):
        name = r.choice(RARE_OPS) if r.random() < RESTART_RATE else r.choice(OPS)
        ops.append([name, r.randrange(1 << 16), r.randrange(1 << 16), r.randrange(1 << 16)])
    return ops


def run_ops(ops, label):
    random.seed(hash(json.dumps(ops)) & 0xffffffff)
    fz = Fuzz(ops, label=label)
    try:
        ok = fz.run()
    except h.TestFailure as e:      # a sanitizer report at close
        fz.error = str(e)
        ok = False
    return ok, fz


def shrink(ops, budget):
    """Remove chunks of ops while the sequence still fails (any violation);
    returns the shortest failing list found within budget runs."""
    best = ops
    runs = 0
    chunk = max(1, len(best) // 2)
    while chunk >= 1 and runs < budget:
        i = 0
        removed = False
        while i < len(best) and runs < budget:
            cand = best[:i] + best[i + chunk:]
            runs += 1
            ok, fz = run_ops(cand, "shrink")
            h.log("shrink: %d ops -> %s" % (len(cand), "fails: " + fz.error[:120] if not ok else "passes"))
            if not ok:
                best, removed = cand, True
            else:
                i += chunk
        if not removed:
            chunk //= 2
    return best


def main():
    replay = os.environ.get("BRFUZZ_REPLAY")
    if replay:
        ops = json.load(open(replay))["ops"]
        ok, fz = run_ops(ops, "replay")
        print("\n".join(fz.trace[-80:]))
        h.check(ok, "the replayed sequence keeps every invariant", fz.error)
        return
    seed = os.environ.get("BRFUZZ_SEED") or str(DEFAULT_SEED)
    seed = random.SystemRandom().randrange(1 << 31) if seed == "random" else int(seed)
    runs = int(os.environ.get("BRFUZZ_RUNS", "3"))
    count = int(os.environ.get("BRFUZZ_OPS", "60"))
    h.log("brfuzz seed %d: %d sequences of %d operations (BRFUZZ_SEED=%d reproduces them)"
          % (seed, runs, count, seed))
    for k in range(runs):
        ops = generate(seed + k, count)
        ok, fz = run_ops(ops, "seed %d" % (seed + k))
        if not ok:
            print("\n".join(fz.trace[-60:]))
            if os.environ.get("BRFUZZ_TRACE"):
                with open(os.environ["BRFUZZ_TRACE"], "w") as f:
                    f.write("\n".join(fz.trace) + "\n" + fz.error + "\n")
            out = os.environ.get("BRFUZZ_SAVE")
            if out:
                if "--shrink" in sys.argv:
                    ops = shrink(ops, int(os.environ.get("BRFUZZ_SHRINK_RUNS", "30")))
                with open(out, "w") as f:
                    json.dump({"seed": seed + k, "error": fz.error, "ops": ops}, f, indent=0)
                h.log("saved", out, len(ops), "ops")
            h.check(False, "sequence %d (seed %d) keeps every invariant" % (k, seed + k), fz.error)
        h.log("ok: sequence %d (seed %d): %d jobs, %d restarts, NACKs %s" % (
            k, seed + k, len(fz.order), fz.restarts,
            {c: fz.nacks.count(c) for c in sorted(set(fz.nacks))}))
        for o in sorted(fz.odd):
            h.log("note:", o)


if __name__ == "__main__":
    h.main(main)

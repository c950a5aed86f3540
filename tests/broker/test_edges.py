"""The protocol's edge cases, as protocol.md section 8 settles them.

A real broker (no Redis: REDIS_URL=none) and fake workers the test drives
step by step; each check names the rule it holds the broker to.
"""
import re
import zmq
import harness as h
from fakeworker import FakeWorker


DONE_MANY, SCHEDULE = 0x0B, 0x0E        # protocol.md sections 5a and 4


def frames_rejected(c, reason):
    text = c.request(h.METRICS)[1]["text"]
    for line in text.splitlines():
        if line.startswith('broker_frames_rejected_total{reason="%s"}' % reason):
            return float(line.split()[-1])
    return 0.0


def routing_id(sock):
    """The hex routing id the broker sees for a socket: set one, it is ours."""
    return sock.getsockopt(zmq.ROUTING_ID).hex().upper()


def test():
    with h.Stack("edges") as s:
        broker = s.broker(redis=False, env={"HEARTBEAT_INTERVAL_MS": "100", "HEARTBEAT_LIVENESS": "5"})
        c = s.client()

        # Without Redis, PING and STATS say redis: true (nothing to wait for).
        cmd, r = c.request(h.PING)
        h.check(cmd == h.REPLY and r["redis"] is True, "REDIS_URL=none: PING redis true", r)
        h.check(c.stats()["redis"] is True, "REDIS_URL=none: STATS redis true")

        # Map keys that are not strings are ignored, like unknown keys.
        raw = zmq.Context.instance().socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(s.endpoint)
        raw.send_multipart([h.CLIENT, bytes([h.SUBMIT]),
                            h.pack({1: "one", "req": 7, "botType": "python", "payload": {"k": 1}})])
        h.check(raw.poll(5000), "SUBMIT with an integer key answered")
        reply = raw.recv_multipart()
        h.check(reply[1][0] == h.ACCEPTED and h.unpack(reply[2])["req"] == 7,
                "a body with a non-string key: that key is ignored, the SUBMIT accepted", h.unpack(reply[2]))
        raw.close()

        # A bad field is named; req must be an integer.
        for body, field in (({"priority": "high"}, "priority"), ({"timeoutMs": 0}, "timeoutMs"),
                            ({"req": "seven"}, "req")):
            raw_body = dict({"botType": "python"}, **body)
            c.send(h.SUBMIT, raw_body)
            cmd, r = c.recv()
            h.check(cmd == h.REJECTED and r["code"] == "bad_request" and field in r["message"],
                    "SUBMIT with a bad %s -> bad_request naming it" % field, r)

        # The other client commands read their bodies through the same codec:
        # req must be an integer, jobId a job id; the field is named.
        for command, body, field in ((h.STATUS, {"req": "seven", "jobId": "j-1"}, "req"),
                                     (h.CANCEL, {"jobId": 42}, "jobId"),
                                     (h.RETRY, {}, "jobId"),
                                     (h.PING, {"req": [1]}, "req")):
            c.send(command, body)
            cmd, r = c.recv()
            h.check(cmd == h.REJECTED and r["code"] == "bad_request" and field in r["message"],
                    "command 0x%02x with a bad %s -> bad_request naming it" % (command, field), r)

        # Every refused message is logged: one WARN line naming the peer
        # kind, its routing id (hex), the code and the message.
        raw = zmq.Context.instance().socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.setsockopt(zmq.ROUTING_ID, b"\x01odd")
        raw.connect(s.endpoint)
        for frames, code, line in (
                ([h.CLIENT, b"\x42", h.pack({"req": 9})], "bad_command",
                 r"rejected an unknown command 0x42 from a client \(routing id 016F6464\): "
                 r"bad_command \(unknown client command\)"),
                ([h.CLIENT, bytes([h.PING]), h.pack({"req": "abc"})], "bad_request",
                 r"rejected PING from a client \(routing id 016F6464\): bad_request \(req "),
                ([b"BMX01", bytes([h.PING]), h.pack({})], "bad_header",
                 r"rejected a frame from a client \(routing id 016F6464\): bad_header \(")):
            before = frames_rejected(c, code)
            raw.send_multipart(frames)
            h.check(raw.poll(5000), "%s answered" % code)
            reply = raw.recv_multipart()
            h.check(reply[1][0] == h.REJECTED and h.unpack(reply[2])["code"] == code,
                    "-> REJECTED %s" % code, h.unpack(reply[2]))
            h.check(frames_rejected(c, code) == before + 1,
                    "counted in broker_frames_rejected_total{reason=%s}" % code)
            h.wait_until(lambda: re.search(r"WARN +broker " + line, broker.output()), 5,
                         "the log line: %s" % line)
        raw.close()

        # bin inside a payload comes back byte for byte.
        blob = bytes(range(256))
        jid = c.submit("python", {"blob": blob})
        h.check(c.status(jid)["payload"] == {"blob": blob}, "bin in the payload is kept as bin")

        # LIST: a state or limit of the wrong type is a bad_request; a state no
        # job has matches none; limit below 1 reads as 50, above 500 as 500.
        for body, what in (({"state": 3}, "state not a string"), ({"limit": "5"}, "limit not an integer")):
            cmd, r = c.request(h.LIST, body)
            h.check(cmd == h.REJECTED and r["code"] == "bad_request", "LIST with %s -> bad_request" % what, r)
        h.check("above 500 as 500" in r["message"] and "at most" not in r["message"],
                "the limit message says what a large limit does (reads as 500), as the document does", r)
        cmd, r = c.request(h.LIST, {"state": "bogus"})
        h.check(cmd == h.REPLY and r["jobs"] == [], "LIST with an unknown state: no job", r)
        cmd, r = c.request(h.LIST, {"limit": 0, "state": "queued"})
        h.check(cmd == h.REPLY and len(r["jobs"]) == 2, "LIST limit 0 reads as the default 50", r)
        cmd, r = c.request(h.LIST, {"limit": 100000, "state": "queued"})
        h.check(cmd == h.REPLY and len(r["jobs"]) == 2, "LIST limit above 500 reads as 500", r)

        # A worker: the python jobs queued so far go to it in order.
        w = FakeWorker(s.endpoint, "w-edge", ["python"], 1, routing_id=b"w-edge-socket")
        for _ in range(2):
            job = w.recv_job()
            w.done(job["jobId"], {"ok": 1})

        # READY again with other types is refused (NACK types_changed naming
        # the types it serves): the credit stays, and the new type is not
        # known (no phantom row in STATS, SUBMIT to it unknown_bot_type).
        w.send(h.READY, {"name": "w-edge", "types": ["python", "phantom"], "credit": 7})
        msg = w.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "types_changed"
                and "python" in msg[1]["message"],
                "READY again with other types -> NACK types_changed naming the types served", msg)
        st = c.stats()
        h.check(st["workers"][0]["types"] == ["python"] and st["workers"][0]["credit"] == 1,
                "the worker keeps its types and its credit", st["workers"])
        h.check("phantom" not in st["types"], "no phantom type in STATS", st["types"].keys())
        h.check(c.try_submit("phantom", {})[1].get("code") == "unknown_bot_type",
                "the refused type stays unknown")
        # The same types (a type named twice counts once) change the credit.
        w.send(h.READY, {"name": "w-edge", "types": ["python", "python"], "credit": 2})
        h.wait_until(lambda: c.stats()["workers"][0]["credit"] == 2, 5, "READY again: credit 2")
        w.ready(1)
        h.wait_until(lambda: c.stats()["workers"][0]["credit"] == 1, 5, "READY again: credit 1")

        # PROGRESS outside 0..100 is ignored; the last good value stays.
        jid = c.submit("python", {"n": 1})
        job = w.recv_job()
        w.send(h.PROGRESS, {"jobId": jid, "progress": 40})
        h.wait_until(lambda: c.status(jid)["progress"] == 40, 5, "progress 40 recorded")
        w.send(h.PROGRESS, {"jobId": jid, "progress": 150})
        w.send(h.PROGRESS, {"jobId": jid, "progress": -1})
        # A non-boolean ok counts as false; a code over 63 bytes reads as bot_failed.
        w.send(h.DONE, {"jobId": jid, "ok": 1, "error": {"code": "x" * 64, "message": "m"}})
        rec = c.wait(jid, timeout=5)
        h.check(rec["progress"] == 40, "PROGRESS 150 and -1 ignored: progress stays 40", rec)
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "bot_failed",
                "DONE ok:1 (not a boolean) fails the job; a 64-byte code reads as bot_failed", rec)
        # DONE ok:false ends the job when no runs are left (attempts 1, the
        # harness's RETRY_ATTEMPTS); maxAttempts only bounds lost workers.
        h.check(rec["attempts"] == 1 and rec["maxAttempts"] == 3 and rec["runAttempts"] == 1,
                "ok:false ends the job on its last run (1 of 1), maxAttempts 3 unused", rec)
        h.check(w.recv(timeout=0.5) is None, "the failed job is not dispatched again")
        # With runs left, DONE ok:false re-runs the job after its backoff;
        # permanent_failure ends it at once, whatever runs are left.
        jid = c.submit("python", {"n": 1}, attempts=3, backoff={"type": "fixed", "delayMs": 50})
        job = w.recv_job()
        w.done(jid, ok=False, error={"code": "bot_failed", "message": "first"})
        job = w.recv_job()
        h.check(job is not None and job["jobId"] == jid and job["attempt"] == 2,
                "ok:false with runs left: the job runs again (attempt 2)", job)
        w.done(jid, ok=False, error={"code": "permanent_failure", "message": "stop"})
        rec = c.wait(jid, timeout=5)
        h.check(rec["state"] == "failed" and rec["error"]["code"] == "permanent_failure"
                and len(rec["attemptErrors"]) == 2,
                "permanent_failure ends the job on run 2 of 3", rec)
        h.check(w.recv(timeout=0.5) is None, "no run after permanent_failure")

        # RELEASE gives the job back without counting the attempt.
        jid = c.submit("python", {"n": 2})
        job = w.recv_job()
        h.check(job["attempt"] == 1, "first dispatch: attempt 1", job)
        w.ready(0)                      # no credit: the released job stays queued
        w.send(h.RELEASE, {"jobId": jid})
        h.wait_until(lambda: c.status(jid)["state"] == "queued", 5, "the released job to be queued")
        h.check(c.status(jid)["attempts"] == 0, "RELEASE takes the attempt back: attempts 0", c.status(jid))

        # A re-queued job keeps its place: ahead of later jobs of its priority.
        later = c.submit("python", {"n": 3})
        w.ready(1)
        job = w.recv_job()
        h.check(job["jobId"] == jid and job["attempt"] == 1,
                "the released job runs before the one submitted after it, as attempt 1", job)
        w.done(jid, {})
        h.check(w.recv_job()["jobId"] == later, "then the later job")
        w.done(later, {})

        # A DONE sent again for a job that has ended is expected (a worker
        # resends its recent DONEs after READY): NACK not_owner, not counted,
        # not logged as a rejection.  A DONE for a job the broker does not
        # know is counted and logged, naming the worker and its routing id.
        before = frames_rejected(c, "not_owner")
        w.send(h.DONE, {"jobId": later, "ok": True})
        msg = w.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "not_owner", "DONE twice -> NACK not_owner", msg)
        h.check(frames_rejected(c, "not_owner") == before, "a DONE again for an ended job is not counted")
        h.check("rejected DONE" not in broker.output(), "nor logged as a rejection")
        w.send(h.DONE, {"jobId": "never-1", "ok": True})
        msg = w.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "not_owner", "DONE for an unknown job -> NACK", msg)
        h.check(frames_rejected(c, "not_owner") == before + 1, "broker_frames_rejected_total{not_owner} +1")
        wid = routing_id(w.sock)
        h.wait_until(lambda: re.search(r"WARN +broker job=never-1 rejected DONE from worker w-edge "
                                       r"\(routing id %s\): not_owner \(" % wid, broker.output()),
                     5, "the not_owner line naming the job, the worker and its routing id")
        before = frames_rejected(c, "bad_command")
        w.send(0x7e, {})
        msg = w.recv(timeout=5)
        h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "bad_command", "unknown worker command -> NACK", msg)
        h.check(frames_rejected(c, "bad_command") == before + 1, "broker_frames_rejected_total{bad_command} +1")
        h.wait_until(lambda: re.search(r"WARN +broker rejected an unknown command 0x7E from worker w-edge "
                                       r"\(routing id %s\): bad_command \(unknown worker command\)" % wid,
                                       broker.output()),
                     5, "the bad_command line naming the worker and its routing id")

        # A socket that registered as a worker sending a client request:
        # REJECTED bad_header, counted; nothing is submitted.
        before = frames_rejected(c, "bad_header")
        submitted = c.stats()["totals"]["submitted"]
        w.send(h.SUBMIT, {"req": 3, "botType": "python", "payload": {}}, header=h.CLIENT)
        msg = w.recv(timeout=5)
        h.check(msg and msg[0] == h.REJECTED and msg[1]["code"] == "bad_header" and msg[1]["req"] == 3
                and "registered as a worker" in msg[1]["message"],
                "SUBMIT on a worker's socket -> REJECTED bad_header", msg)
        h.check(frames_rejected(c, "bad_header") == before + 1, "broker_frames_rejected_total{bad_header} +1")
        h.check(c.stats()["totals"]["submitted"] == submitted, "and no job was submitted")

        # A worker body that does not decode: NACK bad_request naming the
        # field, counted; the job the worker holds is untouched.
        before = frames_rejected(c, "bad_request")
        held = c.submit("python", {"n": 4})
        h.check(w.recv_job()["jobId"] == held, "the worker holds a new job")
        for command, body, field in ((h.DONE, {"ok": True}, "jobId"),
                                     (h.PROGRESS, {"jobId": held, "webhook": {"attempts": 1}}, "webhook.state"),
                                     (h.RELEASE, {"jobId": ""}, "jobId"),
                                     (h.READY, {"types": ["python"], "credit": -1}, "credit")):
            w.send(command, body)
            msg = w.recv(timeout=5)
            h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "bad_request"
                    and field in msg[1]["message"],
                    "worker command 0x%02x with a bad %s -> NACK bad_request naming it" % (command, field), msg)
        h.check(frames_rejected(c, "bad_request") == before + 4, "broker_frames_rejected_total{bad_request} +4")
        h.check(c.status(held)["state"] == "running", "the held job still runs", c.status(held))
        w.done(held, {})
        h.wait_until(lambda: c.status(held)["state"] == "completed", 5, "the held job to complete")

        # An unknown command from an unregistered worker: DISCONNECT (section 5
        # wins over section 7), not counted.
        stranger = FakeWorker(s.endpoint, "w-stranger", ["python"], 1, ready=False)
        before = frames_rejected(c, "bad_command")
        stranger.send(0x7e, {})
        msg = stranger.recv(timeout=5)
        h.check(msg and msg[0] == h.DISCONNECT, "unknown command from an unknown worker -> DISCONNECT", msg)
        h.check(frames_rejected(c, "bad_command") == before, "and it is not counted as a rejected frame")
        stranger.close()

        # Webhook deliveries: <id>.wh1, then .wh2 on REDELIVER, same webhookId.
        hook = FakeWorker(s.endpoint, "w-hook", ["webhook"], 1)
        jid = c.submit("python", {"n": 4}, webhookUrl="http://127.0.0.1:9/hook")
        w.done(w.recv_job()["jobId"], {"r": 1})
        first = hook.recv_job()
        h.check(first["jobId"] == jid + ".wh1" and first["payload"]["webhookId"] == jid,
                "first delivery job <id>.wh1, webhookId = the job's id", first)
        hook.done(first["jobId"], {}, ok=True)
        h.wait_until(lambda: c.status(first["jobId"]) and c.status(first["jobId"])["state"] == "completed",
                     5, "the first delivery to complete")
        cmd, r = c.request(h.REDELIVER, {"jobId": jid})
        h.check(cmd == h.ACCEPTED and r["jobId"] == jid and "position" not in r,
                "REDELIVER accepted under the job's own id, without position", r)
        second = hook.recv_job()
        h.check(second["jobId"] == jid + ".wh2" and second["payload"]["webhookId"] == jid,
                "REDELIVER makes <id>.wh2 with the same webhookId", second)
        hook.done(second["jobId"], {}, ok=True)
        for wk in (w, hook):
            wk.close()

        # A DISCONNECT is acted on whatever its body (an array, a byte that
        # is no msgpack): the worker leaves and its job is queued again; no
        # NACK, not counted as a rejected frame.
        before = frames_rejected(c, "bad_frame")
        leave_id = None
        for attempt, body in ((1, b"\x91\x01"), (2, b"\xc1")):
            leaver = FakeWorker(s.endpoint, "w-leaver", ["leave"], 1)
            h.wait_until(lambda: any(x["name"] == "w-leaver" for x in c.stats()["workers"]), 5,
                         "w-leaver to register")
            leave_id = leave_id or c.submit("leave", {"n": 1})
            job = leaver.recv_job()
            h.check(job["jobId"] == leave_id and job["attempt"] == attempt, "w-leaver runs the job", job)
            leaver.sock.send_multipart([h.WORKER, bytes([h.DISCONNECT]), body])
            h.wait_until(lambda: not any(x["name"] == "w-leaver" for x in c.stats()["workers"]), 5,
                         "a DISCONNECT with body %r to unregister the worker" % body)
            h.wait_until(lambda: broker.output().count("worker w-leaver gone (disconnected") == attempt,
                         5, "the broker to log that w-leaver left by its DISCONNECT")
            rec = c.status(leave_id)
            h.check(rec["state"] == "queued" and rec["attempts"] == attempt,
                    "its job is queued again", rec)
            answers = []
            while leaver.sock.poll(300):
                answers.append(leaver.sock.recv_multipart()[1][0])
            h.check(h.NACK not in answers, "no NACK for a DISCONNECT with body %r" % body, answers)
            leaver.close()
        h.check(frames_rejected(c, "bad_frame") == before, "nor is it counted as a bad_frame")
        cmd, r = c.request(h.CANCEL, {"jobId": leave_id})
        h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "the left job cancelled", r)

        # req: any integer from -2^63 to 2^63-1; 2^63 is refused, naming req.
        c.send(h.PING, {"req": -5})
        cmd, r = c.recv()
        h.check(cmd == h.REPLY and r["req"] == -5, "a negative req is taken and echoed", r)
        c.send(h.PING, {"req": 2 ** 63})
        cmd, r = c.recv()
        h.check(cmd == h.REJECTED and r["code"] == "bad_request" and "req" in r["message"],
                "req 2^63 -> bad_request naming req", r)
        # A body that is not a map: REJECTED bad_frame without req.
        c.sock.send_multipart([h.CLIENT, bytes([h.PING]), b"\x90"])
        cmd, r = c.recv()
        h.check(cmd == h.REJECTED and r["code"] == "bad_frame" and "req" not in r,
                "a body the broker cannot read: REJECTED bad_frame without req", r)

        # CANCEL stops a delayed job too.
        later_id = c.submit("python", {"n": 5}, delayMs=3600000)
        cmd, r = c.request(h.CANCEL, {"jobId": later_id})
        h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "CANCEL of a delayed job", r)

        # DONE_MANY from a worker that never got a JOB_MANY (no batch: true)
        # is taken; RETRY then starts the job afresh, history cleared.
        last = FakeWorker(s.endpoint, "w-last", ["last"], 1)
        h.wait_until(lambda: any(x["name"] == "w-last" for x in c.stats()["workers"]), 5,
                     "w-last to register")
        last_id = c.submit("last", {"n": 6})
        h.check(last.recv_job()["jobId"] == last_id, "w-last runs the job")
        last.send(DONE_MANY, {"jobs": [{"jobId": last_id, "ok": False,
                                        "error": {"code": "bot_failed", "message": "m", "exitCode": 3}}]})
        rec = c.wait(last_id, timeout=5)
        h.check(rec["state"] == "failed" and rec["attemptErrors"] and rec["error"]["exitCode"] == 3,
                "DONE_MANY without a JOB_MANY first is taken: the job failed", rec)
        last.ready(0)
        # The worker's socket and the client's are not ordered: the RETRY
        # must not reach the broker before the credit of 0 does.
        h.wait_until(lambda: any(x["name"] == "w-last" and x["credit"] == 0 for x in c.stats()["workers"]), 5,
                     "w-last's credit to drop to 0")
        cmd, r = c.request(h.RETRY, {"jobId": last_id})
        h.check(cmd == h.ACCEPTED, "RETRY of the failed job", r)
        rec = c.status(last_id)
        h.check(rec["state"] == "queued" and rec["attempts"] == 0 and "attemptErrors" not in rec
                and "error" not in rec and "finishedAt" not in rec,
                "RETRY clears attempts, attemptErrors, error and finishedAt", rec)
        c.request(h.CANCEL, {"jobId": last_id})
        last.close()

        # A schedule record names the prefix of its runs' ids.
        cmd, r = c.request(SCHEDULE, {"action": "add", "key": "s-edge", "botType": "python",
                                      "payload": {}, "everyMs": 3600000})
        h.check(cmd == h.REPLY and r["schedule"]["runIdPrefix"] == "s-edge",
                "a schedule record's runIdPrefix is its key", r)
        c.request(SCHEDULE, {"action": "remove", "key": "s-edge"})


if __name__ == "__main__":
    h.main(test)

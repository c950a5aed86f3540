"""Broker protocol: answers, rejections and hostile frames (protocol.md 4-7).

A real broker (no Redis) on an ephemeral port; a client and fake workers
over real DEALER sockets.  Reads as a transcript: each step sends one thing
and checks the broker's answer.
"""
import zmq
import harness as h
from fakeworker import FakeWorker


def test():
    with h.Stack("protocol") as s:
        s.broker(redis=False, env={"MAX_QUEUE_PYTHON": "3", "MAX_CUSTOM_BOTS": "2"})
        c = s.client()

        cmd, r = c.request(h.PING)
        h.check(cmd == h.REPLY and r["redis"] is True, "PING answers REPLY (no Redis counts as ok)", r)

        cmd, r = c.try_submit("nope", {})
        h.check(cmd == h.REJECTED and r["code"] == "unknown_bot_type", "unknown bot type rejected", r)
        h.check("python" in r["message"] and "custom" in r["message"],
                "the message lists the known types, with configured MAX_CUSTOM_BOTS", r)

        for bad, code in [({"botType": 7}, "bad_request"),
                          ({"botType": "Py Thon"}, "bad_request"),
                          ({"botType": "python", "priority": -1}, "bad_request"),
                          ({"botType": "python", "priority": "high"}, "bad_request"),
                          ({"botType": "python", "timeoutMs": 0}, "bad_request"),
                          ({"botType": "python", "maxAttempts": 101}, "bad_request"),
                          ({"botType": "python", "webhookUrl": "ftp://x"}, "bad_request"),
                          ({"botType": "webhook"}, "bad_request"),
                          ({"payload": 1}, "bad_request")]:
            cmd, r = c.request(h.SUBMIT, bad)
            h.check(cmd == h.REJECTED and r["code"] == code, "SUBMIT %r -> %s" % (bad, code), r)

        # The queue bound: no worker, MAX_QUEUE_PYTHON=3.
        ids = [c.submit("python", {"n": i}) for i in range(3)]
        cmd, r = c.try_submit("python", {"n": 4})
        h.check(cmd == h.REJECTED and r["code"] == "queue_full", "4th job past MAX_QUEUE_PYTHON=3 is queue_full", r)
        h.check("'python'" in r.get("message", "") and "(3 jobs" in r.get("message", ""),
                "queue_full names the bot type and its bound", r)

        # Idempotency: same key, same job.
        a = c.submit("custom", {"x": 1, "y": [1.5, "z"]}, idempotencyKey="order-42")
        cmd, r = c.try_submit("custom", {"x": 1, "y": [1.5, "z"]}, idempotencyKey="order-42")
        h.check(cmd == h.ACCEPTED and r["jobId"] == a and r["duplicate"] is True,
                "same idempotencyKey answers the first job with duplicate: true", r)
        # The payload compared by value: 1 sent as a uint16 is the same 1.
        body = {"req": 9001, "botType": "custom", "idempotencyKey": "order-42",
                "payload": {"x": 1, "y": [1.5, "z"]}}
        raw = h.pack(body).replace(b"\xa1x\x01", b"\xa1x\xcd\x00\x01")
        h.check(raw != h.pack(body), "the payload re-encoded with a wider integer")
        c.sock.send_multipart([h.CLIENT, bytes([h.SUBMIT]), raw])
        cmd, r = c.recv(5)
        h.check(cmd == h.ACCEPTED and r["jobId"] == a and r["duplicate"] is True,
                "the same payload in another encoding is the same job", r)
        # The same key for another job: refused, naming the first.
        for other in (("custom", {"x": 2, "y": [1.5, "z"]}), ("python", {"x": 1, "y": [1.5, "z"]})):
            cmd, r = c.try_submit(other[0], other[1], idempotencyKey="order-42")
            h.check(cmd == h.REJECTED and r["code"] == "idempotency_key_reused" and a in r["message"],
                    "the key reused with another %s: idempotency_key_reused naming the first job"
                    % ("payload" if other[0] == "custom" else "botType"), r)

        # STATUS / CANCEL / RETRY / LIST
        rec = c.status(ids[0])
        h.check(rec["state"] == "queued" and rec["payload"] == {"n": 0}, "STATUS of a queued job", rec)
        cmd, r = c.request(h.STATUS, {"jobId": "no-such-job"})
        h.check(cmd == h.REJECTED and r["code"] == "not_found", "STATUS of an unknown id is not_found", r)
        cmd, r = c.request(h.CANCEL, {"jobId": ids[0]})
        h.check(cmd == h.REPLY and r["job"]["state"] == "cancelled", "CANCEL of a queued job", r)
        cmd, r = c.request(h.CANCEL, {"jobId": ids[0]})
        h.check(cmd == h.REJECTED and r["code"] == "conflict", "CANCEL twice is a conflict", r)
        cmd, r = c.request(h.RETRY, {"jobId": ids[0]})
        h.check(cmd == h.ACCEPTED, "RETRY of a cancelled job", r)
        h.check(c.status(ids[0])["state"] == "queued", "retried job is queued again")
        cmd, r = c.request(h.LIST, {"botType": "python", "limit": 10})
        h.check(cmd == h.REPLY and [j["jobId"] for j in r["jobs"]] == list(reversed(ids)),
                "LIST filters by type, newest first", r)
        cmd, r = c.request(h.METRICS)
        h.check("queue_size{queue_name=\"python\"} 3" in r["text"], "METRICS shows queue_size 3 for python")
        for name in ("semaphore_usage", "semaphore_waiting"):
            h.check("%s{semaphore_name=\"python\"} 0" % name in r["text"],
                    "METRICS labels %s by semaphore_name" % name)
        h.check("semaphore_limit{semaphore_name=\"python\"} 5" in r["text"],
                "METRICS labels semaphore_limit by semaphore_name (MAX_PYTHON_BOTS 5)")

        # Hostile frames: every one answered or dropped, the broker stays up.
        raw = zmq.Context.instance().socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(s.endpoint)
        hostile = [
            ("wrong header", [b"BMX99", b"\x01", h.pack({})], "bad_header"),
            ("two-byte command", [h.CLIENT, b"\x01\x02", h.pack({})], "bad_command"),
            ("unknown command", [h.CLIENT, b"\x7f", h.pack({})], "bad_command"),
            ("truncated body", [h.CLIENT, b"\x01", h.pack({"botType": "python"})[:-3]], "bad_frame"),
            ("body not a map", [h.CLIENT, b"\x01", h.pack([1, 2])], "bad_frame"),
            ("huge declared map", [h.CLIENT, b"\x01", b"\xdf\xff\xff\xff\xff"], "bad_frame"),
            ("huge declared string", [h.CLIENT, b"\x01", b"\x81\xa1x\xdb\x7f\xff\xff\xff"], "bad_frame"),
            ("four frames", [h.CLIENT, b"\x01", h.pack({}), b"extra"], "bad_frame"),
            ("oversized frame", [h.CLIENT, b"\x01", b"\x81\xa1x\xc6" + (3 * 1024 * 1024).to_bytes(4, "big")
                                 + b"\0" * (3 * 1024 * 1024)], "bad_frame"),
        ]
        for what, frames, code in hostile:
            raw.send_multipart(frames)
            h.check(raw.poll(5000), "broker answers %s" % what)
            reply = raw.recv_multipart()
            body = h.unpack(reply[2])
            h.check(reply[1][0] == h.REJECTED and body["code"] == code, "%s -> REJECTED %s" % (what, code), body)
        raw.send_multipart([b"x"])      # one frame, no header: dropped with an answer
        h.check(raw.poll(5000), "a one-frame message is answered too")
        raw.recv_multipart()

        # Worker-side garbage: NACK; an unknown worker is told to reconnect.
        w = FakeWorker(s.endpoint, "w-bad", ["python"], 1, ready=False)
        w.send(h.DONE, {"jobId": "x", "ok": True})
        msg = w.recv()
        h.check(msg and msg[0] == h.DISCONNECT, "DONE from an unknown worker -> DISCONNECT", msg)
        w.send(h.READY, {"name": "w-bad", "types": [], "credit": 1})
        msg = w.recv()
        h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "bad_request", "READY without types -> NACK", msg)
        w.send(h.READY, {"name": "w-bad", "types": ["python"], "credit": 1}, header=b"BMW99")
        msg = w.recv()
        h.check(msg and msg[0] == h.NACK and msg[1]["code"] == "bad_header", "wrong worker version -> NACK bad_header", msg)
        w.close()

        cmd, r = c.request(h.METRICS)
        counted = {line.split()[0]: float(line.split()[1]) for line in r["text"].splitlines()
                   if line.startswith("broker_frames_rejected_total{")}
        for reason in ("bad_header", "bad_command", "bad_frame"):
            h.check(counted.get('broker_frames_rejected_total{reason="%s"}' % reason, 0) > 0,
                    "rejected frames are counted by reason (%s)" % reason, counted)
        cmd, r = c.request(h.PING)
        h.check(cmd == h.REPLY, "after all that, the broker still answers PING")


if __name__ == "__main__":
    h.main(test)

"""Reals come back as they went in: each real of a payload reaches the bot,
its result, the job record over HTTP, the live events and the webhook's
body as the same double, written in the fewest digits that read back as
it (Python's repr), per value: 858.2457 stays "858.2457" whether or not
the same document holds a real that needs 17 digits (0.1 + 0.2).  Before,
one precision served a whole document: 16 digits wrote 858.2457 as
858.2457000000001, 17 as 858.24570000000006.  Integers stay integers
(2^53 + 1 exactly) and reals stay reals (1.0).

A real stack: redis, broker, gateway, a worker whose python bot is `cat`
(the result is the payload it was given on stdin), the webhook manager
posting to a receiver in this test that keeps the body's bytes, and a
GET /events stream read as bytes."""
import http.server
import json
import queue
import re
import socket
import threading

import harness
from gwtest import check, curl, gateway, log, wait_until

#  (name, JSON text in the payload, the value it is)
VALUES = [
    ("a", "858.2457", 858.2457),
    ("sum", "0.30000000000000004", 0.1 + 0.2),
    ("tenth", "0.1", 0.1),
    ("third", "0.3333333333333333", 1 / 3),
    ("tiny", "5e-324", 5e-324),
    ("negZero", "-0.0", -0.0),
    ("one", "1.0", 1.0),
    ("int", "9007199254740993", 9007199254740993),
    ("big", "1e300", 1e300),
    ("small", "1.5e-07", 1.5e-7),
]


def shortest(value):
    """A number as the system must write it: Python's repr (the fewest
    digits that read back), the exponent without "+" or leading zeros."""
    text = repr(value)
    return re.sub(r"e([+-]?)0*(\d)", lambda m: "e" + m.group(1).replace("+", "") + m.group(2), text)


def object_text(values):
    """The compact JSON object of values, each number in its shortest form."""
    return "{" + ",".join('"%s":%s' % (name, shortest(value)) for name, _, value in values) + "}"


class Receiver:
    """A webhook receiver on 127.0.0.1 keeping each POST's body bytes."""

    def __init__(self):
        self.bodies = queue.Queue()
        bodies = self.bodies

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                bodies.put(data)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Events:
    """A GET /events stream of botType=python, its bytes read as they come."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(b"GET /events?botType=python HTTP/1.1\r\nHost: x\r\n"
                          b"Accept: text/event-stream\r\n\r\n")
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(4096)
            check(data, "the event stream's head arrives", self.buf)
            self.buf += data
        head = self.buf.split(b"\r\n\r\n", 1)[0]
        check(head.startswith(b"HTTP/1.1 200"), "GET /events answers 200", head)

    def data(self, job_id, event, timeout=30):
        """The data bytes of job_id's first `event`."""
        self.sock.settimeout(timeout)
        try:
            while True:
                for block in self.buf.split(b"\n\n")[:-1]:
                    lines = block.split(b"\n")
                    data = b"\n".join(l[len(b"data: "):] for l in lines if l.startswith(b"data: "))
                    if b"event: " + event.encode() in lines and job_id.encode() in data:
                        return data
                more = self.sock.recv(65536)
                check(more, "the event stream stays open until job %s's %s event" % (job_id, event),
                      self.buf[-2000:])
                self.buf += more
        except socket.timeout:
            check(False, "job %s's %s event within %ds" % (job_id, event, timeout), self.buf[-2000:])

    def close(self):
        self.sock.close()


def run_job(gw, payload_text, hook):
    body = '{"botType": "python", "payload": %s, "webhookUrl": "%s"}' % (payload_text, hook.url)
    r = curl(gw.url + "/invoke", "-X", "POST", "-H", "Content-Type: application/json", "-d", body)
    check(r.status == 202, "the job is accepted", r.body)
    job_id = r.json["jobId"]

    def record():
        rec = curl(gw.url + "/job/" + job_id, show=False)
        return rec if rec.json and rec.json.get("state") in ("completed", "failed") else None
    wait_until(record, 30, "the job to end")
    rec = record()
    check(rec.json["state"] == "completed", "the bot (cat) completed", rec.body)
    log("GET /job/%s -> %s" % (job_id, rec.body))
    return job_id, rec


def test():
    hook = Receiver()
    try:
        with harness.Stack("reals") as s:
            s.redis()
            s.broker()
            s.webhooks()
            s.worker("--type", "python", "--concurrency", "1", env={"BOT_PYTHON_CMD": "cat"})
            s.wait_workers(1, "python")
            gw = gateway(s)
            events = Events(gw.port)

            payload_text = "{" + ", ".join('"%s": %s' % (n, t) for n, t, _ in VALUES) + "}"
            expected = object_text(VALUES)
            log("POST /invoke with the payload %s; expected back: %s" % (payload_text, expected))
            job_id, rec = run_job(gw, payload_text, hook)
            result = rec.json["result"]
            for name, _, value in VALUES:
                got = result[name]
                check(type(got) is type(value) and got == value
                      and repr(got) == repr(value), "%s read back as %r" % (name, value), result)
            check('"result":%s' % expected in rec.body,
                  "the record writes each number in its shortest form", expected, rec.body)

            log("GET /events?botType=python: job %s's completed event" % job_id)
            data = events.data(job_id, "completed").decode()
            log("data: %s" % data[:600])
            check('"result":%s' % expected in data,
                  "the completed event writes each number in its shortest form", expected, data)

            sent = hook.bodies.get(timeout=30).decode()
            log("the webhook body: %s" % sent[:600])
            check('"result":%s' % expected in sent,
                  "the webhook body writes each number in its shortest form", expected, sent)

            log("a payload of 858.2457 alone (the reported case) comes back as 858.2457")
            job_id, rec = run_job(gw, '{"a": 858.2457, "half": 0.5}', hook)
            check('"result":{"a":858.2457,"half":0.5}' in rec.body, "858.2457 is written 858.2457", rec.body)
            sent = hook.bodies.get(timeout=30).decode()
            check('"result":{"a":858.2457,"half":0.5}' in sent, "the webhook writes 858.2457", sent)
            events.close()
    finally:
        hook.close()


if __name__ == "__main__":
    harness.main(test)

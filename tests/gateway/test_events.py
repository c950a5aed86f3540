"""GET /events: live job events as Server-Sent Events (gateway/README.md).

- no API key: 401, as other routes; a bad filter: 400 naming it
  (invalid_events, invalid_bot_type);
- a stream of botType=python sees the events of a job submitted by POST
  /invoke in order: waiting, active, completed, each with `event:`, `id:`
  (the broker's event id, its number growing) and `data:` JSON naming the
  job;
- a stream of jobId=K, K the idempotencyKey of job J, sees only J's
  events (a delayed job, promoted);
- GATEWAY_MAX_EVENT_STREAMS (2 here): a third stream is 503
  too_many_streams;
- the broker restarts: the stream gets `reset`, then the events of the
  next job;
- SIGTERM: both streams end promptly (`event: end`, then the connection
  closes) and the gateway exits 0.

Real redis, broker, worker (simulated bots) and gateway.
"""
import json
import queue
import socket
import threading
import time

import harness
from gwtest import check, curl, gateway, post_json

KEY = "events-test-key"


class Stream:
    """GET /events read as it comes: blocks parsed into (event, id, data)."""

    def __init__(self, port, query=""):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(("GET /events%s HTTP/1.1\r\nHost: x\r\nX-API-Key: %s\r\n"
                           "Accept: text/event-stream\r\n\r\n" % (query, KEY)).encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            data = self.sock.recv(4096)
            check(data, "the stream's head arrives", self.buf)
            self.buf += data
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {k.lower(): v.strip() for k, v in (l.split(":", 1) for l in lines[1:])}
        self.items = queue.Queue()
        self.closed = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        self.sock.settimeout(None)
        try:
            while True:
                while b"\n\n" in self.buf:
                    block, self.buf = self.buf.split(b"\n\n", 1)
                    fields = {}
                    for line in block.decode().split("\n"):
                        if line.startswith(":"):
                            continue
                        name, _, value = line.partition(":")
                        fields[name] = value[1:] if value.startswith(" ") else value
                    if fields:
                        self.items.put((fields.get("event"), fields.get("id"),
                                        json.loads(fields["data"]) if "data" in fields else None))
                data = self.sock.recv(65536)
                if not data:
                    break
                self.buf += data
        except OSError:
            pass
        self.closed.set()

    def next(self, timeout=10):
        try:
            return self.items.get(timeout=timeout)
        except queue.Empty:
            raise harness.TestFailure("no event on the stream within %ss" % timeout)

    def job_events(self, job_id, count, timeout=15):
        """The next count items of job_id (others skipped)."""
        got, deadline = [], time.monotonic() + timeout
        while len(got) < count:
            item = self.next(max(0.1, deadline - time.monotonic()))
            if item[2] and item[2].get("jobId") == job_id:
                got.append(item)
        return got


def test():
    with harness.Stack("gw-events") as s:
        s.redis()
        broker = s.broker()
        s.worker("--simulate", "--type", "python", "--concurrency", "4", env={"SIM_DURATION_MS": "20-40"})
        s.wait_workers(1, "python")
        g = gateway(s, env={"API_KEYS": KEY, "GATEWAY_MAX_EVENT_STREAMS": "2"})
        auth = ("-H", "X-API-Key: " + KEY)

        r = curl(g.url + "/events")
        check(r.status == 401, "no key: 401", r)
        r = curl(g.url + "/events?events=completed,nope", *auth)
        check(r.status == 400 and r.error_code() == "invalid_events" and "nope" in r.body,
              "an unknown event name: 400 invalid_events naming it", r)
        r = curl(g.url + "/events?botType=Bad!", *auth)
        check(r.status == 400 and r.error_code() == "invalid_bot_type", "a bad botType: 400", r)

        for _ in range(2):      # as many as the cap: none may hold a place
            r = curl("-I", g.url + "/events?botType=python", *auth)
            check(r.status == 200 and r.headers.get("content-type") == "text/event-stream",
                  "HEAD: the head alone, no stream held", r)

        typed = Stream(g.port, "?botType=python")
        check(typed.status == 200 and typed.headers.get("content-type") == "text/event-stream",
              "a stream: 200 text/event-stream", typed.headers)
        r = post_json(g.url + "/invoke", {"botType": "python", "payload": {"n": 1}}, *auth)
        check(r.status == 202, "invoked", r)
        job = r.json["jobId"]
        items = typed.job_events(job, 3)
        check([i[0] for i in items] == ["waiting", "active", "completed"],
              "the stream sees waiting, active, completed", items)
        ids = [int(i[1].rsplit("-", 1)[1]) for i in items]
        check(ids == sorted(ids) and len(set(ids)) == 3, "ids (the broker's, <epoch>-<n>) grow",
              items)
        check(all(i[2]["event"] == i[0] and i[2]["botType"] == "python" for i in items),
              "data names the event and the bot type", items)

        # jobId=K where K is the idempotencyKey (BullMQ's own jobId) of a job:
        # that job's events, as GET /job/K finds it
        r = post_json(g.url + "/invoke", {"botType": "python", "payload": {"n": 2}, "delayMs": 600000,
                                          "idempotencyKey": "own-id-2"}, *auth)
        delayed = r.json["jobId"]
        check(delayed != "own-id-2", "the job has an id of its own", r)
        one = Stream(g.port, "?jobId=own-id-2")
        check(one.status == 200, "a stream of one job, named by its idempotencyKey", one.status)
        r = post_json(g.url + "/invoke", {"botType": "python", "payload": {"n": 3}}, *auth)
        other = r.json["jobId"]
        typed.job_events(other, 3)          # the other job ran
        r = curl("-X", "POST", g.url + "/job/%s/promote" % delayed, *auth)
        check(r.status == 200, "promoted", r)
        items = one.job_events(delayed, 3)
        check([i[0] for i in items] == ["waiting", "active", "completed"], "the job's events", items)
        check(one.items.empty(), "nothing of other jobs on the jobId stream", list(one.items.queue))

        # The broker restarts: the gateway subscribes anew and tells the
        # streams (reset); events flow again.
        broker.kill()
        s.broker()
        s.wait_workers(1, "python")
        seen = [typed.next(20)]
        while seen[-1][0] != "reset" and seen[-1][2].get("jobId") == delayed:
            seen.append(typed.next(20))     # the promoted job's events come first
        check(seen[-1][0] == "reset", "after a broker restart the stream gets reset", seen)
        r = post_json(g.url + "/invoke", {"botType": "python", "payload": {"n": 4}}, *auth)
        check(r.status == 202, "invoked after the restart", r)
        items = typed.job_events(r.json["jobId"], 3)
        check([i[0] for i in items] == ["waiting", "active", "completed"],
              "the events of a job after the restart", items)

        r = curl(g.url + "/events", *auth, timeout=10)
        check(r.status == 503 and r.error_code() == "too_many_streams"
              and "GATEWAY_MAX_EVENT_STREAMS" in r.body, "a third stream: 503 too_many_streams", r)

        t0 = time.monotonic()
        g.signal(15)
        for st in (typed, one):
            check(st.closed.wait(5), "SIGTERM ends the stream within 5 s")
            rest = []
            while not st.items.empty():
                rest.append(st.items.get())
            check(rest and rest[-1][0] == "end", "the stream's last item is end", rest)
        harness.wait_until(lambda: not g.alive(), 10, "the gateway to exit")
        check(g.p.returncode == 0, "the gateway exits 0", g.p.returncode)
        harness.log("streams ended and the gateway exited %.2f s after SIGTERM" % (time.monotonic() - t0))


if __name__ == "__main__":
    harness.main(test)

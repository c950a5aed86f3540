"""Live job events (protocol.md, SUBSCRIBE, UNSUBSCRIBE, EVENT): a client
that subscribes gets EVENT messages for the jobs its filters match, each
with the next seq of its subscription.

- a job run to the end: waiting, active, progress (50), completed (with
  its result);
- a job whose first run fails with a run left: failed willRetry true,
  delayed (dueAt), waiting, active, failed willRetry false;
- a delayed job cancelled, then removed: delayed, cancelled, removed;
- a running job whose worker leaves (DISCONNECT): stalled, waiting;
- filters: jobIds and events narrow what a second subscription gets;
  an unknown event name, a bad botType: bad_request naming the field;
- MAX_SUBSCRIPTIONS (3 here): one more is too_many_subscriptions;
- a renewal keeps the subscription (same id); one not renewed within its
  ttlMs lapses: no more events, and its renewal is not_found;
- UNSUBSCRIBE ends one.

Real redis and broker; the worker is a fake one, so that the test decides
each run's outcome and progress.
"""
import time
import harness as h
from fakeworker import FakeWorker

SUBSCRIBE, UNSUBSCRIBE, EVENT = 0x0F, 0x10, 0x87
REMOVE = 0x0C


class Subscriber:
    """A client socket that subscribes and reads EVENTs."""

    def __init__(self, s):
        self.c = s.client()
        self.events = []

    def call(self, cmd, body):
        """Send a request; the answer, keeping the EVENTs that come first."""
        req = self.c.send_request(cmd, body)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            cmd_in, reply = self.c.recv(deadline - time.monotonic())
            if cmd_in == EVENT:
                self.events.append(reply)
            elif reply.get("req") == req:
                return cmd_in, reply
        raise h.TestFailure("no answer to command %d" % cmd)

    def subscribe(self, **body):
        cmd, r = self.call(SUBSCRIBE, body)
        h.check(cmd == h.REPLY and r.get("subscription"), "SUBSCRIBE %r answered" % (body,), (cmd, r))
        self.sub = r["subscription"]
        return r

    def pump(self, timeout):
        while self.c.sock.poll(int(timeout * 1000)):
            cmd, body = self.c.recv(1)
            h.check(cmd == EVENT, "only EVENTs come unasked", (cmd, body))
            self.events.append(body)
            timeout = 0.05

    def of(self, jid):
        return [e for e in self.events if e["jobId"] == jid]

    def wait_for(self, jid, names, timeout=10):
        """Wait until job jid's events are names (in order); returns them."""
        def got():
            self.pump(0.05)
            evs = self.of(jid)
            return evs if [e["event"] for e in evs] == names else None
        try:
            return h.wait_until(got, timeout, "events %s of %s" % (names, jid))
        except h.TestFailure:
            raise h.TestFailure("job %s: events %r, expected %r" % (
                jid, [e["event"] for e in self.of(jid)], names))


def test():
    with h.Stack("events") as s:
        s.redis()
        s.broker(env={"MAX_SUBSCRIPTIONS": "3", "HEARTBEAT_LIVENESS": "20"})
        c = s.client()
        ev = Subscriber(s)
        r = ev.subscribe(botTypes=["python"])
        h.check(r["ttlMs"] == 30000 and r["seq"] == 0, "a new subscription: default ttlMs, seq 0", r)
        w = FakeWorker(s.endpoint, "fw", ["python"], 1)
        s.wait_workers(1, "python")

        # A job run to the end.
        a = c.submit("python", {"n": 1})
        job = w.recv_job(5)
        h.check(job and job["jobId"] == a, "job a dispatched", job)
        w.send(h.PROGRESS, {"jobId": a, "progress": 50})
        w.done(a, result={"answer": 42})
        evs = ev.wait_for(a, ["waiting", "active", "progress", "completed"])
        h.check(all(e["subscription"] == ev.sub and e["botType"] == "python" and e["at"] > 0
                    for e in evs), "each event names its subscription, botType and time", evs)
        h.check([e["seq"] for e in evs] == [1, 2, 3, 4], "seq counts 1, 2, 3, 4", evs)
        h.check(evs[1]["attempt"] == 1 and evs[1]["worker"] == "fw", "active: attempt 1 on fw", evs[1])
        h.check(evs[2]["progress"] == 50, "progress carries the value", evs[2])
        h.check(evs[3]["result"] == {"answer": 42} and evs[3]["resultSize"] > 0,
                "completed carries the result and its size", evs[3])

        # A failed run with one more run left, then the last one.
        b = c.submit("python", {"n": 2}, attempts=2, backoff={"type": "fixed", "delayMs": 100})
        h.check(w.recv_job(5)["jobId"] == b, "job b dispatched")
        w.done(b, ok=False, error={"code": "bot_failed", "message": "boom"})
        h.check(w.recv_job(5)["jobId"] == b, "job b dispatched again after its backoff")
        w.done(b, ok=False, error={"code": "bot_failed", "message": "boom again"})
        evs = ev.wait_for(b, ["waiting", "active", "failed", "delayed", "waiting", "active", "failed"])
        h.check(evs[2]["willRetry"] is True and evs[2]["code"] == "bot_failed"
                and evs[2]["message"] == "boom" and evs[2]["attempt"] == 1,
                "the first failure will be retried", evs[2])
        h.check(evs[3]["dueAt"] >= evs[2]["at"] + 50, "delayed says when it is due", evs[3])
        h.check(evs[6]["willRetry"] is False and evs[6]["message"] == "boom again"
                and evs[6]["attempt"] == 2, "the last failure is final", evs[6])

        # Delayed, cancelled, removed.
        d = c.submit("python", {"n": 3}, delayMs=600000)
        cmd, r = c.request(h.CANCEL, {"jobId": d})
        h.check(cmd == h.REPLY, "CANCEL answered", r)
        cmd, r = c.request(REMOVE, {"jobId": d})
        h.check(cmd == h.REPLY, "REMOVE answered", r)
        evs = ev.wait_for(d, ["delayed", "cancelled", "removed"])
        h.check(evs[1]["code"] == "cancelled", "cancelled carries its code", evs[1])

        # Its worker leaves while the job runs: stalled, queued again.
        e = c.submit("python", {"n": 4})
        h.check(w.recv_job(5)["jobId"] == e, "job e dispatched")
        w.send(h.DISCONNECT, {})
        w.close()
        evs = ev.wait_for(e, ["waiting", "active", "stalled", "waiting"])
        h.check(evs[2]["reason"], "stalled names why", evs[2])
        w = FakeWorker(s.endpoint, "fw2", ["python"], 1)
        h.check(w.recv_job(5)["jobId"] == e, "job e dispatched to the new worker")
        w.done(e, result=None)
        ev.wait_for(e, ["waiting", "active", "stalled", "waiting", "active", "completed"])

        # Filters: one job, one event name; bad filters are refused.
        narrow = Subscriber(s)
        f = c.submit("python", {"n": 5}, delayMs=600000)
        g = c.submit("python", {"n": 6})
        narrow.subscribe(jobIds=[g], events=["completed", "failed"])
        for cmd_body, field in (({"events": ["completed", "nope"]}, "events"),
                                ({"botTypes": ["Bad!"]}, "botTypes"),
                                ({"jobIds": "x"}, "jobIds"),
                                ({"ttlMs": 5}, "ttlMs")):
            cmd, r = narrow.c.request(SUBSCRIBE, cmd_body)
            h.check(cmd == h.REJECTED and r["code"] == "bad_request" and field in r["message"],
                    "a bad %s is refused naming it" % field, r)
            if field == "events":
                h.check("waiting-children)" in r["message"],
                        "the refusal lists every event name, waiting-children too", r)
        c.request(0x0D, {"jobId": f})       # PROMOTE: f runs too
        for _ in range(2):
            job = w.recv_job(5)
            w.done(job["jobId"], result={"n": job["payload"]["n"]})
        ev.wait_for(f, ["delayed", "waiting", "active", "completed"])
        ev.wait_for(g, ["waiting", "active", "completed"])
        narrow.pump(0.3)
        h.check([(x["jobId"], x["event"], x["seq"]) for x in narrow.events] == [(g, "completed", 1)],
                "the narrow subscription got job g's completed only", narrow.events)

        # The cap: 3 subscriptions (ev, narrow, short); a fourth is refused.
        short = Subscriber(s)
        short.subscribe(ttlMs=1000)
        cmd, r = s.client().request(SUBSCRIBE, {})
        h.check(cmd == h.REJECTED and r["code"] == "too_many_subscriptions"
                and "MAX_SUBSCRIPTIONS" in r["message"], "a fourth subscription is refused", r)

        # Renewal keeps the id (and the seq); no renewal: lapsed.
        r = ev.subscribe(subscription=ev.sub, botTypes=["python"])
        h.check(r["subscription"] == ev.sub and r["seq"] == ev.events[-1]["seq"],
                "renewed: the same subscription, seq where it was", (r, ev.events[-1]))
        h.wait_until(lambda: metric(c, "broker_event_subscriptions") == 2, 10,
                     "the short subscription (ttlMs 1000, not renewed) to lapse")
        x = c.submit("python", {"n": 7})
        w.done(w.recv_job(5)["jobId"], result=None)
        ev.wait_for(x, ["waiting", "active", "completed"])
        short.pump(0.2)
        h.check(short.events == [], "a lapsed subscription gets no events", short.events)
        cmd, r = short.c.request(SUBSCRIBE, {"subscription": short.sub})
        h.check(cmd == h.REJECTED and r["code"] == "not_found", "its renewal is not_found", r)

        # UNSUBSCRIBE: a new one fits again (the lapsed one's slot is free).
        cmd, r = narrow.c.request(UNSUBSCRIBE, {"subscription": narrow.sub})
        h.check(cmd == h.REPLY and r["subscription"] == narrow.sub, "UNSUBSCRIBE answered", r)
        cmd, r = narrow.c.request(UNSUBSCRIBE, {"subscription": narrow.sub})
        h.check(cmd == h.REJECTED and r["code"] == "not_found", "a second UNSUBSCRIBE: not_found", r)


def metric(c, name):
    """A metric's value from METRICS (the one series of a metric without labels)."""
    cmd, r = c.request(h.METRICS)
    for line in r["text"].splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


if __name__ == "__main__":
    h.main(test)

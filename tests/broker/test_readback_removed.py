"""A REMOVE handled while a restarted broker reads its finished jobs back
from Redis (the read-back for the job listings) sticks: the read-back's
read of the record may go out ahead of the REMOVE's DEL, and the job must
not come back from it.

Two jobs J and K complete; the broker stops.  The next broker reaches
Redis through a relay in this test, which holds Redis's answers from the
moment the broker asks for the finished sets' newest ids (ZREVRANGE)
until the REMOVE of J has sent its read of J's record.  Released, the
broker reads the newest records back (J's among them, ahead of the
REMOVE's DEL) and then removes J.  After the read-back, STATUS J answers
not_found, LIST of the completed jobs names K and not J, and J's record
is gone from Redis.

Real redis and broker; a fake python worker; a TCP relay.
"""
import select
import socket
import threading

import harness as h
from fakeworker import FakeWorker

REMOVE = 0x0C


class Relay(threading.Thread):
    """Forwards TCP connections from a free port to Redis.  Once the
    upstream (client to Redis) stream has carried `hold_on`, the answers
    wait in the relay until release()."""

    def __init__(self, target_port, hold_on):
        super().__init__(daemon=True)
        self.target_port = target_port
        self.hold_on = hold_on
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.sent = b""             # upstream since the hold began
        self.holding = False
        self.released = False
        self.stopping = False
        self.pairs = {}             # socket -> (peer, upstream?)
        self.held = {}              # client socket -> answers kept back

    def release(self):
        with self.lock:
            self.released = True

    def seen_since_hold(self, data):
        with self.lock:
            return data in self.sent

    def stop(self):
        self.stopping = True
        self.join(5)
        for s in list(self.pairs):
            s.close()
        self.listener.close()

    def run(self):
        tail = b""
        while not self.stopping:
            with self.lock:
                if self.released and self.held:
                    for c, data in self.held.items():
                        c.sendall(data)
                    self.held = {}
            ready, _, _ = select.select([self.listener] + list(self.pairs), [], [], 0.05)
            for s in ready:
                if s is self.listener:
                    c, _ = self.listener.accept()
                    r = socket.create_connection(("127.0.0.1", self.target_port))
                    self.pairs[c] = (r, True)
                    self.pairs[r] = (c, False)
                    continue
                if s not in self.pairs:
                    continue
                peer, upstream = self.pairs[s]
                data = s.recv(65536)
                if not data:
                    for x in (s, peer):
                        self.pairs.pop(x, None)
                        x.close()
                    continue
                with self.lock:
                    if upstream:
                        if self.holding:
                            self.sent += data
                        elif self.hold_on in tail + data and not self.released:
                            self.holding = True
                        tail = (tail + data)[-64:]
                        peer.sendall(data)
                    elif self.holding and not self.released:
                        self.held[peer] = self.held.get(peer, b"") + data
                    else:
                        peer.sendall(data)


def test():
    with h.Stack("readback-removed") as s:
        s.redis()
        b = s.broker()
        c = s.client()
        w = FakeWorker(s.endpoint, "w1", ["python"], 1)
        s.wait_workers(1, "python")
        ids = []
        for n in (1, 2):
            jid = c.submit("python", {"n": n})
            job = w.recv_job()
            h.check(job and job["jobId"] == jid, "w1 runs job %d" % n, job)
            w.done(jid, result={"n": n})
            h.check(c.wait(jid, 10)["state"] == "completed", "job %d completed" % n)
            ids.append(jid)
        j, k = ids
        w.close()
        c.close()
        b.stop()

        relay = Relay(s.redis_port, b"ZREVRANGE")
        relay.start()
        try:
            b = s.broker(env={"REDIS_URL": "redis://127.0.0.1:%d/0" % relay.port})
            h.wait_until(lambda: relay.holding, 15, "the read-back to ask for the finished sets' newest ids")
            c = s.client()
            req = c.send_request(REMOVE, {"jobId": j})
            h.wait_until(lambda: relay.seen_since_hold(("{bm}:job:%s" % j).encode()), 10,
                         "the REMOVE to read J's record")
            h.check(not relay.seen_since_hold(b"DEL"), "nothing deleted while Redis's answers are held")
            relay.release()
            cmd, r = c.reply_to(req)
            h.check(cmd == h.REPLY and r.get("removed") is True, "REMOVE of J: removed", (cmd, r))
            h.wait_until(lambda: "finished jobs read back from redis" in b.output(), 10,
                         "the read-back to end")
            cmd, r = c.request(h.STATUS, {"jobId": j})
            h.check(cmd == h.REJECTED and r.get("code") == "not_found",
                    "STATUS of J after the read-back: not_found (the read-back did not bring it back)",
                    (cmd, r))
            listed = c.listed(state="completed")
            h.check(k in listed and j not in listed, "LIST completed names K, not J", listed)
            h.check(h.job_record(s.redis_port, j) is None, "J's record is gone from Redis")
        finally:
            relay.stop()


if __name__ == "__main__":
    h.main(test)

"""A receiver that writes past its Content-Length must not break the next
delivery to the same host:port.

The receiver here is a raw socket server (whlib.RawReceiver): on the first keep-alive
connection it answers the first request 200 with Content-Length: 2 and then
writes bytes past that length (they reach the manager before the next answer
on that connection, as a real receiver's overrun does).  libcurl keeps the
connection; the next delivery to the same host:port reads those bytes as its
answer ("Received HTTP/0.9 when not allowed").  That must be a retryable
failure, and the retry, on a fresh connection, is delivered.  Real Redis,
broker, python worker (--noop) and webhook manager.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, wait_until
import whlib

GARBAGE = b"trailing bytes the receiver wrote past its Content-Length\r\n"


def answer(receiver, path, conn, number):
    """200 to every request; the first connection's second answer is
    preceded by GARBAGE (the overrun of the first answer)."""
    with receiver.lock:
        served = sum(1 for n, _ in receiver.requests if n == number)
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
    conn.sendall(GARBAGE + reply if number == 1 and served == 2 else reply)
    return True


def main():
    with whlib.RawReceiver(answer) as receiver, harness.Stack("wh-poisoned") as s:
        s.redis()
        s.broker()
        s.worker("--noop", "--type", "python")
        whlib.manager(s, {"WEBHOOK_ALLOW_PRIVATE": "1", "WEBHOOK_RETRY_DELAY": "50",
                          "WEBHOOK_MAX_RETRIES": "3"})
        s.wait_workers(1, "webhook")
        c = s.client()

        def ended(job):
            def done():
                rec = c.status(job) or {}
                return rec if rec.get("webhook", {}).get("state") in ("delivered", "failed") else None
            return wait_until(done, 30, "job %s's webhook to end" % job)["webhook"]

        url = "http://127.0.0.1:%d/hook" % receiver.port
        first = ended(c.submit("python", {"n": 1}, webhookUrl=url))
        check(first["state"] == "delivered" and first["attempts"] == 1,
              "the first delivery is answered 200 (the overrun follows it)", first)
        second = ended(c.submit("python", {"n": 2}, webhookUrl=url))
        check(second["state"] == "delivered",
              "the next delivery to the same host:port is delivered despite the overrun", second)
        check(second["attempts"] == 2,
              "... after one retryable failure on the reused connection", second)
        with receiver.lock:
            requests = list(receiver.requests)
            connections = receiver.connections
        check(connections >= 2 and requests[-1][0] != 1,
              "the retry went on a fresh connection", connections, requests)
        third = ended(c.submit("python", {"n": 3}, webhookUrl=url))
        check(third["state"] == "delivered" and third["attempts"] == 1,
              "later deliveries to the host go through at once", third)
        c.close()


if __name__ == "__main__":
    harness.main(main)

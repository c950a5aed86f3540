"""A receiver that answers something other than HTTP on a fresh
connection (the wrong service on the port, for now) is retried with
backoff, like one that does not answer: once the right service answers,
the delivery goes through.  An answer of garbage on every attempt fails
after the last one, naming what came back.  A fake broker hands
deliveries to the real manager; the receiver is a raw socket server
(whlib.RawReceiver) that answers garbage on its first two connections.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check
import whlib
from whlib import JOB, PROGRESS, DONE, job

GARBAGE = b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"


def answer(receiver, path, conn, number):
    if path == "/always" or number <= 2:
        conn.sendall(GARBAGE)
        return False
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    return True


def main():
    with whlib.RawReceiver(answer) as receiver, harness.Stack("wh-garbage") as s:
        broker, _ = whlib.manager_on_fake_broker(s, {"WEBHOOK_RETRY_DELAY": "50", "WEBHOOK_JITTER": "none",
                                                     "WEBHOOK_MAX_RETRIES": "3"})
        url = "http://127.0.0.1:%d/hook" % receiver.port

        broker.send(JOB, job("g1.wh1", url, "{}"))
        _, _, first = broker.expect_cmd(PROGRESS, "g1.wh1")
        wh = first["webhook"]
        check(wh["state"] == "retrying" and wh["attempts"] == 1 and not wh["lastStatus"]
              and "HTTP/0.9" in wh["lastError"],
              "garbage on a fresh connection: retrying, lastError says what came back", wh)
        _, _, done = broker.expect_cmd(DONE, "g1.wh1")
        check(done["ok"] is True and done["webhook"]["attempts"] == 3 and done["webhook"]["lastStatus"] == 200,
              "delivered on attempt 3, once HTTP answers on the port", done)
        check(receiver.connections == 3, "each attempt on a connection of its own", receiver.requests)

        broker.send(JOB, job("g2.wh1", "http://127.0.0.1:%d/always" % receiver.port, "{}"))
        _, _, done = broker.expect_cmd(DONE, "g2.wh1")
        wh = done["webhook"]
        check(done["ok"] is False and wh["attempts"] == 4 and "gave up after 4 attempts" in wh["lastError"]
              and "HTTP/0.9" in wh["lastError"],
              "garbage on every attempt: failed after the 4th, naming it", done)
        broker.close()


if __name__ == "__main__":
    harness.main(main)

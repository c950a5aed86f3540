"""Receivers that answer with too much: a delivery's outcome is its status,
the manager reads little of an answer and says plainly what was wrong.

* 200 with Content-Length: 10000000000, the body streamed as fast as the
  socket takes it: delivered on the first attempt, at once, and the
  connection closed after a few hundred KiB at most (not 10 s of reading).
* 200 with an endless chunked body: the same.
* 500 with an endless body: retryable, and lastError is "HTTP 500: " and the
  body's first bytes.
* 200 with one 10 MB header line, and 200 with 200 KB of short headers:
  retryable, lastError "the receiver's response headers are too large (over
  64 KiB)" (not "Out of memory").
A fake broker hands deliveries to the real manager; the receiver is a raw
socket server scripted per path (whlib.RawReceiver).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check
import whlib
from whlib import JOB, PROGRESS, DONE, job

CHUNK = b"x" * 65536
TOO_LARGE = "the receiver's response headers are too large (over 64 KiB)"


def stream(receiver, conn, number, head, chunked=False, limit=200 * 1024 * 1024):
    """Write head, then body bytes until the peer closes (or limit)."""
    conn.sendall(head)
    piece = b"10000\r\n" + CHUNK + b"\r\n" if chunked else CHUNK
    total = 0
    while total < limit:
        conn.sendall(piece)
        total += len(piece)
        receiver.note_sent(number, len(piece))
    return False


def answer(receiver, path, conn, number):
    if path == "/huge-length":
        return stream(receiver, conn, number, b"HTTP/1.1 200 OK\r\nContent-Length: 10000000000\r\n\r\n")
    if path == "/chunked-forever":
        return stream(receiver, conn, number,
                      b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", chunked=True)
    if path == "/error-forever":
        return stream(receiver, conn, number, b"HTTP/1.1 500 Internal Server Error\r\n"
                      b"Content-Length: 10000000000\r\n\r\nService down:\r\n\tdisk   full; " + b"x" * 300)
    if path == "/giant-header":
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * (10 * 1024 * 1024) + b"\r\nContent-Length: 0\r\n\r\n")
        return False
    if path == "/many-headers":
        lines = b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 90) for i in range(2000))
        conn.sendall(b"HTTP/1.1 200 OK\r\n" + lines + b"Content-Length: 0\r\n\r\n")
        return False
    conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    return True


def main():
    with whlib.RawReceiver(answer) as receiver, harness.Stack("wh-hostile-answers") as s:
        broker, _ = whlib.manager_on_fake_broker(s, {"WEBHOOK_RETRY_DELAY": "50", "WEBHOOK_JITTER": "none",
                                                     "WEBHOOK_MAX_RETRIES": "1", "WEBHOOK_TIMEOUT_MS": "10000"})
        base = "http://127.0.0.1:%d" % receiver.port

        for name, path in (("huge Content-Length", "/huge-length"), ("endless chunked body", "/chunked-forever")):
            jid = "b%s.wh1" % path.strip("/").replace("-", "")
            started = time.monotonic()
            broker.send(JOB, job(jid, base + path, "{}"))
            _, _, done = broker.expect_cmd(DONE, jid, timeout=20)
            took = time.monotonic() - started
            wh = done["webhook"]
            check(done["ok"] is True and wh["state"] == "delivered" and wh["attempts"] == 1
                  and wh["lastStatus"] == 200,
                  "200 with a %s: delivered on the first attempt" % name, done)
            check(took < 3, "... in %.2f s, not after the 10 s timeout" % took)
            number = [n for n, p in receiver.requests if p == path][-1]
            harness.wait_until(lambda: receiver.closed.get(number), 5,
                               "the manager to close the connection of %s" % path)
            sent = receiver.sent.get(number, 0)
            check(sent < 16 * 1024 * 1024,
                  "... and it closed the connection after %d KiB of body (the socket buffers hold the rest)"
                  % (sent // 1024))

        broker.send(JOB, job("berr.wh1", base + "/error-forever", "{}"))
        _, _, progress = broker.expect_cmd(PROGRESS, "berr.wh1", timeout=20)
        wh = progress["webhook"]
        check(wh["state"] == "retrying" and wh["lastStatus"] == 500
              and wh["lastError"].startswith("HTTP 500: Service down: disk full; xxx")
              and wh["lastError"].endswith("...") and len(wh["lastError"]) < 256,
              "500 with an endless body: retrying; lastError 'HTTP 500: ' and the body's first bytes", wh)
        broker.expect_cmd(DONE, "berr.wh1", timeout=20)

        for name, path in (("one 10 MB header", "/giant-header"), ("200 KB of short headers", "/many-headers")):
            jid = "h%s.wh1" % path.strip("/").replace("-", "")
            broker.send(JOB, job(jid, base + path, "{}"))
            _, _, progress = broker.expect_cmd(PROGRESS, jid, timeout=20)
            wh = progress["webhook"]
            check(wh["state"] == "retrying" and wh["lastError"] == TOO_LARGE and not wh["lastStatus"],
                  "%s: retrying, lastError names it: %s" % (name, TOO_LARGE), wh)
            _, _, done = broker.expect_cmd(DONE, jid, timeout=20)
            check(done["ok"] is False and TOO_LARGE in done["webhook"]["lastError"],
                  "... and failed after the last attempt, saying the same", done)
        broker.close()


if __name__ == "__main__":
    harness.main(main)

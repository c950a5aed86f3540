"""botmesh-mock given bytes that are not UTF-8, and a delivery repeated
past its record's eviction.

JSON cannot hold such bytes as text: a body that is not UTF-8 (binary, or
a UTF-8 body cut at MOCK_MAX_BODY_STORED inside a character), a path or a
webhook-id header with a stray byte, an error message quoting a client's
key cut at a byte count.  Each must leave the listings answering 200 (the
body as text cut back to a whole character, else in base64 with
"bodyEncoding": "base64"; a path or id with its bad bytes as '?') and the
error a 400, never a 500 from then on."""
import base64
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check, http, log
import whlib


def raw_post(port, path, body, headers=()):
    """POST with bytes as they are (path and headers too); returns the status."""
    head = b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    for h in headers:
        head += h + b"\r\n"
    head += b"Content-Length: %d\r\n\r\n" % len(body)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(head + body)
        answer = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def listings_answer(u):
    for path in ("/webhooks?limit=100", "/deliveries?limit=100"):
        status, _, body = http("GET", u + path)
        check(status == 200, "GET %s answers 200" % path, status, str(body)[:300])
    return http("GET", u + "/webhooks?limit=100")[2]["webhooks"]


def main():
    with harness.Stack("wh-mock-bytes") as s:
        mock = whlib.mock(s, {"MOCK_MAX_BODY_STORED": "20000"})
        u = mock.url

        log("a binary body, not UTF-8")
        binary = b"\xff\xfe binary \x00\x01"
        check(raw_post(mock.port, b"/hook", binary) == 200, "the mock takes it")
        hooks = listings_answer(u)
        check(hooks[0].get("bodyEncoding") == "base64"
              and base64.b64decode(hooks[0]["body"]) == binary,
              "its record holds the bytes in base64, bodyEncoding base64", hooks[0])

        log("a JSON body of 'é' (2 bytes each) cut at 20000 bytes inside a character")
        text = json.dumps({"jobId": "j-accents", "text": "é" * 15000}, ensure_ascii=False).encode()
        check(len(text) > 20000 and raw_post(mock.port, b"/hook", text) == 200, "the mock takes it")
        hooks = listings_answer(u)
        kept = hooks[0]
        check(kept["bodyTruncated"] is True and "bodyEncoding" not in kept
              and text.decode("utf-8").startswith(kept["body"])
              and 19998 <= len(kept["body"].encode()) <= 20000,
              "its record holds the text cut back to a whole character", len(kept["body"].encode()))
        status, _, listed = http("GET", u + "/deliveries?jobId=j-accents")
        check(status == 200 and listed["count"] == 1, "GET /deliveries?jobId=j-accents answers it", status)

        log("a path and a webhook-id with a stray byte")
        check(raw_post(mock.port, b"/hook%FF", b"{}") == 200, "POST /hook%FF: taken")
        check(raw_post(mock.port, b"/hook", b"{}", [b"webhook-id: msg_\xff"]) == 200,
              "webhook-id msg_\\xff: taken")
        hooks = listings_answer(u)
        check(len(hooks) == 4 and hooks[0]["webhookId"] == "msg_?" and hooks[1]["path"] == "/hook?",
              "both are listed, their bad bytes as '?'", [(h["path"], h["webhookId"]) for h in hooks[:2]])
        check(http("GET", u + "/webhooks/%d" % hooks[1]["seq"])[0] == 200, "GET /webhooks/{id} of it: 200")

        log("errors quoting a client's text cut inside a character")
        status, _, body = http("POST", u + "/mode", {"a" + "é" * 100: 1})
        check(status == 400 and "error" in body, "POST /mode with a long accented key: 400", status, body)
        status, _, body = http("GET", u + "/webhooks/a" + "%C3%A9" * 100)
        check(status in (400, 404) and "error" in body, "GET /webhooks/aéé...: 4xx with a JSON body",
              status, body)

    with harness.Stack("wh-mock-evict") as s:
        log("MOCK_MAX_RECORDS=1: one delivery posted 3 times, answered 200 each time")
        mock = whlib.mock(s, {"MOCK_MAX_RECORDS": "1"})
        for _ in range(3):
            status = http("POST", mock.url + "/hook", {"ok": True}, {"webhook-id": "msg-1"})[0]
            check(status == 200, "the mock answers 200")
        st = whlib.get_json(mock.url + "/stats")
        check(st["uniqueIds"] == 1 and st["repeats"] == 2 and st["duplicates"] == 2,
              "one unique id, two repeats, two duplicates though each record evicted the last", st)


harness.main(main)

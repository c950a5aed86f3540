"""A hostile client's requests, each answered with a 4xx JSON error whose
code and message name what is wrong: unparseable webhook URLs (refused at
submit, not at delivery; in a batch only that item), Content-Length that
is not a number, the errors civetweb itself raises (a head or URL too
long, an unknown method, a raw 0xff in a path), integers out of range in
every numeric field, query parameters with a NUL or given twice, the
reason phrase of 207 and 422, a \\u0000 in JSON, an unknown backoff type,
a chunk size that is not hex.  And botmesh-mock closes the connection
after a 413, so a client that declared a huge body is not left waiting."""
import json
import socket
import time

import harness
from gwtest import check, curl, gateway, post_json, raw_request, start_workers, stop_clean

VALID = {"botType": "python", "payload": {"ok": 1}}


def status_line(raw):
    return raw.split(b"\r\n", 1)[0].decode(errors="replace")


def error_of(raw):
    """(status, code, message) of a raw answer."""
    head, _, body = raw.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
        err = json.loads(body)["error"]
        return status, err["code"], err["message"]
    except (IndexError, ValueError, KeyError, TypeError):
        return None, None, raw[:300]


def refused(r, status, code, *words):
    """Check a curl Resp is status/code and its message holds every word."""
    message = (r.json or {}).get("error", {}).get("message", "") if isinstance(r.json, dict) else ""
    check(r.status == status and r.error_code() == code and all(w in message for w in words),
          "%d %s naming %s" % (status, code, ", ".join(words)), r)


def raw_refused(port, data, status, code, *words):
    raw = raw_request(port, data, timeout=5)
    got = error_of(raw)
    print("$ send %r\n  %s  %s" % (data[:70], status_line(raw), raw.partition(b"\r\n\r\n")[2][:200]))
    check(got[0] == status and got[1] == code and all(w in got[2] for w in words),
          "%r: %d %s naming %s" % (data[:40], status, code, ", ".join(words)), got)


def main():
    with harness.Stack("gw-bad-input") as s:
        s.redis()
        s.broker()
        start_workers(s, ["python"])
        g = gateway(s, env={"GATEWAY_MAX_HEADER_BYTES": "16384"})
        u, port = g.url, g.port

        # 1. Webhook URLs the webhook manager's parser cannot read: refused
        # at submit, naming what is wrong.
        for url, words in (("http://[::1", ("webhookUrl", "cannot be parsed")),
                           ("http://127.0.0.1%0d%0a:15000/", ("webhookUrl", "cannot be parsed")),
                           ("http://:80/", ("webhookUrl",))):
            refused(post_json(u + "/invoke", dict(VALID, webhookUrl=url)),
                    400, "invalid_webhook_url", *words)
        r = post_json(u + "/invoke", dict(VALID, webhookUrl="http://127.0.0.1:15000/hook"))
        check(r.status == 202, "a webhook URL that parses is accepted", r)
        # In a batch: that item refused, the others go on.
        r = post_json(u + "/invoke/batch", [VALID, dict(VALID, webhookUrl="http://[::1"), VALID])
        check(r.status == 207 and r.json["accepted"] == 2 and r.json["rejected"] == 1,
              "a batch with one bad webhook URL: 207, 2 accepted, 1 refused", r)
        item = r.json["jobs"][1]
        check(item["httpStatus"] == 400 and item["error"]["code"] == "invalid_webhook_url"
              and "cannot be parsed" in item["error"]["message"],
              "the item with the bad URL refused invalid_webhook_url", item)

        # 2. Content-Length that is not a number: bad_framing, as README says.
        for value in (b"abc", b"-1", b"+2", b"0x2"):
            raw_refused(port, b"POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: " + value
                        + b"\r\n\r\n{}", 400, "bad_framing", "Content-Length")

        # 3. civetweb's own refusals, named.
        raw_refused(port, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 17000 + b"\r\n\r\n",
                    431, "headers_too_large", "16384", "GATEWAY_MAX_HEADER_BYTES")
        raw_refused(port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                    414, "uri_too_long", "URL", "16384")
        # Past twice the limit civetweb refuses the head itself, and does
        # not tell a long URL from long headers (nor from a control byte).
        raw_refused(port, b"GET /" + b"a" * 40000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                    431, "headers_too_large", "32768", "control character")
        # A method HTTP defines that no route takes: 405; one it does not: 501.
        for method, status in ((b"TRACE", 405), (b"FOO", 501)):
            raw_refused(port, method + b" /health HTTP/1.1\r\nHost: x\r\n\r\n",
                        status, "method_not_allowed", method.decode())
        raw_refused(port, b"GET /job/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_path", "path")
        raw_refused(port, b"GET health HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_path", "begin with /")
        raw_refused(port, b"GET /health HTTP/1.1\r\nHost: x\r\nNo colon\r\n\r\n",
                    400, "bad_header", "header line")
        r = curl(u + "/job/%ff%fe")
        check(r.status in (400, 404) and r.json and r.error_code() in ("bad_path", "not_found"),
              "a percent-encoded 0xff in a /job/ path: a JSON error", r)

        # 4. Numeric fields: out of range, or past 64 bits, name the field.
        refused(post_json(u + "/invoke", dict(VALID, runAt=0)), 400, "invalid_run_at", "runAt")
        big = "99999999999999999999"
        for field, code in (("priority", "invalid_priority"), ("timeoutMs", "invalid_timeout"),
                            ("maxAttempts", "invalid_max_attempts"), ("attempts", "invalid_attempts"),
                            ("delayMs", "invalid_delay"), ("delay", "invalid_delay"),
                            ("runAt", "invalid_run_at")):
            for number in (big, "-" + big):
                body = '{"botType":"python","payload":{},"%s":%s}' % (field, number)
                refused(post_json(u + "/invoke", body), 400, code, field)
        refused(post_json(u + "/invoke", '{"botType":"python","payload":{},'
                                         '"backoff":{"type":"fixed","delayMs":%s}}' % big),
                400, "invalid_backoff", "backoff.delayMs")
        refused(post_json(u + "/invoke", '{"botType":"python","payload":{"n":%s}}' % big),
                400, "invalid_payload", "payload", "64-bit")
        refused(post_json(u + "/invoke", '{"botType":"python","payload":{},"other":%s}' % big),
                400, "invalid_json", "other holds an integer too big for a 64-bit integer")
        r = post_json(u + "/invoke/batch", '[{"botType":"python","payload":{},"priority":%s}]' % big)
        refused(r, 400, "invalid_priority", "priority")

        # 5. Query parameters, status texts, NUL, backoff type, chunk size.
        refused(curl(u + "/jobs?botType=%00"), 400, "invalid_bot_type", "botType")
        refused(curl(u + "/jobs?state=queued&state=failed"), 400, "invalid_state",
                "state", "given twice")
        refused(curl(u + "/jobs?limit=5&limit=6"), 400, "invalid_limit", "limit", "given twice")
        body = json.dumps([VALID]).encode()
        raw = raw_request(port, b"POST /invoke/batch HTTP/1.1\r\nHost: x\r\nContent-Length: %d"
                          b"\r\n\r\n" % len(body) + body)
        print("  " + status_line(raw))
        check(status_line(raw) == "HTTP/1.1 207 Multi-Status", "207 says Multi-Status", raw[:100])
        keyed = dict(VALID, idempotencyKey="bad-input-k")
        check(post_json(u + "/invoke", keyed).status == 202, "a keyed job accepted")
        body = json.dumps(dict(keyed, payload={"other": 1})).encode()
        raw = raw_request(port, b"POST /invoke HTTP/1.1\r\nHost: x\r\nContent-Length: %d"
                          b"\r\n\r\n" % len(body) + body)
        print("  " + status_line(raw))
        check(status_line(raw) == "HTTP/1.1 422 Unprocessable Entity",
              "422 says Unprocessable Entity", raw[:100])
        r = post_json(u + "/invoke", '{"botType":"python","payload":"a\\u0000b"}')
        refused(r, 400, "invalid_json", "NUL character (\\u0000), which is not allowed")
        check("JSON_ALLOW_NUL" not in r.body, "no library internal in the message", r)
        refused(post_json(u + "/invoke", dict(VALID, backoff={"type": "weird"})),
                400, "invalid_backoff", "backoff.type", "weird")
        raw_refused(port, b"POST /invoke HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"zz\r\n{}\r\n0\r\n\r\n", 400, "bad_framing", "chunk")

        check(post_json(u + "/invoke", VALID).status == 202, "a valid request after all that")
        stop_clean(g)
        line = "http: refused 431 headers_too_large from 127.0.0.1: the request line and headers"
        check(line in g.output(), "civetweb's refusals are logged, naming the problem",
              g.output()[-1500:])

        # 6. botmesh-mock: a 413 from Content-Length alone closes the connection.
        mock = s.spawn("mock", [s.bin("botmesh-mock")],
                       {"MOCK_WEBHOOK_PORT": "0", "MOCK_LISTEN_ADDR": "127.0.0.1"})
        mock_port = mock.listening("http")
        with socket.create_connection(("127.0.0.1", mock_port), timeout=10) as c:
            c.sendall(b"POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n")
            t0 = time.monotonic()
            answer = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                answer += chunk
            took = time.monotonic() - t0
        print("  mock: %s in %.2f s, then closed" % (status_line(answer), took))
        check(status_line(answer).startswith("HTTP/1.1 413")
              and took < 5, "the mock answers 413 and closes the connection", answer[:300])
        stop_clean(mock)


if __name__ == "__main__":
    harness.main(main)

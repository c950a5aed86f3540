#!/usr/bin/python3
"""gen_corpus.py - write the seed corpus of every fuzz target.

    /usr/bin/python3 tests/fuzz/gen_corpus.py

Seeds are named seed-*; files that libFuzzer or run.sh add later (new
coverage, crash-*) sit next to them and are kept.  Each seed follows the
input layout described at the top of its fuzz_<target>.c."""
import json
import os
import struct

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def nest(depth, leaf=1):
    v = leaf
    for i in range(depth):
        v = [v] if i % 2 else {"k": v}
    return v


# --- codec: [header len][command len] header command body -----------------
def frames(header, command, body):
    return bytes([len(header), len(command)]) + header + command + body


C, W = b"BMC01", b"BMW01"
codec = {
    "submit": (C, b"\x01", pack({"req": 1, "botType": "python", "payload": {"task": "data_analysis",
             "dataset": "sales_2024"}, "webhookUrl": "http://127.0.0.1:5000/h", "priority": 1,
             "idempotencyKey": "k-1", "timeoutMs": 60000, "maxAttempts": 3, "notify": True})),
    "status": (C, b"\x02", pack({"req": 2, "jobId": "0190abcdef-00000001"})),
    "stats": (C, b"\x04", pack({"req": 3})),
    "list": (C, b"\x07", pack({"req": 4, "state": "failed", "botType": "node", "limit": 10})),
    "ping": (C, b"\x08", pack({})),
    "accepted": (C, b"\x81", pack({"req": 1, "jobId": "x", "duplicate": False})),
    "ready": (W, b"\x01", pack({"name": "w1", "types": ["python", "node"], "credit": 5, "pid": 42})),
    "job": (W, b"\x02", pack({"jobId": "j", "botType": "java", "payload": None, "attempt": 1,
             "timeoutMs": 1000, "deadline": 1700000000000})),
    "progress": (W, b"\x03", pack({"jobId": "j", "progress": 40, "webhook": {"state": "retrying",
             "attempts": 2, "lastStatus": 503, "lastError": "HTTP 503", "nextAttemptAt": 1}})),
    "done_ok": (W, b"\x04", pack({"jobId": "j", "ok": True, "result": {"count": 3, "mean": 1.5},
             "startedAt": 1, "finishedAt": 2})),
    "done_err": (W, b"\x04", pack({"jobId": "j", "ok": False, "error": {"code": "bot_failed",
             "message": "Traceback \u00e9\u2603"}})),
    "heartbeat": (W, b"\x05", b"\x80"),
    # the worker bodies the broker reads through the codec: error.limit, a
    # limit name too long (dropped), RELEASE, DISCONNECT, a webhook without
    # its state (NACK bad_request naming webhook.state)
    "done_limit": (W, b"\x04", pack({"jobId": "j", "ok": False, "error": {"code": "resource_limit",
             "message": "killed", "exitCode": 137, "limit": "memory"}})),
    "done_limit_long": (W, b"\x04", pack({"jobId": "j", "ok": False, "error": {
             "code": "resource_limit", "limit": "x" * 40}})),
    "release": (W, b"\x08", pack({"jobId": "j"})),
    "disconnect": (W, b"\x06", pack({"reason": "shutdown"})),
    "progress_no_state": (W, b"\x03", pack({"jobId": "j", "webhook": {"attempts": 1}})),
    # every typed body of bm_codec, replies included
    "accepted_position": (C, b"\x81", pack({"req": 1, "jobId": "x", "duplicate": True,
             "position": 4})),
    "rejected": (C, b"\x82", pack({"req": 1, "code": "queue_full", "message": "retry later"})),
    "reply_record": (C, b"\x83", pack({"req": 2, "job": {"jobId": "j", "botType": "python",
             "state": "failed", "priority": 3, "progress": 40, "attempts": 2, "maxAttempts": 3,
             "timeoutMs": 1000, "createdAt": 1, "startedAt": 2, "finishedAt": 3,
             "payload": {"k": [1, 2]}, "webhookUrl": "http://h/x", "worker": "w1",
             "error": {"code": "timeout", "message": "late", "exitCode": -9},
             "webhook": {"state": "failed", "attempts": 5, "lastStatus": None,
                         "lastError": "refused", "nextAttemptAt": None}}})),
    "result": (C, b"\x84", pack({"jobId": "j", "job": {"jobId": "j", "botType": "node",
             "state": "completed", "result": {"mean": 4.2}, "progress": 100}})),
    "reply_list": (C, b"\x83", pack({"req": 3, "jobs": [{"jobId": "a", "botType": "python",
             "state": "queued"}, {"jobId": "b", "botType": "java", "state": "running"}]})),
    "reply_stats": (C, b"\x83", pack({"req": 4, "types": {"python": {"waiting": 1, "running": 2,
             "completed": 3, "failed": 0, "cancelled": 0, "limit": 3, "usage": 2,
             "waitingForPermit": 0, "workers": 1, "submitted": 6}}, "workers": [{"name": "w1",
             "types": ["python"], "credit": 5, "running": 2, "lastHeartbeat": 1, "pid": 7}],
             "totals": {"submitted": 6, "completed": 3, "failed": 0, "cancelled": 0,
             "rejected": 0, "retried": 0}, "redis": True, "uptimeMs": 10})),
    "reply_ping": (C, b"\x83", pack({"req": 5, "redis": False, "uptimeMs": 99})),
    "reply_metrics": (C, b"\x83", pack({"req": 6, "text": "broker_jobs_total 1\n"})),
    "cancel_worker": (W, b"\x07", pack({"jobId": "j", "reason": "timeout"})),
    "release": (W, b"\x08", pack({"jobId": "j"})),
    "disconnect": (W, b"\x06", pack({"reason": "shutdown"})),
    "retry": (C, b"\x05", pack({"req": 7, "jobId": "j"})),
    "nack": (W, b"\x09", pack({"code": "not_owner", "message": "no"})),
    # batches (section 4a, 5a): items are single-job bodies
    "submit_many": (C, b"\x0a", pack({"req": 8, "jobs": [{"botType": "python", "payload": {"n": 1},
             "notify": True}, 42, {"botType": "Bad Type"}, {"botType": "node", "priority": 1,
             "idempotencyKey": "k-2"}]})),
    "accepted_many": (C, b"\x85", pack({"req": 8, "jobs": [{"jobId": "a", "duplicate": False,
             "position": 1}, {"code": "unknown_bot_type", "message": "no"}, {"jobId": "b",
             "duplicate": True}]})),
    "result_many": (C, b"\x86", pack({"jobs": [{"jobId": "j", "job": {"jobId": "j", "botType": "node",
             "state": "completed", "result": [1], "progress": 100}}, {"jobId": "k"}]})),
    "job_many": (W, b"\x0a", pack({"jobs": [{"jobId": "j1", "botType": "python", "payload": [1],
             "attempt": 1, "timeoutMs": 1000, "deadline": 1}, {"jobId": "j2", "botType": "python",
             "payload": None, "attempt": 2, "timeoutMs": 5}]})),
    "done_many": (W, b"\x0b", pack({"jobs": [{"jobId": "j1", "ok": True, "result": {"v": 2}},
             {"jobId": "j2", "ok": False, "error": {"code": "timeout", "message": "late"}},
             "not a map"]})),
    "batch_empty": (C, b"\x0a", pack({"req": 1, "jobs": []})),
    "batch_too_many": (C, b"\x0a", pack({"req": 1, "jobs": [{}] * 1001})),
    "batch_not_array": (W, b"\x0b", pack({"jobs": {"jobId": "j"}})),
    # hostile
    "bad_header": (b"BMC02", b"\x01", pack({})),
    "short_header": (b"BMC", b"\x01", pack({})),
    "two_byte_command": (C, b"\x01\x01", pack({})),
    "no_command": (C, b"", pack({})),
    "empty_body": (C, b"\x01", b""),
    "array_body": (C, b"\x01", pack([1, 2, 3])),
    "str_body": (C, b"\x01", pack("hello")),
    "trailing": (C, b"\x01", pack({}) + b"\x00"),
    "huge_map32": (C, b"\x01", b"\xdf\xff\xff\xff\xff"),
    "huge_array32": (C, b"\x01", b"\x81\xa1k\xdd\xff\xff\xff\xff"),
    "huge_str32": (C, b"\x01", b"\x81\xa1k\xdb\x7f\xff\xff\xff"),
    "huge_bin32": (C, b"\x01", b"\x81\xa1k\xc6\x7f\xff\xff\xff"),
    "huge_ext32": (C, b"\x01", b"\x81\xa1k\xc9\x7f\xff\xff\xff\x01"),
    "map16_short": (C, b"\x01", b"\xde\x00\x10\xa1k"),
    "deep31": (C, b"\x01", pack({"payload": nest(31)})),
    "deep32": (C, b"\x01", pack({"payload": nest(32)})),
    "deep33": (C, b"\x01", pack({"payload": nest(33)})),
    "deep200": (C, b"\x01", b"\x91" * 200 + b"\x01"),
    "int_keys": (C, b"\x01", pack({1: "a", -5: "b", 2.5: "c", None: 1, True: 2})),
    "dup_keys": (C, b"\x01", b"\x82\xa3req\x01\xa3req\x02"),
    "types": (W, b"\x04", pack({"jobId": "j", "ok": True, "result": [2**64 - 1, -2**63, 1.5e300,
              float("nan"), float("inf"), b"\x00\xff", "\u0000x", msgpack.ExtType(5, b"abc"),
              None, True, False]})),
    "float32": (W, b"\x04", b"\x82\xa5jobId\xa1j\xa6result\xca\x7f\xc0\x00\x00"),
    "nul_in_id": (C, b"\x02", pack({"req": 1, "jobId": "a\u0000b"})),
    "long_id": (C, b"\x02", pack({"req": 1, "jobId": "x" * 300})),
    "bad_utf8_key": (C, b"\x01", b"\x81\xa2\xff\xfe\x01"),
    "fixext": (C, b"\x01", b"\x81\xa1k\xd4\x01\x02"),
}
for name, (h, c, b) in codec.items():
    write("codec", name, frames(h, c, b))

# --- gw_invoke: the POST /invoke body ----------------------------------------
gw = {
    "seed_python": {"botType": "python", "payload": {"task": "data_analysis", "dataset": "sales_2024"},
                    "webhookUrl": "http://localhost:5000/hooks/demo", "priority": 1},
    "seed_node": {"botType": "node", "payload": {"action": "process_api", "endpoint": "/users"}},
    "seed_java": {"botType": "java", "payload": {"operation": "batch_process", "records": 1000},
                  "priority": 2097152},
    "all_fields": {"botType": "my-bot_2", "payload": [1, "two", 3.5, None, True],
                   "webhookUrl": "https://example.com/x?y=1#z", "priority": 0,
                   "idempotencyKey": "order-42", "timeoutMs": 86400000, "maxAttempts": 100},
    "nulls": {"botType": "python", "payload": None, "webhookUrl": None, "priority": None,
              "idempotencyKey": None, "timeoutMs": None, "maxAttempts": None},
    "unknown_keys": {"botType": "python", "payload": 1, "extra": {"a": [1]}, "z": None},
    "priority_neg": {"botType": "python", "payload": 1, "priority": -1},
    "priority_big": {"botType": "python", "payload": 1, "priority": 2097153},
    "priority_real": {"botType": "python", "payload": 1, "priority": 1.0},
    "priority_str": {"botType": "python", "payload": 1, "priority": "1"},
    "timeout_zero": {"botType": "python", "payload": 1, "timeoutMs": 0},
    "attempts_101": {"botType": "python", "payload": 1, "maxAttempts": 101},
    "bad_type_upper": {"botType": "Python", "payload": 1},
    "bad_type_long": {"botType": "a" * 33, "payload": 1},
    "type_32": {"botType": "a" * 32, "payload": 1},
    "no_payload": {"botType": "python"},
    "no_type": {"payload": 1},
    "url_ftp": {"botType": "python", "payload": 1, "webhookUrl": "ftp://x/y"},
    "url_space": {"botType": "python", "payload": 1, "webhookUrl": "http://a b/"},
    "url_long": {"botType": "python", "payload": 1, "webhookUrl": "http://h/" + "a" * 2040},
    "key_space": {"botType": "python", "payload": 1, "idempotencyKey": "a b"},
    "key_129": {"botType": "python", "payload": 1, "idempotencyKey": "k" * 129},
    "unicode": {"botType": "python", "payload": {"s": "\u00e9\u2603\U0001f600", "\u00e9": 1}},
    "big_ints": {"botType": "python", "payload": [9223372036854775807, -9223372036854775808, 1e308]},
    "deep31": {"botType": "python", "payload": nest(31)},
    "deep32": {"botType": "python", "payload": nest(32)},
    "deep33": {"botType": "python", "payload": nest(33)},
    "big_payload": {"botType": "python", "payload": "x" * 2100},
}
for name, obj in gw.items():
    write("gw_invoke", name, json.dumps(obj, ensure_ascii=False))
write("gw_invoke", "dup_keys", '{"botType":"python","botType":"node","payload":1}')
write("gw_invoke", "nul_escape", '{"botType":"python","payload":"a\\u0000b"}')
write("gw_invoke", "bad_utf8", b'{"botType":"python","payload":"\xff\xfe"}')
write("gw_invoke", "text_deep64", "[" * 64 + "]" * 64)
write("gw_invoke", "text_deep65", '{"botType":"python","payload":' + "[" * 65 + "]" * 65 + "}")
write("gw_invoke", "bracket_in_string", '{"botType":"python","payload":"[[[[{{{{"}')
write("gw_invoke", "escaped_quote", '{"botType":"python","payload":"\\"[[["}')
write("gw_invoke", "array_body", "[1,2]")
write("gw_invoke", "scalar_body", "42")
write("gw_invoke", "empty", "")
write("gw_invoke", "truncated", '{"botType":"python","payload":{"a":')
write("gw_invoke", "trailing_garbage", '{"botType":"python","payload":1} x')
write("gw_invoke", "huge_exponent", '{"botType":"python","payload":1e999999}')
write("gw_invoke", "int_overflow", '{"botType":"python","payload":1,"priority":99999999999999999999}')

# --- bot_output: [chunk][limit][le16 stdout len][le16 stderr len] stdout stderr fd3
def bot(stdout, stderr=b"", progress=b"", chunk=7, limit=64):
    if isinstance(stdout, str):
        stdout = stdout.encode()
    if isinstance(stderr, str):
        stderr = stderr.encode()
    if isinstance(progress, str):
        progress = progress.encode()
    return bytes([chunk, limit]) + struct.pack("<HH", len(stdout), len(stderr)) + stdout + stderr + progress


bo = {
    "python_result": bot('{"task": "data_analysis", "dataset": "sales_2024", "count": 3, "mean": 2.5}\n',
                         "", "PROGRESS 10\nPROGRESS 50\nPROGRESS 100\n"),
    "log_then_json": bot("starting\nworking...\n{\"ok\": true}\n", "warn: x\n", "PROGRESS\t7 \r\n"),
    "not_json": bot("hello world", "Traceback (most recent call last):\n  ValueError: \u00e9\n"),
    "empty": bot("", "", ""),
    "scalar": bot("42"),
    "string": bot('"a\\u0000b"'),
    "deep": bot("[" * 40 + "]" * 40),
    "big_result": bot('"' + "x" * 3000 + '"', chunk=63, limit=255),
    "bad_utf8_stderr": bot("{}", b"\xff\xfe\xc3\x28 abc \xe2\x82 \xf0\x9f\x98\x80 end\x01\x7f", ""),
    "cut_utf8_tail": bot("{}", "\u00e9" * 50 + "\u2603" * 30, "", chunk=3, limit=2),
    "progress_edge": bot("{}", "", "PROGRESS 100\nPROGRESS 101\nPROGRESS 0007\nPROGRESS -1\n"
                         "PROGRESS 4O\n" + "PROGRESS 9" + " " * 60 + "\nPROGRESS 55\nPROGRESS 66"),
    "progress_long": bot("{}", "", "x" * 200 + "PROGRESS 10\nPROGRESS 20\n", chunk=1),
    "progress_64": bot("{}", "", "PROGRESS 30" + " " * 53 + "\nPROGRESS 31" + " " * 54 + "\n"),
    "crlf": bot('{"a":1}\r\n\r\n', "err\r\n", "PROGRESS 5\r\n"),
    "two_json": bot('{"a":1}\n{"b":2}\n'),
    "nan": bot("NaN"),
    "ints": bot("[18446744073709551615, -9223372036854775809, 1e400]"),
    "bom": bot(b"\xef\xbb\xbf{\"ok\": true}\r\n"),
    "two_boms": bot(b"\xef\xbb\xbf\xef\xbb\xbf[1]"),
    "bom_then_log": bot(b"\xef\xbb\xbfloading\n\xef\xbb\xbf{}\n"),
}
for name, data in bo.items():
    write("bot_output", name, data)

# --- retry_after: [5 bytes now_s, little endian] value ------------------------
def ra(value, now_s=1700000000):
    return struct.pack("<Q", now_s)[:5] + value.encode()


ras = {
    "seconds": ra("120"), "zero": ra("0"), "leading_zero": ra("007"), "ws": ra(" \t5\t "),
    "huge": ra("99999999999999999999999999"), "negative": ra("-1"), "real": ra("1.5"),
    "imf": ra("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 - 5),
    "imf_future": ra("Wed, 15 Nov 2023 06:13:20 GMT"),
    "rfc850": ra("Sunday, 06-Nov-94 08:49:37 GMT", 784111700),
    "rfc850_century": ra("Friday, 31-Dec-99 23:59:59 GMT", 4102444800),
    "asctime": ra("Sun Nov  6 08:49:37 1994", 784111000),
    "asctime2": ra("Thu Feb 29 12:00:00 2024"),
    "lower": ra("sun, 06 nov 1994 08:49:37 gmt"),
    "utc": ra("Sun, 06 Nov 1994 08:49:37 UTC"),
    "leap_second": ra("Sat, 31 Dec 2016 23:59:60 GMT"),
    "feb30": ra("Mon, 30 Feb 2024 00:00:00 GMT"),
    "feb29_nonleap": ra("Tue, 29 Feb 2100 00:00:00 GMT"),
    "year9999": ra("Fri, 31 Dec 9999 23:59:59 GMT"),
    "year0000": ra("Sat, 01 Jan 0000 00:00:00 GMT"),
    "empty": ra(""), "spaces": ra("   "), "garbage": ra("soon"),
    "bad_time": ra("Sun, 06 Nov 1994 24:00:00 GMT"),
    "asctime_1digit_bad": ra("Sun Nov  x 08:49:37 1994"),
}
for name, data in ras.items():
    write("retry_after", name, data)

# --- url ----------------------------------------------------------------------
urls = {
    "mock": "http://127.0.0.1:5000/hooks/demo",
    "https": "https://example.com:8443/a/b?c=d#e",
    "ipv6": "http://[::1]:8080/x",
    "ipv6_mapped": "http://[::ffff:127.0.0.1]/x",
    "ipv6_mapped_hex": "http://[::ffff:7f00:1]/",
    "nat64": "http://[64:ff9b::a9fe:a9fe]/",
    "sixtofour": "http://[2002:c0a8:0101::1]/",
    "metadata": "http://169.254.169.254/latest/meta-data/",
    "decimal_ip": "http://2130706433/",
    "octal_ip": "http://0177.0.0.1/",
    "short_ip": "http://127.1/",
    "userinfo": "http://user:pass@10.0.0.1@evil.com/",
    "zone": "http://[fe80::1%25eth0]/",
    "ftp": "ftp://example.com/",
    "no_host": "http:///path",
    "upper": "HTTP://EXAMPLE.COM/",
    "idn": "http://\u00e9xample.com/",
    "space": "http://a b.com/",
    "list_host": "mock, [::1] ,Example.ORG\x01example.org",
    "list_brackets": "[fe80::1],10.0.0.1\x01[FE80::1]",
    "list_empty": "\x01host",
    "list_commas": ",,, ,\x01,",
    "raw_v4": b"\x7f\x00\x00\x01",
    "raw_v6": b"\x00" * 10 + b"\xff\xff\x0a\x00\x00\x01",
    "sockaddr_in": struct.pack("=H", 2) + b"\x00\x50" + b"\xa9\xfe\xa9\xfe" + b"\x00" * 8,
    "sockaddr_in6": struct.pack("=H", 10) + b"\x00\x50" + b"\x00" * 4 + b"\xfc" + b"\x00" * 14 + b"\x01" + b"\x00" * 4,
    "sockaddr_short": struct.pack("=H", 10) + b"\x00\x50",
}
for name, data in urls.items():
    write("url", name, data)

# --- record: the HGETALL strings, each [le16 length] bytes --------------------
def record(*strings):
    out = b""
    for x in strings:
        x = x if isinstance(x, bytes) else x.encode()
        out += struct.pack("<H", len(x)) + x
    return out


submit = pack({"t": "python", "p": pack({"n": 1}), "y": 2, "q": 7, "m": 3, "o": 300000, "c": 1764360000000,
               "u": "http://127.0.0.1:9/hook", "k": "idem-1", "n": 4, "b": "f500j"})
run = pack({"a": 1, "g": 100, "s": 1764360000100, "f": 1764360000200, "w": "w1", "r": pack({"ok": True}),
            "ec": "bot_failed", "em": "exit 1", "ex": 1, "d": 1, "t": 1764360001000,
            "e": pack({"attempt": 1, "code": "bot_failed", "message": "x", "at": 1})})
records = {
    "submitted": record("state", "queued", "r", submit),
    "finished": record("state", "completed", "r", submit, "x", run, "w", pack({"state": "delivered"})),
    "delivery": record("state", "queued", "r", pack({"t": "webhook", "p": pack({"url": "u"}), "q": 1, "m": 1,
                                                         "o": 1000, "c": 1, "a": "j-1"})),
    "flat": record("jobId", "old-1", "botType", "python", "state", "failed", "seq", "12", "attempts", "2",
                   "createdAt", "1764360000000", "payload", pack({"a": 1}), "errorCode", "bot_failed",
                   "errorExitCode", "4", "backoff", "e2000", "runAttempts", "3", "attemptErrors",
                   pack({"attempt": 1}), "webhook", pack({"state": "pending"})),
    "mixed": record("jobId", "old-2", "botType", "python", "state", "completed", "payload", b"\x80", "x", run),
    "bad_map": record("state", "queued", "r", b"\xc1"),
    "big_int": record("state", "queued", "r", pack({"t": "python", "p": b"\x80", "q": 2 ** 64 - 1})),
    "nul_text": record("state", "queued", "r", pack({"t": "python", "p": b"\x80", "u": "a\x00b"})),
    "wrong_types": record("state", "running", "r", pack({"t": 1, "p": "text"}), "x", pack([1, 2])),
    "no_state": record("r", submit),
    "odd": record("state"),
    "empty": b"",
}
for name, data in records.items():
    write("record", name, data)
print("seeds written under", os.path.join(HERE, "corpus"))

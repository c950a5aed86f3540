"""A JOB whose payload JSON or the library's msgpack decoder finds awkward
ends: a Python or Node worker either runs it (keys made readable, strings
not UTF-8 kept) or fails it bad_request, and never loses its slot
(clients/README.md, "values JSON has not").

    test_e2e_undecodable.py python|node

A real broker (no Redis) and one client-library worker with credit 1 as a
process (tests/clients/pyworker.py or nodeworker.js). Payloads with a bool
key, a nil key, an array key, an integer key beyond 32 bits, a str that is not UTF-8
and the key "__proto__" (which @msgpack/msgpack refuses) are submitted one
after the other; each job ends, a plain job after them completes, and the
worker's running count is back to 0.
"""
import os

from e2elib import PY, HERE, RUN_NODE, harness, botmesh, client_side, wait_worker
from harness import check, wait_until

NOT_UTF8 = b"caf\xe9".decode("utf-8", "surrogateescape")     # goes out as the bytes 63 61 66 e9


def main():
    side = client_side()
    with harness.Stack("clients-undecodable-" + side) as s:
        s.broker(redis=False)
        if side == "python":
            bot_type = "pywork"
            args = [PY, os.path.join(HERE, "pyworker.py"), "--types", bot_type]
        else:
            bot_type = "nodework"
            args = ["sh", RUN_NODE, os.path.join(HERE, "nodeworker.js"), "--types", bot_type]
        w = s.spawn("worker", args + ["--credit", "1", "--name", "odd", "--endpoint", s.endpoint])
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "odd")

        # What each payload's echo reads as, per library (None: the job fails bad_request).
        cases = [
            ("bool key", {True: 1}, {True: 1}, {"true": 1}),
            ("array key", {(1, 2): "x"}, {(1, 2): "x"}, {"[1,2]": "x"}),
            ("nil key", {None: 2}, {None: 2}, {"null": 2}),
            ("64-bit integer key", {2 ** 40: "big"}, {2 ** 40: "big"}, {"1099511627776": "big"}),
            ("str not UTF-8", {"s": NOT_UTF8}, {"s": NOT_UTF8}, None),
            ("key __proto__", {"__proto__": 1}, {"__proto__": 1}, None),
        ]
        for what, payload, py_echo, node_echo in cases:
            expect = py_echo if side == "python" else node_echo
            jid = c.submit(bot_type, payload, attempts=1, timeout_ms=20000)
            job = c.wait(jid, timeout=15)
            if what == "str not UTF-8" and side == "node":
                # Node decodes it with U+FFFD in place of the byte: it runs, its echo differs
                check(job["state"] == "completed" and job["result"]["echo"]["s"] == "caf\ufffd",
                      "node: %s: the job completes, the byte read as U+FFFD" % what, job)
                continue
            if expect is None:
                check(job["state"] == "failed" and job["error"]["code"] == "bad_request"
                      and "cannot decode" in job["error"]["message"],
                      "%s: %s: the job fails bad_request naming the decoding" % (side, what), job)
                wait_until(lambda: "job %s: its JOB does not decode" % jid in w.output(), 10,
                           "the worker's log line naming job %s" % jid)
            else:
                check(job["state"] == "completed" and job["result"]["echo"] == expect,
                      "%s: %s: the job completes, echoed as %r" % (side, what, expect), job)
        jid = c.submit(bot_type, {"plain": 1}, attempts=1)
        check(c.wait(jid, timeout=15)["state"] == "completed", "a plain job after them completes")
        wait_until(lambda: [x["running"] for x in c.stats()["workers"] if x["name"] == "odd"] == [0], 10,
                   "the worker's running count back to 0")
        c.close()


if __name__ == "__main__":
    harness.main(main)

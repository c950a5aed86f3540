"""Both clients against a real broker: REJECTED codes surface as exceptions
(Python) and rejected promises (Node) with the broker's code and message;
a client talking to a dead broker fails in bounded time with broker_timeout.
"""
import os
import subprocess
import time

from e2elib import harness, botmesh, need_node, pyworker, wait_worker, RUN_NODE, HERE
from harness import check


def expect(fn, code):
    try:
        fn()
    except botmesh.Rejected as e:
        return e
    raise harness.TestFailure("expected REJECTED %s" % code)


def main():
    need_node()
    with harness.Stack("clients-errors") as s:
        s.redis()
        s.broker(env={"MAX_PYWORK_BOTS": "4"})
        pyworker(s, "py-err", credit=2)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-err")
        e = expect(lambda: c.submit("nosuchtype", {}), "unknown_bot_type")
        check(e.code == "unknown_bot_type" and e.message and isinstance(e, botmesh.BotmeshError),
              "python: unknown_bot_type raises Rejected with code and message", e.code, e.message)
        for opts, field in (({"priority": -1}, "priority"), ({"max_attempts": 0}, "maxAttempts"),
                            ({"timeout_ms": 0}, "timeoutMs"), ({"webhook_url": "ftp://x"}, "webhookUrl"),
                            ({"idempotency_key": "has space"}, "idempotencyKey")):
            e = expect(lambda: c.submit("pywork", {}, **opts), "bad_request")
            check(e.code == "bad_request" and field in e.message,
                  "python: bad %s raises bad_request naming the field" % field, e.code, e.message)
        e = expect(lambda: c.submit("BAD TYPE", {}), "bad_request")
        check(e.code == "bad_request", "python: a malformed botType raises bad_request", e.message)
        e = expect(lambda: c.status("no-such-job"), "not_found")
        check(e.code == "not_found", "python: STATUS of an unknown job raises not_found", e.message)
        e = expect(lambda: c.retry("no-such-job"), "not_found")
        check(e.code in ("not_found", "conflict"), "python: RETRY of an unknown job is rejected", e.code)
        # a failed job: run() raises JobFailed with the job's code; RETRY queues it again
        try:
            c.run("pywork", {"fail": True}, timeout=20)
            raise harness.TestFailure("run() of a failing job returned")
        except botmesh.JobFailed as jf:
            check(jf.code == "bot_failed" and "asked to fail" in jf.message and jf.job["state"] == "failed",
                  "python: a failed job raises JobFailed bot_failed", str(jf))
            failed_id = jf.job["jobId"]
        check(c.retry(failed_id) == failed_id, "python: RETRY of a failed job is ACCEPTED")
        rec = c.wait(failed_id, timeout=20)
        check(rec["state"] == "failed" and rec["attempts"] == 1, "python: the retried job ran again", rec)
        # cancel a queued job, then cancel again -> conflict
        long_id = c.submit("pywork", {"sleepMs": 5000})
        rec = c.cancel(long_id)
        check(rec["state"] == "cancelled", "python: CANCEL answers the cancelled record", rec["state"])
        e = expect(lambda: c.cancel(long_id), "conflict")
        check(e.code == "conflict", "python: CANCEL of an ended job raises conflict", e.message)
        # a large payload over the limit
        e = expect(lambda: c.submit("pywork", "x" * ((1 << 20) + 100)), "payload_too_large")
        check(e.code == "payload_too_large", "python: a payload over 1 MiB raises payload_too_large", e.code, e.message)
        check("1048681 bytes encoded" in e.message and "MAX_PAYLOAD_BYTES (1048576 bytes)" in e.message,
              "python: the message names the payload's size and the limit in bytes", e.message)

        # the Node client against the same broker, and against a dead one
        dead = "tcp://127.0.0.1:%d" % harness.free_port()
        r = subprocess.run(["sh", RUN_NODE, os.path.join(HERE, "e2e_node_client.js"), s.endpoint, dead],
                           capture_output=True, text=True, timeout=90)
        print(r.stdout, r.stderr, flush=True)
        check(r.returncode == 0 and "NODE CLIENT PASS" in r.stdout, "the Node client checks pass", r.returncode)

        # the Python client against a dead broker
        d = botmesh.Client(dead, timeout=0.7)
        t0 = time.monotonic()
        try:
            d.submit("pywork", {})
            raise harness.TestFailure("submit to a dead broker returned")
        except botmesh.BrokerTimeout as bt:
            el = time.monotonic() - t0
            check(bt.code == "broker_timeout" and dead in bt.message and el < 3,
                  "python: a dead broker raises broker_timeout in %.2fs: %s" % (el, bt), el)
        t0 = time.monotonic()
        try:
            d.wait("any-job", timeout=1.5)
            raise harness.TestFailure("wait on a dead broker returned")
        except botmesh.BrokerTimeout as bt:
            check(time.monotonic() - t0 < 4, "python: wait() on a dead broker is bounded: %s" % bt)
        d.close()
        c.close()

        # botmesh-client against a dead broker: names the endpoint it tried
        # and how to change it, by flag and by environment.
        for args, env in (([ "--endpoint", dead], {}), ([], {"BROKER_CLIENT_ENDPOINT": dead})):
            r = subprocess.run([s.bin("botmesh-client")] + args + ["--timeout-ms", "300", "stats"],
                               capture_output=True, text=True, timeout=30,
                               env=dict(os.environ, **env))
            check(r.returncode == 3 and ("at %s within 300 ms" % dead) in r.stderr
                  and "--endpoint" in r.stderr and "BROKER_CLIENT_ENDPOINT" in r.stderr,
                  "botmesh-client %s: the timeout names %s and how to change it" % (
                      " ".join(args) or "(BROKER_CLIENT_ENDPOINT)", dead), r.returncode, r.stderr)


if __name__ == "__main__":
    harness.main(main)

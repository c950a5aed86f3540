"""A request that cannot be started (out of memory, libcurl refusing the
transfer) is a failed attempt retried by the backoff policy, reported like
any other: PROGRESS retrying with the error and nextAttemptAt, then the next
attempt.  A preloaded curl_multi_add_handle (fail_add_handle.c) fails the
manager's first two; WEBHOOK_RETRY_DELAY=300, WEBHOOK_JITTER=none: the
waits are 300 then 600 ms, and the third attempt delivers.

Before, such a failure was retried after a fixed 1000 ms outside the policy
and never reported (no PROGRESS)."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness
from harness import check
import whlib
from whlib import DONE, JOB, PROGRESS, job


def main():
    lib = os.environ.get("WH_FAIL_ADD_HANDLE_LIB")
    if not lib or not os.path.exists(lib):
        raise harness.TestFailure("WH_FAIL_ADD_HANDLE_LIB names no library: %r" % lib)
    with harness.Stack("wh-start-failure") as s:
        mock = whlib.mock(s)
        broker, mgr = whlib.manager_on_fake_broker(s, {
            "LD_PRELOAD": lib, "BM_FAIL_ADD_HANDLE": "2",
            # The ASan runtime wants to come first among preloaded libraries.
            "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0",
            "WEBHOOK_RETRY_DELAY": "300", "WEBHOOK_JITTER": "none", "WEBHOOK_MAX_DELAY": "5000"})
        broker.send(JOB, job("f1.wh1", mock.url + "/hook", '{"jobId":"f1"}'))
        for attempt, wait in ((1, 300), (2, 600)):
            _, _, progress = broker.expect_cmd(PROGRESS, "f1.wh1", what="PROGRESS after attempt %d" % attempt)
            hook = progress["webhook"]
            left = hook["nextAttemptAt"] - time.time() * 1000
            check(hook["state"] == "retrying" and hook["attempts"] == attempt
                  and "could not start the request" in hook["lastError"] and 0 < left <= wait + 50,
                  "attempt %d could not start: PROGRESS retrying, the next in the policy's %d ms"
                  % (attempt, wait), hook, left)
        _, _, done = broker.expect_cmd(DONE, "f1.wh1")
        check(done["ok"] and done["webhook"]["attempts"] == 3, "the third attempt delivers", done)
        check(len(whlib.mock_deliveries(mock, "f1")) == 1, "the receiver got it once")
        whlib.stop_clean(mgr)


if __name__ == "__main__":
    harness.main(main)

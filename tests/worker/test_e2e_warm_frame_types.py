"""An answer frame whose fields are not of their types fails its job with
bad_output naming the field, the type it must have and the one it has, and
keeps the bot's own "error" text; the worker logs a WARN with the job id,
and the process serves the next job.

A real broker (no Redis), a real worker and a pool bot written by hand that
writes the lines its payload gives.  {"exit": "1", "error": "step failed"}
(a shell bot writing "$?" into a template): bad_output '"exit" must be an
integer, got a string ("1")' with "step failed"; {"signal": "9"},
{"exit": 1, "error": 42} and {"exit": 0, "output": {"a": 1}} likewise name
"signal", "error" and "output"; {"exit": 2, "error": "fine", "output": null}
is well formed (null: not given): bot_failed "fine", exitCode 2.  Every job
ran on the same process.  Before, {"exit": "1"} read as exit 0 with no
output: bad_output "the bot wrote nothing on stdout", its "error" lost, no
WARN; {"signal": "9"} the same, and a non-string "error" or "output" was
dropped without a word.
"""
import harness
from harness import check
import wlib

BAD = [
    ('{"exit": "1", "error": "step failed"}',
     ['"exit" must be an integer, got a string ("1")', '"error": step failed']),
    ('{"signal": "9"}', ['"signal" must be an integer, got a string ("9")']),
    ('{"exit": 1, "error": 42}', ['"error" must be a string, got an integer (42)']),
    ('{"exit": 0, "output": {"a": 1}}', ['"output" must be a string, got an object ({"a":1})']),
]


def main():
    cmd = wlib.linebot_cmd(harness.tempdir("warm-frame-types-"))
    with harness.Stack("worker-e2e-warm-frame-types") as s:
        s.broker(redis=False)
        env = {"BOT_LINES_CMD": cmd, "BOT_LINES_MODE": "pool",
               "BOT_LINES_MAX_PROCS": "1"}
        w = s.worker("--type", "lines", "--concurrency", "1", env=env)
        s.wait_workers(1)
        c = s.client()
        first = wlib.run_job(c, "lines", {"lines": ['{"result": {"pid": PID}}']}, attempts=1)
        check(first["state"] == "completed", "a well-formed answer completes", first)
        for frame, wanted in BAD:
            job_id = c.submit("lines", {"lines": [frame]}, attempts=1)
            rec = c.wait(job_id, timeout=30)
            err = rec.get("error") or {}
            message = err.get("message", "")
            check(rec["state"] == "failed" and err.get("code") == "bad_output"
                  and message.startswith("the bot's answer frame is not valid: ")
                  and all(want in message for want in wanted),
                  "%s: bad_output naming the field and its type%s" % (
                      frame, ", with the bot's error text" if len(wanted) > 1 else ""), rec)
            warns = [l for l in w.output().splitlines() if " WARN " in l and "job=%s" % job_id in l]
            check(len(warns) == 1 and wanted[0] in warns[0], "%s: one WARN line with the job id" % frame,
                  warns)
        rec = wlib.run_job(c, "lines", {"lines": ['{"exit": 2, "error": "fine", "output": null}']},
                           attempts=1)
        err = rec.get("error") or {}
        check(rec["state"] == "failed" and err.get("code") == "bot_failed" and err.get("message") == "fine"
              and err.get("exitCode") == 2,
              "an exit frame with \"output\": null is well formed: bot_failed with its error", rec)
        last = wlib.run_job(c, "lines", {"lines": ['{"result": {"pid": PID}}']}, attempts=1)
        check(last["state"] == "completed" and last["result"]["pid"] == first["result"]["pid"],
              "the process served every job: a bad answer frame does not end it", first, last)
        c.close()
        check(w.alive(), "worker still running")


if __name__ == "__main__":
    harness.main(main)

"""A job run by a client library's worker has the log its handler wrote with
job.log(text) (BullMQ's job.log), end to end:

    test_e2e_worker_log.py python|process|node

A real redis-server and broker, and the worker of the Python client (its
handler in a thread, or with isolation="process" in a process of its own:
tests/clients/pyworker.py) or of the Node client (nodeworker.js).  Each
job's record log, read with the Python client's logs(), is the lines its
handler logged, whatever the outcome: a completed job's, a failed one's (a
JobError; in a process, one that exits without answering), none for a
handler that logged nothing, and the tail of a long log (1,000 lines of
51 bytes), its last line whole, at most 16,384 bytes, with no broken
character.

Before, the workers had no job.log (AttributeError, TypeError: the job
failed bot_failed; failed at "the job that logs completes", each side).
"""
import sys

from e2elib import harness, botmesh, need_node, nodeworker, pyworker, wait_worker
from harness import check

LONG_LAST = "line 0999 " + "\u00e9" * 20


def main():
    side = sys.argv[1] if len(sys.argv) > 1 else "python"
    if side not in ("python", "process", "node"):
        raise SystemExit("usage: test_e2e_worker_log.py python|process|node")
    if side == "node":
        need_node()
    with harness.Stack("clients-worker-log-" + side) as s:
        s.redis()
        s.broker()
        name = "log-" + side
        if side == "node":
            nodeworker(s, name)
            bot_type = "nodework"
        else:
            pyworker(s, name, isolation="process" if side == "process" else "thread")
            bot_type = "pywork"
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, name)

        def run(payload):
            job_id = c.submit(bot_type, payload, attempts=1)
            return job_id, c.wait(job_id, timeout=30)

        lines = ["step one", "", "step three \u2713"]
        job_id, rec = run({"log": lines})
        check(rec["state"] == "completed", "the job that logs completes", rec)
        r = c.logs(job_id)
        check(r == {"jobId": job_id, "logs": lines, "count": 3},
              "the completed job's log is its handler's lines", r)

        failing = {"log": ["about to fail"], "crash": 3} if side == "process" else \
                  {"log": ["about to fail"], "fail": True}
        job_id, rec = run(failing)
        check(rec["state"] == "failed", "the job whose handler fails fails", rec)
        r = c.logs(job_id)
        check(r["logs"] == ["about to fail"], "the failed job's log is its handler's line", r)

        job_id, rec = run({})
        check(rec["state"] == "completed" and c.logs(job_id)["logs"] == [],
              "a handler that logged nothing: no lines", rec)

        job_id, rec = run({"logMany": 1000})
        check(rec["state"] == "completed", "the job with a long log completes", rec)
        kept = c.logs(job_id)["logs"]
        text = "\n".join(kept) + "\n"
        check(kept and kept[-1] == LONG_LAST, "the long log ends with its last line, whole", kept[-1:])
        check(16000 < len(text.encode("utf-8")) <= 16384,
              "the long log is its tail, at most 16,384 bytes", len(text.encode("utf-8")))
        check("\ufffd" not in text and "?" not in text, "no character of it is broken", kept[:1])
        check(all(line == "line %04d %s" % (1000 - len(kept) + 1 + i, "\u00e9" * 20)
                  for i, line in enumerate(kept[1:])),
              "its lines after the first are the last ones logged, in order", kept[:3])
        c.close()


if __name__ == "__main__":
    harness.main(main)

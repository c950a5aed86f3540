"""A {"progress": N} frame follows fd 3's rule: an integer from 0 to 100 is
the job's progress; any other value (150, -5, 40.5, "70", true) is ignored,
never fails the job, and the worker logs one WARN per job, with the job id,
for the first.

A real broker (no Redis), a real worker and a pool bot written by hand that
writes the lines its payload gives.  Job 1 writes {"progress": 10}, then
150, -5, 40.5, "70" and true, then fails ({"exit": 1}) so that its record
keeps its last progress: 10, and one WARN line names 150.  Job 2, on the
same process, writes {"progress": "70"} and completes: its own WARN line.
Before, 150 was taken as 100 and -5 as 0 (progress went back), the others
were dropped without a word: the record said 100, no WARN.
"""
import harness
from harness import check
import wlib

WARNING = "progress frame whose \"progress\" is not an integer from 0 to 100"


def main():
    cmd = wlib.linebot_cmd(harness.tempdir("warm-progress-frames-"))
    with harness.Stack("worker-e2e-warm-progress-frames") as s:
        s.broker(redis=False)
        env = {"BOT_PROG_CMD": cmd, "BOT_PROG_MODE": "pool",
               "BOT_PROG_MAX_PROCS": "1"}
        w = s.worker("--type", "prog", "--concurrency", "1", env=env)
        s.wait_workers(1)
        c = s.client()

        def warnings(job_id):
            return [l for l in w.output().splitlines()
                    if " WARN " in l and "job=%s" % job_id in l and WARNING in l]

        lines = ['{"progress": 10}'] + ['{"progress": %s}' % v for v in ("150", "-5", "40.5", '"70"', "true")]
        first = c.submit("prog", {"lines": lines + ['{"exit": 1, "error": "done"}']}, attempts=1)
        rec = c.wait(first, timeout=30)
        check(rec["state"] == "failed" and (rec.get("error") or {}).get("message") == "done",
              "job 1 ends as its answer says (bad progress frames never fail a job)", rec)
        check(rec.get("progress") == 10,
              "job 1's progress stays 10: 150, -5, 40.5, \"70\" and true are ignored", rec)
        found = warnings(first)
        check(len(found) == 1 and found[0].rstrip().endswith(": 150 (ignored, as are this job's further "
                                                             "bad progress frames)"),
              "one WARN line for job 1, naming the first bad value", found, w.output()[-2000:])
        second = c.submit("prog", {"lines": ['{"progress": "70"}', '{"result": 1}']}, attempts=1)
        rec = c.wait(second, timeout=30)
        check(rec["state"] == "completed", "job 2 completes", rec)
        found = warnings(second)
        check(len(found) == 1 and '"70"' in found[0], "job 2 gets its own WARN line", found)
        c.close()
        check(w.alive(), "worker still running")


if __name__ == "__main__":
    harness.main(main)

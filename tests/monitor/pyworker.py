"""pyworker.py - a deterministic BMW01 worker for the monitor tests.

    /usr/bin/python3 pyworker.py ENDPOINT TYPE[,TYPE...] [CREDIT]

Uses the repository's Python worker (clients/python/botmesh.py).  A job's
payload steers it: {"sleep": seconds} runs that long (ends early when the
job is cancelled), {"fail": "message"} fails with bot_failed, {"progress": n}
reports progress first.  The result echoes the payload.  Stops on SIGTERM.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.environ.get("BOTMESH_ROOT") or
                                os.path.join(os.path.dirname(__file__), "..", ".."), "clients", "python"))
import botmesh  # noqa: E402


def handle(payload, job):
    payload = payload if isinstance(payload, dict) else {}
    if "progress" in payload:
        job.progress(int(payload["progress"]))
    deadline = time.monotonic() + float(payload.get("sleep", 0))
    while time.monotonic() < deadline and not job.cancelled.is_set():
        time.sleep(0.02)
    if payload.get("fail"):
        raise botmesh.JobError("bot_failed", str(payload["fail"]))
    return {"echo": payload, "ok": True}


def main():
    endpoint, types = sys.argv[1], sys.argv[2].split(",")
    credit = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    worker = botmesh.Worker(types, handle, credit=credit, endpoint=endpoint,
                            name="pyworker-%d" % os.getpid())
    worker.run_forever()


if __name__ == "__main__":
    main()

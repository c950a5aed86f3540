"""pyworker.py - a botmesh worker in Python for the end-to-end tests.

    /usr/bin/python3 pyworker.py --types pywork --credit 2 --name py-1 [--endpoint EP]

Each job: payload {"sleepMs": N, "fail": bool, "progress": bool, "exit": text (sys.exit)} ->
result {"worker", "start", "end" (ms, wall clock), "attempt", "run", "echo"}.
"log": [lines] logs each line (job.log), "logMany": N logs N lines
"line NNNN ééé...", before the rest.
The sleep ends early on a CANCEL (job.cancelled), and the handler then
returns as usual; "sleepFirstRun": true sleeps only in the first run of the
job here; "failFirstRun": true fails only the first run of the job here;
"run" counts the runs of the job in this worker (1, 2, ...).
SIGTERM: graceful stop (credit 0, finish, RELEASE, DISCONNECT).

--isolation process: each job in its own process (handle_isolated):
payload {"hang": true} sleeps forever, {"sleepMs": N} sleeps N ms (not told of a cancel), {"crash": N} exits with code N,
{"progress": true} reports 50 %, "log" and "logMany" as above (before a crash too); result {"worker", "pid", "attempt", "cancelled"
(job.cancelled.is_set()), "echo"}.
"""
import argparse
import logging
import os
import sys
import threading
import time

ROOT = os.environ.get("BOTMESH_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
import botmesh  # noqa: E402


def log_lines(payload, job):
    """payload "log": lines to log, "logMany": how many numbered lines."""
    for line in payload.get("log", []):
        job.log(line)
    for i in range(payload.get("logMany", 0)):
        job.log("line %04d %s" % (i, "\u00e9" * 20))


def handle_isolated(payload, job):
    """The handler of --isolation process (module level: the forkserver
    imports it by name)."""
    payload = payload if isinstance(payload, dict) else {"value": payload}
    print("START %s attempt %s pid %d" % (job.id, job.attempt, os.getpid()), flush=True)
    log_lines(payload, job)
    if payload.get("progress"):
        job.progress(50)
    if payload.get("hang"):
        job.cancelled.wait(3600)
    if payload.get("sleepMs"):
        time.sleep(payload["sleepMs"] / 1000.0)
    if payload.get("crash"):
        os._exit(int(payload["crash"]))
    return {"worker": os.environ.get("PYWORKER_NAME"), "pid": os.getpid(), "attempt": job.attempt,
            "cancelled": job.cancelled.is_set(), "echo": payload}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--types", default="pywork")
    ap.add_argument("--credit", type=int, default=1)
    ap.add_argument("--name", default=None)
    ap.add_argument("--endpoint", default=None)
    ap.add_argument("--isolation", default="thread", choices=("thread", "process"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s pyworker %(message)s")
    name = args.name or "py-%d" % os.getpid()
    runs, runs_lock = {}, threading.Lock()

    def handle(payload, job):
        payload = payload if isinstance(payload, dict) else {"value": payload}
        start = time.time() * 1000.0
        with runs_lock:
            run = runs[job.id] = runs.get(job.id, 0) + 1
        print("START %s attempt %s run %d" % (job.id, job.attempt, run), flush=True)
        log_lines(payload, job)
        if payload.get("progress"):
            job.progress(50)
        if payload.get("sleepMs") and (run == 1 or not payload.get("sleepFirstRun")):
            job.cancelled.wait(payload["sleepMs"] / 1000.0)
        if payload.get("fail") or (payload.get("failFirstRun") and run == 1):
            raise botmesh.JobError("bot_failed", "asked to fail by %s" % name)
        if payload.get("exit"):
            sys.exit(payload["exit"])               # SystemExit: not an Exception
        end = time.time() * 1000.0
        print("END %s" % job.id, flush=True)
        return {"worker": name, "start": start, "end": end, "attempt": job.attempt, "run": run, "echo": payload}

    os.environ["PYWORKER_NAME"] = name
    w = botmesh.Worker(args.types.split(","), handle if args.isolation == "thread" else handle_isolated,
                       credit=args.credit, name=name, endpoint=args.endpoint, isolation=args.isolation,
                       kill_grace=0.5)
    print("pyworker %s serving %s with credit %d" % (name, args.types, args.credit), flush=True)
    w.run_forever()
    print("pyworker %s stopped" % name, flush=True)


if __name__ == "__main__":
    main()

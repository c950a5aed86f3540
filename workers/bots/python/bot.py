#!/usr/bin/python3
"""bot.py - the example Python bot: data_analysis and compare.

Reads the job's payload (JSON) on stdin, computes statistics over a dataset
generated deterministically from payload["dataset"], and writes the result
(JSON) on stdout.  Standard library only.

Payload (all optional):
    task      "data_analysis" (the default) or "compare"; anything else fails
    dataset   name of the dataset (default "default"); the same name always
              gives the same numbers
    size      number of values, 1..1000000 (default 1000)
    sleepMs   sleep that long first (for tests), at most 3600000
    fail      true or a message: exit 1 with the message on stderr (a
              failure that is retried)

A job submitted with dependsOn and dependencyResults gets the wrapper
{"payload": <what was submitted>, "dependencies": {<jobId>: <result>}}: an
object with exactly those two keys, "dependencies" an object, is read as
that wrapper (the task comes from the inner payload).  "compare" needs it:
it compares the data_analysis results of the dependencies, in dependsOn's
order, e.g. for sales_2024 and sales_2023 (README's flow examples):
    {"bot": "python", "task": "compare", "count": 2,
     "datasets": [{"jobId": "<A>", "dataset": "sales_2024", "mean": 229.85146,
                   "median": 228.6889, "stdev": 44.672753, "count": 1000,
                   "meanMinusHighest": -732.432244},
                  {"jobId": "<B>", "dataset": "sales_2023", "mean": 962.283704,
                   "median": 960.79285, "stdev": 143.865869, "count": 1000,
                   "meanMinusHighest": 0.0}],
     "highestMean": {"jobId": "<B>", "dataset": "sales_2023", "mean": 962.283704},
     "lowestMean": {"jobId": "<A>", "dataset": "sales_2024", "mean": 229.85146},
     "meanSpread": 732.432244, "jobId": ..., ...}
compare without dependency results, with fewer than two, or with one that
is not a data_analysis result (null: a dependency failed and was ignored)
exits 78 naming it.  Any other task ignores the dependencies.

Bad input (a payload that is not JSON, an unknown task, a field out of
range) exits 78, the "permanent failure, do not retry" status, with a line
on stderr that names the problem: running the job again cannot help.
Progress: lines "PROGRESS <0-100>" on the fd named by BOT_PROGRESS_FD (the
worker sets it to 3); without it, or if that fd is closed, no progress.
The result holds startedAt/finishedAt (ms since the epoch) and pid, so tests
can see when and where the bot ran.
"""
import hashlib
import json
import math
import os
import random
import statistics
import sys
import time


def now_ms():
    return int(time.time() * 1000)


class Progress:
    """Writes PROGRESS lines to the progress fd, if there is one."""

    def __init__(self):
        self.fd = None
        text = os.environ.get("BOT_PROGRESS_FD")
        if text and text.isdigit():
            fd = int(text)
            try:
                os.fstat(fd)
                self.fd = fd
            except OSError:
                pass

    def report(self, value):
        if self.fd is None:
            return
        try:
            os.write(self.fd, b"PROGRESS %d\n" % max(0, min(100, int(value))))
        except OSError:
            self.fd = None          # closed under us: carry on without


EX_CONFIG = 78          # sysexits.h: a permanent failure, never retried


def stdev(values):
    """The sample standard deviation, in floating point with exactly rounded
    sums (math.fsum), two passes: the same figure to the 6 decimals the
    result gives as statistics.stdev, whose exact rational arithmetic costs
    five times as much (0.55 of the 1.35 ms this bot's work took)."""
    mean = math.fsum(values) / len(values)
    return math.sqrt(math.fsum([(x - mean) * (x - mean) for x in values]) / (len(values) - 1))


def gaussian_values(rng, mu, sigma, count):
    """count values of rng.gauss(mu, sigma), each rounded to 4 decimals:
    the very numbers count calls of Random.gauss give (its algorithm,
    Box-Muller with the pair's second value kept for the next call), drawn
    a pair at a time here because a call of Random.gauss costs more in
    interpreter overhead than its arithmetic (0.58 -> 0.43 ms for 1000)."""
    uniform = rng.random
    values = []
    append = values.append
    for _ in range((count + 1) // 2):
        x2pi = uniform() * math.tau
        g2rad = math.sqrt(-2.0 * math.log(1.0 - uniform()))
        append(round(mu + math.cos(x2pi) * g2rad * sigma, 4))
        append(round(mu + math.sin(x2pi) * g2rad * sigma, 4))
    del values[count:]
    return values


def fail(message, code=1):
    sys.stderr.write(str(message).rstrip("\n") + "\n")
    sys.stderr.flush()
    sys.exit(code)


def bad_input(message):
    """The payload is wrong: fail for good (exit 78), naming the problem."""
    fail("bad input: %s" % message, EX_CONFIG)


def dependency_wrapper(payload):
    """The results of the job's dependencies if payload is the wrapper a job
    submitted with dependencyResults gets, {"payload", "dependencies"} and
    nothing else, else None.  Two dict lookups for a plain payload."""
    if len(payload) == 2 and "dependencies" in payload and "payload" in payload:
        dependencies = payload["dependencies"]
        if isinstance(dependencies, dict):
            return dependencies
    return None


def analysed(job_id, result):
    """A dependency's data_analysis result as compare reads it."""
    stats = result.get("stats") if isinstance(result, dict) else None
    if (not isinstance(stats, dict) or result.get("task") != "data_analysis"
            or not all(isinstance(stats.get(k), (int, float)) and not isinstance(stats.get(k), bool)
                       for k in ("mean", "median", "stdev", "count"))):
        what = "null (it failed and was ignored)" if result is None else "not a data_analysis result"
        bad_input("compare: the result of dependency %s is %s" % (job_id, what))
    return {"jobId": job_id, "dataset": result.get("dataset"), "mean": stats["mean"],
            "median": stats["median"], "stdev": stats["stdev"], "count": stats["count"]}


def compare(dependencies):
    """Compares the data_analysis results of the dependencies, in their
    order: each one's figures and its mean's distance below the highest."""
    if dependencies is None:
        bad_input("compare needs the results of its dependencies: submit it with dependsOn "
                  "naming data_analysis jobs and \"dependencyResults\": true")
    if len(dependencies) < 2:
        bad_input("compare needs at least 2 dependency results, got %d" % len(dependencies))
    datasets = [analysed(job_id, result) for job_id, result in dependencies.items()]
    highest = max(datasets, key=lambda d: d["mean"])     # the first of equals
    lowest = min(datasets, key=lambda d: d["mean"])
    for entry in datasets:
        entry["meanMinusHighest"] = round(entry["mean"] - highest["mean"], 6)
    pick = ("jobId", "dataset", "mean")
    return {
        "count": len(datasets),
        "datasets": datasets,
        "highestMean": {k: highest[k] for k in pick},
        "lowestMean": {k: lowest[k] for k in pick},
        "meanSpread": round(highest["mean"] - lowest["mean"], 6),
    }


def main():
    started = now_ms()
    progress = Progress()
    try:
        raw = sys.stdin.read()
    except UnicodeDecodeError as exc:
        bad_input("payload is not UTF-8 text: %s" % exc)
    try:
        payload = json.loads(raw) if raw.strip() else {}
    except (ValueError, RecursionError) as exc:
        bad_input("payload is not JSON: %s" % exc)
    if not isinstance(payload, dict):
        payload = {"value": payload}
    dependencies = dependency_wrapper(payload)
    if dependencies is not None:
        payload = payload["payload"]
        if not isinstance(payload, dict):
            payload = {"value": payload}
    progress.report(0)

    if payload.get("fail"):
        reason = payload["fail"]
        fail(reason if isinstance(reason, str) else "failing as asked (payload.fail)")

    task = payload.get("task", "data_analysis")
    if task == "compare":
        result = {"bot": "python", "task": "compare"}
        result.update(compare(dependencies))
        progress.report(100)
        write_result(result, started)
        return
    if task != "data_analysis":
        bad_input("unknown task %s (this bot does data_analysis and compare)" % json.dumps(task))

    sleep_ms = payload.get("sleepMs", 0)
    if (not isinstance(sleep_ms, (int, float)) or isinstance(sleep_ms, bool)
            or not 0 <= sleep_ms <= 3600000):
        bad_input("sleepMs must be a number from 0 to 3600000")
    dataset = payload.get("dataset", "default")
    if not isinstance(dataset, str):
        dataset = json.dumps(dataset, sort_keys=True)
    size = payload.get("size", 1000)
    if not isinstance(size, int) or isinstance(size, bool) or size < 1 or size > 1000000:
        bad_input("size must be an integer from 1 to 1000000")

    # Sleep in steps, reporting progress through the first half.
    steps = 5
    for i in range(steps):
        if sleep_ms:
            time.sleep(sleep_ms / 1000.0 / steps)
        progress.report(10 * (i + 1))

    # The dataset: values seeded by the name, so it is the same everywhere.
    seed = int.from_bytes(hashlib.sha256(dataset.encode("utf-8")).digest()[:8], "big")
    rng = random.Random(seed)
    base = rng.uniform(10, 1000)
    spread = rng.uniform(1, base / 4)
    values = gaussian_values(rng, base, spread, size)
    progress.report(70)

    stats = {
        "count": len(values),
        "mean": round(statistics.fmean(values), 6),
        "median": round(statistics.median(values), 6),
        "stdev": round(stdev(values), 6) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "sum": round(sum(values), 4),
    }
    progress.report(100)
    write_result({"bot": "python", "task": "data_analysis", "dataset": dataset, "stats": stats},
                 started)


def write_result(result, started):
    """Writes result, with the job's id, attempt, pid and times, on stdout."""
    result.update({
        "jobId": os.environ.get("BOT_JOB_ID"),
        "attempt": int(os.environ.get("BOT_ATTEMPT") or 1),
        "pid": os.getpid(),
        "startedAt": started,
        "finishedAt": now_ms(),
    })
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""record.py - `./botmesh bench --only record`: what a job leaves in Redis,
and what it costs Redis on the way.

    record.py --bin BIN [--before BIN2] [--jobs N] [--runs R] [--quick]
              [--write docs/benchmarks.md]

Each case runs on fresh processes: redis-server (AOF everysec, as `./botmesh
up` starts it), botmesh-broker and the rest, every one on 127.0.0.1.

  record_webhook  N jobs of the Python bot (botmesh-worker, pool mode,
                  concurrency 2), each with a webhook (botmesh-webhook
                  delivering to botmesh-mock), 20 in flight.  Once every job
                  ended and every webhook was delivered: Redis memory per
                  finished job (MEMORY USAGE of every job key left, summed,
                  divided by N; and used_memory's growth / N) beside the
                  payload and result bytes, the keys and hash fields left per
                  job, and Redis commands per job (INFO commandstats, reset
                  just before the first SUBMIT).
  record_durable  the durable throughput case of bench/run.sh (bm-bench
                  throughput, M jobs of ~100-byte payloads, 2,000 in
                  flight, two no-op workers): jobs/s, Redis commands per job,
                  Redis memory per finished record (MEMORY USAGE of up to
                  2,000 of them, averaged).

With --before BIN2 every case also runs on the binaries in BIN2 (an earlier
build: the record layout before a change), runs alternating, so that both
are measured in the same minutes.  Prints the table; with --write, puts it
in docs/benchmarks.md between the "record" markers.
"""
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import harness  # noqa: E402

BEGIN, END = "<!-- record:begin -->", "<!-- record:end -->"
PAYLOAD = {"task": "data_analysis", "dataset": "bench", "size": 1000}
# Commands of the measurement itself, not of the jobs.
WARMUP = 200       # bm-bench's warm-up jobs, before it starts the clock
NOT_JOBS = {"info", "config", "memory", "scan", "ping", "hlen", "command", "zcard", "scard"}


def redis_info(port, section):
    out = {}
    for line in harness.redis_pipeline(port, [["INFO", section]])[0].decode().splitlines():
        if ":" in line and not line.startswith("#"):
            k, v = line.split(":", 1)
            out[k] = v
    return out


def commands_per_job(port, jobs):
    """{command: calls per job} of INFO commandstats, the total, and the
    microseconds per job Redis spent in those commands."""
    calls, usec = {}, 0
    for k, v in redis_info(port, "commandstats").items():
        name = k[len("cmdstat_"):].lower()
        m = re.search(r"calls=(\d+),usec=(\d+)", v)
        if m and name.split("|")[0] not in NOT_JOBS:
            calls[name] = int(m.group(1)) / jobs
            usec += int(m.group(2))
    return calls, sum(calls.values()), usec / jobs


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def job_keys(port, prefix="botmesh:{bm}:job:"):
    keys, cursor = [], b"0"
    while True:
        cursor, batch = harness.redis_pipeline(port, [["SCAN", cursor, "MATCH", prefix + "*", "COUNT", "1000"]])[0]
        keys += batch
        if cursor == b"0":
            return keys


def memory_of(port, keys):
    """(bytes, hash fields) of each key."""
    usage = harness.redis_pipeline(port, [["MEMORY", "USAGE", k, "SAMPLES", "0"] for k in keys])
    fields = harness.redis_pipeline(port, [["HLEN", k] for k in keys])
    return [(u or 0, f or 0) for u, f in zip(usage, fields)]


def stack(bindir, name):
    harness.BIN = bindir
    s = harness.Stack(name)
    s.env["LOG_LEVEL"] = "warn"
    s.redis(appendonly=True)
    return s


def case_webhook(bindir, jobs):
    s = stack(bindir, "bench-record")
    try:
        s.broker(env={"MAX_PYTHON_BOTS": "100000"})
        mock_url = s.webhooks()
        s.worker("--type", "python", "--concurrency", "2",
                 env={"BOT_PYTHON_MODE": "pool", "BOTMESH_ROOT": ROOT, "LOG_LEVEL": "warn"})
        s.wait_workers(1, "python", timeout=30)
        c = s.client()
        used0 = int(redis_info(s.redis_port, "memory")["used_memory"])
        harness.redis_pipeline(s.redis_port, [["CONFIG", "RESETSTAT"]])
        ids, inner = [], 0
        t0 = time.monotonic()
        for start in range(0, jobs, 20):
            batch = [c.submit("python", PAYLOAD, webhookUrl=mock_url + "/hook")
                     for _ in range(min(20, jobs - start))]
            for jid in batch:
                rec = c.wait(jid, timeout=120)
                if rec["state"] != "completed":
                    raise RuntimeError("job %s ended %s: %r" % (jid, rec["state"], rec))
                inner += len(harness.pack(PAYLOAD)) + len(harness.pack(rec.get("result")))
            ids += batch
        for jid in ids:
            harness.wait_until(lambda: (c.status(jid).get("webhook") or {}).get("state") == "delivered",
                               60, "the webhook of %s" % jid)
        seconds = time.monotonic() - t0
        # Every delivery job's end written too (its SREM goes in the same group; a
        # broker of the earlier layout keeps the sorted set "live" instead).
        harness.wait_until(lambda: harness.redis_pipeline(s.redis_port, [["SCARD", "botmesh:{bm}:unfinished"]])[0] == 0,
                           30, "the unfinished set to empty")
        calls, total, usec = commands_per_job(s.redis_port, jobs)
        used = int(redis_info(s.redis_port, "memory")["used_memory"]) - used0
        keys = job_keys(s.redis_port)
        mem = memory_of(s.redis_port, keys)
        parents = [m for k, m in zip(keys, mem) if b".wh" not in k]
        deliveries = [m for k, m in zip(keys, mem) if b".wh" in k]
        c.close()
        total_bytes = sum(m[0] for m in mem)
        return {"jobs": jobs, "seconds": seconds,
                "bytes_per_job": total_bytes / jobs, "inner_per_job": inner / jobs,
                "beyond_per_job": (total_bytes - inner) / jobs,
                "used_memory_per_job": used / jobs,
                "keys_per_job": len(keys) / jobs, "delivery_keys": len(deliveries),
                "fields_per_record": statistics.mean(m[1] for m in parents) if parents else 0,
                "commands_per_job": total, "calls": calls, "usec_per_job": usec}
    finally:
        s.close()


def case_durable(bindir, jobs):
    s = stack(bindir, "bench-durable")
    try:
        s.broker(env={"MAX_PYTHON_BOTS": "100000", "MAX_BOTS_DEFAULT": "100000"})
        for i in range(2):
            s.worker("--type", "python", "--concurrency", "500", "--noop", name="noop-%d" % i)
        s.wait_workers(2, "python", timeout=30)
        harness.redis_pipeline(s.redis_port, [["CONFIG", "RESETSTAT"]])
        redis_pid = [p.pid for p in s.procs if p.name == "redis"][0]
        cpu0 = cpu_seconds(redis_pid)
        out = subprocess.run([os.path.join(bindir, "bm-bench"), "throughput", "--endpoint", s.endpoint,
                              "--jobs", str(jobs), "--window", "2000", "--wait-workers", "2",
                              "--warmup", str(WARMUP)],
                             capture_output=True, text=True, timeout=600)
        m = re.search(r"RESULT jobs=(\d+) seconds=([\d.]+) rate=(\d+) failed=(\d+)", out.stdout)
        if not m or int(m.group(4)):
            raise RuntimeError("bm-bench: %s %s" % (out.stdout, out.stderr[-2000:]))
        done = int(m.group(1)) + WARMUP       # Redis saw the warm-up jobs too
        rate = int(m.group(3))
        # A RESULT is sent once the job's end is in Redis: nothing is left to write.
        cpu = cpu_seconds(redis_pid) - cpu0
        calls, total, usec = commands_per_job(s.redis_port, done)
        keys = job_keys(s.redis_port)[:2000]
        mem = memory_of(s.redis_port, keys)
        return {"jobs": done, "rate": rate, "commands_per_job": total, "calls": calls,
                "usec_per_job": usec, "redis_cpu_us_per_job": cpu * 1e6 / done,
                "bytes_per_record": statistics.mean(u for u, _ in mem) if mem else 0,
                "fields_per_record": statistics.mean(f for _, f in mem) if mem else 0}
    finally:
        s.close()


def fmt_calls(calls):
    return ", ".join("%s %.3g" % (k.upper(), v) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])
                     if v >= 0.0005)


LOAD_BEFORE = open("/proc/loadavg").read().split()[:3]
LOAD_BEFORE = " ".join(LOAD_BEFORE)


def main():
    args = sys.argv[1:]

    def opt(name, default=None):
        return args[args.index(name) + 1] if name in args else default
    quick = "--quick" in args
    bindir = opt("--bin", os.path.join(ROOT, "build", "bin"))
    before = opt("--before")
    write = opt("--write")
    jobs = int(opt("--jobs", 100 if quick else 500))
    durable_jobs = 5000 if quick else 50000
    runs = int(opt("--runs", 1 if quick else 3))
    builds = [("before", before), ("now", bindir)] if before else [("now", bindir)]
    results = {label: {"webhook": [], "durable": []} for label, _ in builds}
    for r in range(runs):
        for label, b in builds:
            if r == 0:   # sizes and counts do not vary from run to run
                results[label]["webhook"].append(case_webhook(b, jobs))
                w = results[label]["webhook"][-1]
                print("record_webhook %s: %.0f B/job (%.0f beyond payload+result), %.2f commands/job"
                      % (label, w["bytes_per_job"], w["beyond_per_job"], w["commands_per_job"]), flush=True)
            results[label]["durable"].append(case_durable(b, durable_jobs))
            d = results[label]["durable"][-1]
            print("record_durable %s run %d: %d jobs/s, %.3f commands/job, %.1f us/job in them, redis-server "
                  "%.1f us CPU/job, %.0f B/record" % (label, r + 1, d["rate"], d["commands_per_job"], d["usec_per_job"],
                                                     d["redis_cpu_us_per_job"], d["bytes_per_record"]), flush=True)

    lines = [BEGIN, "",
             "### The job record in Redis (`./botmesh bench --only record`, bench/record.py)", "",
             "%s, load before %s, %s run(s) of the durable case%s." % (
                 time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), LOAD_BEFORE, runs,
                                                    ", the binaries before the change (%s) and now, runs alternating"
                                                    % before if before else ""), "",
             "| build | finished job with webhook: bytes in Redis | of them payload + result | beyond them "
             "| used_memory growth / job | keys left / job | fields / record | Redis commands / job |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, _ in builds:
        w = results[label]["webhook"][0]
        lines.append("| %s | %.0f | %.0f | **%.0f** | %.0f | %.2f | %.1f | %.2f (%s) |" % (
            label, w["bytes_per_job"], w["inner_per_job"], w["beyond_per_job"], w["used_memory_per_job"],
            w["keys_per_job"], w["fields_per_record"], w["commands_per_job"], fmt_calls(w["calls"])))
    lines += ["", "| build | durable jobs/s (median, min-max) | Redis commands / job | µs / job in them "
              "(commandstats) | redis-server CPU µs / job | bytes / finished record (~100-byte payload) "
              "| fields / record |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for label, _ in builds:
        ds = results[label]["durable"]
        rates = [d["rate"] for d in ds]
        d = ds[0]
        lines.append("| %s | %d (%d-%d) | %.3f (%s) | %.1f | %.1f | %.0f | %.1f |" % (
            label, statistics.median(rates), min(rates), max(rates), statistics.median(x["commands_per_job"] for x in ds),
            fmt_calls(d["calls"]), statistics.median(x["usec_per_job"] for x in ds),
            statistics.median(x["redis_cpu_us_per_job"] for x in ds),
            statistics.median(x["bytes_per_record"] for x in ds), d["fields_per_record"]))
    lines += ["", "record_webhook: %d jobs of the Python bot (pool mode) with a webhook each, delivered to "
              "botmesh-mock; bytes are MEMORY USAGE (SAMPLES 0) of every job key left once all ended and "
              "were delivered, / jobs. record_durable: bm-bench throughput, %d jobs, 2 no-op workers "
              "(`botmesh-worker --noop --concurrency 500`)." % (jobs, durable_jobs), "", END]
    table = "\n".join(lines)
    print(table)
    if write:
        old = open(write).read() if os.path.exists(write) else ""
        if BEGIN in old and END in old:
            new = old[:old.index(BEGIN)] + table + old[old.index(END) + len(END):]
        else:
            new = old.rstrip("\n") + "\n\n" + table + "\n"
        with open(write, "w") as f:
            f.write(new)
        print("wrote " + write)


if __name__ == "__main__":
    main()

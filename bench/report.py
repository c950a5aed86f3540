#!/usr/bin/python3
"""report.py - the table of bench/run.sh: medians, min-max, ratios, targets.

    report.py RESULTS META COMMANDS [--write docs/benchmarks.md]

RESULTS holds one line per case and run: "case<TAB>run<TAB>key=value ...".
META holds key=value lines (machine, versions, settings); COMMANDS one line
per case: "case<TAB>command".  Prints the table; with --write, also writes
the Markdown page (machine, versions, table, targets, findings from
bench/findings.md, exact commands)."""
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load(results_path):
    runs = {}        # case -> list of dicts (one per run)
    notes = {}       # case -> reason it was skipped / failed
    with open(results_path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                continue
            case, _run, kvs = parts
            d = dict(kv.split("=", 1) for kv in kvs.split() if "=" in kv)
            if "skipped" in d:
                notes[case] = "skipped: " + d["skipped"]
                continue
            if "failed" in d and len(d) == 1:
                notes[case] = "FAILED"
                continue
            runs.setdefault(case, []).append(d)
    return runs, notes


def values(runs, case, key):
    out = []
    for d in runs.get(case, []):
        try:
            out.append(float(d[key]))
        except (KeyError, ValueError):
            pass
    return out


def derived_memory(runs):
    """Bytes per queued job from the memory case, per run."""
    payload = values(runs, "mem_queued-fill-small", "payload_bytes")
    payload = payload[0] if payload else 0.0
    per_small, per_large, beyond, rss_small, rss_large, base = [], [], [], [], [], []
    for d in runs.get("mem_queued", []):
        try:
            b, s, l = float(d["base_kb"]), float(d["small_kb"]), float(d["large_kb"])
            ns, nl = float(d["small_jobs"]), float(d["large_jobs"])
        except (KeyError, ValueError):
            continue
        base.append(b / 1024)
        rss_small.append(s / 1024)
        rss_large.append(l / 1024)
        per_small.append((s - b) * 1024 / ns)
        per_large.append((l - b) * 1024 / nl)
        beyond.append((l - b) * 1024 / nl - payload)
    return {"base": base, "rss_small": rss_small, "rss_large": rss_large,
            "per_small": per_small, "per_large": per_large, "beyond": beyond,
            "payload": payload}


def fmt(v, unit):
    if v is None:
        return "-"
    if unit in ("jobs/s", "req/s", "µs", "B", "B/job"):
        return "{:,.0f}".format(v)
    if unit in ("ms", "%", "MiB"):
        return "{:,.2f}".format(v) if v < 10 else "{:,.1f}".format(v)
    return "{:g}".format(v)


def row(label, vals, unit, note=""):
    if not vals:
        return [label, "-", "-", unit, note or "no data"]
    med = statistics.median(vals)
    rng = "{} – {}".format(fmt(min(vals), unit), fmt(max(vals), unit)) if len(vals) > 1 else "(1 run)"
    return [label, fmt(med, unit), rng, unit, note]


def median(vals):
    return statistics.median(vals) if vals else None


def build(runs, notes, meta):
    mem = derived_memory(runs)
    n = lambda case: notes.get(case, "")
    sections = []

    t = []
    t.append(row("botmesh broker, no Redis", values(runs, "tp_broker_none", "rate"), "jobs/s", n("tp_broker_none")))
    t.append(row("botmesh broker, Redis AOF everysec", values(runs, "tp_broker_redis", "rate"), "jobs/s", n("tp_broker_redis")))
    for case, label in (("tp_broker_none_bulk", "botmesh broker, no Redis, SUBMIT_MANY of 1,000"),
                        ("tp_broker_redis_bulk", "botmesh broker, Redis, SUBMIT_MANY of 1,000")):
        if case in runs or case in notes:
            t.append(row(label, values(runs, case, "rate"), "jobs/s", n(case)))
    t.append(row("BullMQ, same Redis config", values(runs, "tp_bullmq", "rate"), "jobs/s", n("tp_bullmq")))
    if "tp_bullmq_best" in runs or "tp_bullmq_best" in notes:
        t.append(row("BullMQ, best setting found", values(runs, "tp_bullmq_best", "rate"), "jobs/s",
                     n("tp_bullmq_best")))
    t.append(row("bare libzmq relay (the limit)", values(runs, "tp_relay", "rate"), "jobs/s", n("tp_relay")))
    if "tp_relay_check" in runs or "tp_relay_check" in notes:
        t.append(row("independent relay (zmq_proxy): the limit's check", values(runs, "tp_relay_check", "rate"),
                     "jobs/s", n("tp_relay_check")))
    sections.append(("Throughput: %s jobs, ~100-byte payloads, first submit to last result"
                     % "{:,}".format(int(meta.get("jobs", "0") or 0)), t))

    t = []
    for case, label in (("lat_broker_none", "botmesh, no Redis"), ("lat_broker_redis", "botmesh, Redis AOF everysec"),
                        ("lat_bullmq", "BullMQ (QueueEvents)"), ("lat_relay", "bare libzmq relay")):
        t.append(row(label + " p50", values(runs, case, "p50_us"), "µs", n(case)))
        t.append(row(label + " p99", values(runs, case, "p99_us"), "µs", n(case)))
    sections.append(("Latency at light load: one job at a time, %s jobs, submit to result"
                     % "{:,}".format(int(meta.get("lat_jobs", "0") or 0)), t))

    t = []
    for case, label in (("http_gateway_redis", "botmesh-gateway, Redis (durable)"),
                        ("http_gateway_none", "botmesh-gateway, no Redis"),
                        ("http_express", "Express + BullMQ gateway"),
                        ("http_bare", "bare civetweb handler (the ceiling)")):
        bad = sum(values(runs, case, "non2xx")) + sum(values(runs, case, "errors"))
        note = n(case) or ("%d non-2xx answers or socket errors" % bad if bad else "")
        t.append(row(label + " rate", values(runs, case, "rps"), "req/s", note))
        t.append(row(label + " p99", values(runs, case, "p99_ms"), "ms", ""))
        if case == "http_gateway_redis" and ("http_gateway_batch" in runs or "http_gateway_batch" in notes):
            b = "http_gateway_batch"
            bad = sum(values(runs, b, "non2xx")) + sum(values(runs, b, "errors"))
            label_b = "botmesh-gateway, POST /invoke/batch of {:,}, Redis (durable)".format(
                int(meta.get("batch", "1000") or 1000))
            t.append(row(label_b + " rate", batch_jobs(runs), "jobs/s",
                         n(b) or ("%d non-2xx answers or socket errors" % bad if bad else
                                  "%s connections" % meta.get("batch_connections", "?"))))
            t.append(row(label_b + " p99", values(runs, b, "p99_ms"), "ms", ""))
    sections.append(("HTTP: wrk POST /invoke, %s keep-alive connections, %ss, no-op workers draining"
                     % (meta.get("wrk_connections", "?"), meta.get("wrk_seconds", "?")), t))

    t = []
    small = int(float(values(runs, "mem_queued", "small_jobs")[0])) if values(runs, "mem_queued", "small_jobs") else 0
    large = int(float(values(runs, "mem_queued", "large_jobs")[0])) if values(runs, "mem_queued", "large_jobs") else 0
    t.append(row("broker RSS, empty", mem["base"], "MiB", n("mem_queued")))
    t.append(row("broker RSS, {:,} queued jobs".format(small), mem["rss_small"], "MiB"))
    t.append(row("broker RSS, {:,} queued jobs".format(large), mem["rss_large"], "MiB"))
    t.append(row("memory per queued job at {:,}".format(small), mem["per_small"], "B/job"))
    t.append(row("memory per queued job at {:,}".format(large), mem["per_large"], "B/job"))
    t.append(row("  of which beyond the payload ({:.0f} B)".format(mem["payload"]), mem["beyond"], "B/job"))
    t.append(row("broker CPU, %s idle workers heartbeating" % meta.get("idle_workers", "1,000"),
                 values(runs, "idle_workers", "broker_cpu_pct"), "%", n("idle_workers")))
    for m in (1, 10, 100):
        case = "tp_types_%d" % m
        if case in runs or case in notes:
            t.append(row("throughput, %d bot type%s" % (m, "s" if m > 1 else ""), values(runs, case, "rate"),
                         "jobs/s", n(case)))
    sections.append(("Scale (broker without Redis)", t))

    t = []
    fen, unf = median(values(runs, "ha_fenced", "rate")), median(values(runs, "ha_unfenced", "rate"))
    t.append(row("durable throughput, one broker", values(runs, "ha_unfenced", "rate"), "jobs/s", n("ha_unfenced")))
    t.append(row("durable throughput, BROKER_HA=redis (fenced writes)", values(runs, "ha_fenced", "rate"), "jobs/s",
                 n("ha_fenced")))
    if fen is not None and unf:
        t.append(["cost of fencing (1 - fenced / unfenced, medians)", "{:.1f}".format(100 * (1 - fen / unf)), "", "%", ""])
    fen_cpu = {}
    for role in ("redis", "broker"):
        a = [float(d["cpu_%s_s" % role]) * 1e6 / float(d["jobs"]) for d in runs.get("ha_unfenced", [])
             if "cpu_%s_s" % role in d and "jobs" in d]
        b = [float(d["cpu_%s_s" % role]) * 1e6 / float(d["jobs"]) for d in runs.get("ha_fenced", [])
             if "cpu_%s_s" % role in d and "jobs" in d]
        if a and b:
            fen_cpu [role] = (statistics.median(a), statistics.median(b))
            t.append(["%s CPU per job, unfenced / fenced" % role,
                      "{:.1f} / {:.1f}".format(statistics.median(a), statistics.median(b)), "", "µs", ""])
    #  The throughput of two 3-run medians moves by more than fencing costs
    #  on this shared machine (-12 % to +5.5 % from run to run); the CPU
    #  that broker and Redis spend per job is the steadier measure of it.
    fen_cpu_cost = None
    if len(fen_cpu) == 2:
        unf_cpu = sum(v [0] for v in fen_cpu.values())
        if unf_cpu > 0:
            fen_cpu_cost = 100 * (sum(v [1] for v in fen_cpu.values()) / unf_cpu - 1)
            t.append(["cost of fencing in broker + Redis CPU per job (fenced / unfenced - 1)",
                      "{:.1f}".format(fen_cpu_cost), "", "%", ""])
    kills = values(runs, "ha_failover", "kills")
    t.append(row("failover: SIGKILL of the leader -> the standby leads, median of %d" % (int(kills[0]) if kills else 0),
                 values(runs, "ha_failover", "lead_median_ms"), "ms", n("ha_failover")))
    t.append(row("  max", values(runs, "ha_failover", "lead_max_ms"), "ms"))
    t.append(row("failover: SIGKILL -> a job submitted to the new leader completed, median",
                 values(runs, "ha_failover", "serve_median_ms"), "ms"))
    t.append(row("  max", values(runs, "ha_failover", "serve_max_ms"), "ms"))
    sections.append(("HA: two brokers on one Redis (BROKER_HA=redis, BROKER_LEASE_MS 2000)", t))

    # Where the CPU goes: µs of CPU per job, by process, in the throughput cases
    cpu_rows = []
    for case, label in (("tp_broker_none", "botmesh, no Redis"), ("tp_broker_redis", "botmesh, Redis"),
                        ("tp_broker_none_bulk", "botmesh, no Redis, bulk"),
                        ("tp_broker_redis_bulk", "botmesh, Redis, bulk"),
                        ("tp_bullmq", "BullMQ (node: producer + worker)"),
                        ("tp_bullmq_best", "BullMQ, best setting"), ("tp_relay", "bare relay"),
                        ("tp_relay_check", "independent relay (zmq_proxy)"),
                        ("tp_types_1", "botmesh, 1 type (bm-bench-worker)"),
                        ("tp_types_10", "botmesh, 10 types"), ("tp_types_100", "botmesh, 100 types")):
        per = {}
        busy = []
        for d in runs.get(case, []):
            try:
                jobs, secs = float(d["jobs"]), float(d["seconds"])
            except (KeyError, ValueError):
                continue
            total = 0.0
            for role in ("broker", "redis", "workers", "driver"):
                if "cpu_%s_s" % role in d:
                    v = float(d["cpu_%s_s" % role])
                    per.setdefault(role, []).append(v * 1e6 / jobs)
                    total += v
            busy.append(total / secs if secs else 0)
        if not per:
            continue
        cell = lambda role: "{:,.0f}".format(statistics.median(per[role])) if role in per else "-"
        tot = sum(statistics.median(v) for v in per.values())
        cpu_rows.append([label, cell("broker"), cell("redis"), cell("workers"), cell("driver"),
                         "{:,.0f}".format(tot), "{:.2f}".format(statistics.median(busy)) if busy else "-"])

    # The same for HTTP: µs of CPU per request (per job for batches)
    http_rows = []
    for case, label in (("http_gateway_redis", "botmesh-gateway, Redis"),
                        ("http_gateway_batch", "botmesh-gateway, /invoke/batch, Redis (per job)"),
                        ("http_gateway_none", "botmesh-gateway, no Redis"),
                        ("http_express", "Express + BullMQ"), ("http_bare", "bare civetweb handler")):
        per, busy = {}, []
        for d in runs.get(case, []):
            try:
                reqs = float(d["requests"]) * float(d.get("batch", "1"))
                secs = float(d["requests"]) / float(d["rps"])
            except (KeyError, ValueError, ZeroDivisionError):
                continue
            if reqs <= 0:
                continue
            total = 0.0
            for role in ("gateway", "broker", "redis", "workers", "driver"):
                if "cpu_%s_s" % role in d:
                    v = float(d["cpu_%s_s" % role])
                    per.setdefault(role, []).append(v * 1e6 / reqs)
                    total += v
            busy.append(total / secs if secs else 0)
        if not per:
            continue
        cell = lambda role: "{:,.0f}".format(statistics.median(per[role])) if role in per else "-"
        tot = sum(statistics.median(v) for v in per.values())
        http_rows.append([label, cell("gateway"), cell("broker"), cell("redis"), cell("workers"), cell("driver"),
                          "{:,.0f}".format(tot), "{:.2f}".format(statistics.median(busy)) if busy else "-"])

    # Targets, from medians
    def ratio(a, b):
        return a / b if a is not None and b else None
    dur, nor = median(values(runs, "tp_broker_redis", "rate")), median(values(runs, "tp_broker_none", "rate"))
    #  BullMQ at its better setting: the conservative ratio
    bulls = [m for m in (median(values(runs, "tp_bullmq", "rate")), median(values(runs, "tp_bullmq_best", "rate")))
             if m is not None]
    bull = max(bulls) if bulls else None
    dur_bulk = median(values(runs, "tp_broker_redis_bulk", "rate"))
    relay = median(values(runs, "tp_relay", "rate"))
    p99_b, p99_r = median(values(runs, "lat_broker_none", "p99_us")), median(values(runs, "lat_relay", "p99_us"))
    http_d, http_e = median(values(runs, "http_gateway_redis", "rps")), median(values(runs, "http_express", "rps"))
    http_b = median(values(runs, "http_bare", "rps"))
    http_batch = median(batch_jobs(runs))
    beyond = median(mem["beyond"])
    per_s, per_l = median(mem["per_small"]), median(mem["per_large"])
    targets = [
        ("durable throughput / BullMQ (its better setting)", ratio(dur, bull), ">= 10x", lambda r: r >= 10, "x"),
        ("durable bulk (SUBMIT_MANY) / BullMQ addBulk (better setting)", ratio(dur_bulk, bull), ">= 10x",
         lambda r: r >= 10, "x"),
        ("no-Redis throughput / bare relay", ratio(nor, relay), ">= 0.5", lambda r: r >= 0.5, ""),
        ("light-load p99, no Redis / relay p99", ratio(p99_b, p99_r), "<= 2x", lambda r: r <= 2, "x"),
        ("memory per queued job beyond payload (B)", beyond, "< 1024", lambda r: r < 1024, ""),
        ("memory linear: per job at %s / at %s" % ("{:,}".format(large), "{:,}".format(small)),
         ratio(per_l, per_s), "~1", lambda r: 0.5 <= r <= 1.5, ""),
        ("HTTP durable / Express + BullMQ", ratio(http_d, http_e), ">= 10x", lambda r: r >= 10, "x"),
        ("HTTP durable / bare civetweb handler", ratio(http_d, http_b), ">= 0.6", lambda r: r >= 0.6, ""),
        ("HTTP POST /invoke/batch durable, jobs/s", http_batch, ">= 100,000", lambda r: r >= 100000, ""),
        ("cost of fencing on the durable path, jobs/s (%)", None if fen is None or not unf else 100 * (1 - fen / unf),
         "<= 5", lambda r: r <= 5, ""),
        ("cost of fencing on the durable path, broker + Redis CPU per job (%)", fen_cpu_cost,
         "<= 5", lambda r: r <= 5, ""),
        ("failover, max of the kills (ms)", max(values(runs, "ha_failover", "lead_max_ms")) if values(runs, "ha_failover", "lead_max_ms") else None,
         "<= 3000", lambda r: r <= 3000, ""),
    ]
    trows = []
    for name, v, goal, ok, suffix in targets:
        if v is None:
            trows.append([name, "-", goal, "no data"])
        else:
            val = "{:,.0f}".format(v) if abs(v) >= 100 else "{:.2f}{}".format(v, suffix)
            trows.append([name, val, goal, "met" if ok(v) else "MISSED"])
    return sections, trows, cpu_rows, http_rows


def batch_jobs(runs):
    """POST /invoke/batch: jobs/s of each run (requests/s x jobs per request)."""
    out = []
    for d in runs.get("http_gateway_batch", []):
        try:
            out.append(float(d["rps"]) * float(d.get("batch", "1")))
        except (KeyError, ValueError):
            continue
    return out


def _numeric(cell):
    c = str(cell).replace(",", "").replace("x", "").replace("(1 run)", "0").replace(" – ", "")
    try:
        float(c)
        return True
    except ValueError:
        return c in ("-",)


def text_table(rows, header):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]

    def line(r, head=False):
        cells = []
        for i, (c, w) in enumerate(zip(r, widths)):
            right = i > 0 and (not head) and _numeric(c) or (head and i > 0 and all(_numeric(x[i]) for x in rows))
            cells.append(str(c).rjust(w) if right else str(c).ljust(w))
        return "  ".join(cells).rstrip()
    return "\n".join([line(header, True), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def md_table(rows, header):
    align = ["---"] + ["---:" if rows and all(_numeric(r[i]) or "–" in str(r[i]) for r in rows) else "---"
                       for i in range(1, len(header))]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for r in rows:
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)


def main():
    args = sys.argv[1:]
    write = None
    if "--write" in args:
        i = args.index("--write")
        write = args[i + 1]
        del args[i:i + 2]
    results, meta_path, commands_path = args
    runs, notes = load(results)
    meta = {}
    with open(meta_path) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                meta[k] = v
    commands = []
    with open(commands_path) as f:
        for line in f:
            if "\t" in line:
                commands.append(line.rstrip("\n").split("\t", 1))
    sections, trows, cpu_rows, http_rows = build(runs, notes, meta)
    http_header = ["case", "HTTP server", "broker", "redis", "workers", "wrk", "total", "cores busy"]
    cpu_header = ["case", "broker", "redis", "workers", "driver", "total", "cores busy"]
    header = ["case", "median", "min – max", "unit", "note"]

    print()
    print("botmesh bench (%s, %s run(s) per case, %s cores, %s)" % (meta.get("mode"), meta.get("runs"),
                                                                    meta.get("cores"), meta.get("cpu")))
    for title, rows in sections:
        print()
        print(title)
        print(text_table(rows, header))
    if cpu_rows:
        print()
        print("CPU per job (µs, median), by process; 'broker' is the relay in the relay case")
        print(text_table(cpu_rows, cpu_header))
    if http_rows:
        print()
        print("CPU per HTTP request (µs, median), by process")
        print(text_table(http_rows, http_header))
    print()
    print("Targets, from the medians")
    print(text_table(trows, ["target", "value", "goal", "status"]))
    print()

    if write:
        findings = ""
        fpath = os.path.join(HERE, "findings.md")
        if os.path.exists(fpath):
            with open(fpath) as f:
                findings = f.read().strip()
        md = ["# Benchmarks",
              "",
              "Generated by `./botmesh bench` (`bench/run.sh`) on %s in %s s; do not edit by hand"
              " (the findings section comes from `bench/findings.md`)." % (meta.get("date"), meta.get("elapsed_s")),
              "Each case ran %s time(s) on fresh processes; the table shows the median and the min – max."
              % meta.get("runs"),
              "",
              "## Machine",
              "",
              "| | |", "| --- | --- |",
              "| CPU | %s, %s cores |" % (meta.get("cpu"), meta.get("cores")),
              "| memory | %s |" % meta.get("mem"),
              "| OS | %s, %s |" % (meta.get("os"), meta.get("kernel")),
              "| botmesh | commit %s, %s build, %s |" % (meta.get("commit"), meta.get("build"), meta.get("cc")),
              "| load average | before %s, after %s (1, 5, 15 min); the run's processes at nice %s |"
              % (meta.get("load_before"), meta.get("load_after"), meta.get("nice")),
              "",
              "## Versions",
              "",
              "| component | version |", "| --- | --- |"]
        for k in ("redis", "libzmq", "czmq", "msgpack-c", "hiredis", "jansson", "civetweb", "wrk", "node",
                  "bullmq", "ioredis", "express"):
            if meta.get(k):
                md.append("| %s | %s |" % (k, meta[k]))
        md += ["",
               "Settings: %s no-op worker process(es) (`%s`) with credit %s each for the throughput and HTTP"
               " cases; the C driver keeps %s jobs in flight (%s SUBMIT_MANY of 1,000 in the bulk cases);"
               " BullMQ: %s (the ratio to BullMQ uses the better of the two)."
               % (meta.get("workers"), meta.get("worker"), meta.get("credit"), meta.get("window"),
                  meta.get("bulk_window", "2"), meta.get("bullmq_settings")),
               ""]
        for title, rows in sections:
            md += ["## " + title, "", md_table(rows, header), ""]
        if cpu_rows:
            md += ["## Where the CPU goes", "",
                   "CPU time per job in µs (median of the runs), by process, from /proc/PID/stat"
                   " (broker, redis-server with its AOF rewrites, workers) and the driver's rusage (with its children: for BullMQ"
                   " the producer and the worker processes). \"broker\" is the relay process in the relay case."
                   " \"cores busy\" is all of it divided by the wall time: this machine has %s." % meta.get("cores"),
                   "", md_table(cpu_rows, cpu_header), ""]
        if http_rows:
            md += ["CPU per HTTP request in µs (median), by process, during the measured wrk run; \"HTTP server\""
                   " is botmesh-gateway, the Express process or the bare handler, \"workers\" the no-op workers"
                   " (for Express: the BullMQ worker process), \"wrk\" the load generator itself.", "",
                   md_table(http_rows, http_header), ""]
        md += ["## Targets", "", "From the medians above.", "",
               md_table(trows, ["target", "value", "goal", "status"]), ""]
        if findings:
            md += ["## Findings", "", findings, ""]
        md += ["## Commands", "",
               "Every server listens on 127.0.0.1 on a free port (PORT, EP); `bench/run.sh` starts each case"
               " on fresh processes and stops them afterwards. Binaries came from `%s`." % meta.get("bin", "build/bin"), ""]
        for case, cmd in commands:
            md += ["- `%s`: `%s`" % (case, cmd.replace("`", "'"))]
        md.append("")
        #  The bots and record sections (bench/bots.py, `--only bots`;
        #  bench/record.py, `--only record`) are kept as they are.
        old = open(write).read() if os.path.exists(write) else ""
        for section in ("bots", "record"):
            begin, end = "<!-- %s:begin -->" % section, "<!-- %s:end -->" % section
            if begin in old and end in old:
                md += [old[old.index(begin):old.index(end) + len(end)], ""]
        with open(write, "w") as f:
            f.write("\n".join(md))
        print("wrote " + write)


if __name__ == "__main__":
    main()

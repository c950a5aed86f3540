"""bench_gateway.py - the gateway's benchmark (a report, not a test).

    /usr/bin/python3 tests/gateway/bench_gateway.py [--seconds 10] [--connections 64]

Starts redis, the broker (MAX_PYTHON_BOTS=1000), two no-op workers and one
gateway, then measures:
  1. the broker alone: bm-bench throughput (pipelined SUBMITs, 2000 in flight)
     and bm-bench latency (one job at a time), through ZeroMQ;
  2. wrk GET /health: the HTTP ceiling of this civetweb server (no broker);
  3. wrk POST /invoke with keep-alive (bench/invoke.lua): req/s and p99,
     while the workers drain the queue.
Prints one line per measure.  Run it on a quiet machine."""
import argparse
import os
import re
import subprocess

import harness
from gwtest import gateway, log, wait_until


def wrk(url, seconds, connections, script=None):
    cmd = ["wrk", "-t2", "-c%d" % connections, "-d%ds" % seconds, "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rps, float(p99.group(1)) * scale, int(non2xx.group(1)) if non2xx else 0, out


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def switches(pid):
    """Context switches (voluntary + not) of all threads of a process."""
    total = 0
    for task in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, task)) as f:
                for line in f:
                    if "ctxt_switches:" in line:
                        total += int(line.split()[-1])
        except OSError:
            pass
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--runs", type=int, default=1, help="wrk POST /invoke runs")
    ap.add_argument("--invoke-only", action="store_true",
                    help="only the wrk POST /invoke runs (skip bm-bench and GET /health)")
    args = ap.parse_args()
    root = harness.ROOT
    with harness.Stack("gw-bench") as s:
        s.env["LOG_LEVEL"] = "warn"
        s.redis()
        s.broker(env={"MAX_PYTHON_BOTS": "1000"})
        for i in range(2):
            s.worker("--type", "python", "--noop", "--concurrency", "500", name="worker-%d" % i)
        s.wait_workers(2, "python")
        g = gateway(s, env={"GATEWAY_THREADS": str(args.connections + 16), "LOG_LEVEL": "warn"})

        if not args.invoke_only:
            measure_broker_and_health(s, g, args)
        for run in range(args.runs):
            measure_invoke(s, g, args, root, run)


def measure_broker_and_health(s, g, args):
    if True:
        out = subprocess.run([s.bin("bm-bench"), "throughput", "--endpoint", s.endpoint,
                              "--jobs", "30000", "--types", "python"],
                             capture_output=True, text=True, timeout=120).stdout.strip()
        log("broker alone, pipelined (bm-bench throughput):", out.splitlines()[-1])
        out = subprocess.run([s.bin("bm-bench"), "throughput", "--endpoint", s.endpoint,
                              "--jobs", "30000", "--types", "python",
                              "--window", str(args.connections)],
                             capture_output=True, text=True, timeout=120).stdout.strip()
        log("broker alone, %d in flight like wrk's connections:" % args.connections,
            out.splitlines()[-1])
        out = subprocess.run([s.bin("bm-bench"), "latency", "--endpoint", s.endpoint,
                              "--jobs", "1000", "--types", "python"],
                             capture_output=True, text=True, timeout=120).stdout.strip()
        log("broker alone, one job at a time (bm-bench latency):", out.splitlines()[-1])

        cpu0 = cpu_seconds(g.pid)
        rps, p99, bad, _ = wrk(g.url + "/health", args.seconds, args.connections)
        log("wrk GET /health: %.0f req/s, p99 %.2f ms, non-2xx %d, gateway CPU per request %.0f us"
            % (rps, p99, bad, 1e6 * (cpu_seconds(g.pid) - cpu0) / (rps * args.seconds)))


def measure_invoke(s, g, args, root, run):
    if True:
        procs = [p for p in s.procs if p.alive()]
        before = {p.name: cpu_seconds(p.pid) for p in procs}
        sw0 = {p.name: switches(p.pid) for p in procs}
        rps, p99, bad, text = wrk(g.url + "/invoke", args.seconds, args.connections,
                                  os.path.join(root, "bench", "invoke.lua"))
        log("wrk POST /invoke: %.0f req/s, p99 %.2f ms, non-2xx %d" % (rps, p99, bad))
        # Where the CPU went during the wrk run (2 cores = 200 %).
        log("CPU during POST /invoke: " + ", ".join(
            "%s %.0f%%" % (p.name, 100 * (cpu_seconds(p.pid) - before[p.name]) / args.seconds)
            for p in procs))
        log("run %d: CPU per request: " % (run + 1) + ", ".join(
            "%s %.1f us" % (p.name, 1e6 * (cpu_seconds(p.pid) - before[p.name]) / (rps * args.seconds))
            for p in procs))
        log("run %d: context switches per request: " % (run + 1) + ", ".join(
            "%s %.1f" % (p.name, (switches(p.pid) - sw0[p.name]) / (rps * args.seconds))
            for p in procs))
        print(text)
        c = s.client()
        wait_until(lambda: c.stats()["types"]["python"]["waiting"] == 0, 120, "the queue to drain")
        st = c.stats()["types"]["python"]
        log("drained: completed %d, failed %d" % (st["completed"], st["failed"]))
        c.close()


if __name__ == "__main__":
    main()

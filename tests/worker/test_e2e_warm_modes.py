"""Pool and fork modes with the default bots, end to end: client -> broker
(no Redis) -> worker with BOT_PYTHON_MODE=fork, BOT_NODE_MODE=pool,
BOT_JAVA_MODE=pool -> warm bots.

Each bot's result equals what the same bot gives in spawn mode for the same
payload (run by hand here: payload on stdin, result on stdout), apart from
the fields that name the run (pid, times, job id); progress reaches the
broker; a failing job fails with the bot's message; 200 jobs over the three
types all complete, none lost, in few processes (warm reuse).  Where the
kernel has transparent huge pages, the python fork server runs with its
code on them (an anonymous executable 2 MiB mapping in its smaps), as
forkserver.py's huge_text puts it for its children; the rest of its code
and constants is in anonymous memory (anon_text): no read-only mapping of
a program file (an ELF file) is left in its maps.
"""
import json
import os
import subprocess

import harness
import wlib
from harness import check, log

ROOT = harness.ROOT
RUN_FIELDS = ("pid", "startedAt", "finishedAt", "jobId", "attempt")
SPAWN = {
    "python": ["/usr/bin/python3", os.path.join(ROOT, "workers/bots/python/bot.py")],
    "node": ["node", os.path.join(ROOT, "workers/bots/node/bot.js")],
    "java": ["java", os.path.join(ROOT, "workers/bots/java/Bot.java")],
}
PAYLOADS = {
    "python": [{"task": "data_analysis", "dataset": "sales_2024", "size": 500},
               {"dataset": {"nested": [1, 2.5, "x"]}, "size": 7}, None],
    "node": [{"action": "process_api", "endpoint": "/users", "count": 12},
             {"records": [{"user_name": " Ada ", "Email-Address": "ADA@X.ORG", "n": 1.25}]}, None],
    "java": [{"operation": "batch_process", "records": 300},
             {"records": [{"a": 1}, "two", [3]]}, None],
}


def strip(result):
    return {k: v for k, v in result.items() if k not in RUN_FIELDS}


def spawn_result(bot_type, payload):
    out = subprocess.run(SPAWN[bot_type], input=json.dumps(payload), capture_output=True,
                         text=True, timeout=60, env={"PATH": os.environ["PATH"]})
    check(out.returncode == 0, "%s bot in spawn mode by hand" % bot_type, out.stderr[-500:])
    return json.loads(out.stdout)


def huge_code_mappings(pid):
    """The anonymous executable mappings of a process that are on huge
    pages (AnonHugePages >= 2048 kB)."""
    out, head = [], None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            parts = line.split()
            if "-" in parts[0] and not parts[0].endswith(":"):
                head = parts if len(parts) == 5 and "x" in parts[1] else None
            elif head and parts[0] == "AnonHugePages:" and int(parts[1]) >= 2048:
                out.append(head[0])
    return out


def elf_text_mappings(pid):
    """The read-only private mappings (r-x, r--) of ELF files (the
    interpreter, shared libraries, extension modules) in a process."""
    out, magic = [], {}
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) < 6 or parts[1] not in ("r-xp", "r--p") or not parts[5].startswith("/"):
                continue
            path = parts[5].strip()
            if path not in magic:
                try:
                    with open(path, "rb") as elf:
                        magic[path] = elf.read(4) == b"\x7fELF"
                except OSError:
                    magic[path] = False
            if magic[path]:
                out.append((parts[0], parts[1], path))
    return out


def fork_servers(worker_pid):
    out = []
    for pid in wlib.children(worker_pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"forkserver.py") for a in argv) and b"--pool" not in argv:
            out.append(pid)
    return out


def thp_enabled():
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            return "[never]" not in f.read()
    except OSError:
        return False


def main():
    with harness.Stack("worker-e2e-warm-modes") as s:
        s.broker(redis=False)
        w = s.worker("--type", "python,node,java", "--concurrency", "4",
                     env={"BOT_PYTHON_MODE": "fork", "BOT_NODE_MODE": "pool", "BOT_JAVA_MODE": "pool",
                          "BOT_NODE_MAX_PROCS": "2", "BOT_JAVA_MAX_PROCS": "2"})
        s.wait_workers(1)
        c = s.client()
        out = w.output()
        check("node bots in pool mode: 1-2 processes, recycled after 1000 jobs or past "
              "BOT_NODE_MAX_RSS_MB=1024" in out,
              "the start-up line names each type's own recycle variable and its value",
              [l for l in out.splitlines() if "bots in" in l])

        for bot_type, payloads in PAYLOADS.items():
            for payload in payloads:
                want = strip(spawn_result(bot_type, payload))
                rec = c.wait(c.submit(bot_type, payload), timeout=60)
                check(rec["state"] == "completed", "%s job completed (%s mode)" % (
                    bot_type, "fork" if bot_type == "python" else "pool"), rec)
                got = rec["result"]
                check(strip(got) == want, "%s: same result as spawn mode for %s" % (
                    bot_type, json.dumps(payload)[:60]), strip(got), want)
                check(got["jobId"] == rec["jobId"] and got["attempt"] == 1,
                      "%s bot saw this job's BOT_JOB_ID and BOT_ATTEMPT" % bot_type, got)
                check(rec["progress"] == 100, "%s progress reached the broker" % bot_type,
                      rec.get("progress"))
            rec = c.wait(c.submit(bot_type, {"fail": "no data for %s" % bot_type}), timeout=30)
            check(rec["state"] == "failed" and rec["error"]["code"] == "bot_failed"
                  and rec["error"]["message"] == "no data for %s" % bot_type,
                  "%s asked to fail -> bot_failed with its message, as in spawn mode" % bot_type,
                  rec.get("error"))

        # 200 jobs, all types at once: none lost; warm processes reused.
        ids = {}
        for i in range(200):
            bot_type = ("python", "node", "java")[i % 3]
            payload = {"python": {"dataset": "d%d" % i, "size": 50},
                       "node": {"count": 2, "endpoint": "/e%d" % i},
                       "java": {"records": 10 + i}}[bot_type]
            ids[c.submit(bot_type, payload)] = bot_type
        pids = {"python": set(), "node": set(), "java": set()}
        for job_id, bot_type in ids.items():
            rec = c.wait(job_id, timeout=120)
            check(rec["state"] == "completed", "job %s (%s) completed" % (job_id, bot_type), rec)
            check(rec["result"]["jobId"] == job_id, "each result belongs to its job", rec["result"])
            pids[bot_type].add(rec["result"]["pid"])
        log("distinct pids over 200 jobs:", {k: len(v) for k, v in pids.items()})
        check(len(pids["node"]) <= 2 and len(pids["java"]) <= 2,
              "node and java jobs ran in at most MAX_PROCS=2 warm processes each",
              {k: len(v) for k, v in pids.items()})
        check(len(pids["python"]) == len([t for t in ids.values() if t == "python"]),
              "fork mode: every python job ran in a process of its own")
        servers = fork_servers(w.pid)
        check(servers, "a python fork server runs under the worker", wlib.children(w.pid))
        if thp_enabled():
            huge = huge_code_mappings(servers[0])
            log("fork server %d: code on huge pages at %s" % (servers[0], huge))
            check(huge, "the fork server's code is on 2 MiB huge pages (huge_text)")
        else:
            log("transparent huge pages off: the fork server's code stays on 4 KiB pages")
        left = elf_text_mappings(servers[0])
        check(not left, "the fork server's code and constants are in anonymous memory (anon_text)", left)
        c.close()
        check(w.alive(), "worker still running")


if __name__ == "__main__":
    harness.main(main)

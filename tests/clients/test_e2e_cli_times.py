"""botmesh-client prints a job record's times as the HTTP API does, and
reads a large payload from stdin or a file.

Real redis-server, broker, gateway, and a Python client worker in this
process.  `botmesh-client submit ... --wait`, `status`, `wait` and `list`
give createdAt, startedAt and finishedAt as ISO 8601 UTC strings with
milliseconds (not ms numbers), the same strings as GET /job/{id}, under the
same field names; the rest of the record is as the broker sent it.
`submit TYPE -` and `submit TYPE @FILE` take a payload too large for one
command-line argument (128 KiB on Linux).  `submit --attempts N
--delay-ms MS` give the job's runs and delay.  A wait that runs out exits 3,
a job that ends without completing 1.
"""
import json
import os
import re
import subprocess

from e2elib import harness, botmesh, cli, gateway, wait_worker
from harness import check

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TIMES = ("createdAt", "startedAt", "finishedAt")


def main():
    with harness.Stack("clients-cli-times") as s:
        s.redis()
        s.broker(env={"MAX_CLITIME_BOTS": "2"})
        w = botmesh.Worker(["clitime"], lambda payload, job: {"echo": payload}, credit=1,
                           endpoint=s.endpoint, name="py-cli").start()
        base = gateway(s)
        c = botmesh.Client(s.endpoint, timeout=5)
        wait_worker(c, "py-cli")

        rec = cli(s, "submit", "clitime", '{"n":1}', "--wait")
        check(rec["state"] == "completed" and rec["result"] == {"echo": {"n": 1}}, "submit --wait: the record", rec)
        check(all(isinstance(rec.get(k), str) and ISO.match(rec[k]) for k in TIMES),
              "submit --wait: createdAt, startedAt, finishedAt are ISO 8601 strings", {k: rec.get(k) for k in TIMES})
        job_id = rec["jobId"]
        wire = c.status(job_id)
        check(set(rec) == set(wire) and all(rec[k] == wire[k] for k in wire if not k.endswith("At")),
              "the same fields as the broker's record, under the same names; only the times change form",
              sorted(rec), sorted(wire))

        status, _, api = harness.http("GET", base + "/job/" + job_id)
        check(status == 200 and isinstance(api, dict), "GET /job/{id}", status, api)
        check(all(rec[k] == api[k] for k in TIMES), "the same strings as the HTTP API",
              {k: (rec[k], api[k]) for k in TIMES})

        st = cli(s, "status", job_id)
        check(st == rec, "status prints the same record", st, rec)
        wt = cli(s, "wait", job_id)
        check(wt == rec, "wait prints the same record", wt, rec)
        listed = cli(s, "list", "--type", "clitime")["jobs"]
        check(len(listed) == 1 and all(listed[0][k] == rec[k] for k in TIMES),
              "list gives each job's times the same way", listed)

        big = {"text": "x" * 300000}                  # past one argument's 128 KiB
        rec = cli(s, "submit", "clitime", "-", "--wait", stdin=json.dumps(big))
        check(rec["state"] == "completed" and rec["result"] == {"echo": big},
              "submit TYPE - reads the payload from stdin", rec["state"])
        path = os.path.join(s.dir, "payload.json")
        with open(path, "w") as f:
            json.dump(big, f)
        rec = cli(s, "submit", "clitime", "@" + path, "--wait")
        check(rec["state"] == "completed" and rec["result"] == {"echo": big},
              "submit TYPE @FILE reads the payload from the file", rec["state"])
        os.unlink(path)
        out = subprocess.run([s.bin("botmesh-client"), "--endpoint", s.endpoint, "submit", "clitime",
                              "@" + path], capture_output=True, text=True, timeout=60)
        check(out.returncode == 2 and "cannot open the payload file" in out.stderr and path in out.stderr,
              "a missing payload file: exit 2 naming it", out.returncode, out.stderr)

        # submit --attempts and --delay-ms, as ./botmesh invoke has them.
        out = subprocess.run([s.bin("botmesh-client"), "--help"], capture_output=True, text=True, timeout=10)
        check(out.returncode == 0 and "--attempts N" in out.stdout and "--delay-ms N" in out.stdout,
              "--help lists submit's --attempts and --delay-ms", out.stdout)
        sub = cli(s, "submit", "clitime", '{"later":1}', "--attempts", "4", "--delay-ms", "60000")
        rec = cli(s, "status", sub["jobId"])
        check(rec["state"] == "delayed" and rec["runAttempts"] == 4,
              "submit --attempts 4 --delay-ms 60000: a delayed job with 4 runs", rec)
        cli(s, "cancel", sub["jobId"])
        for flag, value in (("--attempts", "0"), ("--attempts", "101"), ("--delay-ms", "-1")):
            out = subprocess.run([s.bin("botmesh-client"), "--endpoint", s.endpoint, "submit", "clitime",
                                  "{}", flag, value], capture_output=True, text=True, timeout=60)
            check(out.returncode == 2 and flag in out.stderr,
                  "submit %s %s: exit 2 naming the flag" % (flag, value), out.returncode, out.stderr)

        # Exit codes of a wait: 3 when it runs out (a java job: no worker here),
        # 1 for a job that ends without completing (cancelled).
        def run(*args):
            return subprocess.run([s.bin("botmesh-client"), "--endpoint", s.endpoint] + list(args),
                                  capture_output=True, text=True, timeout=60)
        out = run("--timeout-ms", "1500", "submit", "java", "{}", "--wait")
        check(out.returncode == 3 and "did not end within 1500 ms" in out.stderr,
              "submit --wait past --timeout-ms: exit 3 (a timeout), not 1", out.returncode, out.stderr)
        late = re.search(r"job (\S+) did not end", out.stderr)
        check(late, "the message names the job", out.stderr)
        out = run("--timeout-ms", "300", "wait", late.group(1))
        check(out.returncode == 3 and "did not end within 300 ms" in out.stderr,
              "wait past --timeout-ms: exit 3", out.returncode, out.stderr)
        cli(s, "cancel", late.group(1))
        out = run("wait", late.group(1))
        check(out.returncode == 1 and json.loads(out.stdout).get("state") == "cancelled",
              "wait on a cancelled job: exit 1", out.returncode, out.stdout, out.stderr)
        c.close()
        check(w.stop(timeout=10), "the worker stops")


if __name__ == "__main__":
    harness.main(main)

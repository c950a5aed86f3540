"""README.md's flow examples, run as written, give what they say.

A real stack: broker, gateway and a worker running the shipped python bot
(workers/bots/python/bot.py).  The bash blocks of README's "Flows: a job
after other jobs" section (three curls with dependsOn and
"dependencyResults": true) and of its "A whole tree in one request: POST
/flows" section run under bash, only localhost:3000 changed to the test's
gateway.  Each parent job, payload {"task": "compare"}, must complete with
a compare of its two children's data_analysis results, sales_2024 and
sales_2023, with figures equal to the children's own results: not a
data_analysis of the "default" dataset, which a bot that does not read the
{"payload", "dependencies"} wrapper runs.
"""
import json
import os
import re
import subprocess

import harness as h
from gwtest import curl, gateway

README = os.path.join(h.ROOT, "README.md")


def bash_blocks(section):
    """The ```bash blocks of README's section (a heading, to the next one)."""
    lines = open(README, encoding="utf-8").read().split("\n")
    h.check(section in lines, "README has the section %r" % section)
    body, fenced = [], False
    for line in lines[lines.index(section) + 1:]:
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            break
        body.append(line)
    blocks = re.findall(r"```bash\n(.*?)```", "\n".join(body), re.S)
    h.check(blocks, "README's section %r has a bash block" % section)
    return blocks


def run(block, url):
    """Runs a README block against the gateway at url; its stdout's last
    JSON line (the parent's 202)."""
    script = block.replace("localhost:3000", url.replace("http://", ""))
    h.check(script != block, "the README block talks to localhost:3000", block)
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True,
                         text=True, timeout=60)
    h.check(out.returncode == 0, "the README block runs", out.returncode, out.stdout, out.stderr)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    h.check(lines, "the README block printed the parent's answer", out.stdout)
    return json.loads(lines[-1])


def check_compare(u, s, parent, children, what):
    c = s.client()
    try:
        rec = c.wait(parent, timeout=60)
        kids = [c.wait(k, timeout=60) for k in children]
    finally:
        c.close()
    h.check(all(k["state"] == "completed" for k in kids), what + ": the children completed", kids)
    h.check(rec["state"] == "completed", what + ": the parent completed", rec)
    r = curl(u + "/job/" + parent).json["result"]
    h.check(r.get("task") == "compare", what + ": the parent's result is a compare, not a "
            "data_analysis of %r" % r.get("dataset"), r)
    want = []
    for k in kids:
        st = k["result"]["stats"]
        want.append({"jobId": k["jobId"], "dataset": k["result"]["dataset"], "mean": st["mean"],
                     "median": st["median"], "stdev": st["stdev"], "count": st["count"]})
    got = [{key: d[key] for key in ("jobId", "dataset", "mean", "median", "stdev", "count")}
           for d in r["datasets"]]
    h.check(sorted(d["dataset"] for d in got) == ["sales_2023", "sales_2024"],
            what + ": it compares sales_2024 and sales_2023", r)
    h.check(sorted(got, key=lambda d: d["jobId"]) == sorted(want, key=lambda d: d["jobId"]),
            what + ": with each child's own figures", got, want)
    top = max(want, key=lambda d: d["mean"])
    low = min(want, key=lambda d: d["mean"])
    h.check(r["count"] == 2 and r["highestMean"]["jobId"] == top["jobId"]
            and r["lowestMean"]["jobId"] == low["jobId"]
            and abs(r["meanSpread"] - (top["mean"] - low["mean"])) < 1e-5,
            what + ": highest and lowest mean and their spread", r)
    h.check(r["jobId"] == parent, what + ": the bot ran as the parent job", r)


def test():
    with h.Stack("gw-readme-flows") as s:
        s.broker(redis=False)
        s.worker("--type", "python", "--concurrency", "3")
        s.wait_workers(1, "python")
        u = gateway(s).url

        block, = bash_blocks("## Flows: a job after other jobs")
        ans = run(block, u)
        h.check(ans.get("status") in ("waiting-children", "queued"), "dependsOn: 202", ans)
        rec = curl(u + "/job/" + ans["jobId"]).json
        check_compare(u, s, ans["jobId"], rec["dependsOn"], "dependsOn")

        block, = bash_blocks("### A whole tree in one request: `POST /flows`")
        ans = run(block, u)
        check_compare(u, s, ans["jobId"], [c["jobId"] for c in ans["children"]], "POST /flows")
        h.log("both README flow examples give a compare of sales_2024 and sales_2023")


if __name__ == "__main__":
    h.main(test)

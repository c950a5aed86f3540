"""The pooled bots of docs/bots.md ("Writing a bot, in short": the shell,
Perl and Ruby versions of greet) work as the page says.

- On a pipe, as the worker drives them: the ready line comes before any
  job, and each frame's lines come while the bot still holds its stdin
  open (flushed, not left in a buffer), each one JSON object naming the
  frame's job, the answer last.
- End to end with the real broker (no Redis) and a real worker, each run
  as a pool type: {"name": "Ada"} -> {"hello": "Ada"}, a payload that is
  not an object -> "world", the same process for both jobs, and no WARN
  line in the worker's log.

An example whose interpreter (or jq, for the shell one) is not installed
is left out, with a log line; the shell and Perl ones always run where
the worker's tests do.
"""
import json
import os
import re
import select
import shutil
import subprocess
import time

import harness
from harness import check, log
import wlib

ROOT = harness.ROOT
DOC = os.path.join(ROOT, "docs", "bots.md")
#  The fenced language -> how to run the example, and what it needs.
LANGS = {"sh": ("/bin/sh", ["jq"]), "perl": ("/usr/bin/perl", []), "ruby": ("ruby", [])}
ALWAYS = {"sh", "perl"}


def examples():
    with open(DOC) as f:
        text = f.read()
    start = text.find("\n## Writing a bot, in short\n")
    check(start >= 0, "docs/bots.md has its section 'Writing a bot, in short'")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end > 0 else len(text)]
    found = {}
    for lang, body in re.findall(r"```(\w+)\n(#!.*?)```", section, re.S):
        if lang in LANGS:
            found[lang] = body
    return found


def runnable(lang):
    program, needs = LANGS[lang]
    missing = [p for p in [program] + needs if not shutil.which(p)]
    if missing:
        log("%s example left out: %s not installed" % (lang, ", ".join(missing)))
        return None
    return shutil.which(program)


def read_line(proc, buf, what, timeout=10):
    deadline = time.monotonic() + timeout
    while b"\n" not in buf[0]:
        left = deadline - time.monotonic()
        ready = select.select([proc.stdout], [], [], max(left, 0))[0]
        check(ready, "%s within %d s (a line left in a buffer never comes)" % (what, timeout))
        chunk = os.read(proc.stdout.fileno(), 65536)
        check(chunk, "%s before the bot's stdout ends" % what, buf[0])
        buf[0] += chunk
    line, buf[0] = buf[0].split(b"\n", 1)
    try:
        frame = json.loads(line)
    except ValueError:
        frame = None
    check(isinstance(frame, dict), "%s is one JSON object on one line" % what, line)
    return frame


def on_a_pipe(lang, program, path):
    proc = subprocess.Popen([program, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    buf = [b""]
    try:
        check(read_line(proc, buf, lang + ": the ready line") == {"ready": True},
              lang + ": the first line is {\"ready\": true}")
        for job, payload, hello in (("j_1", {"name": "Ada"}, "Ada"), ("j_2", [1, 2], "world")):
            frame = {"job": job, "env": {"BOT_JOB_ID": job}, "payload": payload}
            proc.stdin.write((json.dumps(frame) + "\n").encode())
            while True:
                out = read_line(proc, buf, "%s: a frame for job %s" % (lang, job))
                check(out.get("job") == job, "%s: the frame names its job" % lang, out, job)
                if "result" in out:
                    break
                check(set(out) == {"progress", "job"}, "%s: before the answer, progress only" % lang, out)
                check(isinstance(out["progress"], int) and 0 <= out["progress"] <= 100,
                      "%s: progress is an integer from 0 to 100" % lang, out)
            check(out["result"].get("hello") == hello, "%s: the answer for job %s" % (lang, job), out)
        proc.stdin.close()
        check(proc.wait(10) == 0, "%s: the bot exits 0 at end of file" % lang, proc.returncode)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main():
    found = examples()
    check(ALWAYS <= set(found), "docs/bots.md has the shell and Perl examples", sorted(found))
    bots = harness.tempdir("docs-bots-")
    os.chmod(bots, 0o755)
    env = {"WORKER_METRICS_PORT": "-1"}
    types = []
    for lang, body in sorted(found.items()):
        program = runnable(lang)
        check(program or lang not in ALWAYS, "%s: its interpreter is installed" % lang)
        if not program:
            continue
        path = os.path.join(bots, "greet." + lang)
        with open(path, "w") as f:
            f.write(body)
        on_a_pipe(lang, program, path)
        name = "greet_" + lang
        types.append(name)
        env["BOT_%s_CMD" % name.upper()] = "%s %s" % (program, path)
        env["BOT_%s_MODE" % name.upper()] = "pool"
        env["BOT_%s_MAX_PROCS" % name.upper()] = "1"
    with harness.Stack("worker-docs-bots") as s:
        s.broker(redis=False)
        w = s.worker("--type", ",".join(types), "--concurrency", str(len(types)), env=env)
        s.wait_workers(1)
        c = s.client()
        for name in types:
            ada = wlib.run_job(c, name, {"name": "Ada"}, attempts=1, timeout=20)
            check(ada["state"] == "completed" and ada["result"].get("hello") == "Ada",
                  "%s: {\"name\": \"Ada\"} -> hello Ada" % name, ada)
            other = wlib.run_job(c, name, [1, 2], attempts=1, timeout=20)
            check(other["state"] == "completed" and other["result"].get("hello") == "world",
                  "%s: a payload that is not an object -> hello world" % name, other)
        warns = [line for line in w.output().splitlines() if " WARN " in line]
        check(not warns, "no WARN line in the worker's log", warns)
        c.close()


if __name__ == "__main__":
    harness.main(main)

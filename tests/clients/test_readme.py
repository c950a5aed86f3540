"""clients.readme - the four examples of clients/README.md run as copied.

Each fenced block under the README's "Python: ..." and "Node.js: ..."
headings is saved, unchanged, in a directory outside the repository and
started from the repository's root with only BROKER_ENDPOINT set (the
examples name no endpoint).  Against a real broker and a noop C worker:
the submit examples print a completed job; the worker examples serve
jobs (result {echo, attempt}, a failing payload ends bot_failed "asked to
fail") and exit 0 on SIGTERM.
"""
import os
import re
import signal
import subprocess

from e2elib import harness, botmesh, need_node, ROOT, PY
from harness import check

HEADINGS = {
    "py_submit": ("Python: submit a job and wait for its result", "python"),
    "py_worker": ("Python: a worker", "python"),
    "node_submit": ("Node.js: submit a job and wait for its result", "js"),
    "node_worker": ("Node.js: a worker", "js"),
}


def examples():
    text = open(os.path.join(ROOT, "clients", "README.md"), encoding="utf-8").read()
    out = {}
    for key, (heading, lang) in HEADINGS.items():
        m = re.search(r"^## %s\n+```%s\n(.*?)^```$" % (re.escape(heading), lang), text, re.S | re.M)
        check(m, "clients/README.md has the example '%s'" % heading)
        out[key] = m.group(1)
    return out


def main():
    need_node()
    ex = examples()
    os.chdir(ROOT)              # where the README says to start them
    with harness.Stack("clients-readme") as s:
        s.broker(redis=False)
        s.worker("--noop", "--type", "python,node")
        s.wait_workers(1, "node")
        env = dict(os.environ, BROKER_ENDPOINT=s.endpoint)
        env.pop("NODE_PATH", None)
        env.pop("PYTHONPATH", None)
        files = {}
        for key, code in ex.items():
            files[key] = os.path.join(s.dir, key + (".js" if key.startswith("node") else ".py"))
            with open(files[key], "w") as f:
                f.write(code)
        run = {"py": [PY], "node": ["node"]}

        for key in ("py_submit", "node_submit"):
            r = subprocess.run(run[key.split("_")[0]] + [files[key]], env=env, capture_output=True, text=True,
                               timeout=90)
            check(r.returncode == 0 and r.stdout.startswith("completed "),
                  "%s: prints the completed job" % key, r.returncode, r.stdout, r.stderr[-2000:])

        c = botmesh.Client(s.endpoint, timeout=10)
        for key, bot_type in (("py_worker", "pywork"), ("node_worker", "nodework")):
            w = subprocess.Popen(run[key.split("_")[0]] + [files[key]], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True)
            try:
                s.wait_workers(1, bot_type, timeout=30)
                ok = c.wait(c.submit(bot_type, {"x": 1}), timeout=30)
                check(ok["state"] == "completed" and ok["result"] == {"echo": {"x": 1}, "attempt": 1},
                      "%s: serves %s, result {echo, attempt}" % (key, bot_type), ok)
                bad = c.wait(c.submit(bot_type, {"fail": True}), timeout=30)
                check(bad["state"] == "failed" and bad["error"]["code"] == "bot_failed"
                      and "asked to fail" in bad["error"]["message"],
                      "%s: a failing payload ends bot_failed 'asked to fail'" % key, bad)
                w.send_signal(signal.SIGTERM)
                out, _ = w.communicate(timeout=30)
                check(w.returncode == 0, "%s: exits 0 on SIGTERM" % key, w.returncode, out[-2000:])
            finally:
                if w.poll() is None:
                    os.killpg(w.pid, signal.SIGKILL)
                    w.wait()
        c.close()


harness.main(main)

#!/usr/bin/python3
"""bots_args_test.py BIN - bench/bots.py refuses what it cannot run, before it
runs anything: exit 2 with a line naming the problem, and a --write target
left as it was.

- --cases with a name of no case (spawn_pyton): names it and the cases;
- --jobs that is not a whole number of 1 or more (abc, 0, -5);
- --bin without a botmesh-worker.

Before, a misspelt --cases name ran nothing and exited 0, and with --write
replaced the table of docs/benchmarks.md with an empty one; a bad --jobs
ended in a ValueError traceback, a bad --bin in a FileNotFoundError one.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BOTS = os.path.join(HERE, "bots.py")
PAGE = "before\n<!-- bots:begin -->\nthe table\n<!-- bots:end -->\nafter\n"


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: bots_args_test.py BIN")
    bindir = sys.argv[1]
    tmp = tempfile.mkdtemp(prefix="botmesh-bots-args-")
    page = os.path.join(tmp, "benchmarks.md")
    failures = []
    try:
        for args, said in ((["--cases", "spawn_pyton"], "no case spawn_pyton (the cases: spawn_python"),
                           (["--jobs", "abc"], "--jobs takes a whole number"),
                           (["--jobs", "0"], "--jobs takes a whole number"),
                           (["--jobs", "-5"], "--jobs takes a whole number"),
                           (["--bin", os.path.join(tmp, "nothing")], "botmesh-worker is not built")):
            with open(page, "w") as f:
                f.write(PAGE)
            full = (["--bin", bindir] if "--bin" not in args else []) + args + ["--write", page]
            # A session of its own: a bots.py that goes on to run the
            # benchmark is stopped whole (its broker and workers too).
            p = subprocess.Popen([sys.executable, BOTS] + full, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, start_new_session=True)
            try:
                _, err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                _, err = p.communicate()
                err += "\n(still running after 60 s: it ran the benchmark)"
            with open(page) as f:
                kept = f.read() == PAGE
            ok = p.returncode == 2 and said in err and "Traceback" not in err and kept
            print("%s: bots.py %s: exit %d, %r, --write target %s" % (
                "ok" if ok else "FAILED", " ".join(args), p.returncode, err.strip()[-300:],
                "kept" if kept else "CHANGED"), flush=True)
            if not ok:
                failures.append(args)
                break                   # the next one may run the benchmark
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""forkserver.py - runs a Python bot warm, in fork or pool mode.

    forkserver.py BOT.py            fork mode: one fresh child per job
    forkserver.py --pool BOT.py     pool mode: jobs run in this process

BOT.py is any bot written for spawn mode (payload on stdin, result on
stdout, failure = exit non-zero with a message on stderr) that has a main()
function; it is imported once, with the modules named in
BOT_<TYPE>_PRELOAD (comma-separated).  Each job then runs main() with:
sys.stdin holding the payload, os.environ holding the job's variables
(BOT_JOB_ID, BOT_ATTEMPT, ...), sys.stdout captured; stderr and fd 3
(progress) are the process's own.  The worker protocol (docs/bots.md) is
one JSON document per line on stdin/stdout.

Fork mode: the server forks a child per job (after gc.freeze(), so the
child shares the loaded interpreter copy-on-write), reports its pid
({"started": PID}) so the worker can stop exactly that child, and how it
ended ({"exit": N} or {"signal": N}).  Nothing a job does survives it.
The child applies the job frame's "limits" (setrlimit) before it runs.

Pool mode: main() runs in this process, so module-level state persists
from one job to the next (the worker recycles the process after
BOT_<TYPE>_MAX_JOBS jobs); os.environ is restored after each job.
"""
import gc
import importlib
import importlib.util
import io
import json
import os
import resource
import signal
import sys
import traceback

OUT = None          # the protocol's stdout (a binary file)


def send(frame):
    OUT.write(json.dumps(frame, separators=(",", ":")).encode("utf-8") + b"\n")
    OUT.flush()


def load(path):
    kind = os.environ.get("BOT_TYPE", "").upper().replace("-", "_")
    for name in os.environ.get("BOT_%s_PRELOAD" % kind, "").split(","):
        if name.strip():
            importlib.import_module(name.strip())
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location("bot", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bot"] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "main", None)):
        raise SystemExit("%s has no main() function" % path)
    return module


def run_main(module, job):
    """Run one job in this process: (exit status, its stdout)."""
    sys.stdin = io.StringIO(json.dumps(job.get("payload")))
    captured = io.StringIO()
    sys.stdout = captured
    code = 0
    try:
        module.main()
    except SystemExit as exc:
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code & 0xff
        else:
            sys.stderr.write(str(exc.code) + "\n")
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout = sys.__stdout__
        sys.stdin = sys.__stdin__
        sys.stderr.flush()
    return code, captured.getvalue()


def apply_limits(limits):
    """The job frame's resource limits, in the child that runs the job."""
    table = {"memoryMb": (resource.RLIMIT_AS, 1 << 20), "cpuSeconds": (resource.RLIMIT_CPU, 1),
             "maxPids": (resource.RLIMIT_NPROC, 1), "maxFiles": (resource.RLIMIT_NOFILE, 1)}
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for key, (which, unit) in table.items():
        value = limits.get(key)
        if isinstance(value, int) and value > 0:
            resource.setrlimit(which, (value * unit, value * unit))


def find_prctl():
    """libc's prctl, looked up once in the server (importing ctypes in
    every child would cost more than the fork)."""
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


PRCTL = None


def die_with_parent():
    """The child goes when the server goes (kill -9 of the server)."""
    if PRCTL is not None:
        PRCTL(1, signal.SIGKILL)        # PR_SET_PDEATHSIG


def fork_job(module, job, parent):
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setpgid(0, 0)
            die_with_parent()
            if os.getppid() != parent:
                os._exit(1)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            apply_limits(job.get("limits") or {})
            os.environ.update(job.get("env") or {})
            code, output = run_main(module, job)
            send({"output": output})
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    send({"started": pid})
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        send({"signal": os.WTERMSIG(status)})
    else:
        send({"exit": os.WEXITSTATUS(status)})


def pool_job(module, job):
    saved = dict(os.environ)
    os.environ.update(job.get("env") or {})
    try:
        code, output = run_main(module, job)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if code == 0:
        send({"exit": 0, "output": output})
    else:
        send({"exit": code, "output": output})


def main():
    global OUT, PRCTL
    args = sys.argv[1:]
    pool = bool(args) and args[0] == "--pool"
    if pool:
        args = args[1:]
    if len(args) != 1:
        sys.stderr.write("usage: forkserver.py [--pool] BOT.py\n")
        sys.exit(2)
    # The protocol owns fd 1; a bot's print() goes to the job's capture.
    OUT = os.fdopen(os.dup(1), "wb")
    module = load(args[0])
    if not pool:
        PRCTL = find_prctl()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        gc.collect()
        gc.freeze()
    send({"ready": True, "pid": os.getpid(), "mode": "pool" if pool else "fork"})
    parent = os.getpid()
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
        except ValueError as exc:
            sys.stderr.write("forkserver: a frame that is not JSON: %s\n" % exc)
            sys.exit(2)
        if pool:
            pool_job(module, job)
        else:
            fork_job(module, job, parent)


if __name__ == "__main__":
    main()

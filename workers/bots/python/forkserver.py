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
child shares the loaded interpreter copy-on-write), one job ahead: the
spare child waits on a pipe for its job.  The server reports the child's
pid ({"started": PID}) so the worker can stop exactly that child, then
passes on the child's answer ({"exit": N, "output": TEXT}, sent through
a second pipe before the child exits) or, for a child that died without
one, how it ended ({"exit": N} or {"signal": N}).  Nothing a job does
survives it.  The child applies the job frame's "limits" (setrlimit)
before it runs.

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
            # CPU: SIGXCPU at the limit (a resource_limit for the worker),
            # SIGKILL a second later for a bot that catches it.
            hard = value * unit + (1 if which == resource.RLIMIT_CPU else 0)
            resource.setrlimit(which, (value * unit, hard))


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


class Spare:
    """A child forked ahead of its job: the fork, and what runs in the
    child right after it (the interpreter's after-fork hooks, the reseed
    of random), are paid while the worker is busy elsewhere.  It reads
    its job on `job_w`'s pipe and writes its answer frame on `answer_r`'s,
    which the server passes on: the worker has the answer before the
    child has torn down its address space."""

    def __init__(self, module, parent):
        job_r, self.job_w = os.pipe()
        self.answer_r, answer_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self.job_w)
            os.close(self.answer_r)
            child_main(module, parent, job_r, answer_w)
        os.close(job_r)
        os.close(answer_w)
        try:
            os.setpgid(self.pid, self.pid)
        except OSError:
            pass

    def close(self):
        for fd in (self.job_w, self.answer_r):
            try:
                os.close(fd)
            except OSError:
                pass


def read_line(fd):
    """Bytes from fd up to and with the first newline (b"" at EOF before
    any; what came, without newline, at EOF after some)."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            return b"".join(chunks)


def child_main(module, parent, job_r, answer_w):
    """A spare child: waits for its job, runs it, answers, exits."""
    code = 1
    answer = None
    try:
        os.setpgid(0, 0)
        die_with_parent()
        if os.getppid() != parent:
            os._exit(1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        line = read_line(job_r)
        if not line.endswith(b"\n"):
            os._exit(0)                 # the server went without a job for us
        job = json.loads(line)
        apply_limits(job.get("limits") or {})
        os.environ.update(job.get("env") or {})
        code, output = run_main(module, job)
        answer = {"exit": code, "output": output}
    except BaseException:
        traceback.print_exc()
        answer = {"exit": code}
    finally:
        sys.stderr.flush()
        try:
            data = json.dumps(answer, separators=(",", ":")).encode("utf-8") + b"\n"
            view = memoryview(data)
            while view:
                view = view[os.write(answer_w, view):]
        except BaseException:
            pass                        # no answer: the server reports the exit status
        os._exit(code)


ZOMBIES = []        # children that answered, reaped once they are gone


def reap(block=False):
    for pid in list(ZOMBIES):
        try:
            done, _ = os.waitpid(pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            done = pid
        except InterruptedError:
            continue
        if done:
            ZOMBIES.remove(pid)


def fork_job(spare, line):
    """Hand the job to the spare child; pass its answer on."""
    send({"started": spare.pid})
    try:
        os.write(spare.job_w, line if line.endswith(b"\n") else line + b"\n")
    except OSError:
        pass                            # it died already: its status says how
    answer = read_line(spare.answer_r)
    spare.close()
    if answer.endswith(b"\n"):
        OUT.write(answer)
        OUT.flush()
        ZOMBIES.append(spare.pid)
        return
    while True:
        try:
            _, status = os.waitpid(spare.pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        send({"signal": os.WTERMSIG(status)})
    else:
        send({"exit": os.WEXITSTATUS(status)})


def restore_environ(saved):
    """os.environ back to `saved`, touching only what the job changed (a
    clear and a rebuild would call putenv for every variable)."""
    if os.environ == saved:
        return
    for name in [name for name in os.environ if name not in saved]:
        del os.environ[name]
    for name, value in saved.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


def pool_job(module, job):
    saved = dict(os.environ)
    os.environ.update(job.get("env") or {})
    try:
        code, output = run_main(module, job)
    finally:
        restore_environ(saved)
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
    spare = None if pool else Spare(module, parent)
    for line in sys.stdin.buffer:
        if not line.strip():
            continue
        if not pool:
            # The child parses its frame: what the server does between
            # forks costs copy-on-write faults in the server.
            fork_job(spare, line)
            reap()
            spare = Spare(module, parent)
            continue
        try:
            job = json.loads(line)
        except ValueError as exc:
            sys.stderr.write("forkserver: a frame that is not JSON: %s\n" % exc)
            sys.exit(2)
        pool_job(module, job)
    if spare is not None:
        spare.close()                   # EOF on its job pipe: it exits
        ZOMBIES.append(spare.pid)
        reap(block=True)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""forkserver.py - runs a Python bot warm, in fork or pool mode.

    forkserver.py BOT.py            fork mode: one fresh child per job
    forkserver.py --pool BOT.py     pool mode: jobs run in this process
    --no-huge-text                  fork mode: leave the code on 4 KiB pages
                                    and in its files (no anon_text either)
    --no-anon-text                  fork mode: leave the code huge_text does
                                    not move in its files

BOT.py is any bot written for spawn mode (payload on stdin, result on
stdout, failure = exit non-zero with a message on stderr) that has a main()
function; it is imported once, with the modules named in
BOT_<TYPE>_PRELOAD (comma-separated).  Each job then runs main() with:
sys.stdin holding the payload, os.environ holding the job's variables
(BOT_JOB_ID, BOT_ATTEMPT, ...), sys.stdout captured; stderr and fd 3
(progress) are the process's own.  The worker protocol (docs/bots.md) is
one JSON document per line on stdin/stdout, which the server moves off
fd 0 and fd 1 at start: a job's subprocesses (os.system, subprocess with
the defaults) get /dev/null on fd 0 and the job's own capture on fd 1, as
a spawned bot's get end of file and its stdout, never the protocol's
pipes.  Outside a job, fd 1 is stderr (a print() while the bot loads).

Fork mode: the server forks one spare child ahead of its job (after
gc.freeze(), so the child shares the loaded interpreter copy-on-write).
The spare reads the next job frame from stdin itself, tells the server
(which forks the next spare), names itself to the worker ({"started":
PID}, so the worker can stop exactly that child), runs the job and hands
its answer ({"exit": N, "output": TEXT, "job": ID}, naming the job frame's
"job") to the server, which passes it on; for a child that died without
one, the server reports how it ended ({"exit": N}, or {"signal": N,
"cpuMs": MS} with the CPU time of its own it used: without "job", which
the server never reads).  The child applies the job frame's
"limits" (setrlimit) before it runs.  Nothing a job does survives it.

What a job costs here is mostly the pages the child touches: on a VM
whose page tables are shadowed, each 4 KiB page of the shared interpreter
a child reads or writes for the first time costs it 15-20 us (a
page-table fill; a copy-on-write fault for a written one).  So the server
does little per job (the child parses its own frame), the child is forked
with libc's fork() rather than os.fork() (fast_fork), the server's code
and constants are moved onto 2 MiB huge pages where they fill an aligned
window (huge_text: one entry for the child instead of up to 512), the
rest of them copied into anonymous memory (anon_text: fork() copies the
page-table entries of anonymous mappings, not those of file mappings, so
the child starts with them mapped instead of faulting them in), and
BOT_<TYPE>_FORK_WARMUP=1 (or a JSON payload) runs main() once in the
server before the first fork, so that what the bot sets up lazily is
shared rather than built again in every child.

Pool mode: main() runs in this process, so module-level state persists
from one job to the next (the worker recycles the process after
BOT_<TYPE>_MAX_JOBS jobs); os.environ is restored after each job.

A job whose env has TMPDIR (sandboxed: a directory of its own, docs/bots.md)
has tempfile.tempdir reset, in either mode, so that tempfile uses it.
"""
import os
import sys

# The after-fork hooks that modules register from here on (random's
# reseed, logging's lock reset, a bot's own): a child forked with libc's
# fork() (fast_fork) runs them itself.  Recorded before anything else is
# imported; the interpreter's start-up registers none.
CHILD_HOOKS = []
_register_at_fork = os.register_at_fork


def _record_at_fork(**hooks):
    if hooks.get("after_in_child") is not None:
        CHILD_HOOKS.append(hooks["after_in_child"])
    _register_at_fork(**hooks)


os.register_at_fork = _record_at_fork

import gc                   # noqa: E402 (after the hook recorder)
import importlib            # noqa: E402
import importlib.util       # noqa: E402
import io                   # noqa: E402
import json                 # noqa: E402
import resource             # noqa: E402
import select               # noqa: E402
import signal               # noqa: E402
import traceback            # noqa: E402

OUT = None          # the protocol's stdout (a binary file)
OUT_FD = -1         # its descriptor
IN_FD = -1          # the protocol's stdin (job frames)


def send(frame):
    OUT.write(encode(frame))
    OUT.flush()


JSON_STR = json.encoder.encode_basestring_ascii     # json.dumps's for a str


def encode(frame):
    """frame as one line of compact JSON, as json.dumps(frame,
    separators=(",", ":")) writes it.  A job's answer (an int status, its
    output and a string job id) is put together here: json.dumps sets up
    an encoder on every call, which costs more than the encoding."""
    if (len(frame) == 3 and type(frame.get("exit")) is int and type(frame.get("output")) is str
            and type(frame.get("job")) is str):
        return ('{"exit":%d,"output":%s,"job":%s}\n' % (
            frame["exit"], JSON_STR(frame["output"]), JSON_STR(frame["job"]))).encode("ascii")
    return json.dumps(frame, separators=(",", ":")).encode("utf-8") + b"\n"


def load(path):
    kind = os.environ.get("BOT_TYPE", "").upper().replace("-", "_")
    for name in os.environ.get("BOT_%s_PRELOAD" % kind, "").split(","):
        if name.strip():
            try:
                importlib.import_module(name.strip())
            except Exception as exc:
                raise SystemExit("BOT_%s_PRELOAD names the module %r, which cannot be imported: "
                                 "%s: %s" % (kind, name.strip(), type(exc).__name__, exc))
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec = importlib.util.spec_from_file_location("bot", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bot"] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "main", None)):
        raise SystemExit("%s has no main() function" % path)
    return module


def job_stdin(data):
    """A text stream over bytes, like a spawned bot's stdin (same
    encoding, error handler and newline translation, and a .buffer for
    binary reads)."""
    like = sys.__stdout__
    return io.TextIOWrapper(io.BytesIO(data), encoding=like.encoding if like else "utf-8",
                            errors=like.errors if like else "strict", write_through=True)


STDOUT = None       # a job's sys.stdout: a text stream over fd 1


def stdout_stream():
    """The text stream over fd 1 that a job's sys.stdout is, like a
    spawned bot's on a pipe (the same encoding and error handler,
    buffered, a .buffer).  Built once in the server, not in each child:
    the objects a child builds are pages it faults in."""
    global STDOUT
    if STDOUT is None or STDOUT.closed:
        like = sys.__stdout__
        STDOUT = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                  encoding=like.encoding if like else "utf-8",
                                  errors=like.errors if like else "strict")
    return STDOUT


def job_stdout():
    """fd 1 for one job: a fresh anonymous file, so that what the job's
    subprocesses write on their stdout is the job's output, in order with
    its own, as a spawned bot's is.  Returns (sys.stdout for the job, a
    descriptor of the file, to read the output back)."""
    try:
        fd = os.memfd_create("job-stdout", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        import tempfile
        with tempfile.TemporaryFile() as f:
            fd = os.dup(f.fileno())
    flush_import_stdout()               # what was written between jobs: stderr's
    os.dup2(fd, 1)
    return stdout_stream(), fd


def flush_import_stdout():
    """Write out what waits in the buffer of sys.__stdout__ (over fd 1 too)
    to where fd 1 points now.  A bot that kept the sys.stdout of its
    import (`from sys import stdout` at its top: the server's, not a
    job's) writes into that buffer: flushed when fd 1 changes hands, its
    text goes where it would have gone at once, never into a later job's
    output."""
    try:
        if sys.__stdout__ is not None:
            sys.__stdout__.flush()
    except (OSError, ValueError):
        pass


def read_all(fd):
    """What the job wrote on fd 1: the whole file."""
    size = os.lseek(fd, 0, os.SEEK_END)
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def fresh_tempdir(job):
    """A job that has a TMPDIR of its own (a sandboxed one: the worker
    gives each job its own directory, and removes it after) gets it from
    tempfile too, which keeps the first directory it found (an earlier
    job's, gone by now) in tempfile.tempdir."""
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None and "TMPDIR" in (job.get("env") or {}):
        tempfile.tempdir = None


def run_main(module, job):
    """Run one job in this process: (exit status, its stdout as bytes).
    A main() that wrote nothing on stdout and returned a value other than
    None has that value, as JSON, for its stdout (its result)."""
    global STDOUT
    fresh_tempdir(job)
    sys.stdin = job_stdin(json.dumps(job.get("payload")).encode("utf-8"))
    captured, capture_fd = job_stdout()
    sys.stdout = captured
    code = 0
    returned = None
    try:
        returned = module.main()
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
        flush_import_stdout()           # most likely written before the job's own
        try:
            captured.flush()
        except (OSError, ValueError):
            STDOUT = None               # closed or broken by the bot: a new one next
        sys.stdout = sys.__stdout__
        sys.stdin = sys.__stdin__
        output = read_all(capture_fd)
        os.dup2(2, 1)                   # fd 1 between jobs: stderr
        os.close(capture_fd)
    if code == 0 and returned is not None and not output.strip():
        try:
            output = json.dumps(returned, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            sys.stderr.write("forkserver: main() returned a value that is not JSON (%s) and "
                             "wrote nothing on stdout\n" % exc)
    sys.stderr.flush()
    return code, output


def answer_frame(code, output, job_id):
    """The answer for a job that wrote output (bytes) and ended with code,
    naming the job (job_id: its frame's "job") so that the worker never
    takes it for another's.  Output that is not UTF-8 cannot travel as a
    JSON string: the job fails with bad_output, as a spawned bot's would."""
    try:
        answer = {"exit": code, "output": output.decode("utf-8")}
    except UnicodeDecodeError as exc:
        answer = {"exit": code, "output": "",
                  "badOutput": "the bot's stdout is not UTF-8 (byte 0x%02x at offset %d)"
                               % (output[exc.start], exc.start)}
    return with_job(answer, job_id)


def with_job(answer, job_id):
    """answer with the job it is for, when the job frame named one."""
    if job_id is not None:
        answer["job"] = job_id
    return answer


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


def find_libc():
    """libc's prctl and fork, looked up once in the server (importing
    ctypes in every child would cost more than the fork).  fork is called
    holding the interpreter lock (PyDLL)."""
    try:
        import ctypes
        return ctypes.CDLL(None).prctl, ctypes.PyDLL(None, use_errno=True).fork
    except (OSError, AttributeError):
        return None, None


PRCTL = None
LIBC_FORK = None        # None: os.fork


def single_threaded():
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def fast_fork():
    """fork(), for a server that has one thread.  os.fork() runs the
    interpreter's after-fork work in the child: a thread clean-up with
    nothing to do in a process of one thread, the hooks, and
    (PyOS_AfterFork_Child) the reset of the runtime's locks, none of them
    held by a server that forks from its only thread outside any import.
    It writes to ~170 pages of the shared interpreter, and each costs
    the child a copy-on-write fault (20-50 us on a VM: 4-7 ms per job).
    libc's fork() skips it; the child then runs the recorded
    after_in_child hooks but threading's (random reseeds, so children
    draw different numbers)."""
    if LIBC_FORK is None:
        return os.fork()
    pid = LIBC_FORK()
    if pid < 0:
        import ctypes
        raise OSError(ctypes.get_errno(), "fork failed")
    if pid == 0:
        for hook in CHILD_HOOKS:
            if getattr(hook, "__module__", None) == "threading":
                continue
            hook()
    return pid


HUGE = 2 << 20          # a transparent huge page (x86-64)


HUGE_TEXT_WINDOWS = 8   # at most 16 MiB copied: the interpreter's first


def file_mappings():
    """The read-only private mappings of files in /proc/self/maps, in
    address order: [(path, start, end, offset, executable)]."""
    out = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split(None, 5)
            if len(parts) < 6 or parts[1] not in ("r--p", "r-xp") or not parts[5].startswith("/"):
                continue
            start, end = (int(x, 16) for x in parts[0].split("-"))
            out.append((parts[5].rstrip("\n"), start, end, int(parts[2], 16), parts[1] == "r-xp"))
    return out


def huge_windows():
    """The 2 MiB-aligned windows of the address space that lie wholly in
    read-only private mappings of one program file (the interpreter or a
    shared library: a file with code mapped; a data file mapped read-only
    is left alone), the interpreter's first, at most HUGE_TEXT_WINDOWS:
    [(start, executable)]."""
    runs = []                   # [path, start, end, [(start, end, executable)]]
    code = set()                # files with an executable mapping
    for path, start, end, _, executable in file_mappings():
        piece = (start, end, executable)
        if executable:
            code.add(path)
        run = runs[-1] if runs else None
        if run and run[0] == path and run[2] == start:
            run[2] = end
            run[3].append(piece)
        else:
            runs.append([path, start, end, [piece]])
    try:
        interpreter = os.path.realpath("/proc/self/exe")
    except OSError:
        interpreter = None
    runs.sort(key=lambda run: run[0] != interpreter)
    windows = []
    for path, start, end, pieces in runs:
        if path not in code:
            continue
        window = (start + HUGE - 1) & ~(HUGE - 1)
        while window + HUGE <= end and len(windows) < HUGE_TEXT_WINDOWS:
            executable = any(s < window + HUGE and e > window and x for s, e, x in pieces)
            windows.append((window, executable))
            window += HUGE
    return windows


def anon_huge_kb(address):
    """AnonHugePages of the mapping that holds address, in kB."""
    inside = False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                start, end = (int(x, 16) for x in head.split("-"))
                inside = start <= address < end
            elif inside and head == "AnonHugePages:":
                return int(line.split()[1])
    return 0


def huge_text():
    """Put the server's read-only code and constants on transparent huge
    pages, where whole 2 MiB windows of them are aligned.  A child reads a
    few hundred pages of the interpreter's and the libraries' code per job,
    and on a VM whose page tables are shadowed each 4 KiB page a process
    touches for the first time costs it a page-table fill (15-20 us);
    fork() shares a huge page with the child as one entry.  Each window is
    copied into an anonymous huge page and moved over the file mapping in
    one mremap() (the bytes are the same; nothing writes them).  A window
    that does not get a huge page is left as it is.  Returns how many
    were moved."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    mmap_, munmap, madvise, mprotect, mremap = libc.mmap, libc.munmap, libc.madvise, libc.mprotect, libc.mremap
    mmap_.restype = mremap.restype = ctypes.c_void_p
    mmap_.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
    madvise.argtypes = mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    PROT_READ, PROT_WRITE, PROT_EXEC = 1, 2, 4
    MAP_PRIVATE_ANON = 0x02 | 0x20
    MADV_HUGEPAGE, MADV_COLLAPSE = 14, 25
    MREMAP_MAYMOVE_FIXED = 1 | 2
    failed = ctypes.c_void_p(-1).value
    moved = 0
    for window, executable in huge_windows():
        raw = mmap_(None, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE_ANON, -1, 0)
        if raw in (None, failed):
            break
        new = (raw + HUGE - 1) & ~(HUGE - 1)
        if new > raw:
            munmap(raw, new - raw)
        if raw + 2 * HUGE > new + HUGE:
            munmap(new + HUGE, raw + 2 * HUGE - new - HUGE)
        madvise(new, HUGE, MADV_HUGEPAGE)
        ctypes.memmove(new, window, HUGE)
        if anon_huge_kb(new) < HUGE >> 10:
            madvise(new, HUGE, MADV_COLLAPSE)
        if (anon_huge_kb(new) < HUGE >> 10
                or mprotect(new, HUGE, PROT_READ | (PROT_EXEC if executable else 0)) != 0
                or mremap(new, HUGE, HUGE, MREMAP_MAYMOVE_FIXED, window) != window):
            munmap(new, HUGE)
            continue
        moved += 1
    return moved


def code_files():
    """The files with code mapped: the interpreter, the shared libraries
    and the extension modules loaded (taken before huge_text moves some
    of their code)."""
    return {path for path, _, _, _, executable in file_mappings() if executable}


def text_mappings(code):
    """The read-only private mappings of the files in code left in the
    address space (what huge_text did not move): every r-x and r-- piece
    of the interpreter, the shared libraries and the extension modules
    loaded, each within its file's end; a file with no code mapped (a
    data file a bot maps), writable mappings and the kernel's [vdso] and
    [vvar] are left alone.  [(start, end, protection)]."""
    out, sizes = [], {}
    for path, start, end, offset, executable in file_mappings():
        prot = 1 | (4 if executable else 0)         # PROT_READ, PROT_EXEC
        if path not in code:
            continue
        if path not in sizes:
            try:
                sizes[path] = os.stat(path).st_size
            except OSError:
                sizes[path] = 0         # deleted or replaced since: leave it
        # Pages past the file's end would raise SIGBUS when read.
        if offset + (end - start) <= (sizes[path] + 4095) & ~4095:
            out.append((start, end, prot))
    return out


def anon_text(code):
    """Copy the rest of the server's code and constants (what huge_text
    left on 4 KiB pages of the files) into anonymous memory, in place.
    fork() copies no page-table entries of a file mapping that has no
    anonymous page (the child's faults fill them), so each page of code
    or constants a child reads is a page fault, and its page-table write
    lands in tables already in use (on a VM that shadows them, a trap to
    the hypervisor).  The entries of an anonymous mapping are copied at
    fork(), into the child's tables before they are in use, and a
    read-only one is not write-protected in the server: the child starts
    with all of its code and constants mapped.  Each mapping is copied
    into fresh anonymous memory, given its protection back and moved over
    the original with one mremap() (the same bytes; nothing writes them).
    Returns (mappings moved, bytes)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    mmap_, munmap, mprotect, mremap = libc.mmap, libc.munmap, libc.mprotect, libc.mremap
    mmap_.restype = mremap.restype = ctypes.c_void_p
    mmap_.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
    mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    memmove = ctypes.memmove
    PROT_READ_WRITE, MAP_PRIVATE_ANON, MREMAP_MAYMOVE_FIXED = 1 | 2, 0x02 | 0x20, 1 | 2
    failed = ctypes.c_void_p(-1).value
    moved = size = 0
    for start, end, prot in text_mappings(code):
        length = end - start
        new = mmap_(None, length, PROT_READ_WRITE, MAP_PRIVATE_ANON, -1, 0)
        if new in (None, failed):
            break
        memmove(new, start, length)
        if mprotect(new, length, prot) != 0 or mremap(new, length, length, MREMAP_MAYMOVE_FIXED, start) != start:
            munmap(new, length)
            continue
        moved += 1
        size += length
    return moved, size


def read_line(fd):
    """Bytes from fd up to and with the first newline (b"" at EOF before
    any; what came, without newline, at EOF after some)."""
    chunk = b""
    while not chunk:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        except BlockingIOError:
            return b""                  # non-blocking fd: nothing (more) there
        if not chunk or chunk.endswith(b"\n"):
            return chunk                # the common case: all of it at once
    chunks = [chunk]
    while True:
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        except BlockingIOError:
            chunk = b""
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            return b"".join(chunks)


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fork_spare(module, parent):
    """Fork the next child: it waits for its job on our stdin.  Returns
    (pid, the read end of its notice pipe)."""
    notice_r, notice_w = os.pipe()
    pid = fast_fork()
    if pid == 0:
        os.close(notice_r)
        child_main(module, parent, notice_w)
    os.close(notice_w)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    return pid, notice_r


def child_main(module, parent, notice_w):
    """A spare child: takes the next job frame from stdin, says so on its
    notice pipe ("T": the server forks the next spare), names itself to
    the worker, runs the job and hands its answer frame to the server on
    the notice pipe.  Every page it writes costs a copy-on-write fault:
    no collection (the job's garbage goes with the process), nothing set
    up that the server could set up once before forking."""
    gc.disable()
    code = 1
    answer = None
    job_id = None
    try:
        os.setpgid(0, 0)
        if PRCTL is not None:
            PRCTL(1, signal.SIGKILL)        # PR_SET_PDEATHSIG: go with the server
        if os.getppid() != parent:
            os._exit(1)
        line = read_line(IN_FD)
        if not line.endswith(b"\n"):
            os._exit(0)                 # end of input: the server exits too
        os.write(notice_w, b"T")
        write_all(OUT_FD, b'{"started":%d}\n' % os.getpid())
        # The job reaches the worker only through its answer, on the notice
        # pipe: the protocol's pipes are not its to read or write.
        os.close(IN_FD)
        os.close(OUT_FD)
        job = json.loads(line)
        job_id = job.get("job")
        apply_limits(job.get("limits") or {})
        os.environ.update(job.get("env") or {})
        code, output = run_main(module, job)
        answer = answer_frame(code, output, job_id)
    except BaseException:
        traceback.print_exc()
        answer = with_job({"exit": code}, job_id)
    finally:
        sys.stderr.flush()
        try:
            write_all(notice_w, encode(answer))
        except BaseException:
            pass                        # no answer: the server reports the exit status
        os._exit(code)


def wait_status(pid):
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except InterruptedError:
            continue


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def own_cpu_ms(pid):
    """The CPU time of its own (utime + stime: what RLIMIT_CPU counts,
    not its reaped children's) that the child pid used, in ms: readable
    until it is reaped.  None if its /proc entry does not read."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 // CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def reap_died(pid):
    """Reap the job's child that died without an answer: its wait status
    and the CPU time of its own it used (ms), from its /proc entry before
    the reap, else from wait4's rusage (which adds its reaped children's)."""
    cpu_ms = own_cpu_ms(pid)
    while True:
        try:
            _, status, usage = os.wait4(pid, 0)
            break
        except InterruptedError:
            continue
    if cpu_ms is None:
        cpu_ms = int((usage.ru_utime + usage.ru_stime) * 1000)
    return status, cpu_ms


def wait_answer(pid, notice):
    """Wait until the running child's answer is there or the child is
    gone.  End of file on the notice pipe is not enough: processes the job
    forked (os.fork) hold its write end, and a child that died without an
    answer would leave the server waiting for them.  A pidfd says when the
    child itself exited; then whatever it wrote is in the pipe, and the
    pipe is read without blocking.  Without pidfds (a kernel before 5.3,
    Python before 3.9) the child's exit is polled for, unreaped, every
    POLL_EXIT_S while the pipe stays empty."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        poll_exit(pid, notice)
        return
    try:
        while True:
            try:
                ready = select.select([notice, pidfd], [], [])[0]
                break
            except InterruptedError:
                continue
        if notice not in ready:
            os.set_blocking(notice, False)
    finally:
        os.close(pidfd)


POLL_EXIT_S = 0.05


def poll_exit(pid, notice):
    """wait_answer without a pidfd: until the notice pipe has something
    (the answer, or end of file) or the child exited (waitid with WNOWAIT:
    the server reaps it later, as usual)."""
    while True:
        try:
            if select.select([notice], [], [], POLL_EXIT_S)[0]:
                return
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                os.set_blocking(notice, False)
                return
        except InterruptedError:
            continue
        except ChildProcessError:
            return


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass


PR_SET_CHILD_SUBREAPER = 36
SUBREAPER = False       # set: orphans of a job are reparented to the server


def children(pid=None):
    """The child processes of pid (default: the server), which has one
    thread: its task's list (empty for a process gone)."""
    pid = pid or os.getpid()
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid), "rb") as f:
            return [int(child) for child in f.read().split()]
    except OSError:
        return []


def left_processes(running, spare):
    """Whether the job that ran in `running` (answered: it runs no more
    code) may have left processes: it has children, or the server has
    others than the spare (reparented orphans).  Read in that order, a
    child that exits in between hands its children to the server first."""
    if children(running):
        return True
    return any(pid != spare for pid in children())


def kill_orphans(spare):
    """Processes of the job that left its process group (setsid,
    start_new_session=True, a daemon's double fork) and lost their parent
    were reparented to the server, a child subreaper: kill and reap them,
    and whatever they leave in turn, until the spare is its only child.
    Run once the job's child is reaped: its orphans are the server's by
    then."""
    if not SUBREAPER:
        return
    while True:
        orphans = [pid for pid in children() if pid != spare]
        if not orphans:
            return
        for pid in orphans:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for pid in orphans:
            try:
                wait_status(pid)
            except ChildProcessError:
                pass


def fork_loop(module):
    """The fork server: one spare child at a time reads stdin; when it
    takes a job, the next spare is forked, and the running child's answer
    is passed on (or, for a child that died without one, its exit
    status).  Nothing else per job runs in the server: every page it
    writes while a child shares it costs a copy-on-write fault."""
    global SUBREAPER
    parent = os.getpid()
    if PRCTL is not None:
        SUBREAPER = PRCTL(PR_SET_CHILD_SUBREAPER, 1) == 0
    spare, notice = fork_spare(module, parent)
    while True:
        took = os.read(notice, 1)
        if took != b"T":
            # The spare went without a job: end of input (it exits 0),
            # or it was killed (then fork another).
            os.close(notice)
            status = wait_status(spare)
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                return
            spare, notice = fork_spare(module, parent)
            continue
        running, running_notice = spare, notice
        spare, notice = fork_spare(module, parent)
        wait_answer(running, running_notice)
        answer = read_line(running_notice)
        os.close(running_notice)
        # The job is over (answered, or the child died): whatever it left
        # running in its process group goes too (the group's id cannot be
        # reused while the child is not reaped), and then, the child
        # reaped, what left the group and was reparented to the server:
        # all before the answer, so that the next job starts without them.
        # A job that left nothing (the common case) is answered at once,
        # its child reaped after.
        answered = answer.endswith(b"\n")
        if answered and SUBREAPER and not left_processes(running, spare):
            write_all(OUT_FD, answer)
            wait_status(running)
            continue
        kill_group(running)
        if answered and not SUBREAPER:
            write_all(OUT_FD, answer)
            wait_status(running)
            continue
        status, cpu_ms = reap_died(running)
        kill_orphans(spare)
        if answered:
            write_all(OUT_FD, answer)
            continue
        if os.WIFSIGNALED(status):
            # With its CPU time: the worker tells the SIGKILL of its hard
            # CPU limit (a job that ignores SIGXCPU) from a kill from outside.
            send({"signal": os.WTERMSIG(status), "cpuMs": cpu_ms})
        else:
            send({"exit": os.WEXITSTATUS(status)})


ENV_ENCODING = sys.getfilesystemencoding()     # os.environ's, on POSIX


def job_environ(env):
    """Put a job's variables (its frame's "env") in os.environ, as
    os.environ.update(env) does; returns what restore_environ takes to
    put os.environ back: a copy of the mapping of encoded names and
    values under it, as it was (one copy in C: dict(os.environ) would
    decode every name and value through Python code), and the encoded
    names the job set.  Each variable gets what os.environ[name] = value
    does (encode, putenv, store) without os.environ's layers of Python
    calls per variable, which cost more than the rest of a pool job's
    handling here together.  A variable that already has the job's value
    (BOT_TYPE, BOT_WORKER, BOT_PROGRESS_FD: the worker puts them in the
    process's environment too) is left alone: no putenv now, nothing to
    restore after."""
    data = os.environ._data
    saved = data.copy()
    if type(env) is not dict:
        os.environ.update(env or {})    # not a frame's object: as it is
        return saved, ()
    names = []
    for name, value in env.items():
        if type(name) is not str or type(value) is not str:
            os.environ[name] = value    # os.environ's own TypeError
            continue
        key = name.encode(ENV_ENCODING, "surrogateescape")
        value = value.encode(ENV_ENCODING, "surrogateescape")
        if data.get(key) == value:
            continue                    # a name os.environ holds: a valid one
        os.putenv(key, value)           # its ValueError for a bad name
        data[key] = value
        names.append(key)
    return saved, names


def restore_environ(restore):
    """os.environ back to what it was (restore: job_environ's), touching
    only what changed (a clear and a rebuild would call putenv for every
    variable): first the job's variables, then, if the job changed others
    too, the rest."""
    saved, names = restore
    data = os.environ._data
    for key in names:
        value = saved.get(key)
        if value is None:
            if key in data:
                os.unsetenv(key)
                del data[key]
        elif data.get(key) != value:
            os.putenv(key, value)
            data[key] = value
    if data == saved:
        return
    for key in data.keys() - saved.keys():
        os.unsetenv(key)
        del data[key]
    for key, value in saved.items() - data.items():
        os.putenv(key, value)
        data[key] = value


def pool_job(module, job):
    restore = job_environ(job.get("env"))
    try:
        code, output = run_main(module, job)
    finally:
        restore_environ(restore)
    send(answer_frame(code, output, job.get("job")))


def warm_up(module):
    """BOT_<TYPE>_FORK_WARMUP: run main() once in the server before the
    first fork, on the payload it names ("1": {}), so that what the bot
    sets up lazily on its first job (caches, imports inside functions) is
    shared by every child instead of built in each."""
    kind = os.environ.get("BOT_TYPE", "").upper().replace("-", "_")
    text = os.environ.get("BOT_%s_FORK_WARMUP" % kind, "").strip()
    if not text or text == "0":
        return
    try:
        payload = {} if text == "1" else json.loads(text)
    except ValueError as exc:
        raise SystemExit("BOT_%s_FORK_WARMUP must be 0, 1 or a JSON payload: %s" % (kind, exc))
    restore = job_environ({"BOT_JOB_ID": "warmup", "BOT_ATTEMPT": "1"})
    try:
        code, _ = run_main(module, {"payload": payload})
    finally:
        restore_environ(restore)
    sys.stderr.write("forkserver: warm-up run of main() ended with status %d\n" % code)


def main():
    global OUT, OUT_FD, IN_FD, PRCTL, LIBC_FORK
    args = sys.argv[1:]
    options = set()
    while args and args[0] in ("--pool", "--no-huge-text", "--no-anon-text"):
        options.add(args.pop(0))
    pool = "--pool" in options
    if len(args) != 1:
        sys.stderr.write("usage: forkserver.py [--pool] [--no-huge-text] [--no-anon-text] BOT.py\n")
        sys.exit(2)
    # The protocol's pipes move off fd 0 and fd 1 (to descriptors no
    # subprocess inherits): fd 0 is /dev/null, fd 1 a job's capture while
    # it runs (job_stdout) and stderr otherwise.
    IN_FD = os.dup(0)
    OUT_FD = os.dup(1)
    OUT = os.fdopen(OUT_FD, "wb")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    module = load(args[0])
    if pool:
        send({"ready": True, "pid": os.getpid(), "mode": "pool"})
        with open(IN_FD, "rb", closefd=False) as frames:
            for line in frames:
                if not line.strip():
                    continue
                try:
                    job = json.loads(line)
                except ValueError as exc:
                    sys.stderr.write("forkserver: a frame that is not JSON: %s\n" % exc)
                    sys.exit(2)
                pool_job(module, job)
        return
    warm_up(module)
    PRCTL, LIBC_FORK = find_libc()
    if not single_threaded():
        LIBC_FORK = None            # other threads: the full os.fork()
    if LIBC_FORK is not None and "--no-huge-text" not in options:
        # Only with one thread: no other thread runs code while it moves.
        code = code_files()
        try:
            huge_text()
        except (OSError, ValueError, AttributeError) as exc:
            sys.stderr.write("forkserver: code left on 4 KiB pages: %s\n" % exc)
        if "--no-anon-text" not in options:
            try:
                anon_text(code)
            except (OSError, ValueError, AttributeError) as exc:
                sys.stderr.write("forkserver: code left in file mappings: %s\n" % exc)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # What each child would otherwise set up itself: default signal
    # dispositions (a job is stopped with SIGTERM/SIGINT).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    stdout_stream()
    # What the bot printed while it loaded goes out once, from here, and
    # not from each child that would inherit it in the buffer.
    flush_import_stdout()
    gc.collect()
    gc.freeze()
    send({"ready": True, "pid": os.getpid(), "mode": "fork"})
    fork_loop(module)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""syscalls.py - a bot that tries the system calls a bot's filter refuses,
for the system-call filter tests (BOT_<TYPE>_SECCOMP).

Payload {"abi32": true}: only getpid and unshare(CLONE_NEWUSER) through the
32-bit ABI (int 0x80): {"getpid32": N, "unshare32": N}, what the kernel
answered (-1: EPERM).  Otherwise writes {"unshare": R, "keyctl": R, "bpf": R,
"io_uring_setup": R, "perf_event_open": R, "userfaultfd": R, "kcmp": R,
"unshare_fs": R, "vsock": R, "thread": R, "subprocess": R, "pid": N} where R
is "ok" or the errno's name (EPERM, ENOSYS, ...): unshare(CLONE_NEWUSER) is
the call a process without the filter can make (a control), the others are
refused with the filter whatever the kernel would otherwise say;
unshare(CLONE_FS), "thread" and "subprocess" (a thread started and joined,
/bin/true run) must work with it, and an AF_VSOCK socket answers
EAFNOSUPPORT.  With a main() it also runs under forkserver.py (pool and
fork modes), x86-64 system call numbers.
"""
import ctypes
import errno
import json
import os
import socket
import subprocess
import sys
import threading

LIBC = ctypes.CDLL(None, use_errno=True)
LIBC.syscall.restype = ctypes.c_long
CLONE_NEWUSER = 0x10000000
NR = {"kcmp": 312, "keyctl": 250, "perf_event_open": 298, "bpf": 321, "userfaultfd": 323, "io_uring_setup": 425}


def result(rc):
    if rc >= 0:
        return "ok"
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))


def abi32(number, arg=0):
    """A system call through the 32-bit ABI (int 0x80) with one argument:
    machine code in an executable page, called through ctypes.  Returns
    what the kernel put in eax (a negative errno on failure)."""
    import mmap
    code = bytes([0x53,                                     # push rbx
                  0xb8]) + number.to_bytes(4, "little") + bytes([   # mov eax, number
                  0xbb]) + arg.to_bytes(4, "little") + bytes([      # mov ebx, arg
                  0xcd, 0x80,                               # int 0x80
                  0x5b,                                     # pop rbx
                  0xc3])                                    # ret
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    return ctypes.CFUNCTYPE(ctypes.c_int)(address)()


def main():
    payload = json.loads(sys.stdin.read() or "{}")
    if payload.get("abi32"):
        # i386 getpid is 20, unshare 310.
        out = {"getpid32": abi32(20), "unshare32": abi32(310, CLONE_NEWUSER)}
        sys.stdout.write(json.dumps(out) + "\n")
        return
    out = {"pid": os.getpid()}
    # In a child of ours: unshare changes the caller, which in pool mode is
    # the warm process itself.
    pid = os.fork()
    if pid == 0:
        rc = LIBC.unshare(CLONE_NEWUSER)
        os._exit(0 if rc == 0 else min(ctypes.get_errno(), 255))
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    out["unshare"] = "ok" if code == 0 else errno.errorcode.get(code, str(code))
    # keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_PROCESS_KEYRING, 1)
    out["keyctl"] = result(LIBC.syscall(NR["keyctl"], 0, ctypes.c_long(-2), 1))
    out["bpf"] = result(LIBC.syscall(NR["bpf"], 0, None, 0))
    params = ctypes.create_string_buffer(120)
    rc = LIBC.syscall(NR["io_uring_setup"], 1, params)
    out["io_uring_setup"] = result(rc)
    if rc >= 0:
        os.close(rc)
    # kcmp(pid, pid, KCMP_FILE, 0, 0): this process's fd 0 against itself
    out["kcmp"] = result(LIBC.syscall(NR["kcmp"], os.getpid(), os.getpid(), 0, 0, 0))
    # unshare without a namespace flag (CLONE_FS): allowed
    out["unshare_fs"] = result(LIBC.unshare(0x200))
    try:
        socket.socket(40, socket.SOCK_STREAM).close()       # AF_VSOCK
        out["vsock"] = "ok"
    except OSError as e:
        out["vsock"] = errno.errorcode.get(e.errno, str(e.errno))
    attr = ctypes.create_string_buffer(128)
    out["perf_event_open"] = result(LIBC.syscall(NR["perf_event_open"], attr, 0, -1, -1, 0))
    rc = LIBC.syscall(NR["userfaultfd"], 0)
    out["userfaultfd"] = result(rc)
    if rc >= 0:
        os.close(rc)
    box = []
    t = threading.Thread(target=lambda: box.append(1))
    t.start()
    t.join()
    out["thread"] = "ok" if box == [1] else "failed"
    try:
        out["subprocess"] = "ok" if subprocess.run(["/bin/true"]).returncode == 0 else "failed"
    except OSError as e:
        out["subprocess"] = "error: %s" % e
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()

/*  bm_seccomp.h - the system calls a bot may not make.

    A seccomp filter, built once per worker with libseccomp, that answers
    EPERM to the calls a bot has no business making and that widen the
    kernel's attack surface: new namespaces and mounts (unshare and clone
    with a CLONE_NEW* flag, setns, mount and the new mount API, pivot_root,
    chroot; clone3 answers ENOSYS so that libc falls back to clone, whose
    flags the filter can read), the kernel keyring, bpf, perf_event_open,
    userfaultfd, io_uring, fanotify, open_by_handle_at, kcmp, pidfd_getfd,
    kernel modules, kexec, reboot, swap, the clock, accounting, quotas, the
    kernel log, ioperm/iopl, modify_ldt, and the TIOCSTI and TIOCLINUX
    ioctls (pushing input into a terminal); vsock sockets (which reach the
    hypervisor's host past a network namespace) answer EAFNOSUPPORT.  Every
    other call is allowed.  On x86-64 the same rules hold for 32-bit and x32
    programs (i386's socketcall, whose arguments the filter cannot read,
    answers ENOSYS); a call of any other ABI kills the process.

    It applies in either of two ways, both between fork and exec (only
    async-signal-safe calls):
        a bwrap sandbox    bm_seccomp_child_fd: the program on a descriptor
                           of its own, for bwrap's --seccomp FD, which loads
                           it for the bot after it has set up the sandbox
                           (bwrap itself needs unshare and mount)
        no sandbox         bm_seccomp_child_load: no_new_privs, then the
                           filter, on the bot process itself

    BOT_<TYPE>_SECCOMP (0 or 1; default 1 under BOT_<TYPE>_SANDBOX=bwrap,
    0 without) turns it on or off per bot type.  */
#ifndef BM_SECCOMP_H
#define BM_SECCOMP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct _bm_seccomp_t bm_seccomp_t;

//  The descriptor bwrap reads the program from (--seccomp 4): the first
//  after a bot's stdin, stdout, stderr and progress.
#define BM_SECCOMP_BWRAP_FD     4

//  The filter, compiled.  NULL with the reason in error (libseccomp could
//  not build it, no memfd).
bm_seccomp_t *bm_seccomp_new (char *error, size_t error_size);
void bm_seccomp_destroy (bm_seccomp_t **self_p);

//  The worker's one filter, built at its first use and kept until exit.
//  NULL with the reason in error.
const bm_seccomp_t *bm_seccomp_shared (char *error, size_t error_size);

//  In a child between fork and exec: a descriptor at target (not
//  close-on-exec) reading the compiled program from its start, for
//  bwrap --seccomp.  Returns 0 or -1 (errno set).
int bm_seccomp_child_fd (const bm_seccomp_t *self, int target);

//  In a child between fork and exec: no_new_privs and the filter on this
//  process (and what it execs).  Returns 0 or -1 (errno set).
int bm_seccomp_child_load (const bm_seccomp_t *self);

//  The calls refused, for the worker's log: "unshare, clone with ...".
const char *bm_seccomp_refused (void);

//  The compiled program's instructions.
unsigned bm_seccomp_size (const bm_seccomp_t *self);

//  The calls of the list that this libseccomp cannot name, and so are not
//  refused (comma-separated; "" when none).
const char *bm_seccomp_skipped (const bm_seccomp_t *self);

//  Read BOT_<TYPE>_SECCOMP into *on (default: sandboxed).  Returns 0, or
//  -1 with the problem in error (not 0 or 1).
int bm_seccomp_from_env (const char *type, bool sandboxed, bool *on, char *error,
                         size_t error_size);

//  Self-test; built only into bm_worker_selftest (BM_SELFTEST).
void bm_seccomp_test (bool verbose);

#endif

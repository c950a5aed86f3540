/*  bm_seccomp.c - the system calls a bot may not make (libseccomp).  */
#include "bm_seccomp.h"
#include "bm_config.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <sys/socket.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct _bm_seccomp_t {
    int memfd;                      //  The compiled program (close-on-exec)
    char path [32];                 //  /proc/self/fd/N of it, for a child
    struct sock_filter *filter;     //  The same program, in memory
    unsigned short count;           //  Its instructions
    char skipped [256];             //  Calls this libseccomp cannot name
};

//  Refused with EPERM, whatever their arguments.  A name this libseccomp
//  does not know is skipped (and said: bm_seccomp_skipped); one it knows
//  on another ABI only (socketcall, on i386) is refused there.
static const char *s_refused [] = {
    //  Namespaces, mounts, the root directory (unshare and clone: by their
    //  flags, below)
    "setns", "mount", "umount", "umount2", "pivot_root", "chroot",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    //  The kernel keyring, eBPF, performance counters, page-fault handling
    //  in user space, io_uring, fanotify: the usual ways into kernel bugs
    "add_key", "request_key", "keyctl", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "fanotify_init",
    //  Files by handle (the host's, past the sandbox's mounts); another
    //  process's descriptors
    "open_by_handle_at", "name_to_handle_at", "kcmp", "pidfd_getfd",
    //  The machine itself
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "ioperm", "iopl",
    "modify_ldt", "lookup_dcookie", "vhangup", "nfsservctl", "sysfs", "ustat",
    NULL
};

//  clone or unshare with any of these flags makes a namespace.
static const unsigned long s_clone_new [] = {
    CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
    CLONE_NEWCGROUP
};

static const char *s_described =
    "unshare, clone with CLONE_NEW* (clone3: ENOSYS), setns, mount and the mount API, "
    "pivot_root, chroot, keyctl/add_key/request_key, bpf, perf_event_open, userfaultfd, "
    "io_uring, fanotify_init, open_by_handle_at, kcmp, pidfd_getfd, modules, kexec, reboot, "
    "swap, the clock, acct, quotactl, syslog, ioperm/iopl, modify_ldt, sysfs, ustat, "
    "vsock sockets (EAFNOSUPPORT; i386 socketcall: ENOSYS), ioctl TIOCSTI/TIOCLINUX";

const char *
bm_seccomp_refused (void)
{
    return s_described;
}

unsigned
bm_seccomp_size (const bm_seccomp_t *self)
{
    return self->count;
}

const char *
bm_seccomp_skipped (const bm_seccomp_t *self)
{
    return self->skipped;
}

//  One rule; false with the reason in error.
static bool
s_rule (scmp_filter_ctx ctx, uint32_t action, int nr, const char *what, unsigned count,
        const struct scmp_arg_cmp *cmp, char *error, size_t error_size)
{
    int rc = seccomp_rule_add_array (ctx, action, nr, count, cmp);
    if (rc)
        snprintf (error, error_size, "seccomp: cannot filter %s: %s", what, strerror (-rc));
    return rc == 0;
}

static int
s_rules (bm_seccomp_t *self, scmp_filter_ctx ctx, char *error, size_t error_size)
{
    size_t skipped = 0;
    for (int i = 0; s_refused [i]; i++) {
        int nr = seccomp_syscall_resolve_name (s_refused [i]);
        if (nr == __NR_SCMP_ERROR) {
            skipped += snprintf (self->skipped + skipped, sizeof self->skipped - skipped, "%s%s",
                                 skipped ? ", " : "", s_refused [i]);
            if (skipped >= sizeof self->skipped)
                skipped = sizeof self->skipped - 1;
            continue;
        }
        if (!s_rule (ctx, SCMP_ACT_ERRNO (EPERM), nr, s_refused [i], 0, NULL, error, error_size))
            return -1;
    }
    for (size_t i = 0; i < sizeof s_clone_new / sizeof s_clone_new [0]; i++) {
        struct scmp_arg_cmp flag = SCMP_A0 (SCMP_CMP_MASKED_EQ, s_clone_new [i], s_clone_new [i]);
        if (!s_rule (ctx, SCMP_ACT_ERRNO (EPERM), SCMP_SYS (clone), "clone's flags", 1, &flag,
                     error, error_size)
        ||  !s_rule (ctx, SCMP_ACT_ERRNO (EPERM), SCMP_SYS (unshare), "unshare's flags", 1, &flag,
                     error, error_size))
            return -1;
    }
    //  clone3's flags are in memory, out of a filter's reach: ENOSYS makes
    //  glibc fall back to clone.
    int clone3 = seccomp_syscall_resolve_name ("clone3");
    if (clone3 != __NR_SCMP_ERROR
    &&  !s_rule (ctx, SCMP_ACT_ERRNO (ENOSYS), clone3, "clone3", 0, NULL, error, error_size))
        return -1;
    //  vsock reaches the hypervisor's host past the sandbox's network
    //  namespace: refused as by a kernel without it.  i386's socketcall
    //  carries its arguments in memory, where the filter cannot see the
    //  family: ENOSYS, as for a kernel without it (glibc calls socket and
    //  the rest directly).
    //  (Spelt out: SCMP_A0 with one datum leaves datum_b to the compiler.)
    struct scmp_arg_cmp vsock = { .arg = 0, .op = SCMP_CMP_EQ, .datum_a = AF_VSOCK, .datum_b = 0 };
    if (!s_rule (ctx, SCMP_ACT_ERRNO (EAFNOSUPPORT), SCMP_SYS (socket), "socket", 1, &vsock,
                 error, error_size)
    ||  !s_rule (ctx, SCMP_ACT_ERRNO (EAFNOSUPPORT), SCMP_SYS (socketpair), "socketpair", 1, &vsock,
                 error, error_size))
        return -1;
    int socketcall = seccomp_syscall_resolve_name ("socketcall");
    if (socketcall != __NR_SCMP_ERROR
    &&  !s_rule (ctx, SCMP_ACT_ERRNO (ENOSYS), socketcall, "socketcall", 0, NULL, error, error_size))
        return -1;
    //  The kernel reads an ioctl's request as 32 bits.
    const unsigned long ioctls [] = { TIOCSTI, TIOCLINUX };
    for (size_t i = 0; i < sizeof ioctls / sizeof ioctls [0]; i++) {
        struct scmp_arg_cmp request = SCMP_A1 (SCMP_CMP_MASKED_EQ, 0xffffffffUL, ioctls [i]);
        if (!s_rule (ctx, SCMP_ACT_ERRNO (EPERM), SCMP_SYS (ioctl), "ioctl", 1, &request,
                     error, error_size))
            return -1;
    }
    return 0;
}

bm_seccomp_t *
bm_seccomp_new (char *error, size_t error_size)
{
    scmp_filter_ctx ctx = seccomp_init (SCMP_ACT_ALLOW);
    if (!ctx) {
        snprintf (error, error_size, "seccomp: libseccomp cannot start a filter");
        return NULL;
    }
    bm_seccomp_t *self = (bm_seccomp_t *) calloc (1, sizeof *self);
    assert (self);
    self->memfd = -1;
    //  The same rules for the other ABIs of an x86-64 kernel (32-bit
    //  programs, x32), so that they run as they would unfiltered; a call of
    //  an ABI the filter does not hold kills the process.
    int rc = seccomp_attr_set (ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (!rc && seccomp_arch_native () == SCMP_ARCH_X86_64) {
        rc = seccomp_arch_add (ctx, SCMP_ARCH_X86);
        if (!rc || rc == -EEXIST)
            rc = seccomp_arch_add (ctx, SCMP_ARCH_X32);
        if (rc == -EEXIST)
            rc = 0;
    }
    if (rc) {
        snprintf (error, error_size, "seccomp: cannot set up the filter's ABIs: %s", strerror (-rc));
        goto fail;
    }
    if (s_rules (self, ctx, error, error_size))
        goto fail;
    self->memfd = memfd_create ("botmesh-seccomp", MFD_CLOEXEC);
    if (self->memfd < 0) {
        snprintf (error, error_size, "seccomp: memfd_create: %s", strerror (errno));
        goto fail;
    }
    if ((rc = seccomp_export_bpf (ctx, self->memfd))) {
        snprintf (error, error_size, "seccomp: cannot compile the filter: %s", strerror (-rc));
        goto fail;
    }
    off_t size = lseek (self->memfd, 0, SEEK_END);
    if (size <= 0 || size % (off_t) sizeof (struct sock_filter)
    ||  size / (off_t) sizeof (struct sock_filter) > BPF_MAXINSNS) {
        snprintf (error, error_size, "seccomp: the compiled filter has a bad size (%lld bytes)",
                  (long long) size);
        goto fail;
    }
    self->filter = (struct sock_filter *) malloc ((size_t) size);
    assert (self->filter);
    if (pread (self->memfd, self->filter, (size_t) size, 0) != (ssize_t) size) {
        snprintf (error, error_size, "seccomp: cannot read the compiled filter back");
        goto fail;
    }
    self->count = (unsigned short) (size / (off_t) sizeof (struct sock_filter));
    snprintf (self->path, sizeof self->path, "/proc/self/fd/%d", self->memfd);
    seccomp_release (ctx);
    return self;
fail:
    seccomp_release (ctx);
    bm_seccomp_destroy (&self);
    return NULL;
}

void
bm_seccomp_destroy (bm_seccomp_t **self_p)
{
    bm_seccomp_t *self = *self_p;
    if (!self)
        return;
    if (self->memfd >= 0)
        close (self->memfd);
    free (self->filter);
    free (self);
    *self_p = NULL;
}

static bm_seccomp_t *s_shared;

static void
s_shared_destroy (void)
{
    bm_seccomp_destroy (&s_shared);
}

const bm_seccomp_t *
bm_seccomp_shared (char *error, size_t error_size)
{
    if (!s_shared) {
        s_shared = bm_seccomp_new (error, error_size);
        if (s_shared)
            atexit (s_shared_destroy);
    }
    return s_shared;
}

int
bm_seccomp_child_fd (const bm_seccomp_t *self, int target)
{
    //  A new open file description, so that its offset is the start
    //  whatever earlier readers of the memfd did.
    int fd = open (self->path, O_RDONLY);
    if (fd < 0)
        return -1;
    if (fd != target) {
        int rc = dup2 (fd, target);
        int saved = errno;
        close (fd);
        errno = saved;
        if (rc < 0)
            return -1;
    }
    return 0;
}

int
bm_seccomp_child_load (const bm_seccomp_t *self)
{
    struct sock_fprog program = { self->count, self->filter };
    if (prctl (PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
        return -1;
    return prctl (PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program);
}

int
bm_seccomp_from_env (const char *type, bool sandboxed, bool *on, char *error, size_t error_size)
{
    char var [96];
    int length = snprintf (var, sizeof var, "BOT_%s_SECCOMP", type);
    for (int i = 4; i < length && var [i]; i++)
        var [i] = var [i] == '-' ? '_' : (char) toupper ((unsigned char) var [i]);
    //  Read here rather than with bm_env_bool, which logs: the caller
    //  logs the one line.
    const char *text = getenv (var);
    if (!text || !*text)
        *on = sandboxed;
    else
    if (bm_parse_bool (text, on)) {
        snprintf (error, error_size, "%s must be 0 or 1 (got '%.40s')", var, text);
        return -1;
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Self-test

#ifdef BM_SELFTEST
//  In a forked child: load the filter, then report each call's errno as
//  one byte per call on fd.
static void
s_probe_child (const bm_seccomp_t *self, int fd)
{
    if (bm_seccomp_child_load (self))
        _exit (1);
    unsigned char said [8];
    errno = 0;
    said [0] = unshare (CLONE_NEWUSER) ? (unsigned char) errno : 0;
    errno = 0;
    said [1] = syscall (SYS_keyctl, 0, 0, 0, 0, 0) < 0 ? (unsigned char) errno : 0;
    errno = 0;
    said [2] = syscall (SYS_clone3, NULL, 0) < 0 ? (unsigned char) errno : 0;
    errno = 0;
    char c = 'x';
    said [3] = ioctl (fd, TIOCSTI, &c) < 0 ? (unsigned char) errno : 0;
    errno = 0;
    said [4] = getppid () > 0 ? 0 : 1;          //  Everything else works
    errno = 0;
    said [5] = unshare (CLONE_FS) ? (unsigned char) errno : 0;     //  No namespace: allowed
    errno = 0;
    int sock = socket (AF_VSOCK, SOCK_STREAM, 0);
    said [6] = sock < 0 ? (unsigned char) errno : 0;
    errno = 0;
    said [7] = syscall (SYS_kcmp, getpid (), getpid (), 0, 0, 0) < 0 ? (unsigned char) errno : 0;
    ssize_t rc = write (fd, said, sizeof said);
    _exit (rc == sizeof said ? 0 : 2);
}
#endif

void
bm_seccomp_test (bool verbose)
{
    printf (" * bm_seccomp: ");
#ifdef BM_SELFTEST
    char error [256] = "";
    bm_seccomp_t *self = bm_seccomp_new (error, sizeof error);
    if (!self)
        fprintf (stderr, "%s\n", error);
    assert (self);
    assert (self->count > 10);
    assert (strstr (bm_seccomp_refused (), "unshare"));

    //  Loaded on a process: the refused calls fail as documented, the rest
    //  work.
    int pipe_fds [2];
    assert (pipe (pipe_fds) == 0);
    pid_t pid = fork ();
    assert (pid >= 0);
    if (pid == 0) {
        close (pipe_fds [0]);
        s_probe_child (self, pipe_fds [1]);
    }
    close (pipe_fds [1]);
    unsigned char said [8] = { 0 };
    assert (read (pipe_fds [0], said, sizeof said) == sizeof said);
    close (pipe_fds [0]);
    int status;
    assert (waitpid (pid, &status, 0) == pid);
    assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);
    if (verbose)
        printf ("(unshare %d, keyctl %d, clone3 %d, TIOCSTI %d) ", said [0], said [1], said [2],
                said [3]);
    assert (said [0] == EPERM);
    assert (said [1] == EPERM);
    assert (said [2] == ENOSYS);
    assert (said [3] == EPERM);
    assert (said [4] == 0);
    assert (said [5] == 0);
    assert (said [6] == EAFNOSUPPORT);
    assert (said [7] == EPERM);
    assert (*bm_seccomp_skipped (self) == 0);       //  This libseccomp names them all

    //  For bwrap: every child gets the whole program on its descriptor,
    //  read from the start, however often it was read before.
    for (int round = 0; round < 2; round++) {
        assert (pipe (pipe_fds) == 0);
        pid = fork ();
        assert (pid >= 0);
        if (pid == 0) {
            close (pipe_fds [0]);
            if (bm_seccomp_child_fd (self, 9))
                _exit (1);
            char buffer [65536];
            ssize_t got = 0, n;
            while ((n = read (9, buffer + got, sizeof buffer - (size_t) got)) > 0)
                got += n;
            int64_t size = got;
            _exit (write (pipe_fds [1], &size, sizeof size) == sizeof size
                   && got == (ssize_t) (self->count * sizeof (struct sock_filter))
                   && memcmp (buffer, self->filter, (size_t) got) == 0 ? 0 : 3);
        }
        close (pipe_fds [1]);
        int64_t size = 0;
        assert (read (pipe_fds [0], &size, sizeof size) == sizeof size);
        close (pipe_fds [0]);
        assert (waitpid (pid, &status, 0) == pid);
        assert (WIFEXITED (status) && WEXITSTATUS (status) == 0);
        assert (size == (int64_t) (self->count * sizeof (struct sock_filter)));
    }

    //  BOT_<TYPE>_SECCOMP: on by default for a sandboxed type only.
    bool on = false;
    unsetenv ("BOT_SELF_TEST_SECCOMP");
    assert (bm_seccomp_from_env ("self-test", true, &on, error, sizeof error) == 0 && on);
    assert (bm_seccomp_from_env ("self-test", false, &on, error, sizeof error) == 0 && !on);
    setenv ("BOT_SELF_TEST_SECCOMP", "1", 1);
    assert (bm_seccomp_from_env ("self-test", false, &on, error, sizeof error) == 0 && on);
    setenv ("BOT_SELF_TEST_SECCOMP", "0", 1);
    assert (bm_seccomp_from_env ("self-test", true, &on, error, sizeof error) == 0 && !on);
    setenv ("BOT_SELF_TEST_SECCOMP", "maybe", 1);
    assert (bm_seccomp_from_env ("self-test", true, &on, error, sizeof error) == -1);
    assert (strstr (error, "BOT_SELF_TEST_SECCOMP must be 0 or 1"));
    unsetenv ("BOT_SELF_TEST_SECCOMP");

    bm_seccomp_destroy (&self);
    assert (!self);
#else
    (void) verbose;
#endif
    printf ("OK\n");
}

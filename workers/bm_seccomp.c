/*  bm_seccomp.c - the system calls a bot may not make (libseccomp).  */
#include "bm_seccomp.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
};

//  Refused with EPERM, whatever their arguments.  A name this libseccomp or
//  architecture does not know is skipped.
static const char *s_refused [] = {
    //  Namespaces, mounts, the root directory
    "unshare", "setns", "mount", "umount", "umount2", "pivot_root", "chroot",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    //  The kernel keyring, eBPF, performance counters, page-fault handling
    //  in user space, io_uring: the usual ways into kernel bugs
    "add_key", "request_key", "keyctl", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    //  Files by handle (the host's, past the sandbox's mounts)
    "open_by_handle_at", "name_to_handle_at",
    //  The machine itself
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd", "syslog",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "ioperm", "iopl",
    "lookup_dcookie", "vhangup", "nfsservctl",
    NULL
};

//  clone with any of these flags makes a namespace.
static const unsigned long s_clone_new [] = {
    CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
    CLONE_NEWCGROUP
};

static const char *s_described =
    "unshare, setns, mount and the mount API, pivot_root, chroot, clone with CLONE_NEW* "
    "(clone3: ENOSYS), keyctl/add_key/request_key, bpf, perf_event_open, userfaultfd, "
    "io_uring, open_by_handle_at, modules, kexec, reboot, swap, the clock, acct, quotactl, "
    "syslog, ioperm/iopl, ioctl TIOCSTI/TIOCLINUX";

const char *
bm_seccomp_refused (void)
{
    return s_described;
}

static int
s_rules (scmp_filter_ctx ctx, char *error, size_t error_size)
{
    int rc;
    for (int i = 0; s_refused [i]; i++) {
        int nr = seccomp_syscall_resolve_name (s_refused [i]);
        if (nr == __NR_SCMP_ERROR)
            continue;
        if ((rc = seccomp_rule_add (ctx, SCMP_ACT_ERRNO (EPERM), nr, 0))) {
            snprintf (error, error_size, "seccomp: cannot refuse %s: %s", s_refused [i],
                      strerror (-rc));
            return -1;
        }
    }
    for (size_t i = 0; i < sizeof s_clone_new / sizeof s_clone_new [0]; i++)
        if ((rc = seccomp_rule_add (ctx, SCMP_ACT_ERRNO (EPERM), SCMP_SYS (clone), 1,
                                    SCMP_A0 (SCMP_CMP_MASKED_EQ, s_clone_new [i], s_clone_new [i])))) {
            snprintf (error, error_size, "seccomp: cannot filter clone's flags: %s", strerror (-rc));
            return -1;
        }
    //  clone3's flags are in memory, out of a filter's reach: ENOSYS makes
    //  glibc fall back to clone.
    int clone3 = seccomp_syscall_resolve_name ("clone3");
    if (clone3 != __NR_SCMP_ERROR
    &&  (rc = seccomp_rule_add (ctx, SCMP_ACT_ERRNO (ENOSYS), clone3, 0))) {
        snprintf (error, error_size, "seccomp: cannot refuse clone3: %s", strerror (-rc));
        return -1;
    }
    //  The kernel reads an ioctl's request as 32 bits.
    const unsigned long ioctls [] = { TIOCSTI, TIOCLINUX };
    for (size_t i = 0; i < sizeof ioctls / sizeof ioctls [0]; i++)
        if ((rc = seccomp_rule_add (ctx, SCMP_ACT_ERRNO (EPERM), SCMP_SYS (ioctl), 1,
                                    SCMP_A1 (SCMP_CMP_MASKED_EQ, 0xffffffffUL, ioctls [i])))) {
            snprintf (error, error_size, "seccomp: cannot filter ioctl: %s", strerror (-rc));
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
    int rc = seccomp_attr_set (ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (rc) {
        snprintf (error, error_size, "seccomp: cannot set the action for other ABIs: %s",
                  strerror (-rc));
        goto fail;
    }
    if (s_rules (ctx, error, error_size))
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
    if (!strcmp (text, "1") || !strcasecmp (text, "true") || !strcasecmp (text, "yes")
    ||  !strcasecmp (text, "on"))
        *on = true;
    else
    if (!strcmp (text, "0") || !strcasecmp (text, "false") || !strcasecmp (text, "no")
    ||  !strcasecmp (text, "off"))
        *on = false;
    else {
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
    unsigned char said [5];
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
    unsigned char said [5] = { 0 };
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

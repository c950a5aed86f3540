/*  bm_launch.c - starting a bot program: fork/exec, what the child sets up
    before exec, reaping, program lookup and command lines.  */
#include "bm_launch.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  In the child, between fork and exec: only async-signal-safe calls.

static void
s_child (const int fds [4], int error_fd, pid_t parent, const bm_limits_run_t *limits,
         char *const argv [], char *const envp [])
{
    //  A session of its own, and so a group of its own (one signal reaches
    //  everything it starts) and no controlling terminal: a bot cannot
    //  open /dev/tty and push input (TIOCSTI) into the terminal of the
    //  shell that started the worker.  The parent leaves the child's group
    //  alone, as setsid fails in a process that already leads one.
    if (setsid () < 0)
        setpgid (0, 0);
    //  If the worker dies (kill -9), the bot goes with it.
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    if (getppid () != parent)
        _exit (127);
    //  Undo what the worker changed: ignored signals stay ignored across
    //  exec, and the signal mask is inherited.
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction old;
        if (sigaction (sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN) {
            struct sigaction dfl;
            memset (&dfl, 0, sizeof dfl);
            dfl.sa_handler = SIG_DFL;
            sigaction (sig, &dfl, NULL);
        }
    }
    sigset_t none;
    sigemptyset (&none);
    sigprocmask (SIG_SETMASK, &none, NULL);
    //  Move our ends out of the way first, so that dup2 never meets an fd
    //  that is already in place (which would keep its close-on-exec flag).
    int high [4];
    for (int i = 0; i < 4; i++) {
        high [i] = fcntl (fds [i], F_DUPFD, 10);
        if (high [i] < 0)
            goto fail;
    }
    for (int i = 0; i < 4; i++)
        if (dup2 (high [i], i) < 0)
            goto fail;
    //  Nothing else of the worker's (sockets, pipes of other bots) leaks
    //  into the bot.
    close_range (4, ~0U, CLOSE_RANGE_CLOEXEC);
    //  Last, so that the fd limit does not get in the way of the above.
    if (limits && bm_limits_run_apply (limits))
        goto fail;
    execve (argv [0], argv, envp);
fail:;
    int error = errno;
    ssize_t rc = write (error_fd, &error, sizeof error);
    (void) rc;
    _exit (127);
}

int
bm_bot_nonblocking (int fd)
{
    int flags = fcntl (fd, F_GETFL);
    return flags < 0 ? -1 : fcntl (fd, F_SETFL, flags | O_NONBLOCK);
}

pid_t
bm_bot_launch (char *const argv [], char *const envp [], const int fds [4],
               const bm_limits_run_t *limits, char *errstr, size_t errstr_size)
{
    int report [2];
    if (pipe2 (report, O_CLOEXEC)) {
        snprintf (errstr, errstr_size, "cannot create pipes: %s", strerror (errno));
        return -1;
    }
    pid_t parent = getpid ();
    pid_t pid = fork ();
    if (pid < 0) {
        snprintf (errstr, errstr_size, "cannot fork: %s", strerror (errno));
        close (report [0]);
        close (report [1]);
        return -1;
    }
    if (pid == 0) {
        close (report [0]);
        s_child (fds, report [1], parent, limits, argv, envp);
    }
    close (report [1]);
    //  The report pipe closes at exec (success), or carries errno first:
    //  when this returns, the child leads its own session and group.
    int error = 0;
    ssize_t n;
    while ((n = read (report [0], &error, sizeof error)) < 0 && errno == EINTR)
        ;
    close (report [0]);
    if (n == sizeof error) {
        while (waitpid (pid, NULL, 0) < 0 && errno == EINTR)
            ;
        snprintf (errstr, errstr_size, "cannot execute %s: %s", argv [0], strerror (error));
        return -1;
    }
    return pid;
}

ssize_t
bm_bot_read (int fd, char *buffer, size_t size)
{
    while (true) {
        ssize_t n = read (fd, buffer, size);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : 0;
    }
}

//  --------------------------------------------------------------------------
//  Children, programs and command lines

pid_t
bm_bot_exited_child (void)
{
    siginfo_t info;
    memset (&info, 0, sizeof info);
    if (waitid (P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0)
        return 0;                       //  ECHILD: no children at all
    return info.si_pid;
}

void
bm_bot_reap_other (pid_t pid)
{
    while (waitpid (pid, NULL, WNOHANG) < 0 && errno == EINTR)
        ;
}

ssize_t
bm_bot_read_file (const char *path, char *text, size_t size)
{
    int fd = open (path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t used = 0;
    while (used + 1 < size) {
        ssize_t n = read (fd, text + used, size - 1 - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;
            close (fd);
            errno = saved;
            return -1;
        }
        if (n == 0)
            break;
        used += (size_t) n;
    }
    close (fd);
    text [used] = 0;
    return (ssize_t) used;
}

ssize_t
bm_bot_reread_file (int *fd, const char *path, char *text, size_t size)
{
    if (*fd < 0)
        *fd = open (path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return -1;
    size_t used = 0;
    while (used + 1 < size) {
        ssize_t n = pread (*fd, text + used, size - 1 - used, (off_t) used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int saved = errno;
            close (*fd);
            *fd = -1;
            errno = saved;
            return -1;
        }
        used += (size_t) n;
        //  A short read is the end: the kernel writes these files whole
        //  (no second call to find the end).
        if (n == 0 || used + 1 < size)
            break;
    }
    text [used] = 0;
    return (ssize_t) used;
}

int
bm_bot_proc_stat (pid_t pid, char *text, size_t size)
{
    char path [64], line [1024];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    if (bm_bot_read_file (path, line, sizeof line) < 0)
        return -1;
    //  "pid (comm) state ppid ...": comm may hold anything, even ") ".
    char *close = strrchr (line, ')');
    if (!close || close [1] != ' ')
        return -1;
    snprintf (text, size, "%s", close + 2);
    return 0;
}

char *
bm_bot_which (const char *program)
{
    if (!program || !*program)
        return NULL;
    if (strchr (program, '/'))
        return strdup (program);
    const char *path = getenv ("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    size_t program_len = strlen (program);
    while (*path) {
        const char *end = strchr (path, ':');
        size_t dir_len = end ? (size_t) (end - path) : strlen (path);
        if (dir_len > 0) {
            char *candidate = (char *) malloc (dir_len + program_len + 2);
            if (!candidate)
                return NULL;
            memcpy (candidate, path, dir_len);
            candidate [dir_len] = '/';
            memcpy (candidate + dir_len + 1, program, program_len + 1);
            struct stat st;
            if (stat (candidate, &st) == 0 && S_ISREG (st.st_mode)
            &&  access (candidate, X_OK) == 0)
                return candidate;
            free (candidate);
        }
        path += dir_len;
        if (*path == ':')
            path++;
    }
    return NULL;
}

char **
bm_bot_split_command (const char *line, char *error, size_t error_size)
{
    size_t len = strlen (line);
    //  At most one word per two characters, plus the NULL.
    char **argv = (char **) calloc (len / 2 + 2, sizeof (char *));
    char *word = (char *) malloc (len + 1);
    if (!argv || !word) {
        snprintf (error, error_size, "out of memory for the command line");
        free (argv);
        free (word);
        return NULL;
    }
    size_t argc = 0;
    const char *p = line;
    while (true) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        size_t size = 0;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            if (*p == '\\') {
                if (p [1])
                    p++;
                word [size++] = *p++;
            }
            else
            if (*p == '\'') {
                const char *close = strchr (p + 1, '\'');
                if (!close) {
                    snprintf (error, error_size, "unterminated ' in command line");
                    goto fail;
                }
                memcpy (word + size, p + 1, close - p - 1);
                size += close - p - 1;
                p = close + 1;
            }
            else
            if (*p == '"') {
                p++;
                while (*p && *p != '"') {
                    if (*p == '\\' && (p [1] == '"' || p [1] == '\\' || p [1] == '$' || p [1] == '`'))
                        p++;
                    word [size++] = *p++;
                }
                if (*p != '"') {
                    snprintf (error, error_size, "unterminated \" in command line");
                    goto fail;
                }
                p++;
            }
            else
                word [size++] = *p++;
        }
        argv [argc] = (char *) malloc (size + 1);
        if (!argv [argc]) {
            snprintf (error, error_size, "out of memory for the command line");
            goto fail;
        }
        memcpy (argv [argc], word, size);
        argv [argc++][size] = 0;
    }
    free (word);
    if (argc == 0) {
        snprintf (error, error_size, "empty command line");
        bm_bot_argv_free (&argv);
        return NULL;
    }
    return argv;
fail:
    free (word);
    bm_bot_argv_free (&argv);
    return NULL;
}

void
bm_bot_argv_free (char ***argv_p)
{
    if (*argv_p) {
        for (char **arg = *argv_p; *arg; arg++)
            free (*arg);
        free (*argv_p);
        *argv_p = NULL;
    }
}

const char *
bm_bot_type_var (char *buffer, size_t size, const char *type, const char *suffix)
{
    int n = snprintf (buffer, size, "BOT_%s%s", type, suffix);
    for (int i = 4; i < n && buffer [i] && i < 4 + (int) strlen (type); i++)
        buffer [i] = buffer [i] == '-' ? '_' : (char) toupper ((unsigned char) buffer [i]);
    return buffer;
}

#ifdef BM_SELFTEST
//  --------------------------------------------------------------------------
//  Self test

void
bm_launch_test (bool verbose)
{
    if (verbose)
        printf (" * bm_launch: ");
    char *path = bm_bot_which ("sh");
    assert (path && path [0] == '/');
    free (path);
    assert (bm_bot_which ("no-such-program-here") == NULL);
    path = bm_bot_which ("./rel/prog");
    assert (strcmp (path, "./rel/prog") == 0);
    free (path);

    char error [128];
    char **words = bm_bot_split_command ("  /usr/bin/python3 -u 'my bot.py' \"a \\\"b\\\"\" c\\ d ''", error, sizeof error);
    assert (words);
    assert (strcmp (words [0], "/usr/bin/python3") == 0);
    assert (strcmp (words [1], "-u") == 0);
    assert (strcmp (words [2], "my bot.py") == 0);
    assert (strcmp (words [3], "a \"b\"") == 0);
    assert (strcmp (words [4], "c d") == 0);
    assert (strcmp (words [5], "") == 0);
    assert (words [6] == NULL);
    bm_bot_argv_free (&words);
    assert (words == NULL);
    assert (bm_bot_split_command ("   ", error, sizeof error) == NULL);
    assert (strstr (error, "empty"));
    assert (bm_bot_split_command ("node 'oops", error, sizeof error) == NULL);
    assert (strstr (error, "unterminated"));
    assert (bm_bot_split_command ("node \"oops", error, sizeof error) == NULL);


    //  A launch: fds 0..3 in place, nothing else of ours open, a session
    //  and group of its own, no controlling terminal; a program that
    //  cannot be executed is refused.
    int out [2];
    assert (pipe (out) == 0);
    int null = open ("/dev/null", O_RDWR);
    assert (null >= 0);
    int fds [4] = { null, out [1], null, null };
    char *argv [] = { (char *) "/bin/sh", (char *) "-c",
                      (char *) "echo $(ls /proc/self/fd | wc -l) $(cut -d' ' -f5-7 /proc/self/stat) $$", NULL };
    char *envp [] = { (char *) "PATH=/usr/bin:/bin", NULL };
    char errstr [256];
    pid_t pid = bm_bot_launch (argv, envp, fds, NULL, errstr, sizeof errstr);
    assert (pid > 0);
    close (out [1]);
    char text [64] = "";
    ssize_t n = read (out [0], text, sizeof text - 1);
    assert (n > 0);
    text [n] = 0;
    int open_fds = 0, pgid = 0, session = 0, tty = -1, self = 0;
    assert (sscanf (text, "%d %d %d %d %d", &open_fds, &pgid, &session, &tty, &self) == 5);
    //  ls sees 0..3 and its own directory fd.
    assert (open_fds == 5);
    assert (pgid == self && pgid == (int) pid);
    assert (session == (int) pid && tty == 0);
    int status;
    assert (waitpid (pid, &status, 0) == pid && WIFEXITED (status) && WEXITSTATUS (status) == 0);
    char *missing [] = { (char *) "/nonexistent/bot", NULL };
    int nulls [4] = { null, null, null, null };
    assert (bm_bot_launch (missing, envp, nulls, NULL, errstr, sizeof errstr) == -1);
    assert (strstr (errstr, "No such file"));
    close (out [0]);
    close (null);
    char stat [256];
    assert (bm_bot_proc_stat (getpid (), stat, sizeof stat) == 0);
    int ppid = 0;
    assert (sscanf (stat, "%*c %d", &ppid) == 1 && ppid == (int) getppid ());
    assert (bm_bot_proc_stat (pid, stat, sizeof stat) == -1);      //  Reaped

    if (verbose)
        printf ("OK\n");
}
#endif

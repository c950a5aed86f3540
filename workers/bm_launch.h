/*  bm_launch.h - starting a bot program, the same way in every mode (a
    spawned bot, a pooled process, a fork server), and the helpers around
    it: reaping children, finding a program in PATH, splitting a command
    line, reading a pipe without blocking.  */
#ifndef BM_LAUNCH_H
#define BM_LAUNCH_H

#include "bm_limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

//  The one way the worker starts a bot program, in every mode (a spawned
//  bot, a pooled process, a fork server): fork, a process group of its
//  own (pgid = pid), SIGKILL when the worker dies, signals back to their
//  defaults, fds [0..3] of the caller as its fds 0..3 and nothing else of
//  ours open, the run's resource limits (limits, NULL for none: see
//  bm_limits.h), then execve.  The caller closes its copies of fds.
//  Returns the pid, or -1 with the reason in errstr (the program could not
//  be executed; the child is reaped already).
pid_t bm_bot_launch (char *const argv [], char *const envp [], const int fds [4],
                     const bm_limits_run_t *limits, char *errstr, size_t errstr_size);

//  The pid of a child of this process that has exited and is not reaped
//  yet (it stays a zombie), or 0 if there is none.
pid_t bm_bot_exited_child (void);

//  Reap a child that is not a bot (an orphan that was reparented to us).
void bm_bot_reap_other (pid_t pid);

//  Read once from a nonblocking fd.  Returns bytes read, 0 at end of file
//  or on an error (the pipe is finished either way), -1 if nothing is there
//  now.
ssize_t bm_bot_read (int fd, char *buffer, size_t size);
//  Make an fd nonblocking.  Returns 0 or -1.
int bm_bot_nonblocking (int fd);

//  The start of a small file (a /proc or cgroup file: read with one
//  open, a read or two and a close, without stdio's buffer), at most
//  size - 1 bytes, NUL-terminated, into text.  Returns its length, or -1
//  if it cannot be opened or read.
ssize_t bm_bot_read_file (const char *path, char *text, size_t size);

//  The same, for a file read again and again (/proc/PID/statm, a cgroup's
//  pids.events): *fd holds it open (close-on-exec) from the first read on
//  (-1: not yet), and each read starts again at its offset 0, which makes
//  the kernel write it anew.  An open and a close cost several times the
//  read itself.  A short read is taken as the end.  A read that fails closes *fd (-1), and the next opens it
//  again.  The caller closes *fd when done.
ssize_t bm_bot_reread_file (int *fd, const char *path, char *text, size_t size);

//  The fields of /proc/PID/stat after the command name ("S 1234 ...":
//  state, ppid, ..., utime and stime 12th and 13th after the state) into
//  text.  Returns 0, or -1 if the process is gone.
int bm_bot_proc_stat (pid_t pid, char *text, size_t size);

//  The path of a program: itself if it holds a '/', else the first match
//  in PATH that is executable.  Caller frees; NULL if none.
char *bm_bot_which (const char *program);

//  Split a command line into words, as a shell would for a simple command
//  without expansions: blanks separate words, 'single' and "double" quotes
//  group, a backslash escapes the next character (inside double quotes,
//  only \" \\ and \$ `).  Returns a NULL-terminated array (free with
//  bm_bot_argv_free), or NULL with a reason in error for an empty line or
//  an unterminated quote.
char **bm_bot_split_command (const char *line, char *error, size_t error_size);
void bm_bot_argv_free (char ***argv_p);

//  The name of a bot type's setting, "BOT_<TYPE><suffix>" (the type upper
//  case, '-' as '_'), into buffer; returns buffer.
const char *bm_bot_type_var (char *buffer, size_t size, const char *type, const char *suffix);

//  Self-test; built only into bm_worker_selftest (BM_SELFTEST).
void bm_launch_test (bool verbose);

#endif

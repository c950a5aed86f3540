/*  bm_bot.h - one bot run: a child process driven from a zloop.

    The bot is a program started with fork/exec in its own process group:

        stdin   the input (the job's payload as JSON), written from the loop
                without blocking, then closed; a bot that never reads it
                does not block anyone
        stdout  captured, up to stdout_max bytes; past that the bot's
                process group is killed and the run is marked overflowed
        stderr  the last stderr_tail bytes are kept (the error message)
        fd 3    the progress channel (bm_progress.h); BOT_PROGRESS_FD=3 is
                set in the bot's environment by the caller

    The owner reaps children: when waitid () reports that this bot's pid
    exited (bm_bot_exited_child), it calls bm_bot_reap, which kills what is
    left of the process group (children the bot forked), reads what is left
    in the pipes, closes them and calls the exit handler.  The owner may
    destroy the bot from inside the exit handler: bm_bot_reap does not touch
    the bot after calling it.  Only pollers are registered on the loop (no
    timers); a bot must not be destroyed from a zloop timer handler while its
    pollers may still be ready in the same loop pass, so destroy it from a
    poller or reader handler (like the one that reaped it), or after the
    loop ended.  */
#ifndef BM_BOT_H
#define BM_BOT_H

#include "bm_launch.h"
#include "bm_limits.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct _bm_bot_t bm_bot_t;

//  The bot ended: its process exited and its output was read.
typedef void (bm_bot_exit_fn) (bm_bot_t *bot, void *arg);
//  The bot reported progress (0..100), or wrote its first line on fd 3
//  that is not valid (BM_PROGRESS_BAD: see bm_bot_progress_bad).
typedef void (bm_bot_progress_fn) (bm_bot_t *bot, int progress, void *arg);

//  A new bot run on this loop.  Nothing starts until bm_bot_start.
bm_bot_t *bm_bot_new (zloop_t *loop, size_t stdout_max, size_t stderr_tail,
                      bm_bot_exit_fn *on_exit, bm_bot_progress_fn *on_progress,
                      void *arg);

//  Destroy the run.  A bot still running is killed (SIGKILL to its process
//  group) and reaped.
void bm_bot_destroy (bm_bot_t **self_p);

//  Start the program.  argv [0] is the program's path (see bm_bot_which),
//  envp the whole environment; input (input_size bytes) goes to its stdin.
//  The input is copied.  Returns 0, or -1 with the reason in
//  bm_bot_errstr (the program could not be executed).  If this returns -1,
//  the exit handler is never called.
int bm_bot_start (bm_bot_t *self, char *const argv [], char *const envp [],
                  const char *input, size_t input_size);
const char *bm_bot_errstr (bm_bot_t *self);

//  Before bm_bot_start: run the program under these limits (copied; see
//  bm_limits.h), applied in the child between fork and exec.  name tags
//  its cgroup (the job id).  NULL: no limits (the worker's own stay).
void bm_bot_set_limits (bm_bot_t *self, const bm_limits_t *limits, const char *name);

//  Send a signal to the bot's process group.  Returns 0 or -1.
int bm_bot_signal (bm_bot_t *self, int signum);

//  The bot's pid (also its process group id), 0 before start.
pid_t bm_bot_pid (bm_bot_t *self);

//  The first line the bot wrote on fd 3 that is not PROGRESS 0-100
//  (borrowed), or "".
const char *bm_bot_progress_bad (bm_bot_t *self);
//  True between a successful start and the reap.
bool bm_bot_running (bm_bot_t *self);

//  The owner saw (via bm_bot_exited_child) that this bot's pid exited:
//  reap it, finish reading its output and call the exit handler.
void bm_bot_reap (bm_bot_t *self);

//  Outcome, valid after the exit handler was called.
//  The raw wait status (WIFEXITED, WEXITSTATUS, WIFSIGNALED, WTERMSIG).
int bm_bot_status (bm_bot_t *self);
//  If the run failed because of one of its limits, that limit's name
//  ("memory", "cpu", "pids", "files") and what showed it in message;
//  else NULL.
const char *bm_bot_limit_verdict (bm_bot_t *self, char *message, size_t message_size);
//  CPU time (user + system) it used, in ms; children it waited for count.
int64_t bm_bot_cpu_ms (bm_bot_t *self);
//  True if the bot wrote more than stdout_max bytes to stdout.
bool bm_bot_overflowed (bm_bot_t *self);
//  What the bot wrote on stdout (borrowed, NUL-terminated).
const char *bm_bot_stdout (bm_bot_t *self, size_t *size);
//  The tail of its stderr as printable text (caller frees).
char *bm_bot_stderr_text (bm_bot_t *self);
//  Wall-clock times (ms since the epoch) of the start and of the reap.
int64_t bm_bot_started_at (bm_bot_t *self);
int64_t bm_bot_finished_at (bm_bot_t *self);
//  How long it ran, in ms (monotonic clock).
int64_t bm_bot_duration_ms (bm_bot_t *self);

//  Self-test; built only into bm_worker_selftest (BM_SELFTEST).
void bm_bot_test (bool verbose);

#endif

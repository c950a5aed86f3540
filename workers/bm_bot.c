/*  bm_bot.c - one bot run: a child process driven from a zloop.  */
#include "bm_bot.h"
#include "bm_capture.h"
#include "bm_limits.h"
#include "bm_progress.h"
#include "bm_config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define BM_BOT_READ_CHUNK   65536       //  One read () from a pipe
#define BM_BOT_READS_PER_EVENT  4       //  Then give other peers a turn
#define BM_BOT_DRAIN_MAX    (4 << 20)   //  At reap, read at most this much
                                        //  more stderr/progress (a forked
                                        //  child may still be writing)

struct _bm_bot_t {
    zloop_t *loop;              //  Our loop (borrowed)
    bm_bot_exit_fn *on_exit;    //  Called once, when the run ended
    bm_bot_progress_fn *on_progress;    //  Called on each progress line
    void *arg;                  //  For the handlers
    pid_t pid;                  //  Child pid = its process group id
    bool running;               //  Started and not reaped yet
    int fd_in;                  //  Our end of its stdin, or -1
    int fd_out;                 //  Our end of its stdout, or -1
    int fd_err;                 //  Our end of its stderr, or -1
    int fd_progress;            //  Our end of its fd 3, or -1
    char *input;                //  What goes to its stdin
    size_t input_size;          //  Bytes in input
    size_t input_sent;          //  Bytes already written
    bm_capture_t *out;          //  Its stdout (head, capped)
    bm_capture_t *err;          //  Its stderr (tail)
    bm_progress_t *progress;    //  Parser of its progress lines
    bool overflowed;            //  It wrote more than the stdout cap
    int status;                 //  Wait status after the reap
    struct rusage usage;        //  Its resource usage, after the reap
    bm_limits_run_t *limits;    //  Its resource limits, or NULL
    int64_t started_at;         //  Wall clock at start (ms)
    int64_t finished_at;        //  Wall clock at reap (ms)
    int64_t started_mono;       //  Monotonic clock at start (ms)
    int64_t finished_mono;      //  Monotonic clock at reap (ms)
    char errstr [256];          //  Why start failed
};

//  --------------------------------------------------------------------------

bm_bot_t *
bm_bot_new (zloop_t *loop, size_t stdout_max, size_t stderr_tail,
            bm_bot_exit_fn *on_exit, bm_bot_progress_fn *on_progress, void *arg)
{
    bm_bot_t *self = (bm_bot_t *) zmalloc (sizeof (bm_bot_t));
    self->loop = loop;
    self->on_exit = on_exit;
    self->on_progress = on_progress;
    self->arg = arg;
    self->fd_in = self->fd_out = self->fd_err = self->fd_progress = -1;
    self->out = bm_capture_new (stdout_max, false);
    self->err = bm_capture_new (stderr_tail, true);
    self->progress = bm_progress_new ();
    if (!self->out || !self->err || !self->progress)
        bm_bot_destroy (&self);
    return self;
}

//  Stop polling one of our pipe ends and close it.
static void
s_close_fd (bm_bot_t *self, int *fd)
{
    if (*fd >= 0) {
        zmq_pollitem_t item = { NULL, *fd, 0, 0 };
        zloop_poller_end (self->loop, &item);
        close (*fd);
        *fd = -1;
    }
}

static void
s_close_all (bm_bot_t *self)
{
    s_close_fd (self, &self->fd_in);
    s_close_fd (self, &self->fd_out);
    s_close_fd (self, &self->fd_err);
    s_close_fd (self, &self->fd_progress);
}

void
bm_bot_destroy (bm_bot_t **self_p)
{
    if (*self_p) {
        bm_bot_t *self = *self_p;
        if (self->running) {
            killpg (self->pid, SIGKILL);
            while (waitpid (self->pid, NULL, 0) < 0 && errno == EINTR)
                ;
            self->running = false;
        }
        s_close_all (self);
        bm_limits_run_destroy (&self->limits);
        bm_capture_destroy (&self->out);
        bm_capture_destroy (&self->err);
        bm_progress_destroy (&self->progress);
        free (self->input);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Reading the bot's pipes.  Each handler reads through self (never the
//  poll item), so a pass of the loop that still holds a stale item for a
//  pipe we closed does nothing.

//  Read stdout until there is nothing more now; at most `rounds` reads.
static void
s_read_stdout (bm_bot_t *self, int rounds)
{
    char buffer [BM_BOT_READ_CHUNK];
    while (self->fd_out >= 0 && rounds-- > 0) {
        ssize_t n = bm_bot_read (self->fd_out, buffer, sizeof buffer);
        if (n < 0)
            break;
        if (n == 0) {
            s_close_fd (self, &self->fd_out);
            break;
        }
        if (bm_capture_append (self->out, buffer, n)) {
            //  Past the cap the output is worthless: stop the bot now.
            self->overflowed = true;
            s_close_fd (self, &self->fd_out);
            if (self->running)
                killpg (self->pid, SIGKILL);
        }
    }
}

static void
s_read_stderr (bm_bot_t *self, int rounds)
{
    char buffer [BM_BOT_READ_CHUNK];
    while (self->fd_err >= 0 && rounds-- > 0) {
        ssize_t n = bm_bot_read (self->fd_err, buffer, sizeof buffer);
        if (n < 0)
            break;
        if (n == 0)
            s_close_fd (self, &self->fd_err);
        else
            bm_capture_append (self->err, buffer, n);
    }
}

static void
s_read_progress (bm_bot_t *self, int rounds, bool report)
{
    char buffer [4096];
    while (self->fd_progress >= 0 && rounds-- > 0) {
        ssize_t n = bm_bot_read (self->fd_progress, buffer, sizeof buffer);
        if (n < 0)
            break;
        if (n == 0) {
            s_close_fd (self, &self->fd_progress);
            break;
        }
        int value = bm_progress_feed (self->progress, buffer, n);
        if (report && self->on_progress && bm_progress_news (self->progress))
            self->on_progress (self, BM_PROGRESS_BAD, self->arg);
        if (value >= 0 && report && self->on_progress)
            self->on_progress (self, value, self->arg);
    }
}

static int
s_on_stdout (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop, (void) item;
    s_read_stdout ((bm_bot_t *) arg, BM_BOT_READS_PER_EVENT);
    return 0;
}

static int
s_on_stderr (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop, (void) item;
    s_read_stderr ((bm_bot_t *) arg, BM_BOT_READS_PER_EVENT);
    return 0;
}

static int
s_on_progress (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop, (void) item;
    s_read_progress ((bm_bot_t *) arg, BM_BOT_READS_PER_EVENT, true);
    return 0;
}

//  The bot's stdin has room: write more of the input; close it when all
//  is written, or when the bot closed its end (EPIPE: it does not want it).
static int
s_on_stdin (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop, (void) item;
    bm_bot_t *self = (bm_bot_t *) arg;
    while (self->fd_in >= 0 && self->input_sent < self->input_size) {
        ssize_t n = write (self->fd_in, self->input + self->input_sent,
                           self->input_size - self->input_sent);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            break;                      //  EPIPE and the like
        }
        self->input_sent += n;
    }
    s_close_fd (self, &self->fd_in);
    return 0;
}

int
bm_bot_start (bm_bot_t *self, char *const argv [], char *const envp [],
              const char *input, size_t input_size)
{
    assert (!self->running && self->pid == 0);
    //  [0] read end, [1] write end; all close-on-exec, the child clears the
    //  flag on the copies it keeps.
    int in [2] = { -1, -1 }, out [2] = { -1, -1 }, err [2] = { -1, -1 };
    int prog [2] = { -1, -1 };
    if (pipe2 (in, O_CLOEXEC) || pipe2 (out, O_CLOEXEC) || pipe2 (err, O_CLOEXEC)
    ||  pipe2 (prog, O_CLOEXEC)) {
        snprintf (self->errstr, sizeof self->errstr, "cannot create pipes: %s",
                  strerror (errno));
        goto fail;
    }
    int fds [4] = { in [0], out [1], err [1], prog [1] };
    pid_t pid = bm_bot_launch (argv, envp, fds, self->limits, self->errstr, sizeof self->errstr);
    close (in [0]);
    close (out [1]);
    close (err [1]);
    close (prog [1]);
    in [0] = out [1] = err [1] = prog [1] = -1;
    if (pid < 0)
        goto fail;
    self->pid = pid;
    self->running = true;
    self->started_at = bm_now_ms ();
    self->started_mono = bm_mono_ms ();
    self->fd_in = in [1];
    self->fd_out = out [0];
    self->fd_err = err [0];
    self->fd_progress = prog [0];
    bm_bot_nonblocking (self->fd_in);
    bm_bot_nonblocking (self->fd_out);
    bm_bot_nonblocking (self->fd_err);
    bm_bot_nonblocking (self->fd_progress);

    struct { int fd; short events; zloop_fn *handler; } polls [] = {
        { self->fd_out, ZMQ_POLLIN, s_on_stdout },
        { self->fd_err, ZMQ_POLLIN, s_on_stderr },
        { self->fd_progress, ZMQ_POLLIN, s_on_progress },
        { self->fd_in, ZMQ_POLLOUT, s_on_stdin },
    };
    size_t count = 3;
    if (input_size > 0) {
        self->input = (char *) malloc (input_size);
        if (!self->input) {
            snprintf (self->errstr, sizeof self->errstr, "out of memory for the input");
            killpg (pid, SIGKILL);
            while (waitpid (pid, NULL, 0) < 0 && errno == EINTR)
                ;
            self->running = false;
            s_close_all (self);
            return -1;
        }
        memcpy (self->input, input, input_size);
        self->input_size = input_size;
        count = 4;
    }
    else
        s_close_fd (self, &self->fd_in);        //  EOF at once
    for (size_t i = 0; i < count; i++) {
        zmq_pollitem_t item = { NULL, polls [i].fd, polls [i].events, 0 };
        zloop_poller (self->loop, &item, polls [i].handler, self);
        //  A pipe whose other end closed reports an error condition; our
        //  handlers deal with it, so zloop must not drop the poller.
        zloop_poller_set_tolerant (self->loop, &item);
    }
    return 0;

fail:
    for (int i = 0; i < 2; i++) {
        if (in [i] >= 0) close (in [i]);
        if (out [i] >= 0) close (out [i]);
        if (err [i] >= 0) close (err [i]);
        if (prog [i] >= 0) close (prog [i]);
    }
    return -1;
}

void
bm_bot_set_limits (bm_bot_t *self, const bm_limits_t *limits, const char *name)
{
    assert (!self->running && self->pid == 0);
    bm_limits_run_destroy (&self->limits);
    if (limits)
        self->limits = bm_limits_run_new (limits, name);
}

const char *
bm_bot_limit_verdict (bm_bot_t *self, char *message, size_t message_size)
{
    if (!self->limits || self->running)
        return NULL;
    char *tail = bm_capture_text (self->err);
    const char *limit = bm_limits_run_verdict (self->limits, self->status, &self->usage, tail,
                                               message, message_size);
    free (tail);
    return limit;
}

int64_t
bm_bot_cpu_ms (bm_bot_t *self)
{
    return (int64_t) self->usage.ru_utime.tv_sec * 1000 + self->usage.ru_utime.tv_usec / 1000
         + (int64_t) self->usage.ru_stime.tv_sec * 1000 + self->usage.ru_stime.tv_usec / 1000;
}

const char *
bm_bot_errstr (bm_bot_t *self)
{
    return self->errstr;
}

int
bm_bot_signal (bm_bot_t *self, int signum)
{
    if (!self->running)
        return -1;
    return killpg (self->pid, signum);
}

pid_t
bm_bot_pid (bm_bot_t *self)
{
    return self->pid;
}

const char *
bm_bot_progress_bad (bm_bot_t *self)
{
    return bm_progress_bad_line (self->progress);
}

bool
bm_bot_running (bm_bot_t *self)
{
    return self->running;
}

//  --------------------------------------------------------------------------

void
bm_bot_reap (bm_bot_t *self)
{
    if (!self->running)
        return;
    //  The bot's pid is a zombie still, so its group id cannot have been
    //  reused: kill whatever the bot left behind in its group.
    killpg (self->pid, SIGKILL);
    int status = 0;
    while (wait4 (self->pid, &status, 0, &self->usage) < 0 && errno == EINTR)
        ;
    self->status = status;
    self->running = false;
    self->finished_at = bm_now_ms ();
    self->finished_mono = bm_mono_ms ();
    //  Everything the bot wrote before it exited is in the pipes now; read
    //  it without waiting for end of file (a child that escaped the group
    //  kill may hold the pipes open).  Progress written just before the
    //  exit is reported too: a bot that exits at once after its last
    //  progress line must not lose it to the order of poll events.
    s_read_stdout (self, INT32_MAX);
    s_read_stderr (self, BM_BOT_DRAIN_MAX / BM_BOT_READ_CHUNK);
    s_read_progress (self, 16, true);
    s_close_all (self);
    if (self->on_exit)
        self->on_exit (self, self->arg);
    //  Do not touch self here: the handler may have destroyed it.
}

int
bm_bot_status (bm_bot_t *self)
{
    return self->status;
}

bool
bm_bot_overflowed (bm_bot_t *self)
{
    return self->overflowed;
}

const char *
bm_bot_stdout (bm_bot_t *self, size_t *size)
{
    if (size)
        *size = bm_capture_size (self->out);
    return bm_capture_data (self->out);
}

char *
bm_bot_stderr_text (bm_bot_t *self)
{
    return bm_capture_text (self->err);
}

int64_t
bm_bot_started_at (bm_bot_t *self)
{
    return self->started_at;
}

int64_t
bm_bot_finished_at (bm_bot_t *self)
{
    return self->finished_at;
}

int64_t
bm_bot_duration_ms (bm_bot_t *self)
{
    return (self->running ? bm_mono_ms () : self->finished_mono) - self->started_mono;
}

#ifdef BM_SELFTEST
//  --------------------------------------------------------------------------
//  Self test: real children of /bin/sh, driven by a zloop.

typedef struct {
    bm_bot_t *bot;
    bool ended;
    int last_progress;
    int progress_calls;
} s_test_run_t;

static void
s_test_on_exit (bm_bot_t *bot, void *arg)
{
    s_test_run_t *run = (s_test_run_t *) arg;
    assert (bot == run->bot);
    run->ended = true;
}

static void
s_test_on_progress (bm_bot_t *bot, int progress, void *arg)
{
    (void) bot;
    s_test_run_t *run = (s_test_run_t *) arg;
    if (progress == BM_PROGRESS_BAD)
        return;
    run->last_progress = progress;
    run->progress_calls++;
}

//  Reap like the worker does (it uses a signalfd; a timer will do here).
static int
s_test_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop, (void) timer_id;
    s_test_run_t *run = (s_test_run_t *) arg;
    pid_t pid;
    while ((pid = bm_bot_exited_child ())) {
        if (pid == bm_bot_pid (run->bot))
            bm_bot_reap (run->bot);
        else
            bm_bot_reap_other (pid);
    }
    return run->ended ? -1 : 0;
}

static bm_bot_t *
s_test_run (const char *script, const char *input, size_t input_size,
            size_t stdout_max, s_test_run_t *run)
{
    zloop_t *loop = zloop_new ();
    memset (run, 0, sizeof *run);
    run->last_progress = -1;
    run->bot = bm_bot_new (loop, stdout_max, 64, s_test_on_exit, s_test_on_progress, run);
    char *argv [] = { (char *) "/bin/sh", (char *) "-c", (char *) script, NULL };
    char *envp [] = { (char *) "PATH=/usr/bin:/bin", (char *) "BOT_TEST=yes", NULL };
    int rc = bm_bot_start (run->bot, argv, envp, input, input_size);
    assert (rc == 0);
    assert (bm_bot_running (run->bot));
    zloop_timer (loop, 5, 0, s_test_tick, run);
    zloop_start (loop);
    assert (run->ended);
    assert (!bm_bot_running (run->bot));
    zloop_destroy (&loop);
    return run->bot;
}

void
bm_bot_test (bool verbose)
{
    if (verbose)
        printf (" * bm_bot: ");
    //  The worker ignores SIGPIPE; so do we, to check the child undoes it.
    signal (SIGPIPE, SIG_IGN);
    //  Like the worker, adopt the orphans of our bots, so we can see them go
    //  (whatever init does with zombies).
    prctl (PR_SET_CHILD_SUBREAPER, 1);
    s_test_run_t run;
    size_t size;

    //  Success: stdout captured, environment given, stdin read.
    bm_bot_t *bot = s_test_run ("read line; echo \"{\\\"in\\\": \\\"$line\\\", \\\"t\\\": \\\"$BOT_TEST\\\"}\"",
                                "hello\n", 6, 1024, &run);
    assert (WIFEXITED (bm_bot_status (bot)) && WEXITSTATUS (bm_bot_status (bot)) == 0);
    assert (strcmp (bm_bot_stdout (bot, &size), "{\"in\": \"hello\", \"t\": \"yes\"}\n") == 0);
    assert (!bm_bot_overflowed (bot));
    assert (bm_bot_finished_at (bot) >= bm_bot_started_at (bot));
    bm_bot_destroy (&bot);

    //  Failure: exit status and the tail of stderr.
    bot = s_test_run ("echo first >&2; i=0; while [ $i -lt 50 ]; do echo line$i >&2; i=$((i+1)); done;"
                      " echo 'last words' >&2; exit 3", NULL, 0, 1024, &run);
    assert (WIFEXITED (bm_bot_status (bot)) && WEXITSTATUS (bm_bot_status (bot)) == 3);
    char *text = bm_bot_stderr_text (bot);
    assert (strlen (text) <= 64);
    assert (strstr (text, "last words"));
    assert (!strstr (text, "first"));
    free (text);
    bm_bot_destroy (&bot);

    //  Too much output: capped, the bot killed, no hang.
    bot = s_test_run ("yes 0123456789", NULL, 0, 1000, &run);
    assert (bm_bot_overflowed (bot));
    //  Killed; the shell may have reported its child's SIGPIPE (our end of
    //  stdout is closed first) before our SIGKILL reached it.
    assert (WIFSIGNALED (bm_bot_status (bot))
        || (WIFEXITED (bm_bot_status (bot)) && WEXITSTATUS (bm_bot_status (bot)) == 128 + SIGPIPE));
    bm_bot_stdout (bot, &size);
    assert (size == 1000);
    bm_bot_destroy (&bot);

    //  A large input is streamed through (more than a pipe buffer).
    size_t big_size = 300000;
    char *big = (char *) malloc (big_size);
    for (size_t i = 0; i < big_size; i++)
        big [i] = 'a' + i % 26;
    bot = s_test_run ("cat", big, big_size, big_size, &run);
    const char *echoed = bm_bot_stdout (bot, &size);
    assert (size == big_size && memcmp (echoed, big, big_size) == 0);
    bm_bot_destroy (&bot);

    //  A bot that never reads its stdin does not block anyone.
    bot = s_test_run ("echo '{}'", big, big_size, 100, &run);
    assert (WIFEXITED (bm_bot_status (bot)) && WEXITSTATUS (bm_bot_status (bot)) == 0);
    assert (strcmp (bm_bot_stdout (bot, NULL), "{}\n") == 0);
    bm_bot_destroy (&bot);
    free (big);

    //  Progress lines on fd 3; SIGPIPE is back to default in the child.
    bot = s_test_run ("echo 'PROGRESS 10' >&3; echo junk >&3; echo 'PROGRESS 60' >&3;"
                      " sed -n 's/^SigIgn:[[:space:]]*//p' /proc/$$/status >&2; echo '[]'", NULL, 0, 100, &run);
    assert (run.last_progress == 60);
    assert (run.progress_calls >= 1);
    text = bm_bot_stderr_text (bot);
    assert (strlen (text) == 16);
    assert ((strtoull (text, NULL, 16) & (1ULL << (SIGPIPE - 1))) == 0);
    free (text);
    bm_bot_destroy (&bot);

    //  A bot that forks a long-lived child and exits: it ends at once, and
    //  the child is killed with its group.
    int64_t start = bm_mono_ms ();
    bot = s_test_run ("sleep 30 & echo $! >&2; echo '{}'", NULL, 0, 100, &run);
    assert (bm_mono_ms () - start < 5000);
    text = bm_bot_stderr_text (bot);
    pid_t orphan = atoi (text);
    free (text);
    assert (orphan > 0);
    //  It was killed; once reaped (by us, its subreaper) it is gone.
    for (int i = 0; i < 500 && kill (orphan, 0) == 0; i++) {
        bm_bot_reap_other (orphan);
        usleep (10000);
    }
    assert (kill (orphan, 0) == -1);
    bm_bot_destroy (&bot);

    //  A program that cannot be executed fails at start.
    zloop_t *loop = zloop_new ();
    bot = bm_bot_new (loop, 10, 10, NULL, NULL, NULL);
    char *argv [] = { (char *) "/nonexistent/bot", NULL };
    char *envp [] = { NULL };
    assert (bm_bot_start (bot, argv, envp, NULL, 0) == -1);
    assert (strstr (bm_bot_errstr (bot), "No such file"));
    assert (!bm_bot_running (bot));
    bm_bot_destroy (&bot);
    //  Destroying a running bot kills and reaps it.
    bot = bm_bot_new (loop, 10, 10, NULL, NULL, NULL);
    char *sleeper [] = { (char *) "/bin/sleep", (char *) "30", NULL };
    assert (bm_bot_start (bot, sleeper, envp, "x", 1) == 0);
    pid_t pid = bm_bot_pid (bot);
    bm_bot_destroy (&bot);
    assert (kill (pid, 0) == -1);
    zloop_destroy (&loop);

    if (verbose)
        printf ("OK\n");
}
#endif

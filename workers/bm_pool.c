/*  bm_pool.c - warm bot processes of one bot type: pool and fork modes.  */
#include "bm_pool.h"
#include "bm_bot.h"
#include "bm_capture.h"
#include "bm_progress.h"
#include "bm_config.h"
#include "bm_log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define BM_POOL_TICK_MS         100     //  Idle expiry, kill escalation,
                                        //  restarts after a back-off
#define BM_POOL_BACKOFF_MIN_MS  100     //  First restart after an init failure
#define BM_POOL_BACKOFF_MAX_MS  30000   //  Longest wait between restarts
#define BM_POOL_READ_CHUNK      65536

typedef enum { PROC_STARTING, PROC_IDLE, PROC_BUSY, PROC_RETIRING } proc_state_t;

//  A job handed to us.
typedef struct {
    void *owner;                //  The owner's job pointer
    char *frame;                //  Its frame, newline-terminated
    size_t size;                //  Bytes in frame
} pjob_t;

//  One bot process.
typedef struct {
    struct _bm_pool_t *pool;    //  Our pool (back pointer)
    pid_t pid;                  //  Its pid = its process group
    bool reaped;                //  Its pid is gone: never signal it
    proc_state_t state;
    const char *retire_reason;  //  Why it is retiring (static text)
    int fd_in;                  //  Our end of its stdin, or -1
    int fd_out;                 //  Our end of its stdout, or -1
    int fd_err;                 //  Our end of its stderr, or -1
    int fd_progress;            //  Our end of its fd 3, or -1
    char *wbuf;                 //  Frame being written to its stdin
    size_t wsize, wsent;
    char *line;                 //  Its stdout line being assembled
    size_t line_size, line_cap;
    bm_capture_t *err;          //  Its stderr tail (since the job began)
    bm_progress_t *progress;    //  Parser of its fd 3 lines
    pjob_t *job;                //  The job it runs, or NULL
    pid_t child;                //  Fork: the job's child, 0 if unknown yet
    int pending_signal;         //  Fork: signal to send once child is known
    bool stopping;              //  A signal was sent for its job
    char *output;               //  The job's stdout so far
    size_t output_size;
    bool overflowed;            //  The job's stdout was too large
    int64_t jobs_done;          //  Jobs it ran
    int64_t idle_since;         //  Monotonic ms
    int64_t retire_since;       //  Monotonic ms
    bm_limits_run_t *limits;    //  Its resource limits (its cgroup), or NULL
} proc_t;

struct _bm_pool_t {
    zloop_t *loop;              //  Our loop (borrowed)
    bm_pool_config_t config;    //  Copy (argv borrowed)
    char **envp;                //  Processes' environment (owned)
    bm_pool_done_fn *on_done;
    bm_pool_progress_fn *on_progress;
    void *arg;
    zlistx_t *procs;            //  proc_t, owned
    zlistx_t *waiting;          //  pjob_t waiting for a process, owned
    int tick;                   //  Maintenance timer id
    int failures;               //  Init failures since the last ready
    int64_t next_start;         //  No start before (monotonic ms)
    char *init_error;           //  Last init failure's message
    bm_pool_stats_t stats;
    bm_pool_stats_t exported;   //  Counters as last exported
    bm_series_t *m_processes;   //  Metrics (NULL: none)
    bm_series_t *m_recycles [4];    //  max_jobs, max_rss, idle, killed
    bm_series_t *m_init_failures;
};

static void s_maintain (bm_pool_t *self, bool may_fail);
static void s_dispatch (bm_pool_t *self);

//  --------------------------------------------------------------------------

static void
s_pjob_destroy (pjob_t **job_p)
{
    if (*job_p) {
        free ((*job_p)->frame);
        free (*job_p);
        *job_p = NULL;
    }
}

static void
s_close_fd (bm_pool_t *self, int *fd)
{
    if (*fd >= 0) {
        zmq_pollitem_t item = { NULL, *fd, 0, 0 };
        zloop_poller_end (self->loop, &item);
        close (*fd);
        *fd = -1;
    }
}

static void
s_proc_close (proc_t *proc)
{
    s_close_fd (proc->pool, &proc->fd_in);
    s_close_fd (proc->pool, &proc->fd_out);
    s_close_fd (proc->pool, &proc->fd_err);
    s_close_fd (proc->pool, &proc->fd_progress);
}

static void
s_proc_destroy (proc_t **proc_p)
{
    if (*proc_p) {
        proc_t *proc = *proc_p;
        s_proc_close (proc);
        bm_capture_destroy (&proc->err);
        bm_progress_destroy (&proc->progress);
        bm_limits_run_destroy (&proc->limits);
        s_pjob_destroy (&proc->job);
        free (proc->wbuf);
        free (proc->line);
        free (proc->output);
        free (proc);
        *proc_p = NULL;
    }
}

//  Signal the process's group, unless it was reaped already (its group id
//  may then belong to someone else).
static void
s_proc_kill (proc_t *proc, int signum)
{
    if (!proc->reaped)
        killpg (proc->pid, signum);
}

static proc_t *
s_find_proc_of (bm_pool_t *self, void *owner)
{
    for (proc_t *proc = (proc_t *) zlistx_first (self->procs); proc;
         proc = (proc_t *) zlistx_next (self->procs))
        if (proc->job && proc->job->owner == owner)
            return proc;
    return NULL;
}

//  Retire a process: no more jobs; EOF on its stdin and SIGTERM, SIGKILL
//  after the kill grace (the tick).
static void
s_retire (proc_t *proc, const char *reason)
{
    if (proc->state == PROC_RETIRING)
        return;
    bm_pool_t *self = proc->pool;
    proc->state = PROC_RETIRING;
    proc->retire_reason = reason;
    proc->retire_since = bm_mono_ms ();
    s_close_fd (self, &proc->fd_in);
    s_proc_kill (proc, SIGTERM);
    if (streq (reason, "max_jobs"))
        self->stats.recycled_max_jobs++;
    else
    if (streq (reason, "max_rss"))
        self->stats.recycled_max_rss++;
    else
    if (streq (reason, "idle"))
        self->stats.recycled_idle++;
    else
        self->stats.recycled_killed++;
    bm_info (NULL, "%s %s process pid=%d retired (%s, %lld jobs run)", self->config.type,
             self->config.fork ? "fork server" : "pool", (int) proc->pid, reason,
             (long long) proc->jobs_done);
}

//  The parent pid of a process, -1 if unknown: a fork server names its
//  child, and we signal only a child of its own.
static pid_t
s_parent_of (pid_t pid)
{
    char path [64], text [512];
    snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    size_t n = fread (text, 1, sizeof text - 1, file);
    fclose (file);
    text [n] = 0;
    //  "pid (comm) state ppid ...": comm may hold anything, even ") ".
    char *close = strrchr (text, ')');
    int ppid;
    char state;
    if (!close || sscanf (close + 1, " %c %d", &state, &ppid) != 2)
        return -1;
    return (pid_t) ppid;
}

//  Resident set size of a process in MiB, -1 if unknown.
static int64_t
s_rss_mb (pid_t pid)
{
    char path [64];
    snprintf (path, sizeof path, "/proc/%d/statm", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    long long size = 0, resident = 0;
    int n = fscanf (file, "%lld %lld", &size, &resident);
    fclose (file);
    if (n != 2)
        return -1;
    return resident * (sysconf (_SC_PAGESIZE) / 1024) / 1024;
}

//  --------------------------------------------------------------------------
//  Ending a job

//  Read its stderr (into the job's tail) and its fd 3 (progress of the
//  job, reported if `report`): at most `rounds` reads each.
static void
s_read_stderr (proc_t *proc, int rounds)
{
    char buffer [BM_POOL_READ_CHUNK];
    for (; proc->fd_err >= 0 && rounds > 0; rounds--) {
        ssize_t n = bm_bot_read (proc->fd_err, buffer, sizeof buffer);
        if (n < 0)
            break;
        if (n == 0)
            s_close_fd (proc->pool, &proc->fd_err);
        else
            bm_capture_append (proc->err, buffer, n);
    }
}

static void
s_read_progress (proc_t *proc, int rounds, bool report)
{
    char buffer [4096];
    for (; proc->fd_progress >= 0 && rounds > 0; rounds--) {
        ssize_t n = bm_bot_read (proc->fd_progress, buffer, sizeof buffer);
        if (n < 0)
            break;
        if (n == 0) {
            s_close_fd (proc->pool, &proc->fd_progress);
            break;
        }
        int value = bm_progress_feed (proc->progress, buffer, n);
        if (value >= 0 && report && proc->job && proc->pool->on_progress)
            proc->pool->on_progress (proc->job->owner, value, proc->pool->arg);
    }
}

//  Read what is in its stderr and fd 3 now (written before the frame that
//  ended the job, so already in the pipes).
static void
s_drain (proc_t *proc, bool report)
{
    s_read_stderr (proc, 64);
    s_read_progress (proc, 16, report);
}

//  The job of proc ended: tell the owner, make proc idle (or retire it).
static void
s_end_job (proc_t *proc, bm_pool_outcome_t *outcome, bool process_alive)
{
    bm_pool_t *self = proc->pool;
    s_drain (proc, false);
    char *tail = bm_capture_text (proc->err);
    if (!outcome->message)
        outcome->message = tail;
    outcome->output = proc->output ? proc->output : "";
    outcome->output_size = proc->output_size;
    outcome->overflowed = proc->overflowed;
    pjob_t *job = proc->job;
    proc->job = NULL;
    proc->child = 0;
    proc->pending_signal = 0;
    proc->jobs_done++;
    if (process_alive && proc->state == PROC_BUSY) {
        if (proc->stopping && !self->config.fork)
            s_retire (proc, "killed");
        else
        if (self->config.max_jobs > 0 && proc->jobs_done >= self->config.max_jobs)
            s_retire (proc, "max_jobs");
        else {
            int64_t rss = self->config.max_rss_mb > 0 ? s_rss_mb (proc->pid) : -1;
            if (rss > self->config.max_rss_mb) {
                bm_info (NULL, "%s process pid=%d uses %lld MiB, over %s_MAX_RSS_MB=%lld",
                         self->config.type, (int) proc->pid, (long long) rss, "BOT_<TYPE>",
                         (long long) self->config.max_rss_mb);
                s_retire (proc, "max_rss");
            }
            else {
                proc->state = PROC_IDLE;
                proc->idle_since = bm_mono_ms ();
            }
        }
    }
    proc->stopping = false;
    self->stats.busy--;
    self->on_done (job->owner, outcome, self->arg);
    free (tail);
    free (proc->output);
    proc->output = NULL;
    proc->output_size = 0;
    proc->overflowed = false;
    s_pjob_destroy (&job);
}

//  --------------------------------------------------------------------------
//  Frames from the bot

static void
s_kill_bad (proc_t *proc, const char *why)
{
    bm_warn (NULL, "%s process pid=%d: %s: killed", proc->pool->config.type, (int) proc->pid, why);
    s_proc_kill (proc, SIGKILL);
    if (proc->state != PROC_RETIRING) {
        proc->state = PROC_RETIRING;
        proc->retire_reason = "killed";
        proc->retire_since = bm_mono_ms ();
        proc->pool->stats.recycled_killed++;
    }
}

//  Keep the job's stdout text; past the cap it is worthless.
static void
s_set_output (proc_t *proc, const char *text, size_t size)
{
    if ((int64_t) size > proc->pool->config.output_max) {
        proc->overflowed = true;
        size = 0;
    }
    free (proc->output);
    proc->output = (char *) malloc (size + 1);
    if (!proc->output) {
        proc->overflowed = true;
        proc->output_size = 0;
        return;
    }
    memcpy (proc->output, text, size);
    proc->output [size] = 0;
    proc->output_size = size;
}

static void
s_on_frame (proc_t *proc, const char *line, size_t size)
{
    bm_pool_t *self = proc->pool;
    while (size > 0 && (line [size - 1] == '\r' || line [size - 1] == ' '))
        size--;
    if (size == 0)
        return;
    json_error_t jerr;
    json_t *frame = json_loadb (line, size, 0, &jerr);
    if (!frame || !json_is_object (frame)) {
        json_decref (frame);
        //  Not a frame: a bot that prints while it loads or works.  Keep
        //  it as stdout of the job (so it shows in a bad_output message).
        bm_debug (NULL, "%s process pid=%d wrote a line that is not a frame: %.80s",
                  self->config.type, (int) proc->pid, line);
        return;
    }
    json_t *value;
    if (json_object_get (frame, "ready")) {
        if (proc->state == PROC_STARTING) {
            proc->state = PROC_IDLE;
            proc->idle_since = bm_mono_ms ();
            self->failures = 0;
            zstr_free (&self->init_error);
            bm_info (NULL, "%s %s process pid=%d ready", self->config.type,
                     self->config.fork ? "fork server" : "pool", (int) proc->pid);
            s_dispatch (self);
        }
    }
    else
    if ((value = json_object_get (frame, "progress"))) {
        if (proc->job && json_is_integer (value) && self->on_progress) {
            json_int_t n = json_integer_value (value);
            self->on_progress (proc->job->owner, n < 0 ? 0 : n > 100 ? 100 : (int) n, self->arg);
        }
    }
    else
    if ((value = json_object_get (frame, "started"))) {
        if (proc->job && json_is_integer (value) && json_integer_value (value) > 1
        &&  json_integer_value (value) < INT32_MAX
        &&  s_parent_of ((pid_t) json_integer_value (value)) == proc->pid) {
            proc->child = (pid_t) json_integer_value (value);
            if (proc->pending_signal)
                killpg (proc->child, proc->pending_signal);
        }
    }
    else
    if (!proc->job)
        s_kill_bad (proc, "a job frame while it runs no job");
    else
    if ((value = json_object_get (frame, "result"))) {
        char *text = json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
        if (text) {
            s_set_output (proc, text, strlen (text));
            free (text);
        }
        else
            s_set_output (proc, "", 0);
        bm_pool_outcome_t outcome = { .exit_code = 0 };
        s_end_job (proc, &outcome, true);
        s_dispatch (self);
    }
    else
    if (json_object_get (frame, "exit") || json_object_get (frame, "signal")) {
        json_t *output = json_object_get (frame, "output");
        if (json_is_string (output))
            s_set_output (proc, json_string_value (output), json_string_length (output));
        bm_pool_outcome_t outcome = { .exit_code = -1 };
        json_t *error = json_object_get (frame, "error");
        if (json_is_string (error) && json_string_length (error) > 0)
            outcome.message = json_string_value (error);
        if (json_is_integer (json_object_get (frame, "signal")))
            outcome.signal = (int) json_integer_value (json_object_get (frame, "signal"));
        else {
            json_int_t code = json_integer_value (json_object_get (frame, "exit"));
            outcome.exit_code = code < 0 || code > 255 ? 1 : (int) code;
        }
        s_end_job (proc, &outcome, true);
        s_dispatch (self);
    }
    else
    if ((value = json_object_get (frame, "output"))) {
        if (json_is_string (value))
            s_set_output (proc, json_string_value (value), json_string_length (value));
    }
    json_decref (frame);
}

//  Its stdout: frames, one per line.  A line longer than the cap on a
//  job's output (twice, for JSON escapes) ends the process.
static int
s_on_stdout (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop, (void) item;
    proc_t *proc = (proc_t *) arg;
    size_t line_max = 2 * (size_t) proc->pool->config.output_max + 65536;
    for (int rounds = 4; proc->fd_out >= 0 && rounds > 0; rounds--) {
        if (proc->line_cap - proc->line_size < BM_POOL_READ_CHUNK) {
            size_t cap = proc->line_cap ? proc->line_cap * 2 : 2 * BM_POOL_READ_CHUNK;
            char *line = (char *) realloc (proc->line, cap);
            if (!line) {
                s_kill_bad (proc, "out of memory for its output");
                s_close_fd (proc->pool, &proc->fd_out);
                return 0;
            }
            proc->line = line;
            proc->line_cap = cap;
        }
        ssize_t n = bm_bot_read (proc->fd_out, proc->line + proc->line_size, BM_POOL_READ_CHUNK);
        if (n < 0)
            break;
        if (n == 0) {
            s_close_fd (proc->pool, &proc->fd_out);
            break;
        }
        size_t scanned = proc->line_size;
        proc->line_size += n;
        size_t start = 0;
        for (size_t i = scanned; i < proc->line_size && proc->fd_out >= 0; i++)
            if (proc->line [i] == '\n') {
                proc->line [i] = 0;
                s_on_frame (proc, proc->line + start, i - start);
                start = i + 1;
            }
        if (proc->fd_out < 0)
            return 0;
        memmove (proc->line, proc->line + start, proc->line_size - start);
        proc->line_size -= start;
        if (proc->line_size > line_max) {
            if (proc->job)
                proc->overflowed = true;
            proc->line_size = 0;
            s_kill_bad (proc, "a frame longer than the output cap");
        }
    }
    return 0;
}

static int
s_on_stderr (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop, (void) item;
    s_read_stderr ((proc_t *) arg, 4);
    return 0;
}

static int
s_on_progress (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop, (void) item;
    s_read_progress ((proc_t *) arg, 4, true);
    return 0;
}

//  Its stdin has room: write more of the job frame.
static int
s_on_stdin (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    proc_t *proc = (proc_t *) arg;
    while (proc->fd_in >= 0 && proc->wsent < proc->wsize) {
        ssize_t n = write (proc->fd_in, proc->wbuf + proc->wsent, proc->wsize - proc->wsent);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            s_close_fd (proc->pool, &proc->fd_in);      //  It will die: the reap
            return 0;                                   //  ends the job
        }
        proc->wsent += n;
    }
    if (proc->fd_in >= 0) {
        //  All written: stop asking for room.
        zloop_poller_end (proc->pool->loop, item);
        free (proc->wbuf);
        proc->wbuf = NULL;
        proc->wsize = proc->wsent = 0;
    }
    return 0;
}

static void
s_poll (bm_pool_t *self, proc_t *proc, int fd, short events, zloop_fn *handler)
{
    zmq_pollitem_t item = { NULL, fd, events, 0 };
    zloop_poller (self->loop, &item, handler, proc);
    zloop_poller_set_tolerant (self->loop, &item);
}

//  --------------------------------------------------------------------------
//  Processes

static int
s_start (bm_pool_t *self)
{
    int in [2] = { -1, -1 }, out [2] = { -1, -1 }, err [2] = { -1, -1 }, prog [2] = { -1, -1 };
    char errstr [256] = "";
    if (pipe2 (in, O_CLOEXEC) || pipe2 (out, O_CLOEXEC) || pipe2 (err, O_CLOEXEC)
    ||  pipe2 (prog, O_CLOEXEC)) {
        snprintf (errstr, sizeof errstr, "cannot create pipes: %s", strerror (errno));
        for (int i = 0; i < 2; i++) {
            if (in [i] >= 0) close (in [i]);
            if (out [i] >= 0) close (out [i]);
            if (err [i] >= 0) close (err [i]);
            if (prog [i] >= 0) close (prog [i]);
        }
        bm_error (NULL, "%s: %s", self->config.type, errstr);
        return -1;
    }
    int fds [4] = { in [0], out [1], err [1], prog [1] };
    bm_limits_run_t *limits = self->config.limits ? bm_limits_run_new (self->config.limits,
                                                                       self->config.type) : NULL;
    pid_t pid = bm_bot_launch (self->config.argv, self->envp, fds, limits, errstr, sizeof errstr);
    close (in [0]);
    close (out [1]);
    close (err [1]);
    close (prog [1]);
    self->stats.started++;
    if (pid < 0) {
        close (in [1]);
        close (out [0]);
        close (err [0]);
        close (prog [0]);
        self->stats.init_failures++;
        self->failures++;
        zstr_free (&self->init_error);
        self->init_error = strdup (errstr);
        bm_limits_run_destroy (&limits);
        return -1;
    }
    proc_t *proc = (proc_t *) zmalloc (sizeof (proc_t));
    proc->limits = limits;
    proc->pool = self;
    proc->pid = pid;
    proc->state = PROC_STARTING;
    proc->fd_in = in [1];
    proc->fd_out = out [0];
    proc->fd_err = err [0];
    proc->fd_progress = prog [0];
    proc->err = bm_capture_new ((size_t) self->config.stderr_tail, true);
    proc->progress = bm_progress_new ();
    bm_bot_nonblocking (proc->fd_in);
    bm_bot_nonblocking (proc->fd_out);
    bm_bot_nonblocking (proc->fd_err);
    bm_bot_nonblocking (proc->fd_progress);
    s_poll (self, proc, proc->fd_out, ZMQ_POLLIN, s_on_stdout);
    s_poll (self, proc, proc->fd_err, ZMQ_POLLIN, s_on_stderr);
    s_poll (self, proc, proc->fd_progress, ZMQ_POLLIN, s_on_progress);
    zlistx_add_end (self->procs, proc);
    self->stats.processes++;
    bm_debug (NULL, "%s: started %s process pid=%d", self->config.type,
              self->config.fork ? "fork server" : "pool", (int) pid);
    return 0;
}

//  Fail every waiting job with bot_init_failed.
static void
s_fail_waiting (bm_pool_t *self)
{
    pjob_t *job;
    while ((job = (pjob_t *) zlistx_detach (self->waiting, NULL))) {
        bm_pool_outcome_t outcome = { .init_failed = true, .exit_code = -1,
                                      .message = self->init_error ? self->init_error : "the bot failed to load",
                                      .output = "" };
        self->on_done (job->owner, &outcome, self->arg);
        s_pjob_destroy (&job);
    }
}

static int64_t
s_backoff_ms (int failures)
{
    int64_t ms = BM_POOL_BACKOFF_MIN_MS;
    for (int i = 1; i < failures && ms < BM_POOL_BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms < BM_POOL_BACKOFF_MAX_MS ? ms : BM_POOL_BACKOFF_MAX_MS;
}

//  Hand waiting jobs to idle processes.
static void
s_dispatch (bm_pool_t *self)
{
    proc_t *proc;
    for (proc = (proc_t *) zlistx_first (self->procs); proc && zlistx_size (self->waiting);
         proc = (proc_t *) zlistx_next (self->procs)) {
        if (proc->state != PROC_IDLE || proc->fd_in < 0)
            continue;
        pjob_t *job = (pjob_t *) zlistx_detach (self->waiting, NULL);
        proc->job = job;
        proc->state = PROC_BUSY;
        proc->stopping = false;
        self->stats.busy++;
        bm_capture_t *err = bm_capture_new ((size_t) self->config.stderr_tail, true);
        if (err) {
            //  The stderr of this job only.
            bm_capture_destroy (&proc->err);
            proc->err = err;
        }
        free (proc->wbuf);
        proc->wbuf = job->frame;
        proc->wsize = job->size;
        proc->wsent = 0;
        job->frame = NULL;
        zmq_pollitem_t stale = { NULL, proc->fd_in, 0, 0 };
        zloop_poller_end (self->loop, &stale);     //  A bot that answered early
        s_poll (self, proc, proc->fd_in, ZMQ_POLLOUT, s_on_stdin);
    }
}

//  Start processes as needed (waiting jobs, min_procs), within max_procs
//  and the back-off; retire idle ones past idle_ms; SIGKILL retiring ones
//  past the kill grace.
static void
s_maintain (bm_pool_t *self, bool may_fail)
{
    int64_t now = bm_mono_ms ();
    int64_t alive = 0, starting = 0, serving = 0;
    proc_t *proc;
    for (proc = (proc_t *) zlistx_first (self->procs); proc; proc = (proc_t *) zlistx_next (self->procs)) {
        alive++;
        if (proc->state == PROC_STARTING)
            starting++;
        if (proc->state != PROC_RETIRING)
            serving++;
        if (proc->state == PROC_RETIRING && now - proc->retire_since > self->config.kill_grace_ms
        &&  proc->retire_since > 0) {
            s_proc_kill (proc, SIGKILL);
            proc->retire_since = 0;         //  Once
        }
    }
    //  Idle ones beyond the minimum, oldest idle first.
    for (proc = (proc_t *) zlistx_first (self->procs); proc && serving > self->config.min_procs;
         proc = (proc_t *) zlistx_next (self->procs))
        if (proc->state == PROC_IDLE && now - proc->idle_since >= self->config.idle_ms
        &&  (int64_t) zlistx_size (self->waiting) == 0) {
            s_retire (proc, "idle");
            serving--;
        }
    while (alive < self->config.max_procs && now >= self->next_start
    &&  (serving < self->config.min_procs || starting < (int64_t) zlistx_size (self->waiting))) {
        if (s_start (self)) {
            bm_error (NULL, "%s: cannot start a process: %s", self->config.type, self->init_error);
            self->next_start = now + s_backoff_ms (self->failures);
            if (may_fail)
                s_fail_waiting (self);
            break;
        }
        alive++, starting++, serving++;
    }
}

//  Bring the exported metrics up to date.
static void
s_export (bm_pool_t *self)
{
    bm_pool_stats_t *now = &self->stats, *was = &self->exported;
    bm_series_set (self->m_processes, (double) now->processes);
    int64_t deltas [4] = {
        now->recycled_max_jobs - was->recycled_max_jobs, now->recycled_max_rss - was->recycled_max_rss,
        now->recycled_idle - was->recycled_idle, now->recycled_killed - was->recycled_killed };
    for (int i = 0; i < 4; i++)
        if (deltas [i] > 0)
            bm_series_add (self->m_recycles [i], (double) deltas [i]);
    if (now->init_failures > was->init_failures)
        bm_series_add (self->m_init_failures, (double) (now->init_failures - was->init_failures));
    *was = *now;
}

void
bm_pool_export (bm_pool_t *self, bm_metrics_t *metrics)
{
    const char *mode = self->config.fork ? "fork" : "pool";
    bm_metric_t *processes = bm_metrics_gauge (metrics, "bot_processes",
        "Warm bot processes alive (pool and fork modes), by type and mode", "bot_type,mode");
    bm_metric_t *recycles = bm_metrics_counter (metrics, "bot_recycles_total",
        "Warm bot processes retired, by reason (max_jobs, max_rss, idle, killed)", "bot_type,reason");
    bm_metric_t *init = bm_metrics_counter (metrics, "bot_init_failures_total",
        "Warm bot processes that died before they were ready", "bot_type");
    self->m_processes = bm_metric_series (processes, self->config.type, mode);
    const char *reasons [4] = { "max_jobs", "max_rss", "idle", "killed" };
    for (int i = 0; i < 4; i++)
        self->m_recycles [i] = bm_metric_series (recycles, self->config.type, reasons [i]);
    self->m_init_failures = bm_metric_series (init, self->config.type);
    memset (&self->exported, 0, sizeof self->exported);
    s_export (self);
}

static int
s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop, (void) timer_id;
    bm_pool_t *self = (bm_pool_t *) arg;
    s_maintain (self, true);
    s_export (self);
    //  Jobs left waiting by a start that failed in bm_pool_submit.
    if (self->failures > 0 && zlistx_size (self->waiting)) {
        bool ready = false;
        for (proc_t *proc = (proc_t *) zlistx_first (self->procs); proc;
             proc = (proc_t *) zlistx_next (self->procs))
            if (proc->state == PROC_IDLE || proc->state == PROC_BUSY)
                ready = true;
        if (!ready)
            s_fail_waiting (self);
    }
    return 0;
}

bool
bm_pool_reap (bm_pool_t *self, pid_t pid)
{
    proc_t *proc;
    for (proc = (proc_t *) zlistx_first (self->procs); proc; proc = (proc_t *) zlistx_next (self->procs))
        if (proc->pid == pid)
            break;
    if (!proc)
        return false;
    void *cursor = zlistx_cursor (self->procs);
    zlistx_detach (self->procs, cursor);
    self->stats.processes--;
    //  Kill what it left in its group (a fork server's child, say).
    killpg (pid, SIGKILL);
    int status = 0;
    while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
        ;
    proc->reaped = true;
    //  Frames it wrote before it died (they may end its job, but it takes
    //  no other).
    proc_state_t state = proc->state;
    if (state != PROC_STARTING)
        proc->state = PROC_RETIRING;
    s_on_stdout (self->loop, NULL, proc);
    s_drain (proc, true);
    char how [96];
    if (WIFSIGNALED (status))
        snprintf (how, sizeof how, "killed by signal SIG%s", sigabbrev_np (WTERMSIG (status))
                  ? sigabbrev_np (WTERMSIG (status)) : "?");
    else
        snprintf (how, sizeof how, "exited with status %d", WEXITSTATUS (status));
    if (proc->state == PROC_STARTING) {
        char *tail = bm_capture_text (proc->err);
        self->stats.init_failures++;
        self->failures++;
        zstr_free (&self->init_error);
        self->init_error = *tail ? zsys_sprintf ("the %s bot failed while loading (%s): %s",
                                                 self->config.type, how, tail)
                                 : zsys_sprintf ("the %s bot failed while loading (%s)",
                                                 self->config.type, how);
        free (tail);
        int64_t backoff = s_backoff_ms (self->failures);
        self->next_start = bm_mono_ms () + backoff;
        bm_error (NULL, "%s process pid=%d failed at init (%s); next start in %lld ms",
                  self->config.type, (int) pid, how, (long long) backoff);
        //  Nobody ready: the waiting jobs would wait for a bot that
        //  cannot load.
        bool ready = false;
        proc_t *other;
        for (other = (proc_t *) zlistx_first (self->procs); other; other = (proc_t *) zlistx_next (self->procs))
            if (other->state == PROC_IDLE || other->state == PROC_BUSY)
                ready = true;
        if (!ready)
            s_fail_waiting (self);
    }
    else
    if (proc->job) {
        bm_pool_outcome_t outcome = { .exit_code = -1 };
        if (WIFSIGNALED (status)) {
            outcome.signal = WTERMSIG (status);
            outcome.lost = !proc->stopping;
        }
        else
            outcome.exit_code = WEXITSTATUS (status) ? WEXITSTATUS (status) : 1;
        bm_warn (NULL, "%s process pid=%d %s while running a job", self->config.type, (int) pid, how);
        if (state != PROC_RETIRING)
            self->stats.recycled_killed++;
        proc->state = PROC_RETIRING;
        s_end_job (proc, &outcome, false);
    }
    else
    if (state != PROC_RETIRING) {
        bm_warn (NULL, "%s process pid=%d %s while idle", self->config.type, (int) pid, how);
        self->stats.recycled_killed++;
    }
    s_proc_destroy (&proc);
    s_maintain (self, true);
    s_dispatch (self);
    return true;
}

//  --------------------------------------------------------------------------

bm_pool_t *
bm_pool_new (zloop_t *loop, const bm_pool_config_t *config, char *const envp [],
             bm_pool_done_fn *on_done, bm_pool_progress_fn *on_progress, void *arg)
{
    bm_pool_t *self = (bm_pool_t *) zmalloc (sizeof (bm_pool_t));
    self->loop = loop;
    self->config = *config;
    if (self->config.max_procs < 1)
        self->config.max_procs = 1;
    if (self->config.min_procs > self->config.max_procs)
        self->config.min_procs = self->config.max_procs;
    size_t count = 0;
    while (envp [count])
        count++;
    self->envp = (char **) calloc (count + 1, sizeof (char *));
    for (size_t i = 0; i < count; i++)
        self->envp [i] = strdup (envp [i]);
    self->on_done = on_done;
    self->on_progress = on_progress;
    self->arg = arg;
    self->procs = zlistx_new ();
    self->waiting = zlistx_new ();
    self->tick = zloop_timer (loop, BM_POOL_TICK_MS, 0, s_on_tick, self);
    s_maintain (self, false);
    return self;
}

void
bm_pool_destroy (bm_pool_t **self_p)
{
    if (*self_p) {
        bm_pool_t *self = *self_p;
        proc_t *proc;
        for (proc = (proc_t *) zlistx_first (self->procs); proc; proc = (proc_t *) zlistx_next (self->procs))
            killpg (proc->pid, SIGKILL);
        while ((proc = (proc_t *) zlistx_detach (self->procs, NULL))) {
            while (waitpid (proc->pid, NULL, 0) < 0 && errno == EINTR)
                ;
            s_proc_destroy (&proc);
        }
        zlistx_destroy (&self->procs);
        pjob_t *job;
        while ((job = (pjob_t *) zlistx_detach (self->waiting, NULL)))
            s_pjob_destroy (&job);
        zlistx_destroy (&self->waiting);
        if (self->tick)
            zloop_timer_end (self->loop, self->tick);
        bm_bot_argv_free (&self->envp);
        zstr_free (&self->init_error);
        free (self);
        *self_p = NULL;
    }
}

int
bm_pool_submit (bm_pool_t *self, void *owner, const char *frame, size_t size,
                char *error, size_t error_size)
{
    //  The bot failed at init and has not loaded since: fail at once
    //  rather than queue jobs for it (restarts go on, backing off).
    if (self->failures > 0) {
        snprintf (error, error_size, "%s", self->init_error ? self->init_error : "the bot failed to load");
        return -1;
    }
    pjob_t *job = (pjob_t *) zmalloc (sizeof (pjob_t));
    job->owner = owner;
    job->frame = (char *) malloc (size + 1);
    if (!job->frame) {
        free (job);
        snprintf (error, error_size, "out of memory for the job frame");
        return -1;
    }
    memcpy (job->frame, frame, size);
    job->frame [size] = '\n';
    job->size = size + 1;
    zlistx_add_end (self->waiting, job);
    s_dispatch (self);
    s_maintain (self, false);
    return 0;
}

int
bm_pool_signal (bm_pool_t *self, void *owner, int signum)
{
    proc_t *proc = s_find_proc_of (self, owner);
    if (!proc) {
        for (pjob_t *job = (pjob_t *) zlistx_first (self->waiting); job;
             job = (pjob_t *) zlistx_next (self->waiting))
            if (job->owner == owner) {
                zlistx_detach (self->waiting, zlistx_cursor (self->waiting));
                s_pjob_destroy (&job);
                return 1;
            }
        return -1;
    }
    proc->stopping = true;
    if (self->config.fork) {
        if (proc->child > 0)
            return killpg (proc->child, signum) == 0 || errno == ESRCH ? 0 : -1;
        //  Its child is not known yet: it gets the signal when it is.  A
        //  SIGKILL takes the whole server (its child dies with it), so the
        //  job ends whatever the server says.
        proc->pending_signal = signum;
        if (signum == SIGKILL)
            s_proc_kill (proc, SIGKILL);
        return 0;
    }
    return killpg (proc->pid, signum);
}

pid_t
bm_pool_job_pid (bm_pool_t *self, void *owner)
{
    proc_t *proc = s_find_proc_of (self, owner);
    if (!proc)
        return 0;
    return self->config.fork ? proc->child : proc->pid;
}

void
bm_pool_stats (bm_pool_t *self, bm_pool_stats_t *stats)
{
    *stats = self->stats;
    stats->waiting = (int64_t) zlistx_size (self->waiting);
}

#ifdef BM_SELFTEST
//  --------------------------------------------------------------------------
//  Self test: pools of /bin/sh processes speaking the protocol.

typedef struct {
    bm_pool_t *pool;
    int done;                   //  Jobs ended
    int want;                   //  Leave the loop at this many
    char outputs [8][64];       //  Each job's output (job i is owner i+1)
    bool init_failed [8];
    int progress [8];
} s_test_t;

static void
s_test_done (void *job, const bm_pool_outcome_t *outcome, void *arg)
{
    s_test_t *test = (s_test_t *) arg;
    int i = (int) (intptr_t) job - 1;
    snprintf (test->outputs [i], sizeof test->outputs [i], "%.*s", (int) outcome->output_size,
              outcome->output);
    test->init_failed [i] = outcome->init_failed;
    test->done++;
}

static void
s_test_progress (void *job, int progress, void *arg)
{
    s_test_t *test = (s_test_t *) arg;
    test->progress [(intptr_t) job - 1] = progress;
}

static int
s_test_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop, (void) timer_id;
    s_test_t *test = (s_test_t *) arg;
    pid_t pid;
    while ((pid = bm_bot_exited_child ()))
        if (!bm_pool_reap (test->pool, pid))
            bm_bot_reap_other (pid);
    return test->done >= test->want ? -1 : 0;
}

static void
s_test_run (zloop_t *loop, s_test_t *test, int want)
{
    test->want = want;
    int id = zloop_timer (loop, 5, 0, s_test_tick, test);
    zloop_timer (loop, 10000, 1, NULL, NULL);       //  No hang
    zloop_start (loop);
    zloop_timer_end (loop, id);
    assert (test->done >= want);
}

void
bm_pool_test (bool verbose)
{
    if (verbose)
        printf (" * bm_pool: ");
    signal (SIGPIPE, SIG_IGN);
    zloop_t *loop = zloop_new ();
    char *envp [] = { (char *) "PATH=/usr/bin:/bin", NULL };

    //  A stateful pool bot: counts its jobs; recycled after two.
    char *counter [] = { (char *) "/bin/sh", (char *) "-c", (char *)
        "echo '{\"ready\": true}'; n=0; while read line; do n=$((n+1));"
        " echo 'PROGRESS 40' >&3; echo '{\"progress\": 60}';"
        " echo \"{\\\"result\\\": {\\\"n\\\": $n}}\"; done", NULL };
    bm_pool_config_t config = { .type = "test", .argv = counter, .min_procs = 1, .max_procs = 1,
                                .max_jobs = 2, .idle_ms = 60000, .output_max = 1000,
                                .stderr_tail = 100, .kill_grace_ms = 500 };
    s_test_t test;
    memset (&test, 0, sizeof test);
    test.pool = bm_pool_new (loop, &config, envp, s_test_done, s_test_progress, &test);
    char error [256];
    for (intptr_t i = 1; i <= 3; i++)
        assert (bm_pool_submit (test.pool, (void *) i, "{\"job\": \"x\"}", 12, error, sizeof error) == 0);
    s_test_run (loop, &test, 3);
    assert (streq (test.outputs [0], "{\"n\":1}"));
    assert (streq (test.outputs [1], "{\"n\":2}"));
    assert (streq (test.outputs [2], "{\"n\":1}"));       //  A new process
    assert (test.progress [0] == 60 || test.progress [0] == 40);
    bm_pool_stats_t stats;
    bm_pool_stats (test.pool, &stats);
    assert (stats.recycled_max_jobs == 1);
    assert (stats.processes <= 1);
    bm_metrics_t *metrics = bm_metrics_new ();
    bm_pool_export (test.pool, metrics);
    char *text = bm_metrics_render (metrics);
    assert (strstr (text, "bot_recycles_total{bot_type=\"test\",reason=\"max_jobs\"} 1"));
    assert (strstr (text, "bot_processes{bot_type=\"test\",mode=\"pool\"}"));
    free (text);
    bm_pool_destroy (&test.pool);
    bm_metrics_destroy (&metrics);

    //  A bot that fails while loading: the waiting job fails with
    //  bot_init_failed, later submits fail at once, restarts back off.
    char *broken [] = { (char *) "/bin/sh", (char *) "-c", (char *) "echo 'no module x' >&2; exit 3", NULL };
    config.argv = broken;
    config.min_procs = 0;
    memset (&test, 0, sizeof test);
    test.pool = bm_pool_new (loop, &config, envp, s_test_done, s_test_progress, &test);
    assert (bm_pool_submit (test.pool, (void *) 1, "{}", 2, error, sizeof error) == 0);
    s_test_run (loop, &test, 1);
    assert (test.init_failed [0]);
    assert (bm_pool_submit (test.pool, (void *) 2, "{}", 2, error, sizeof error) == -1);
    assert (strstr (error, "no module x"));
    assert (strstr (error, "failed while loading"));
    bm_pool_stats (test.pool, &stats);
    assert (stats.init_failures == 1);
    bm_pool_destroy (&test.pool);

    assert (s_backoff_ms (1) == 100 && s_backoff_ms (2) == 200 && s_backoff_ms (3) == 400);
    assert (s_backoff_ms (40) == BM_POOL_BACKOFF_MAX_MS);
    zloop_destroy (&loop);
    if (verbose)
        printf ("OK\n");
}
#endif

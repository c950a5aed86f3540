/*  bm_pool_proc.c - one warm bot process of a pool: its pipes and reads.  */
#include "bm_pool_proc.h"
#include "bm_bot.h"
#include "bm_config.h"
#include "bm_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

//  The reads of a process's pipes stop at a short read: a pipe's read takes
//  all that is in it (up to the size asked for), so a short one emptied it,
//  and another would only return EAGAIN (a system call per pipe in the gap
//  between a process's answer and its next frame).  What comes later makes
//  the pipe readable again: the loop polls it.
#define BM_POOL_READ_CHUNK      65536
#define BM_POOL_BETWEEN_TAIL    4096    //  Bytes kept of stderr between jobs
#define BM_POOL_DRAIN_ROUNDS    64      //  Reads of a chunk to empty a pipe:
                                        //  4 MiB, more than a pipe holds
                                        //  (fs.pipe-max-size: 1 MiB)

//  --------------------------------------------------------------------------

void
bm_pool_pjob_destroy (pjob_t **job_p)
{
    if (*job_p) {
        free ((*job_p)->id);
        free ((*job_p)->frame);
        free (*job_p);
        *job_p = NULL;
    }
}

void
bm_pool_proc_close_fd (proc_t *proc, int *fd)
{
    if (*fd >= 0) {
        zmq_pollitem_t item = { NULL, *fd, 0, 0 };
        zloop_poller_end (proc->loop, &item);
        close (*fd);
        *fd = -1;
    }
}

static void
s_proc_close (proc_t *proc)
{
    if (proc->progress_timer) {
        zloop_timer_end (proc->loop, proc->progress_timer);
        proc->progress_timer = 0;
    }
    bm_pool_proc_close_fd (proc, &proc->fd_in);
    bm_pool_proc_close_fd (proc, &proc->fd_out);
    bm_pool_proc_close_fd (proc, &proc->fd_err);
    bm_pool_proc_close_fd (proc, &proc->fd_progress);
    if (proc->statm >= 0)
        close (proc->statm);
    proc->statm = -1;
}

void
bm_pool_proc_destroy (proc_t **proc_p)
{
    if (*proc_p) {
        proc_t *proc = *proc_p;
        s_proc_close (proc);
        bm_capture_destroy (&proc->err);
        bm_capture_destroy (&proc->between);
        bm_progress_destroy (&proc->progress);
        bm_limits_run_destroy (&proc->limits);
        bm_pool_pjob_destroy (&proc->job);
        bm_bot_argv_free (&proc->tmp_kept);
        free (proc->wbuf);
        free (proc->line);
        free (proc->output);
        free (proc);
        *proc_p = NULL;
    }
}

//  Signal the process's group, unless it was reaped already (its group id
//  may then belong to someone else).
void
bm_pool_proc_kill (proc_t *proc, int signum)
{
    if (!proc->reaped)
        killpg (proc->pid, signum);
}

//  The parent pid of a process, -1 if unknown: a fork server names its
//  child, and we signal only a child of its own.
pid_t
bm_pool_proc_parent_of (pid_t pid)
{
    char text [512];
    int ppid;
    if (bm_bot_proc_stat (pid, text, sizeof text) || sscanf (text, "%*c %d", &ppid) != 1)
        return -1;
    return (pid_t) ppid;
}

//  The name of a process (its comm), "" if unknown.
static void
s_comm (pid_t pid, char *name, size_t size)
{
    char path [64];
    snprintf (path, sizeof path, "/proc/%d/comm", (int) pid);
    *name = 0;
    FILE *file = fopen (path, "r");
    if (!file)
        return;
    if (!fgets (name, (int) size, file))
        *name = 0;
    fclose (file);
    name [strcspn (name, "\n")] = 0;
}

//  Every process's pid and parent pid, from /proc; *count of them.
//  Returns NULL if /proc cannot be read or memory is short.
static pid_t *
s_process_table (size_t *count)
{
    DIR *dir = opendir ("/proc");
    if (!dir)
        return NULL;
    size_t cap = 256, n = 0;
    pid_t *table = (pid_t *) malloc (cap * 2 * sizeof (pid_t));
    struct dirent *entry;
    while (table && (entry = readdir (dir))) {
        char *end;
        long pid = strtol (entry->d_name, &end, 10);
        pid_t ppid = pid > 0 && !*end ? bm_pool_proc_parent_of ((pid_t) pid) : -1;
        if (ppid < 0)
            continue;
        if (n == cap) {
            pid_t *grown = (pid_t *) realloc (table, cap * 4 * sizeof (pid_t));
            if (!grown) {
                free (table);
                table = NULL;
                break;
            }
            table = grown;
            cap *= 2;
        }
        table [2 * n] = (pid_t) pid;
        table [2 * n + 1] = ppid;
        n++;
    }
    closedir (dir);
    *count = n;
    return table;
}

pid_t
bm_pool_proc_inner (proc_t *proc)
{
    if (proc->inner > 0 || proc->reaped)
        return proc->inner;
    size_t count;
    pid_t *table = s_process_table (&count);
    if (!table)
        return 0;
    //  Down from the process: a bwrap's child, until one that is not bwrap.
    pid_t level = proc->pid;
    for (int depth = 0; depth < 4 && level > 0 && !proc->inner; depth++) {
        pid_t next = 0;
        for (size_t i = 0; i < count && !proc->inner; i++) {
            if (table [2 * i + 1] != level)
                continue;
            char name [32];
            s_comm (table [2 * i], name, sizeof name);
            if (streq (name, "bwrap"))
                next = table [2 * i];
            else
                proc->inner = table [2 * i];
        }
        level = next;
    }
    free (table);
    return proc->inner;
}

pid_t
bm_pool_proc_bot (proc_t *proc, bool sandboxed)
{
    return sandboxed ? bm_pool_proc_inner (proc) : proc->pid;
}

//  The pid of a process in the innermost pid namespace it is in (the
//  last field of NSpid), -1 if unknown.
static pid_t
s_innermost_pid (pid_t pid)
{
    char path [64], line [256];
    snprintf (path, sizeof path, "/proc/%d/status", (int) pid);
    FILE *file = fopen (path, "r");
    if (!file)
        return -1;
    long innermost = -1;
    while (fgets (line, sizeof line, file)) {
        if (strncmp (line, "NSpid:", 6))
            continue;
        char *cursor = line + 6, *end;
        for (long value = strtol (cursor, &end, 10); end > cursor; value = strtol (cursor, &end, 10)) {
            innermost = value;
            cursor = end;
        }
        break;
    }
    fclose (file);
    return innermost > 0 && innermost <= INT32_MAX ? (pid_t) innermost : -1;
}

//  The children of a process of one thread, from /proc/PID/task/PID/children
//  (else, on a kernel without it, from every process's parent); up to max
//  of them in pids.  Returns how many.
static size_t
s_children_of (pid_t parent, pid_t *pids, size_t max)
{
    char path [80];
    snprintf (path, sizeof path, "/proc/%d/task/%d/children", (int) parent, (int) parent);
    size_t found = 0;
    FILE *file = fopen (path, "r");
    if (file) {
        int pid;
        while (found < max && fscanf (file, "%d", &pid) == 1)
            pids [found++] = (pid_t) pid;
        fclose (file);
        return found;
    }
    size_t count;
    pid_t *table = s_process_table (&count);
    for (size_t i = 0; table && i < count && found < max; i++)
        if (table [2 * i + 1] == parent)
            pids [found++] = table [2 * i];
    free (table);
    return found;
}

pid_t
bm_pool_proc_child_named (proc_t *proc, pid_t named, bool sandboxed)
{
    if (!sandboxed)
        return bm_pool_proc_parent_of (named) == proc->pid ? named : 0;
    pid_t server = bm_pool_proc_inner (proc);
    if (server <= 0)
        return 0;
    //  Its spare and the child that runs the job, and the orphans of a job
    //  it has not reaped yet: a few.
    pid_t children [64];
    size_t count = s_children_of (server, children, sizeof children / sizeof children [0]);
    for (size_t i = 0; i < count; i++)
        if (s_innermost_pid (children [i]) == named)
            return children [i];
    return 0;
}

bool
bm_pool_proc_exiting (pid_t pid)
{
    char text [1024], state = 0;
    unsigned int flags = 0;
    if (bm_bot_proc_stat (pid, text, sizeof text)
    ||  sscanf (text, "%c %*d %*d %*d %*d %*d %u", &state, &flags) != 2)
        return true;
    return state == 'Z' || state == 'X' || (flags & 0x4) != 0;    //  PF_EXITING
}

int64_t
bm_pool_proc_rss_mb (proc_t *proc, pid_t pid)
{
    if (proc->statm >= 0 && proc->statm_pid != pid) {
        close (proc->statm);            //  Another bot process (bwrap's inside)
        proc->statm = -1;
    }
    proc->statm_pid = pid;
    char path [64];
    snprintf (path, sizeof path, "/proc/%d/statm", (int) pid);
    char text [256];
    long long size = 0, resident = 0;
    if (bm_bot_reread_file (&proc->statm, path, text, sizeof text) < 0
    ||  sscanf (text, "%lld %lld", &size, &resident) != 2)
        return -1;
    return resident * (sysconf (_SC_PAGESIZE) / 1024) / 1024;
}

//  --------------------------------------------------------------------------
//  Reading

//  Whether its job's frame is still (partly) unread in its stdin pipe,
//  or not all written to it yet (or never will be: the write failed, its
//  stdin is closed).  Once read, no more checks till the next, and what
//  it wrote on stderr before is dropped.
static bool
s_frame_unread (proc_t *proc)
{
    int queued = 0;
    if (proc->frame_unread
    &&  !(proc->fd_in < 0 || proc->wbuf
          || (ioctl (proc->fd_in, FIONREAD, &queued) == 0 && queued > 0))) {
        proc->frame_unread = false;
        bm_capture_destroy (&proc->between);
    }
    return proc->frame_unread;
}

//  Keep bytes it wrote on stderr between jobs, aside.
static void
s_between_append (proc_t *proc, const char *data, size_t size)
{
    if (!proc->between)
        proc->between = bm_capture_new (proc->between_max, true);
    if (proc->between)
        bm_capture_append (proc->between, data, size);
}

//  Read its stderr (into the job's tail) and its fd 3 (progress of the
//  job, reported if `report`): at most `rounds` reads each.  What it wrote
//  on stderr before it read its job's frame (after its last answer: it
//  had not read the job yet, as the frame is still unread after the read)
//  is between jobs, not the job's log: kept aside (`between`), or all of
//  it if `between`.
static void
s_read_stderr (proc_t *proc, int rounds, bool between)
{
    char buffer [BM_POOL_READ_CHUNK];
    for (; proc->fd_err >= 0 && rounds > 0; rounds--) {
        ssize_t n = bm_bot_read (proc->fd_err, buffer, sizeof buffer);
        if (n < 0)
            break;
        if (n == 0)
            bm_pool_proc_close_fd (proc, &proc->fd_err);
        else
        if (between || s_frame_unread (proc))
            s_between_append (proc, buffer, (size_t) n);
        else
            bm_capture_append (proc->err, buffer, n);
        if (n < (ssize_t) sizeof buffer)
            break;                      //  Emptied it (BM_POOL_READ_CHUNK)
    }
}

//  Returns the bytes read from fd 3.
static size_t
s_read_progress (proc_t *proc, int rounds, bool report)
{
    char buffer [4096];
    size_t total = 0;
    for (; proc->fd_progress >= 0 && rounds > 0; rounds--) {
        ssize_t n = bm_bot_read (proc->fd_progress, buffer, sizeof buffer);
        if (n < 0)
            break;
        if (n == 0) {
            bm_pool_proc_close_fd (proc, &proc->fd_progress);
            break;
        }
        total += (size_t) n;
        int value = bm_progress_feed (proc->progress, buffer, n);
        if (report && proc->job && bm_progress_news (proc->progress))
            proc->on_progress (proc, BM_PROGRESS_BAD);
        if (value >= 0 && report && proc->job)
            proc->on_progress (proc, value);
        if (n < (ssize_t) sizeof buffer)
            break;                      //  Emptied it (BM_POOL_READ_CHUNK)
    }
    return total;
}

//  Read what is in its stderr and fd 3 now (written before the frame that
//  ended the job, so already in the pipes).
void
bm_pool_proc_drain (proc_t *proc, bool report)
{
    bm_pool_proc_drain_stderr (proc);
    s_read_progress (proc, 16, report);
}

//  Read its stderr until the pipe is empty (EAGAIN), or closed.
void
bm_pool_proc_drain_stderr (proc_t *proc)
{
    s_read_stderr (proc, BM_POOL_DRAIN_ROUNDS, false);
}

void
bm_pool_proc_drain_between (proc_t *proc)
{
    bm_capture_destroy (&proc->between);
    s_read_stderr (proc, BM_POOL_DRAIN_ROUNDS, true);
}

void
bm_pool_proc_take_between (proc_t *proc)
{
    if (proc->between && s_frame_unread (proc) && bm_capture_size (proc->between) > 0) {
        //  Its job's stderr is empty: it wrote nothing after reading it.
        bm_capture_destroy (&proc->err);
        proc->err = proc->between;
        proc->between = NULL;
    }
    else
        bm_capture_destroy (&proc->between);
}

//  Keep the job's stdout text; past the cap it is worthless.
void
bm_pool_proc_set_output (proc_t *proc, const char *text, size_t size)
{
    if ((int64_t) size > proc->config->output_max) {
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

//  Its stdout: frames, one per line.  The lines of a read all go to
//  on_frame before on_read, while it takes no job: two answers written at
//  once end one job, and the second is a mistake of the process, never
//  the answer of the job that waits for it.  A line longer than the cap on
//  a job's output (twice, for JSON escapes) ends the process.
static int
s_on_stdout (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop, (void) item;
    proc_t *proc = (proc_t *) arg;
    size_t line_max = 2 * (size_t) proc->config->output_max + 65536;
    proc->reading = true;
    for (int rounds = 4; proc->fd_out >= 0 && rounds > 0; rounds--) {
        if (proc->line_cap - proc->line_size < BM_POOL_READ_CHUNK) {
            size_t cap = proc->line_cap ? proc->line_cap * 2 : 2 * BM_POOL_READ_CHUNK;
            char *line = (char *) realloc (proc->line, cap);
            if (!line) {
                proc->on_bad (proc, "out of memory for its output");
                bm_pool_proc_close_fd (proc, &proc->fd_out);
                break;
            }
            proc->line = line;
            proc->line_cap = cap;
        }
        ssize_t n = bm_bot_read (proc->fd_out, proc->line + proc->line_size, BM_POOL_READ_CHUNK);
        if (n < 0)
            break;
        if (n == 0) {
            bm_pool_proc_close_fd (proc, &proc->fd_out);
            proc->on_closed (proc);
            break;
        }
        size_t scanned = proc->line_size;
        proc->line_size += n;
        size_t start = 0;
        for (size_t i = scanned; i < proc->line_size && proc->fd_out >= 0; i++)
            if (proc->line [i] == '\n') {
                proc->line [i] = 0;
                proc->on_frame (proc, proc->line + start, i - start);
                start = i + 1;
            }
        if (proc->fd_out < 0)
            break;
        memmove (proc->line, proc->line + start, proc->line_size - start);
        proc->line_size -= start;
        if (proc->line_size > line_max) {
            //  What follows is the rest of that line: no frame either.
            if (proc->job)
                proc->overflowed = true;
            proc->line_size = 0;
            proc->on_bad (proc, "a frame longer than the output cap");
            bm_pool_proc_close_fd (proc, &proc->fd_out);
        }
        if (n < BM_POOL_READ_CHUNK)
            break;                      //  Emptied it (BM_POOL_READ_CHUNK)
    }
    proc->reading = false;
    proc->on_read (proc);
    return 0;
}

static int
s_on_stderr (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop, (void) item;
    s_read_stderr ((proc_t *) arg, 4, false);
    return 0;
}

static void
s_poll (proc_t *proc, int fd, short events, zloop_fn *handler)
{
    zmq_pollitem_t item = { NULL, fd, events, 0 };
    zloop_poller (proc->loop, &item, handler, proc);
    zloop_poller_set_tolerant (proc->loop, &item);
}

static int
s_on_progress_resume (zloop_t *loop, int timer_id, void *arg);

//  Its fd 3 has lines. A job's progress goes to the broker at most once
//  every BM_PROGRESS_MIN_GAP_MS, the latest value, so while a job runs
//  the pipe is read at that pace too: what the bot writes in between
//  waits in the pipe (its last line is read when the job ends, by
//  bm_pool_proc_drain) instead of waking the worker for each line.  A
//  process found to write a quarter of a pipe (16 KiB) between two reads
//  is read as it writes from then on, as before the pause existed: it
//  must not wait on a full pipe (at most once, for up to the pause).
#define BM_POOL_PROGRESS_FAST   16384

static int
s_on_progress (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) item;
    proc_t *proc = (proc_t *) arg;
    if (s_read_progress (proc, 16, true) >= BM_POOL_PROGRESS_FAST)
        proc->progress_fast = true;
    if (!proc->progress_fast
    &&  proc->job && proc->fd_progress >= 0 && !proc->progress_timer) {
        zmq_pollitem_t paused = { NULL, proc->fd_progress, 0, 0 };
        zloop_poller_end (loop, &paused);
        proc->progress_timer = zloop_timer (loop, BM_PROGRESS_MIN_GAP_MS, 1, s_on_progress_resume, proc);
    }
    return 0;
}

static int
s_on_progress_resume (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop, (void) timer_id;
    proc_t *proc = (proc_t *) arg;
    proc->progress_timer = 0;
    if (proc->fd_progress >= 0)
        s_poll (proc, proc->fd_progress, ZMQ_POLLIN, s_on_progress);
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
            bm_pool_proc_close_fd (proc, &proc->fd_in);      //  It will die: the reap
            return 0;                                   //  ends the job
        }
        proc->wsent += n;
    }
    if (proc->fd_in >= 0) {
        //  All written: stop asking for room.
        zloop_poller_end (proc->loop, item);
        free (proc->wbuf);
        proc->wbuf = NULL;
        proc->wsize = proc->wsent = 0;
    }
    return 0;
}

void
bm_pool_proc_write (proc_t *proc, char *frame, size_t size)
{
    free (proc->wbuf);
    proc->wbuf = frame;
    proc->wsize = size;
    proc->wsent = 0;
    zmq_pollitem_t stale = { NULL, proc->fd_in, 0, 0 };
    zloop_poller_end (proc->loop, &stale);      //  A bot that answered early
    //  What fits in the pipe now (a whole frame, most often) goes at once;
    //  the rest when it has room.
    s_on_stdin (proc->loop, &stale, proc);
    if (proc->fd_in >= 0 && proc->wbuf)
        s_poll (proc, proc->fd_in, ZMQ_POLLOUT, s_on_stdin);
}

void
bm_pool_proc_read_stdout (proc_t *proc)
{
    s_on_stdout (proc->loop, NULL, proc);
}

//  --------------------------------------------------------------------------
//  Starting

proc_t *
bm_pool_proc_new (struct _bm_pool_t *pool, zloop_t *loop, const bm_pool_config_t *config,
                  char *const envp [], bm_pool_proc_frame_fn *on_frame,
                  bm_pool_proc_bad_fn *on_bad, bm_pool_proc_read_fn *on_read,
                  bm_pool_proc_progress_fn *on_progress,
                  bm_pool_proc_closed_fn *on_closed,
                  bool *launched, char *errstr, size_t errstr_size)
{
    *launched = false;
    int in [2] = { -1, -1 }, out [2] = { -1, -1 }, err [2] = { -1, -1 }, prog [2] = { -1, -1 };
    if (pipe2 (in, O_CLOEXEC) || pipe2 (out, O_CLOEXEC) || pipe2 (err, O_CLOEXEC)
    ||  pipe2 (prog, O_CLOEXEC)) {
        snprintf (errstr, errstr_size, "cannot create pipes: %s", strerror (errno));
        for (int i = 0; i < 2; i++) {
            if (in [i] >= 0) close (in [i]);
            if (out [i] >= 0) close (out [i]);
            if (err [i] >= 0) close (err [i]);
            if (prog [i] >= 0) close (prog [i]);
        }
        return NULL;
    }
    int fds [4] = { in [0], out [1], err [1], prog [1] };
    //  A warm process gets no CPU limit of its own (each job gets the
    //  budget); a fork server none on memory and files either: each child
    //  sets its job's limits from the job frame (the server's own address
    //  space and descriptors are not the job's).
    bm_limits_t own;
    if (config->limits) {
        own = *config->limits;
        own.cpu_per_job = true;
        if (config->fork)
            own.memory_mb = own.max_files = 0;
    }
    bm_limits_run_t *limits = config->limits ? bm_limits_run_new (&own, config->type) : NULL;
    pid_t pid = bm_bot_launch (config->argv, envp, fds, limits, errstr, errstr_size);
    *launched = true;
    close (in [0]);
    close (out [1]);
    close (err [1]);
    close (prog [1]);
    if (pid < 0) {
        close (in [1]);
        close (out [0]);
        close (err [0]);
        close (prog [0]);
        bm_limits_run_destroy (&limits);
        return NULL;
    }
    proc_t *proc = (proc_t *) zmalloc (sizeof (proc_t));
    proc->limits = limits;
    proc->pool = pool;
    proc->loop = loop;
    proc->config = config;
    proc->on_frame = on_frame;
    proc->on_bad = on_bad;
    proc->on_read = on_read;
    proc->on_progress = on_progress;
    proc->on_closed = on_closed;
    proc->pid = pid;
    proc->state = PROC_STARTING;
    proc->started_at = bm_mono_ms ();
    proc->fd_in = in [1];
    proc->fd_out = out [0];
    proc->fd_err = err [0];
    proc->fd_progress = prog [0];
    proc->statm = -1;
    proc->err = bm_capture_new ((size_t) config->stderr_tail, true);
    proc->between_max = config->stderr_tail < BM_POOL_BETWEEN_TAIL
                      ? (size_t) config->stderr_tail : BM_POOL_BETWEEN_TAIL;
    proc->progress = bm_progress_new ();
    bm_bot_nonblocking (proc->fd_in);
    bm_bot_nonblocking (proc->fd_out);
    bm_bot_nonblocking (proc->fd_err);
    bm_bot_nonblocking (proc->fd_progress);
    s_poll (proc, proc->fd_out, ZMQ_POLLIN, s_on_stdout);
    s_poll (proc, proc->fd_err, ZMQ_POLLIN, s_on_stderr);
    s_poll (proc, proc->fd_progress, ZMQ_POLLIN, s_on_progress);
    return proc;
}

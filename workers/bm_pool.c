/*  bm_pool.c - warm bot processes of one bot type: pool and fork modes.  */
#include "bm_pool.h"
#include "bm_pool_proc.h"
#include "bm_bot.h"
#include "bm_capture.h"
#include "bm_progress.h"
#include "bm_config.h"
#include "bm_json.h"
#include "bm_job_report.h"
#include "bm_log.h"
#include "bm_sandbox.h"
#include "bm_utf8.h"

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
#define BM_POOL_INIT_ERROR_LOGGED 700   //  Bytes of an init failure's error
                                        //  its log line holds (the end)
#define BM_POOL_CPU_CHECK_MS    200     //  The CPU time of busy processes,
                                        //  where the pool enforces the CPU
                                        //  budget itself (at the tick)

struct _bm_pool_t {
    zloop_t *loop;              //  Our loop (borrowed)
    bm_pool_config_t config;    //  Copy (argv borrowed)
    char **envp;                //  Processes' environment (owned)
    bm_pool_done_fn *on_done;
    bm_pool_progress_fn *on_progress;
    bm_pool_start_fn *on_start;         //  Or NULL
    void *arg;
    zlistx_t *procs;            //  proc_t, owned
    zlistx_t *waiting;          //  pjob_t waiting for a process, owned
    int tick;                   //  Maintenance timer id
    int failures;               //  Init failures since the last ready
    int64_t next_start;         //  No start before (monotonic ms)
    char *init_error;           //  Last init failure's message
    int64_t start_seq;          //  Starts tried so far (s_start calls)
    int64_t fail_before;        //  A start tried in bm_pool_submit failed
                                //  outright: the jobs queued before it
                                //  (seq below this) fail at the tick; 0:
                                //  none pending
    const char *init_limit;     //  The limit behind it ("memory"), or NULL
    bool stopping;              //  bm_pool_stop: no more warm starts
    bool cpu_watch;             //  Pool mode under a CPU limit whose hard
                                //  RLIMIT_CPU cannot follow each job: the
                                //  pool kills a process past its job's
                                //  budget plus BM_LIMITS_CPU_GRACE_MS
    int64_t cpu_checked_at;     //  Monotonic ms of the last such check
    bm_pool_stats_t stats;
    bm_pool_stats_t exported;   //  Counters as last exported
    bm_series_t *m_processes;   //  Metrics (NULL: none)
    bm_series_t *m_recycles [7];    //  max_jobs, max_rss, idle, killed, limit, output, died
    bm_series_t *m_init_failures;
};

static void s_maintain (bm_pool_t *self, bool may_fail);
static void s_dispatch (bm_pool_t *self);

//  The variable that sets the start deadline, for messages.
static const char *
s_ready_var (bm_pool_t *self)
{
    return self->config.ready_var ? self->config.ready_var : "BOT_<TYPE>_READY_TIMEOUT_MS";
}

//  --------------------------------------------------------------------------

static proc_t *
s_find_proc_of (bm_pool_t *self, void *owner)
{
    for (proc_t *proc = (proc_t *) zlistx_first (self->procs); proc;
         proc = (proc_t *) zlistx_next (self->procs))
        if (proc->job && proc->job->owner == owner)
            return proc;
    return NULL;
}

//  How every line that logs a retirement says it, whatever its cause
//  (text: ", retired (<reason>, N jobs run)", "1 job run"; N the jobs it
//  finished: one it died in is not counted), and the count of it (the
//  metric bot_recycles_total{reason}), once per process.
static void
s_count_retired (proc_t *proc, const char *reason, char *text, size_t size)
{
    bm_pool_stats_t *stats = &proc->pool->stats;
    if (streq (reason, "max_jobs"))
        stats->recycled_max_jobs++;
    else
    if (streq (reason, "max_rss"))
        stats->recycled_max_rss++;
    else
    if (streq (reason, "idle"))
        stats->recycled_idle++;
    else
    if (streq (reason, "limit"))
        stats->recycled_limit++;
    else
    if (streq (reason, "output"))
        stats->recycled_output++;
    else
    if (streq (reason, "died"))
        stats->recycled_died++;
    else
        stats->recycled_killed++;
    snprintf (text, size, ", retired (%s, %lld job%s run)", reason, (long long) proc->jobs_done,
              proc->jobs_done == 1 ? "" : "s");
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
    bm_pool_proc_close_fd (proc, &proc->fd_in);
    bm_pool_proc_kill (proc, SIGTERM);
    char retired [96];
    s_count_retired (proc, reason, retired, sizeof retired);
    bm_info (NULL, "%s %s process pid=%d%s", self->config.type,
             self->config.fork ? "fork server" : "pool", (int) proc->pid, retired + 1);
}

//  --------------------------------------------------------------------------
//  Ending a job

//  A pool process whose job failed on a resource limit (a MemoryError it
//  survived, say, or a subprocess its cgroup's OOM killer or pids limit
//  struck) is not trusted with another job: its cgroup may be near full.
//  Whether a job's outcome reads as a resource limit's (run: the limits
//  of its process), as the job's own verdict reads it (resource_limit).
static bool
s_limit_outcome (bm_pool_t *self, const bm_limits_run_t *run, const bm_pool_outcome_t *outcome)
{
    if (!self->config.limits || outcome->not_limit || (!outcome->signal && outcome->exit_code == 0))
        return false;
    char message [256];
    int status = outcome->signal ? outcome->signal : (outcome->exit_code & 0xff) << 8;
    return bm_limits_pool_verdict (self->config.limits, run, status, outcome->usage,
                                   outcome->message, message, sizeof message) != NULL;
}

static bool
s_hit_limit (proc_t *proc, const bm_pool_outcome_t *outcome)
{
    return !proc->pool->config.fork && s_limit_outcome (proc->pool, proc->limits, outcome);
}

//  Sandboxed: the job's own directory in the process's /tmp (its TMPDIR
//  and HOME in the frame), and, before its first job, what the process
//  made there itself (kept when its /tmp is emptied after each job).
static void
s_job_tmp (proc_t *proc, const char *job_id)
{
    bm_pool_t *self = proc->pool;
    pid_t bot = bm_pool_proc_bot (proc, true);
    if (bot > 0 && !proc->tmp_kept)
        proc->tmp_kept = bm_sandbox_tmp_names (bot);
    const bm_limits_t *limits = self->config.limits;
    if (bot <= 0 || bm_sandbox_job_tmp_make (bot, job_id, limits ? limits->uid : -1,
                                             limits ? limits->gid : -1))
        bm_warn (job_id, "%s process pid=%d: cannot make the job's temporary directory: %s",
                 self->config.type, (int) proc->pid,
                 bot <= 0 ? "no bot process found inside the sandbox" : strerror (errno));
}

//  Sandboxed: the job is over and its process idle: its /tmp loses what
//  the job left there (its own directory and all), but what the process
//  made before its first job.
static void
s_job_tmp_clean (proc_t *proc, const char *job_id)
{
    bm_pool_t *self = proc->pool;
    pid_t bot = bm_pool_proc_bot (proc, true);
    if (bot > 0 && bm_sandbox_tmp_clean (bot, proc->tmp_kept) < 0 && errno != ENOENT)
        bm_warn (job_id, "%s process pid=%d: cannot empty its /tmp after the job: %s",
                 self->config.type, (int) proc->pid, strerror (errno));
}

//  The job of proc ended: tell the owner, make proc idle (or retire it).
static void
s_end_job (proc_t *proc, bm_pool_outcome_t *outcome, bool process_alive)
{
    bm_pool_t *self = proc->pool;
    proc->frame_unread = false;         //  It answered: it read its job
    bm_capture_destroy (&proc->between);
    //  Progress written on fd 3 before the answer (a fork server's child
    //  writes it, then exits, then the server answers) is in the pipe
    //  now, maybe unread yet: it is this job's, read before the job ends
    //  (the last value travels in the DONE), a bad line's WARN as well.
    bm_pool_proc_drain (proc, true);
    if (bm_progress_news (proc->progress) && self->on_progress)
        self->on_progress (proc->job->owner, BM_PROGRESS_BAD, self->arg);
    char *tail = bm_capture_text (proc->err);
    if (!outcome->message)
        outcome->message = tail;
    outcome->log = tail;
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
        if (outcome->overflowed && !self->config.fork) {
            //  Past the cap on a job's output: the process is killed (its
            //  stdout may be mid-line), as the job's error says.
            s_retire (proc, "output");
            bm_pool_proc_kill (proc, SIGKILL);
        }
        else
        if (s_hit_limit (proc, outcome))
            s_retire (proc, "limit");
        else
        if (self->config.max_jobs > 0 && proc->jobs_done >= self->config.max_jobs)
            s_retire (proc, "max_jobs");
        else {
            //  The bot's own memory: under bwrap, the process inside.
            pid_t bot = self->config.max_rss_mb > 0 ? bm_pool_proc_bot (proc, self->config.sandboxed) : 0;
            int64_t rss = bot > 0 ? bm_pool_proc_rss_mb (proc, bot) : -1;
            if (rss > self->config.max_rss_mb) {
                bm_info (NULL, "%s process pid=%d uses %lld MiB, over %s=%lld",
                         self->config.type, (int) proc->pid, (long long) rss,
                         self->config.rss_var ? self->config.rss_var : "BOT_<TYPE>_MAX_RSS_MB",
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
    if (process_alive && proc->state == PROC_IDLE && self->config.sandboxed)
        s_job_tmp_clean (proc, job->id);
    self->stats.busy--;
    self->on_done (job->owner, outcome, self->arg);
    free (tail);
    free (proc->output);
    proc->output = NULL;
    proc->output_size = 0;
    proc->overflowed = false;
    bm_pool_pjob_destroy (&job);
}

//  --------------------------------------------------------------------------
//  Frames from the bot

//  usage, cleared, holding ms of CPU time (as ru_utime).  Returns usage.
static const struct rusage *
s_usage_of_ms (int64_t ms, struct rusage *usage)
{
    memset (usage, 0, sizeof *usage);
    usage->ru_utime.tv_sec = (time_t) (ms / 1000);
    usage->ru_utime.tv_usec = (suseconds_t) (ms % 1000) * 1000;
    return usage;
}

//  A fork server's job runs in a child of its own process group, which a
//  kill of the server's group does not reach: the child of the job it
//  runs, if any, is killed with it, else the failed job would run on.
//  Its group only: a group's id is not reused while the group lives,
//  where the child's pid may already be another process's.
static void
s_kill_child (proc_t *proc)
{
    if (proc->pool->config.fork && proc->child > 0)
        killpg (proc->child, SIGKILL);
}

static void
s_kill_bad (proc_t *proc, const char *why)
{
    char retired [96] = "";
    s_kill_child (proc);
    bm_pool_proc_kill (proc, SIGKILL);
    if (proc->state != PROC_RETIRING) {
        proc->state = PROC_RETIRING;
        proc->retire_reason = "killed";
        proc->retire_since = bm_mono_ms ();
        s_count_retired (proc, "killed", retired, sizeof retired);
    }
    bm_warn (NULL, "%s process pid=%d: %s: killed%s", proc->pool->config.type, (int) proc->pid,
             why, retired);
}

//  The process broke the framing of its stdout (a line past the cap, no
//  memory for one): it is killed.  Its job, if it runs one, fails now
//  with bad_output (past the cap: "wrote more than N bytes"), once, rather
//  than as a lost attempt when the process is reaped; the process counts
//  as recycled for its output, in fork mode too (the line was the
//  server's, whose framing is lost).
static void
s_broke_framing (proc_t *proc, const char *why)
{
    if (!proc->job) {
        s_kill_bad (proc, why);
        return;
    }
    bm_pool_t *self = proc->pool;
    bm_warn (NULL, "%s process pid=%d: %s while it ran a job: killed", self->config.type,
             (int) proc->pid, why);
    s_retire (proc, "output");
    s_kill_child (proc);
    bm_pool_proc_kill (proc, SIGKILL);
    char message [160];
    snprintf (message, sizeof message, "the worker could not read the bot's stdout: %s", why);
    bm_pool_outcome_t outcome = { .exit_code = -1, .bad_output = proc->overflowed ? NULL : message };
    s_end_job (proc, &outcome, true);
    s_dispatch (self);
}

//  End of file on a process's stdout.  One that exits (or died) is left
//  to its reap, which says how it ended, as is one being stopped (its
//  job's timeout or cancel says how that ended).  One alive that closed its stdout
//  can never answer again: its job, if it runs one, fails now with
//  bad_output (rather than wait for the process's exit or the job's
//  timeout), and it is killed and replaced.  One still starting is left
//  to its ready deadline.
static void
s_closed_stdout (proc_t *proc)
{
    bm_pool_t *self = proc->pool;
    //  Retiring, starting, or a pool process being stopped (a timeout, a
    //  cancel): the reap or the stop says how its job ended, not its
    //  closed stdout.  A fork server's stop reaches only its job's child:
    //  one that closed its stdout would never answer that job.
    if (proc->state == PROC_RETIRING || proc->state == PROC_STARTING
    ||  (proc->stopping && !self->config.fork))
        return;
    pid_t bot = bm_pool_proc_bot (proc, self->config.sandboxed);
    if (bm_pool_proc_exiting (proc->pid) || (bot > 0 && bm_pool_proc_exiting (bot)))
        return;
    const char *process = self->config.fork ? "fork server" : "pool process";
    if (!proc->job) {
        s_kill_bad (proc, "it closed its stdout while idle: it can never answer a job");
        return;
    }
    s_kill_bad (proc, "it closed its stdout while it runs a job: it can never answer");
    char message [256];
    snprintf (message, sizeof message, "the bot's %s closed its stdout while it ran the job, "
              "without answering it, and was killed (a pooled bot keeps its stdout open and "
              "writes one answer frame per job)", process);
    bm_pool_outcome_t outcome = { .exit_code = -1, .bad_output = message };
    s_end_job (proc, &outcome, true);
    s_dispatch (self);
}

//  A frame (a JSON object) with none of the keys of the protocol while a
//  job runs, e.g. {"results": ...}: its job fails with bad_output naming
//  them, rather than wait for its timeout.
static void
s_unknown_frame (proc_t *proc, json_t *frame)
{
    bm_pool_t *self = proc->pool;
    char keys [160] = "";
    size_t used = 0;
    const char *key;
    json_t *value;
    json_object_foreach (frame, key, value) {
        int n = snprintf (keys + used, sizeof keys - used, "%s\"%.40s\"", used ? ", " : "", key);
        if (n < 0 || (size_t) n >= sizeof keys - used) {
            snprintf (keys + (sizeof keys - 5), 5, ", ...");
            break;
        }
        used += (size_t) n;
    }
    if (!*keys)
        snprintf (keys, sizeof keys, "none");
    char message [320];
    snprintf (message, sizeof message, "the bot answered with a frame of unknown keys (%s); "
              "a frame has one of \"result\", \"exit\", \"signal\", \"output\", \"progress\", "
              "\"started\", \"ready\"", keys);
    bm_warn (NULL, "%s process pid=%d: %s", self->config.type, (int) proc->pid, message);
    bm_pool_outcome_t outcome = { .exit_code = -1, .bad_output = message };
    s_end_job (proc, &outcome, true);
    s_dispatch (self);
}

//  What a log line says of what a dead process wrote on stderr (its
//  capture since its last job began, or since it started): how many bytes,
//  never the text, which may be secret (it is the job's error and log, or
//  nobody's).  In a job: "; it wrote N bytes on stderr in the job" and
//  kept, where the job keeps their tail (" (their tail is in the job's
//  error)"); idle: "; it wrote N bytes on stderr since its last job
//  began"; or "; nothing on its stderr ...".
static void
s_stderr_said (proc_t *proc, const char *kept, char *words, size_t size)
{
    size_t total = proc->err ? bm_capture_total (proc->err) : 0;
    const char *since = kept ? "in the job"
                      : proc->jobs_done ? "since its last job began" : "since it started";
    if (total == 0)
        snprintf (words, size, "; nothing on its stderr %s", since);
    else
        snprintf (words, size, "; it wrote %zu byte%s on stderr %s%s", total, total == 1 ? "" : "s",
                  since, kept ? kept : "");
}

//  The first bytes of a line, printable, for a message.
static void
s_excerpt (const char *line, size_t size, char *text, size_t text_size)
{
    size_t shown = size < 60 ? size : 60, used = 0;
    for (size_t i = 0; i < shown && used + 1 < text_size; i++) {
        unsigned char c = (unsigned char) line [i];
        text [used++] = c < 0x20 || c == 0x7f || c == '\'' ? '?' : (char) c;
    }
    text [used] = 0;
    if (shown < size && used + 4 < text_size)
        strcat (text, "...");
}

//  A JSON value's kind, for messages ("got a string").
static const char *
s_json_kind (const json_t *value)
{
    switch (json_typeof (value)) {
        case JSON_OBJECT:   return "an object";
        case JSON_ARRAY:    return "an array";
        case JSON_STRING:   return "a string";
        case JSON_INTEGER:  return "an integer";
        case JSON_REAL:     return "a number with a fraction or an exponent";
        case JSON_TRUE:
        case JSON_FALSE:    return "a boolean";
        default:            return "null";
    }
}

//  What is wrong with a stdout line that is no frame, for messages: "not
//  valid UTF-8 (byte 39 is 0xE9, ...)", or "not a JSON object (jansson's
//  error, at byte N)", or "not a JSON object (an array)" (parsed: the
//  value of the line, else NULL).
static void
s_line_fault (const char *line, size_t size, const json_t *parsed, const json_error_t *jerr,
              char *text, size_t text_size)
{
    size_t at = 0;
    while (at < size) {
        size_t seq = bm_utf8_seq ((const unsigned char *) line + at, size - at);
        if (seq == 0)
            break;
        at += seq;
    }
    if (at < size)
        snprintf (text, text_size, "not valid UTF-8 (byte %zu of the line, counted from 0, is "
                  "0x%02X; a frame is UTF-8 text: encode it as UTF-8, e.g. Perl's encode_json or "
                  "JSON::PP->new->utf8)", at, (unsigned) (unsigned char) line [at]);
    else
    if (parsed)
        snprintf (text, text_size, "not a JSON object (it is %s)", s_json_kind (parsed));
    else
        snprintf (text, text_size, "not a JSON object (%s, at byte %d)", jerr->text,
                  jerr->position);
}

//  A stdout line that is not a JSON object (parsed: its value, if it is
//  JSON; jerr: the parse error otherwise).  While the process runs a job,
//  it is that job's answer gone wrong (a missing brace, pretty-printed
//  JSON over several lines, a print() on stdout, Latin-1 text): the job
//  fails at once with bad_output naming what is wrong, and the process,
//  whose framing can no longer be trusted, is killed and replaced; a fork
//  server too (it would never answer the job otherwise).  Otherwise (while
//  it loads, or between jobs) the line is ignored, with one WARN per
//  process.
static void
s_bad_line (proc_t *proc, const char *line, size_t size, const json_t *parsed,
            const json_error_t *jerr)
{
    bm_pool_t *self = proc->pool;
    char excerpt [80], fault [256];
    s_excerpt (line, size, excerpt, sizeof excerpt);
    s_line_fault (line, size, parsed, jerr, fault, sizeof fault);
    if (proc->job && proc->state == PROC_BUSY) {
        char message [512], why [320];
        snprintf (message, sizeof message, "the bot wrote a line that is %s on its stdout while it "
                  "ran the job: '%s' (a %s answers with one compact JSON object per line; log on "
                  "stderr)", fault, excerpt, self->config.fork ? "fork server" : "pooled bot");
        snprintf (why, sizeof why, "a line that is %s while it runs a job", fault);
        s_kill_bad (proc, why);
        bm_pool_outcome_t outcome = { .exit_code = -1, .bad_output = message };
        s_end_job (proc, &outcome, true);
        s_dispatch (self);
        return;
    }
    if (!proc->warned_bad_line) {
        proc->warned_bad_line = true;
        bm_warn (NULL, "%s process pid=%d wrote a line that is %s on its stdout%s: '%s' (ignored; "
                 "further ones are logged at debug level)", self->config.type, (int) proc->pid,
                 fault, proc->state == PROC_STARTING ? " before it was ready" : "", excerpt);
    }
    else
        bm_debug (NULL, "%s process pid=%d wrote a line that is not a frame: '%s'",
                  self->config.type, (int) proc->pid, excerpt);
}

//  Whether a progress or answer frame names ("job") another job than the
//  one proc runs.  A frame without "job" (or with null) names none: it is
//  taken as it comes, as every bot written before frames named their job
//  is read.  While proc runs no job, the rules of such frames apply.
static bool
s_names_another_job (proc_t *proc, json_t *frame)
{
    json_t *id = json_object_get (frame, "job");
    if (!proc->job || !id || json_is_null (id))
        return false;
    if (!json_object_get (frame, "progress") && !json_object_get (frame, "result")
    &&  !json_object_get (frame, "exit") && !json_object_get (frame, "signal"))
        return false;
    return !json_is_string (id) || !streq (json_string_value (id), proc->job->id);
}

//  A progress or answer frame for another job than the one proc runs (a
//  second answer of its job before, written later than the first): not
//  taken for its job.  The process, out of step with its jobs, is killed;
//  its job goes back to the head of the queue, for the process that
//  replaces it, as a job that waited for it would (the same dispatch: it
//  did nothing wrong).  Once: a job whose second process does the same
//  fails with bad_output, as it would for ever.  A job being stopped (a
//  timeout, a cancel) ends with the process instead, as it would have.
static void
s_another_job (proc_t *proc, json_t *frame)
{
    bm_pool_t *self = proc->pool;
    if (proc->state == PROC_RETIRING)
        return;             //  Killed already: its end ends its job
    json_t *id = json_object_get (frame, "job");
    char *text = json_is_string (id) ? strdup (json_string_value (id))
                                     : json_dumps (id, JSON_COMPACT | JSON_ENCODE_ANY);
    char named [80];
    s_excerpt (text ? text : "?", text ? strlen (text) : 1, named, sizeof named);
    free (text);
    char why [256];
    snprintf (why, sizeof why, "%s for job %s while it runs job %s",
              json_object_get (frame, "progress") ? "a progress frame" : "an answer", named,
              proc->job->id);
    s_kill_bad (proc, why);
    pjob_t *job = proc->job;
    if (proc->stopping)
        return;             //  Its reap ends it as stopped
    if (job->taken_back || !job->frame) {
        char message [400];
        snprintf (message, sizeof message, "the bot's %s wrote a frame for job %s while it ran "
                  "this job (a frame's \"job\" names the job it is for)%s",
                  self->config.fork ? "fork server" : "pool process", named,
                  job->taken_back ? ", as the process before it did: the job is not run a third time"
                                  : ": killed");
        bm_pool_outcome_t outcome = { .exit_code = -1, .bad_output = message };
        s_end_job (proc, &outcome, true);
        s_dispatch (self);
        return;
    }
    proc->job = NULL;
    proc->child = 0;
    proc->pending_signal = 0;
    self->stats.busy--;
    free (proc->output);
    proc->output = NULL;
    proc->output_size = 0;
    proc->overflowed = false;
    job->taken_back = true;
    zlistx_add_start (self->waiting, job);
    bm_info (job->id, "its %s process pid=%d wrote %s: the job goes to the process that "
             "replaces it", self->config.type, (int) proc->pid, why);
    s_maintain (self, false);
    s_dispatch (self);
}

//  A value as JSON text, printable and cut short, for messages.
static void
s_value_excerpt (const json_t *value, char *text, size_t text_size)
{
    char *json = bm_json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
    s_excerpt (json ? json : "?", json ? strlen (json) : 1, text, text_size);
    free (json);
}

//  An answer frame ({"exit"} or {"signal"}) whose fields are not of their
//  types ("exit": "1", as a shell bot writing "$?" into a template does):
//  returns true with a message naming the first such field, and the bot's
//  own "error" text when it gave one; false when the frame is well formed.
//  "exit", "signal" and "cpuMs" are integers; "output", "error" and
//  "badOutput" strings; null is a field not given (but one of "exit" and
//  "signal" is).
static bool
s_answer_invalid (json_t *frame, char *message, size_t size)
{
    static const struct { const char *key; bool integer; } fields [] = {
        { "exit", true }, { "signal", true }, { "cpuMs", true },
        { "output", false }, { "error", false }, { "badOutput", false } };
    json_t *wrong = NULL;
    size_t i;
    for (i = 0; !wrong && i < sizeof fields / sizeof fields [0]; i++) {
        json_t *value = json_object_get (frame, fields [i].key);
        if (value && !json_is_null (value)
        &&  !(fields [i].integer ? json_is_integer (value) : json_is_string (value)))
            wrong = value;
    }
    if (wrong)
        i--;
    else
    if (!json_is_integer (json_object_get (frame, "exit"))
    &&  !json_is_integer (json_object_get (frame, "signal"))) {
        i = 0;                  //  Both null
        wrong = json_null ();
    }
    else
        return false;
    char got [80];
    s_value_excerpt (wrong, got, sizeof got);
    json_t *error = json_object_get (frame, "error");
    bool said = json_is_string (error) && json_string_length (error) > 0;
    snprintf (message, size, "the bot's answer frame is not valid: \"%s\" must be %s, got %s"
              "%s%s%s%s%.*s", fields [i].key, fields [i].integer ? "an integer" : "a string",
              s_json_kind (wrong), json_is_null (wrong) ? "" : " (",
              json_is_null (wrong) ? "" : got, json_is_null (wrong) ? "" : ")",
              said ? "; its \"error\": " : "",
              said ? (int) (size / 2) : 0, said ? json_string_value (error) : "");
    return true;
}

//  A progress frame's value: an integer from 0 to 100 is the job's
//  progress; any other ({"progress": 150}, -5, 40.5, "70", true) is
//  ignored, as fd 3's bad lines are, with one WARN per job for the first.
static void
s_progress_frame (proc_t *proc, json_t *value)
{
    bm_pool_t *self = proc->pool;
    if (!proc->job || !self->on_progress)
        return;
    if (json_is_integer (value) && json_integer_value (value) >= 0
    &&  json_integer_value (value) <= 100) {
        self->on_progress (proc->job->owner, (int) json_integer_value (value), self->arg);
        return;
    }
    if (proc->warned_bad_progress)
        return;
    proc->warned_bad_progress = true;
    char got [80];
    s_value_excerpt (value, got, sizeof got);
    bm_warn (proc->job->id, "the bot wrote a progress frame whose \"progress\" is not an integer "
             "from 0 to 100: %s (ignored, as are this job's further bad progress frames)", got);
}

//  Whether a {"signal": 24} answer (SIGXCPU, as the bot or its fork
//  server reports it) came well before the job's CPU budget: the job's
//  CPU time, its "cpuMs" (a fork server's child) or what its pool process
//  used since the job began, is known and under 90 % of
//  BOT_<TYPE>_CPU_SECONDS.  The kernel sends SIGXCPU at the budget, so
//  that signal is no limit's (the bot raised it, or relays another's).
static bool
s_xcpu_short (proc_t *proc, const json_t *cpu_ms)
{
    bm_pool_t *self = proc->pool;
    const bm_limits_t *limits = self->config.limits;
    if (!limits || limits->cpu_seconds <= 0)
        return false;
    int64_t used = -1;
    if (json_is_integer (cpu_ms) && json_integer_value (cpu_ms) >= 0)
        used = (int64_t) json_integer_value (cpu_ms);
    else
    if (!self->config.fork && proc->cpu_before_ms >= 0) {
        pid_t bot = bm_pool_proc_bot (proc, self->config.sandboxed);
        int64_t now = bot > 0 ? bm_limits_cpu_used_ms (bot) : -1;
        if (now >= 0)
            used = now - proc->cpu_before_ms;
    }
    return used >= 0 && used * 10 < (int64_t) limits->cpu_seconds * 1000 * 9;
}

//  Whether a ready frame is a fork server's: {"ready": true, "mode": "fork"}.
static bool
s_says_fork (json_t *frame)
{
    json_t *mode = json_object_get (frame, "mode");
    return json_is_string (mode) && streq (json_string_value (mode), "fork");
}

static void
s_on_frame (proc_t *proc, const char *line, size_t size)
{
    bm_pool_t *self = proc->pool;
    while (size > 0 && (line [size - 1] == '\r' || line [size - 1] == ' '))
        size--;
    //  A byte order mark a bot wrote on stdout before the runtime's frame
    //  (a stream opened by a Windows-minded writer) is not part of it.
    if (size >= 3 && memcmp (line, BM_UTF8_BOM, 3) == 0) {
        line += 3;
        size -= 3;
    }
    if (size == 0)
        return;
    json_error_t jerr;
    json_t *frame = json_loadb (line, size, 0, &jerr);
    if (!frame || !json_is_object (frame)) {
        s_bad_line (proc, line, size, frame, &jerr);
        json_decref (frame);
        return;
    }
    json_t *value;
    char invalid [1024];
    if (s_names_another_job (proc, frame))
        s_another_job (proc, frame);
    else
    if (json_object_get (frame, "ready")) {
        if (proc->state == PROC_STARTING && self->config.fork && !proc->not_fork
        &&  !s_says_fork (frame)) {
            //  A pool bot (or any other program) run in fork mode: it would
            //  run the jobs itself, without the limits each child of a fork
            //  server applies.  Killed, it counts as an init failure.
            proc->not_fork = true;
            bm_warn (NULL, "%s fork server process pid=%d is not a fork server (its ready frame "
                     "has no \"mode\": \"fork\"): killed", self->config.type, (int) proc->pid);
            bm_pool_proc_kill (proc, SIGKILL);
        }
        else
        if (proc->state == PROC_STARTING && !proc->not_fork) {
            //  What it wrote on stderr before this line (a fork server
            //  flushes what its bot printed while loading just before it)
            //  is in the pipe now, maybe unread yet if the worker was slow:
            //  read it into its start-up tail before it gets a job, whose
            //  stderr tail (a failed job's message) starts afresh.
            bm_pool_proc_drain_stderr (proc);
            proc->state = PROC_IDLE;
            proc->idle_since = bm_mono_ms ();
            self->failures = 0;
            zstr_free (&self->init_error);
            self->init_limit = NULL;
            bm_info (NULL, "%s %s process pid=%d ready", self->config.type,
                     self->config.fork ? "fork server" : "pool", (int) proc->pid);
            s_dispatch (self);
        }
    }
    else
    if ((value = json_object_get (frame, "progress")))
        s_progress_frame (proc, value);
    else
    if ((value = json_object_get (frame, "started"))) {
        //  Under bwrap the pid is the child's in the sandbox's namespace.
        pid_t child = 0;
        if (proc->job && json_is_integer (value) && json_integer_value (value) > 1
        &&  json_integer_value (value) < INT32_MAX)
            child = bm_pool_proc_child_named (proc, (pid_t) json_integer_value (value),
                                              self->config.sandboxed);
        if (child > 0) {
            proc->child = child;
            if (proc->pending_signal)
                killpg (proc->child, proc->pending_signal);
        }
    }
    else
    if (!proc->job) {
        if (proc->state != PROC_RETIRING)       //  Not one being killed already
            s_kill_bad (proc, "an answer frame while it runs no job");
    }
    else
    if ((value = json_object_get (frame, "result"))) {
        //  Its text: the cap on a job's output applies to it.
        char *text = bm_json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY);
        bm_pool_outcome_t outcome = { .exit_code = 0, .result = text ? value : NULL };
        if (text) {
            bm_pool_proc_set_output (proc, text, strlen (text));
            free (text);
        }
        else
            bm_pool_proc_set_output (proc, "", 0);
        s_end_job (proc, &outcome, true);
        s_dispatch (self);
    }
    else
    if ((json_object_get (frame, "exit") || json_object_get (frame, "signal"))
    &&  s_answer_invalid (frame, invalid, sizeof invalid)) {
        //  Its job fails with bad_output naming the field; the process,
        //  whose framing holds, serves the next job.
        bm_warn (proc->job->id, "%s process pid=%d: %s", self->config.type, (int) proc->pid,
                 invalid);
        bm_pool_outcome_t outcome = { .exit_code = -1, .bad_output = invalid };
        s_end_job (proc, &outcome, true);
        s_dispatch (self);
    }
    else
    if (json_object_get (frame, "exit") || json_object_get (frame, "signal")) {
        json_t *output = json_object_get (frame, "output");
        if (json_is_string (output))
            bm_pool_proc_set_output (proc, json_string_value (output), json_string_length (output));
        bm_pool_outcome_t outcome = { .exit_code = -1 };
        json_t *error = json_object_get (frame, "error");
        if (json_is_string (error) && json_string_length (error) > 0)
            outcome.message = json_string_value (error);
        json_t *bad = json_object_get (frame, "badOutput");
        if (json_is_string (bad) && json_string_length (bad) > 0)
            outcome.bad_output = json_string_value (bad);
        outcome.run = proc->limits;
        struct rusage child_usage;
        if (json_is_integer (json_object_get (frame, "signal"))) {
            outcome.signal = (int) json_integer_value (json_object_get (frame, "signal"));
            //  The fork server's child: the CPU time of its own it used
            //  (the verdict tells its hard CPU limit's SIGKILL from others).
            json_t *cpu_ms = json_object_get (frame, "cpuMs");
            if (json_is_integer (cpu_ms) && json_integer_value (cpu_ms) >= 0)
                outcome.usage = s_usage_of_ms (json_integer_value (cpu_ms), &child_usage);
            outcome.not_limit = outcome.signal == SIGXCPU && s_xcpu_short (proc, cpu_ms);
        }
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
            bm_pool_proc_set_output (proc, json_string_value (value), json_string_length (value));
    }
    else
        s_unknown_frame (proc, frame);
    json_decref (frame);
}

//  --------------------------------------------------------------------------
//  Processes

//  Progress of a process's job, for the job's owner.
static void
s_on_proc_progress (proc_t *proc, int progress)
{
    bm_pool_t *self = proc->pool;
    if (self->on_progress)
        self->on_progress (proc->job->owner, progress, self->arg);
}

//  Every line of one read of a process's stdout was handled: if an answer
//  in it left the process idle, it may take the next job now.
static void
s_on_proc_read (proc_t *proc)
{
    s_dispatch (proc->pool);
}

static int
s_start (bm_pool_t *self)
{
    char errstr [256] = "";
    bool launched;
    self->start_seq++;
    proc_t *proc = bm_pool_proc_new (self, self->loop, &self->config, self->envp, s_on_frame,
                                     s_broke_framing, s_on_proc_read, s_on_proc_progress,
                                     s_closed_stdout,
                                     &launched, errstr, sizeof errstr);
    if (!launched) {
        //  Not the bot's doing (no pipes: the worker is out of fds).
        zstr_free (&self->init_error);
        self->init_error = strdup (errstr);
        self->init_limit = NULL;
        return -1;
    }
    self->stats.started++;
    if (!proc) {
        self->stats.init_failures++;
        self->failures++;
        zstr_free (&self->init_error);
        self->init_error = strdup (errstr);
        self->init_limit = NULL;
        return -1;
    }
    zlistx_add_end (self->procs, proc);
    self->stats.processes++;
    bm_debug (NULL, "%s: started %s process pid=%d", self->config.type,
              self->config.fork ? "fork server" : "pool", (int) proc->pid);
    return 0;
}

//  Whether a process is ready (idle, or busy with a job it will be done
//  with): waiting jobs can go to it, whatever starts fail meanwhile.
static bool
s_any_ready (bm_pool_t *self)
{
    for (proc_t *proc = (proc_t *) zlistx_first (self->procs); proc;
         proc = (proc_t *) zlistx_next (self->procs))
        if (proc->state == PROC_IDLE || proc->state == PROC_BUSY)
            return true;
    return false;
}

//  A start failed (its process died or was killed before it was ready, or
//  it could not be launched): fail the jobs that waited for it, those
//  queued before start number `before` (all: INT64_MAX), with its error:
//  bot_init_failed, or resource_limit when the process ran out of memory
//  under its limit while loading (init_limit).  Only while no process is
//  ready: one that is takes them in turn.  A job that comes while the
//  next start is backed off waits for that start, never failed by an
//  earlier one's error.
static void
s_fail_waiting (bm_pool_t *self, int64_t before)
{
    while (!s_any_ready (self)) {
        //  From the first each time: on_done may change the list.
        pjob_t *job;
        for (job = (pjob_t *) zlistx_first (self->waiting); job && job->seq >= before;
             job = (pjob_t *) zlistx_next (self->waiting))
            ;
        if (!job)
            break;
        zlistx_detach_cur (self->waiting);
        bm_pool_outcome_t outcome = { .init_failed = true, .init_limit = self->init_limit,
                                      .exit_code = -1,
                                      .message = self->init_error ? self->init_error : "the bot failed to load",
                                      .output = "" };
        self->on_done (job->owner, &outcome, self->arg);
        bm_pool_pjob_destroy (&job);
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
        if (proc->state != PROC_IDLE || proc->fd_in < 0 || proc->reading)
            continue;
        pjob_t *job = (pjob_t *) zlistx_detach (self->waiting, NULL);
        if (job->waited && self->on_start) {
            size_t size = 0;
            char *frame = self->on_start (job->owner, &size, self->arg);
            char *line = frame ? (char *) realloc (frame, size + 1) : NULL;
            if (line) {
                line [size] = '\n';
                free (job->frame);
                job->frame = line;
                job->size = size + 1;
            }
            else
                free (frame);           //  No memory: the frame it came with
        }
        job->waited = false;
        proc->job = job;
        proc->state = PROC_BUSY;
        proc->stopping = false;
        self->stats.busy++;
        bm_progress_rearm (proc->progress);
        proc->warned_bad_progress = false;
        //  What it wrote since its last answer and is in the pipe now is
        //  not the start of this job's log; nor is what it writes before
        //  it reads this job's frame (frame_unread).  Both are kept aside:
        //  if it dies before it reads the frame, they say why.
        bm_pool_proc_drain_between (proc);
        bm_capture_t *err = bm_capture_new ((size_t) self->config.stderr_tail, true);
        if (err) {
            //  The stderr of this job only.
            bm_capture_destroy (&proc->err);
            proc->err = err;
        }
        if (proc->limits)
            bm_limits_run_job_start (proc->limits);
        if (self->config.sandboxed)
            s_job_tmp (proc, job->id);
        proc->cpu_before_ms = -1;
        proc->cpu_watch_ms = -1;
        if (!self->config.fork && self->config.limits && self->config.limits->cpu_seconds) {
            //  Under bwrap the budget goes to the bot inside, not to bwrap.
            //  Unsandboxed, the target is the process itself: the CPU time
            //  it used so far (one read of its CPU clock) is where the
            //  job's own begins, for the verdict and the pool's check.
            pid_t target = bm_pool_proc_bot (proc, self->config.sandboxed);
            int64_t used_ms = -1;
            if (target <= 0 || bm_limits_cpu_job_start (target, self->config.limits, &used_ms))
                bm_warn (NULL, "%s process pid=%d: cannot set the CPU limit of its job: %s",
                         self->config.type, (int) proc->pid,
                         target <= 0 ? "no bot process found inside the sandbox" : strerror (errno));
            if (!self->config.sandboxed)
                proc->cpu_before_ms = used_ms;
            if (self->cpu_watch && target > 0)
                proc->cpu_watch_ms = used_ms;
        }
        //  The process gets a copy: the job keeps its frame while it
        //  runs, to run again if its process is killed for a frame of
        //  another job (without memory for a copy, it gives its own).
        char *copy = (char *) malloc (job->size);
        if (copy)
            memcpy (copy, job->frame, job->size);
        else {
            copy = job->frame;
            job->frame = NULL;
        }
        bm_pool_proc_write (proc, copy, job->size);
        proc->frame_unread = true;
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
            bm_pool_proc_kill (proc, SIGKILL);
            proc->retire_since = 0;         //  Once
        }
        //  Never ready (it waits for end of file on stdin, as a spawn
        //  bot does; it hangs while loading): its jobs would wait for it
        //  until their timeout.  Killed, it counts as an init failure.
        if (proc->state == PROC_STARTING && !proc->ready_expired && !proc->not_fork
        &&  self->config.ready_timeout_ms > 0
        &&  now - proc->started_at >= self->config.ready_timeout_ms) {
            proc->ready_expired = true;
            bm_warn (NULL, "%s %s process pid=%d is not ready after %lld ms (no {\"ready\": true} "
                     "line on its stdout, or not flushed; %s): killed", self->config.type,
                     self->config.fork ? "fork server" : "pool", (int) proc->pid,
                     (long long) self->config.ready_timeout_ms, s_ready_var (self));
            bm_pool_proc_kill (proc, SIGKILL);
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
    //  Stopping, processes start only for jobs that wait for one.
    int64_t warm = self->stopping ? 0 : self->config.min_procs;
    while (alive < self->config.max_procs && now >= self->next_start
    &&  (serving < warm || starting < (int64_t) zlistx_size (self->waiting))) {
        if (s_start (self)) {
            bm_error (NULL, "%s: cannot start a process: %s", self->config.type, self->init_error);
            self->next_start = now + s_backoff_ms (self->failures);
            if (may_fail)
                s_fail_waiting (self, self->start_seq);
            else
                self->fail_before = self->start_seq;
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
    int64_t deltas [7] = {
        now->recycled_max_jobs - was->recycled_max_jobs, now->recycled_max_rss - was->recycled_max_rss,
        now->recycled_idle - was->recycled_idle, now->recycled_killed - was->recycled_killed,
        now->recycled_limit - was->recycled_limit, now->recycled_output - was->recycled_output,
        now->recycled_died - was->recycled_died };
    for (int i = 0; i < 7; i++)
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
        "Warm bot processes retired, by reason (max_jobs, max_rss, idle, killed, limit, output, died)", "bot_type,reason");
    bm_metric_t *init = bm_metrics_counter (metrics, "bot_init_failures_total",
        "Warm bot processes that died before they were ready", "bot_type");
    self->m_processes = bm_metric_series (processes, self->config.type, mode);
    const char *reasons [7] = { "max_jobs", "max_rss", "idle", "killed", "limit", "output", "died" };
    for (int i = 0; i < 7; i++)
        self->m_recycles [i] = bm_metric_series (recycles, self->config.type, reasons [i]);
    self->m_init_failures = bm_metric_series (init, self->config.type);
    memset (&self->exported, 0, sizeof self->exported);
    s_export (self);
}

//  The busy process whose bot used more CPU time in its job than the
//  budget plus the grace (the figure in *used_ms), or NULL.
static proc_t *
s_over_cpu_budget (bm_pool_t *self, int64_t *used_ms)
{
    int64_t allowed = self->config.limits->cpu_seconds * 1000 + BM_LIMITS_CPU_GRACE_MS;
    for (proc_t *proc = (proc_t *) zlistx_first (self->procs); proc;
         proc = (proc_t *) zlistx_next (self->procs)) {
        if (proc->state != PROC_BUSY || !proc->job || proc->stopping || proc->cpu_watch_ms < 0)
            continue;
        pid_t bot = bm_pool_proc_bot (proc, self->config.sandboxed);
        int64_t now = bot > 0 ? bm_limits_cpu_used_ms (bot) : -1;
        if (now >= 0 && now - proc->cpu_watch_ms >= allowed) {
            *used_ms = now - proc->cpu_watch_ms;
            return proc;
        }
    }
    return NULL;
}

//  Where the hard RLIMIT_CPU cannot follow each job (no CAP_SYS_RESOURCE),
//  a bot that ignores SIGXCPU would spin until its job's timeout: every
//  BM_POOL_CPU_CHECK_MS the pool reads the CPU time of its busy bots, and
//  one past its job's budget plus the grace is killed (SIGKILL to its
//  group) and replaced, its job failed now as the CPU limit's
//  (resource_limit cpu), as the kernel's kill at the hard limit would.
static void
s_check_cpu (bm_pool_t *self)
{
    int64_t now = bm_mono_ms ();
    if (!self->cpu_watch || now - self->cpu_checked_at < BM_POOL_CPU_CHECK_MS)
        return;
    self->cpu_checked_at = now;
    int64_t used_ms;
    proc_t *proc;
    //  One at a time: ending a job may dispatch the next (which walks the
    //  list of processes).
    while ((proc = s_over_cpu_budget (self, &used_ms))) {
        bm_warn (proc->job->id, "%s process pid=%d used %lld ms of CPU time in its job, past its "
                 "CPU time limit of %lld s plus %d ms of grace: killed", self->config.type,
                 (int) proc->pid, (long long) used_ms, (long long) self->config.limits->cpu_seconds,
                 BM_LIMITS_CPU_GRACE_MS);
        s_retire (proc, "limit");
        bm_pool_proc_kill (proc, SIGKILL);
        struct rusage usage;
        bm_pool_outcome_t outcome = { .exit_code = -1, .signal = SIGKILL, .run = proc->limits,
                                      .usage = s_usage_of_ms (used_ms, &usage) };
        if (proc->limits)
            bm_limits_run_cpu_killed (proc->limits, used_ms);
        s_end_job (proc, &outcome, true);
        s_dispatch (self);
    }
}

static int
s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop, (void) timer_id;
    bm_pool_t *self = (bm_pool_t *) arg;
    s_check_cpu (self);
    //  Jobs left waiting by a start that failed in bm_pool_submit.
    if (self->fail_before) {
        int64_t before = self->fail_before;
        self->fail_before = 0;
        s_fail_waiting (self, before);
    }
    s_maintain (self, true);
    s_export (self);
    return 0;
}

//  The CPU time of its own the job of proc used: its process's at exit
//  (cpu_after_ms, read before the reap) less what it had used when the
//  job began (pool mode under a CPU limit, unsandboxed).  NULL if unknown.
static const struct rusage *
s_job_usage (proc_t *proc, int64_t cpu_after_ms, struct rusage *job_usage)
{
    if (proc->cpu_before_ms < 0 || cpu_after_ms < 0)
        return NULL;
    int64_t ms = cpu_after_ms - proc->cpu_before_ms;
    return s_usage_of_ms (ms < 0 ? 0 : ms, job_usage);
}

//  Whether the SIGKILL of a job's process was its limit's: "cpu" (the hard
//  CPU limit, a second past the job's budget, for a bot that ignores
//  SIGXCPU) or "memory" (its cgroup's OOM killer during the job), which
//  fail the job as they would a spawned bot's; else NULL (a kill from
//  outside).
static const char *
s_kill_verdict (bm_pool_t *self, proc_t *proc, int status, const struct rusage *job_usage)
{
    if (!self->config.limits)
        return NULL;
    char message [256];
    const char *limit = bm_limits_pool_verdict (self->config.limits, proc->limits, status, job_usage,
                                                NULL, message, sizeof message);
    return limit && (streq (limit, "cpu") || streq (limit, "memory")) ? limit : NULL;
}

//  A process dead at start by SIGSEGV, SIGABRT or SIGKILL (under bwrap:
//  exit 128 + one of them) while its address space is limited: the hint
//  that the limit may be what killed it, else "".  A fork server runs with
//  no memory limit of its own (each child sets its job's), so its death is
//  never the limit's doing.
static void
s_memory_hint (bm_pool_t *self, int status, char *hint, size_t hint_size)
{
    if (self->config.fork) {
        if (hint_size)
            *hint = 0;
        return;
    }
    int signum = WIFSIGNALED (status) ? WTERMSIG (status)
               : bm_job_report_bwrap_signal (WEXITSTATUS (status), self->config.sandboxed);
    bm_job_report_memory_hint (signum, self->config.limits, self->config.memory_var, false,
                               hint, hint_size);
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
    //  The CPU time of its own, read while it is unreaped (wait4's rusage
    //  would add that of the children it reaped, which RLIMIT_CPU does not
    //  count).
    int64_t cpu_after_ms = proc->cpu_before_ms >= 0 ? bm_limits_cpu_used_ms (pid) : -1;
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
    bm_pool_proc_read_stdout (proc);
    bm_pool_proc_drain (proc, true);
    bm_pool_proc_take_between (proc);
    char how [128];
    bm_job_report_how (status, self->config.sandboxed, how, sizeof how);
    if (proc->state == PROC_STARTING) {
        char *tail = bm_capture_text (proc->err);
        self->stats.init_failures++;
        self->failures++;
        zstr_free (&self->init_error);
        //  Out of memory at start under its memory limit (V8's "Fatal
        //  process OOM", MemoryError, OutOfMemoryError, its cgroup's
        //  oom_kill): a resource limit, not a bot that cannot load.
        char seen [256], hint [256] = "";
        self->init_limit = NULL;
        if (proc->limits && !proc->ready_expired && !proc->not_fork) {
            const char *limit = bm_limits_run_verdict (proc->limits, status, NULL, tail, seen,
                                                       sizeof seen);
            if (limit && streq (limit, "memory"))
                self->init_limit = "memory";
        }
        if (!self->init_limit && !proc->not_fork && !proc->ready_expired)
            s_memory_hint (self, status, hint, sizeof hint);
        if (self->init_limit)
            self->init_error = zsys_sprintf ("the %s bot ran out of memory while loading (%s), "
                                             "under its %s=%lld: raise it; %s%s%s", self->config.type,
                                             how, self->config.memory_var ? self->config.memory_var
                                                                          : "BOT_<TYPE>_MEMORY_MB",
                                             (long long) self->config.limits->memory_mb, seen,
                                             *tail ? "; its stderr: " : "", tail);
        else
        if (proc->not_fork) {
            char var [64];
            bm_bot_type_var (var, sizeof var, self->config.type, "_MODE");
            self->init_error = zsys_sprintf ("%s=fork but the program is not a fork server: its "
                                             "ready frame has no \"mode\": \"fork\" (a pooled "
                                             "bot wants %s=pool; a fork server such as "
                                             "workers/bots/python/forkserver.py writes {\"ready\": "
                                             "true, \"mode\": \"fork\"})", var, var);
        }
        else
        if (proc->ready_expired)
            self->init_error = zsys_sprintf ("the %s bot did not get ready within %s=%lld ms "
                                             "(it never wrote {\"ready\": true} on its stdout, "
                                             "or wrote it without flushing) and was killed%s%s",
                                             self->config.type,
                                             s_ready_var (self),
                                             (long long) self->config.ready_timeout_ms,
                                             *tail ? "; its stderr: " : "", tail);
        else
            self->init_error = *tail ? zsys_sprintf ("the %s bot failed while loading (%s)%s: %s",
                                                     self->config.type, how, hint, tail)
                                     : zsys_sprintf ("the %s bot failed while loading (%s)%s",
                                                     self->config.type, how, hint);
        free (tail);
        int64_t backoff = s_backoff_ms (self->failures);
        self->next_start = bm_mono_ms () + backoff;
        //  The error the jobs get, on the same line: its end (the bot's
        //  last stderr lines: the missing module, the bad setting) is
        //  what says why, and what a line cut at the log's limit would lose.
        const char *why = self->init_error ? self->init_error : "";
        size_t why_len = strlen (why), from = 0;
        if (why_len > BM_POOL_INIT_ERROR_LOGGED) {
            from = why_len - BM_POOL_INIT_ERROR_LOGGED;
            while (why [from] && ((unsigned char) why [from] & 0xC0) == 0x80)
                from++;             //  Not in the middle of a UTF-8 sequence
        }
        bm_error (NULL, "%s process pid=%d failed at init (%s)%s; next start in %lld ms; "
                  "jobs fail with: %s%s",
                  self->config.type, (int) pid, how, hint, (long long) backoff,
                  from ? "..." : "", why + from);
        //  Nobody ready: the jobs that waited for this start fail with
        //  its error (those that come during the back-off wait for the
        //  next start).
        s_fail_waiting (self, INT64_MAX);
    }
    else
    if (proc->job) {
        bm_pool_outcome_t outcome = { .exit_code = -1, .sandboxed = self->config.sandboxed };
        char unanswered [256];
        struct rusage job_usage;
        const char *kill_limit = NULL;
        if (WIFSIGNALED (status)) {
            outcome.signal = WTERMSIG (status);
            outcome.run = proc->limits;
            outcome.usage = s_job_usage (proc, cpu_after_ms, &job_usage);
            if (outcome.signal == SIGKILL)
                kill_limit = s_kill_verdict (self, proc, status, outcome.usage);
            //  Lost only if killed from outside (kill -9, a stray SIGTERM,
            //  the OOM killer of the host): maybe by an earlier job's
            //  doing.  Not lost: stopped by us, or a signal of its own
            //  making (a crash such as SIGSEGV or SIGABRT, its CPU budget
            //  used up, its cgroup's memory limit hit), which fails the
            //  job as it would a spawned bot.
            outcome.lost = !proc->stopping && !kill_limit
                        && (outcome.signal == SIGKILL || outcome.signal == SIGTERM);
        }
        else
        if (WEXITSTATUS (status))
            outcome.exit_code = WEXITSTATUS (status);
        else {
            //  Status 0 says nothing failed, yet the job has no answer:
            //  its answer is what is wrong.
            snprintf (unanswered, sizeof unanswered, "the bot's %s exited with status 0 while "
                      "it ran the job, without answering it (an answer frame per job; exit only "
                      "at end of file on stdin)", self->config.fork ? "fork server" : "pool process");
            outcome.bad_output = unanswered;
        }
        char *tail = bm_capture_text (proc->err);
        //  bwrap passes on its bot's death by signal N as exit 128 + N.
        //  A process that died of its limit (out of files: exit 24 on
        //  EMFILE, a MemoryError) as its job's verdict reads it counts as
        //  recycled for the limit, as one that survived it and is retired.
        outcome.message = tail;
        bool limit = outcome.signal == SIGXCPU || kill_limit
                  || (self->config.sandboxed && outcome.exit_code == 128 + SIGXCPU)
                  || (!outcome.bad_output && s_limit_outcome (self, outcome.run, &outcome));
        char retired [96] = "";         //  Unless retired already
        if (state != PROC_RETIRING)
            s_count_retired (proc, limit ? "limit" : proc->stopping ? "killed" : "died",
                             retired, sizeof retired);
        if (proc->stopping)
            //  Stopped by the worker for its job (timeout, cancel,
            //  shutdown): the job's own log line says which.
            bm_info (NULL, "%s process pid=%d %s: stopped by the worker for its job%s",
                     self->config.type, (int) pid, how, retired);
        else {
            char words [160];
            //  A lost attempt is handed back without an error or a log; a
            //  limit's or bad output's error is the worker's own text.
            s_stderr_said (proc, outcome.lost ? " (a lost attempt: no error or log keeps them)"
                                 : limit || outcome.bad_output ? " (their tail is the job's log)"
                                 : " (their tail is in the job's error)", words, sizeof words);
            bm_warn (proc->job->id, "%s process pid=%d %s while running a job%s%s",
                     self->config.type, (int) pid, how, retired, words);
        }
        proc->state = PROC_RETIRING;
        s_end_job (proc, &outcome, false);
        free (tail);
    }
    else
    if (state != PROC_RETIRING) {
        //  Its stderr since its last job began: that job's log, then what
        //  it wrote while idle, counted, never quoted.
        char words [160], retired [96];
        s_stderr_said (proc, NULL, words, sizeof words);
        s_count_retired (proc, "died", retired, sizeof retired);
        bm_warn (NULL, "%s process pid=%d %s while idle%s%s", self->config.type, (int) pid, how,
                 retired, words);
    }
    bm_pool_proc_destroy (&proc);
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
    if (!self->config.fork && self->config.limits && self->config.limits->cpu_seconds
    &&  !bm_limits_cpu_hard_per_job ()) {
        self->cpu_watch = true;
        bm_info (NULL, "%s pool processes: the CPU time limit of %lld s per job is held by the "
                 "worker (SIGXCPU at the soft RLIMIT_CPU; SIGKILL from the worker %d ms past it, "
                 "checked every %d ms), as the hard limit cannot be raised again between jobs "
                 "without CAP_SYS_RESOURCE", self->config.type,
                 (long long) self->config.limits->cpu_seconds, BM_LIMITS_CPU_GRACE_MS,
                 BM_POOL_CPU_CHECK_MS);
    }
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
            bm_pool_proc_destroy (&proc);
        }
        zlistx_destroy (&self->procs);
        pjob_t *job;
        while ((job = (pjob_t *) zlistx_detach (self->waiting, NULL)))
            bm_pool_pjob_destroy (&job);
        zlistx_destroy (&self->waiting);
        if (self->tick)
            zloop_timer_end (self->loop, self->tick);
        bm_bot_argv_free (&self->envp);
        zstr_free (&self->init_error);
        free (self);
        *self_p = NULL;
    }
}

void
bm_pool_stop (bm_pool_t *self)
{
    self->stopping = true;
}

bool
bm_pool_job_waits (bm_pool_t *self, void *owner)
{
    //  From the end: the job just submitted is the last.
    for (pjob_t *job = (pjob_t *) zlistx_last (self->waiting); job;
         job = (pjob_t *) zlistx_prev (self->waiting))
        if (job->owner == owner)
            return true;
    return false;
}

void
bm_pool_set_on_start (bm_pool_t *self, bm_pool_start_fn *on_start)
{
    self->on_start = on_start;
}

int
bm_pool_submit (bm_pool_t *self, void *owner, const char *id, const char *frame, size_t size,
                char *error, size_t error_size)
{
    //  After a failed start, while no process is ready, the job waits for
    //  the next start (backed off: at most BM_POOL_BACKOFF_MAX_MS, then up
    //  to the ready timeout) and fails only if that start fails: never on
    //  the error of a start before it came.
    pjob_t *job = (pjob_t *) zmalloc (sizeof (pjob_t));
    job->owner = owner;
    job->id = strdup (id);
    job->frame = (char *) malloc (size + 1);
    if (!job->id || !job->frame) {
        bm_pool_pjob_destroy (&job);
        snprintf (error, error_size, "out of memory for the job frame");
        return -1;
    }
    memcpy (job->frame, frame, size);
    job->frame [size] = '\n';
    job->size = size + 1;
    job->seq = self->start_seq;
    zlistx_add_end (self->waiting, job);
    s_dispatch (self);
    //  Still waiting (the last in line): on_start when a process takes it.
    job->waited = zlistx_last (self->waiting) == job;
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
                bm_pool_pjob_destroy (&job);
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
            bm_pool_proc_kill (proc, SIGKILL);
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

const char *
bm_pool_progress_bad (bm_pool_t *self, void *owner)
{
    proc_t *proc = s_find_proc_of (self, owner);
    return proc ? bm_progress_bad_line (proc->progress) : "";
}

void
bm_pool_stats (bm_pool_t *self, bm_pool_stats_t *stats)
{
    *stats = self->stats;
    stats->waiting = (int64_t) zlistx_size (self->waiting);
}

void
bm_pool_report (bm_pool_t *self, bm_codec_bot_pool_t *report)
{
    memset (report, 0, sizeof *report);
    snprintf (report->type, sizeof report->type, "%s", self->config.type);
    snprintf (report->mode, sizeof report->mode, "%s", self->config.fork ? "fork" : "pool");
    bm_pool_stats_t *stats = &self->stats;
    report->processes = stats->processes;
    report->recycles = stats->recycled_max_jobs + stats->recycled_max_rss + stats->recycled_idle
                     + stats->recycled_killed + stats->recycled_limit + stats->recycled_output
                     + stats->recycled_died;
    report->init_failures = stats->init_failures;
}

#ifdef BM_SELFTEST
//  --------------------------------------------------------------------------
//  Self test: pools of /bin/sh processes speaking the protocol.

typedef struct {
    bm_pool_t *pool;
    int done;                   //  Jobs ended
    int want;                   //  Leave the loop at this many
    char outputs [8][64];       //  Each job's output (job i is owner i+1)
    char bad_output [8][256];   //  Its bad_output message, or ""
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
    snprintf (test->bad_output [i], sizeof test->bad_output [i], "%s",
              outcome->bad_output ? outcome->bad_output : "");
    test->init_failed [i] = outcome->init_failed;
    test->done++;
}

static void
s_test_progress (void *job, int progress, void *arg)
{
    s_test_t *test = (s_test_t *) arg;
    if (progress != BM_PROGRESS_BAD)
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
        assert (bm_pool_submit (test.pool, (void *) i, "x", "{\"job\": \"x\"}", 12, error, sizeof error) == 0);
    s_test_run (loop, &test, 3);
    assert (streq (test.outputs [0], "{\"n\":1}"));
    assert (streq (test.outputs [1], "{\"n\":2}"));
    assert (streq (test.outputs [2], "{\"n\":1}"));       //  A new process
    assert (test.progress [0] == 60 || test.progress [0] == 40);
    bm_pool_stats_t stats;
    bm_pool_stats (test.pool, &stats);
    assert (stats.recycled_max_jobs == 1);
    assert (stats.processes <= 1);
    bm_codec_bot_pool_t report;
    bm_pool_report (test.pool, &report);
    assert (streq (report.type, "test") && streq (report.mode, "pool") && report.recycles == 1);
    bm_metrics_t *metrics = bm_metrics_new ();
    bm_pool_export (test.pool, metrics);
    char *text = bm_metrics_render (metrics);
    assert (strstr (text, "bot_recycles_total{bot_type=\"test\",reason=\"max_jobs\"} 1"));
    assert (strstr (text, "bot_processes{bot_type=\"test\",mode=\"pool\"}"));
    free (text);
    bm_pool_destroy (&test.pool);
    bm_metrics_destroy (&metrics);

    //  Frames after a byte order mark (a bot that wrote one on stdout
    //  before the runtime's frame) are read as frames.
    char *bom [] = { (char *) "/bin/sh", (char *) "-c", (char *)
        "printf '\\357\\273\\277{\"ready\": true}\\n'; while read line; do"
        " printf '\\357\\273\\277{\"result\": [1]}\\n'; done", NULL };
    config.argv = bom;
    memset (&test, 0, sizeof test);
    test.pool = bm_pool_new (loop, &config, envp, s_test_done, s_test_progress, &test);
    assert (bm_pool_submit (test.pool, (void *) 1, "x", "{\"job\": \"x\"}", 12, error, sizeof error) == 0);
    s_test_run (loop, &test, 1);
    assert (streq (test.outputs [0], "[1]") && !test.init_failed [0]);
    bm_pool_destroy (&test.pool);

    //  Two answers in one write while the next job waits for the only
    //  process: the second kills it, and the next job runs on a new one
    //  with its own answer, never the second answer of the job before.
    char *twice [] = { (char *) "/bin/sh", (char *) "-c", (char *)
        "echo '{\"ready\": true}'; while read line; do"
        " printf '{\"result\": \"%s\"}\\n{\"result\": \"again\"}\\n' \"$line\"; done", NULL };
    config.argv = twice;
    config.max_jobs = 0;
    memset (&test, 0, sizeof test);
    test.pool = bm_pool_new (loop, &config, envp, s_test_done, s_test_progress, &test);
    assert (bm_pool_submit (test.pool, (void *) 1, "a", "a", 1, error, sizeof error) == 0);
    assert (bm_pool_submit (test.pool, (void *) 2, "b", "b", 1, error, sizeof error) == 0);
    s_test_run (loop, &test, 2);
    assert (streq (test.outputs [0], "\"a\""));
    assert (streq (test.outputs [1], "\"b\""));
    bm_pool_stats (test.pool, &stats);
    assert (stats.recycled_killed == 2);        //  Each process answered twice
    bm_pool_destroy (&test.pool);

    //  Answers that name their job (here: the frame): the right one is
    //  taken; one for another job kills the process, the job runs on the
    //  next process, and fails with bad_output when that one does the same.
    char *named [] = { (char *) "/bin/sh", (char *) "-c", (char *)
        "echo '{\"ready\": true}'; while read line; do"
        " printf '{\"result\": \"%s\", \"job\": \"%s\"}\\n' \"$line\" \"$line\"; done",
        NULL };
    config.argv = named;
    memset (&test, 0, sizeof test);
    test.pool = bm_pool_new (loop, &config, envp, s_test_done, s_test_progress, &test);
    assert (bm_pool_submit (test.pool, (void *) 1, "a", "a", 1, error, sizeof error) == 0);
    assert (bm_pool_submit (test.pool, (void *) 2, "b", "wrong", 5, error, sizeof error) == 0);
    assert (bm_pool_submit (test.pool, (void *) 3, "c", "c", 1, error, sizeof error) == 0);
    s_test_run (loop, &test, 3);
    assert (streq (test.outputs [0], "\"a\"") && !*test.bad_output [0]);
    assert (strstr (test.bad_output [1], "a frame for job wrong while it ran this job"));
    assert (strstr (test.bad_output [1], "not run a third time"));
    assert (streq (test.outputs [2], "\"c\"") && !*test.bad_output [2]);
    bm_pool_stats (test.pool, &stats);
    assert (stats.recycled_killed == 2);        //  Both processes job 2 ran on
    bm_pool_destroy (&test.pool);
    config.max_jobs = 2;

    //  A bot that fails while loading: the waiting job fails with
    //  bot_init_failed; a later job waits for the next start (backed
    //  off) and fails with that start's failure; restarts back off.
    char *broken [] = { (char *) "/bin/sh", (char *) "-c", (char *) "echo 'no module x' >&2; exit 3", NULL };
    config.argv = broken;
    config.min_procs = 0;
    memset (&test, 0, sizeof test);
    test.pool = bm_pool_new (loop, &config, envp, s_test_done, s_test_progress, &test);
    assert (bm_pool_submit (test.pool, (void *) 1, "x", "{}", 2, error, sizeof error) == 0);
    s_test_run (loop, &test, 1);
    assert (test.init_failed [0]);
    assert (bm_pool_submit (test.pool, (void *) 2, "y", "{}", 2, error, sizeof error) == 0);
    assert (bm_pool_job_waits (test.pool, (void *) 2));
    bm_pool_stats (test.pool, &stats);
    assert (stats.init_failures == 1);      //  Not failed by the first start
    s_test_run (loop, &test, 2);
    assert (test.init_failed [1]);
    bm_pool_stats (test.pool, &stats);
    assert (stats.init_failures == 2 && stats.started == 2);
    bm_pool_destroy (&test.pool);

    assert (s_backoff_ms (1) == 100 && s_backoff_ms (2) == 200 && s_backoff_ms (3) == 400);
    assert (s_backoff_ms (40) == BM_POOL_BACKOFF_MAX_MS);
    zloop_destroy (&loop);
    if (verbose)
        printf ("OK\n");
}
#endif

/*  bm_worker.c - a botmesh worker: one DEALER to the broker, BMW01, bots.  */
#include "bm_worker.h"
#include "bm_bot.h"
#include "bm_config.h"
#include "bm_json.h"
#include "bm_log.h"
#include "bm_sandbox.h"
#include "bm_worker_link.h"
#include "bm_pool.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define BM_PROGRESS_MIN_GAP_MS  100     //  Progress of one job: at most ten
                                        //  messages a second
#define BM_DONE_REPLAY_MAX      1000    //  Recent DONEs kept for a reconnect
#define BM_MESSAGE_MAX          4000    //  Bytes of an error message we send
                                        //  (the broker keeps 4095)
#define BM_RESULT_MAX_DEPTH     30      //  Nesting of a result: the broker
                                        //  wraps it in two more maps (a job
                                        //  record in a REPLY), and msgpack-c
                                        //  decodes at most 32 levels
#define BM_SETTLE_MS            200     //  After READY credit 0, wait this
                                        //  long for JOBs already in flight
#define BM_SNDHWM               10000   //  Messages queued while the broker
                                        //  is away; past it sends fail
                                        //  rather than block the loop
#define BM_LINGER_MS            1000    //  Time RELEASE and DISCONNECT get
                                        //  to leave at the end

typedef enum { STOP_NONE = 0, STOP_TIMEOUT, STOP_CANCEL, STOP_RELEASE } stop_t;
typedef enum { TIMER_NONE = 0, TIMER_DEADLINE, TIMER_KILL, TIMER_SIMULATION } jtimer_t;

//  One job we run.
typedef struct {
    struct _bm_worker_t *worker;        //  Our worker (back pointer)
    char id [BM_MAX_ID_LEN + 1];        //  jobId
    const bm_worker_type_t *type;       //  Its bot type (in the config)
    int64_t attempt;                    //  Attempt number from the broker
    int64_t limit_ms;                   //  Run-time limit of this attempt
    bm_bot_t *bot;                      //  The bot process (spawn mode)
    bm_pool_t *pool;                    //  Its pool (pool and fork modes)
    json_t *payload;                    //  Its payload (pool and fork modes)
    int64_t deadline;                   //  Wall clock ms of its deadline
    bool rerun;                         //  Run again after its pool process
                                        //  was killed under it
    int64_t sim_duration;               //  Simulated run time (simulate mode)
    bool sim_fails;                     //  The simulation ends in failure
    int64_t started_at;                 //  Wall clock (ms)
    int64_t started_mono;               //  Monotonic clock (ms)
    stop_t stop;                        //  Why we are stopping it, if we are
    bool term_sent;                     //  SIGTERM sent to its bot already
    char cancel_code [32];              //  Error code of a CANCEL ("cancelled")
    int timer_id;                       //  Its one pending timer, or 0
    jtimer_t timer_kind;                //  What that timer is for
    bool orphan;                        //  Dispatched on an earlier connection
    int progress_sent;                  //  Last progress sent, -1 if none
    int64_t progress_sent_mono;         //  When
    int progress_pending;               //  A newer value held back, or -1
    const char *limit_hit;              //  The resource limit it hit, or NULL
} job_t;

//  A DONE recently sent, to send again after a reconnect.
typedef struct {
    int64_t sent_mono;                  //  When it was sent
    char *body;                         //  Its msgpack body
    size_t size;
} done_t;

struct _bm_worker_t {
    const bm_worker_config_t *config;   //  Our configuration (borrowed)
    zloop_t *loop;                      //  The one event loop
    bm_worker_link_t *link;             //  BMW01 connection to the broker
    int signal_fd;                      //  SIGCHLD, SIGTERM, SIGINT
    zhashx_t *jobs;                     //  jobId -> job_t, owns them
    bm_pool_t *pools [BM_WORKER_MAX_TYPES]; //  Per type in pool/fork mode
    bm_metrics_t *metrics;              //  Registry of GET /metrics, or NULL
    bm_metrics_http_t *metrics_http;    //  Its server, or NULL
    zhashx_t *timers;                   //  Timer id -> job_t (borrowed)
    zlistx_t *recent_done;              //  done_t, oldest first
    char **env_base;                    //  Our environment minus BOT_* keys
    int orphans;                        //  Jobs the current broker connection
                                        //  does not count against our credit
    bool draining;                      //  Stopping: no new jobs
    int grace_timer;                    //  Grace period timer, or 0
    int64_t drain_since;                //  Monotonic ms when stopping began
    int settle_timer;                   //  Settle period timer, or 0
    bool stopped;                       //  DISCONNECT sent: leave the loop
    uint64_t random;                    //  xorshift state for simulations
    uint64_t limit_kills [BM_LIMITS_KINDS];     //  Runs that hit each limit
};

static void s_job_finish (bm_worker_t *self, job_t *job, const bm_pool_outcome_t *outcome);
static void s_maybe_disconnect (bm_worker_t *self);

//  --------------------------------------------------------------------------
//  Signals

int
bm_worker_block_signals (void)
{
    sigset_t mask;
    sigemptyset (&mask);
    sigaddset (&mask, SIGCHLD);
    sigaddset (&mask, SIGTERM);
    sigaddset (&mask, SIGINT);
    if (sigprocmask (SIG_BLOCK, &mask, NULL))
        return -1;
    //  Writing to the stdin of a bot that exited must give EPIPE, not kill
    //  us.  bm_bot restores the default in the bot.
    signal (SIGPIPE, SIG_IGN);
    return 0;
}

//  --------------------------------------------------------------------------
//  Jobs and their timers.  A timer handler finds its job through the
//  timers table, so a timer that fires after its job ended (zloop removes
//  ended timers only at the end of a loop pass) finds nothing and does
//  nothing.

static void
s_job_clear_timer (bm_worker_t *self, job_t *job)
{
    if (job->timer_id) {
        zloop_timer_end (self->loop, job->timer_id);
        zhashx_delete (self->timers, (void *) (intptr_t) job->timer_id);
        job->timer_id = 0;
        job->timer_kind = TIMER_NONE;
    }
}

static int s_on_job_timer (zloop_t *loop, int timer_id, void *arg);

static void
s_job_set_timer (bm_worker_t *self, job_t *job, int64_t delay, jtimer_t kind)
{
    s_job_clear_timer (self, job);
    if (delay < 0)
        delay = 0;
    int id = zloop_timer (self->loop, (size_t) delay, 1, s_on_job_timer, self);
    if (id > 0) {
        job->timer_id = id;
        job->timer_kind = kind;
        zhashx_insert (self->timers, (void *) (intptr_t) id, job);
    }
}

static void
s_job_destroy (job_t **job_p)
{
    if (*job_p) {
        job_t *job = *job_p;
        s_job_clear_timer (job->worker, job);
        bm_bot_destroy (&job->bot);
        json_decref (job->payload);
        free (job);
        *job_p = NULL;
    }
}

static void
s_job_free_fn (void **item)
{
    s_job_destroy ((job_t **) item);
}

//  Integer keys for the timers table.
static size_t
s_int_hash (const void *key)
{
    return (size_t) (intptr_t) key;
}

static int
s_int_compare (const void *a, const void *b)
{
    return (intptr_t) a < (intptr_t) b ? -1 : (intptr_t) a > (intptr_t) b;
}

//  --------------------------------------------------------------------------
//  Sending: bm_worker_link keeps the heartbeat clock and never blocks
//  (a full queue drops the message and says so).

static int
s_send (bm_worker_t *self, int command, const msgpack_sbuffer *body, const char *job_id)
{
    return bm_worker_link_send (self->link, command, body->data, body->size, job_id);
}

static int64_t
s_credit (bm_worker_t *self)
{
    if (self->draining)
        return 0;
    int64_t credit = self->config->concurrency - self->orphans;
    return credit > 0 ? credit : 0;
}

//  READY with the credit we have now.
static void
s_send_ready (bm_worker_t *self)
{
    bm_worker_link_set_credit (self->link, s_credit (self));
}

//  PROGRESS {jobId, progress}
static void
s_send_progress (bm_worker_t *self, job_t *job, int progress)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    bm_pack_kv_str (&pk, "jobId", job->id);
    bm_pack_kv_int (&pk, "progress", progress);
    s_send (self, BM_PROGRESS, &sbuf, job->id);
    msgpack_sbuffer_destroy (&sbuf);
    job->progress_sent = progress;
    job->progress_sent_mono = bm_mono_ms ();
    job->progress_pending = -1;
}

//  Keep a copy of a DONE for a replay after a reconnect.
static void
s_remember_done (bm_worker_t *self, const msgpack_sbuffer *body)
{
    done_t *done = (done_t *) zmalloc (sizeof (done_t));
    done->sent_mono = bm_mono_ms ();
    done->body = (char *) malloc (body->size);
    memcpy (done->body, body->data, body->size);
    done->size = body->size;
    zlistx_add_end (self->recent_done, done);
    while (zlistx_size (self->recent_done) > BM_DONE_REPLAY_MAX) {
        done_t *oldest = (done_t *) zlistx_detach (self->recent_done, NULL);
        free (oldest->body);
        free (oldest);
    }
}

//  Forget DONEs older than the time the broker takes to notice a lost
//  worker: past that, a replay could not help.
static void
s_prune_done (bm_worker_t *self)
{
    int64_t horizon = bm_mono_ms () - 2 * self->config->heartbeat_ms * self->config->liveness;
    done_t *done;
    while ((done = (done_t *) zlistx_first (self->recent_done)) && done->sent_mono < horizon) {
        zlistx_detach (self->recent_done, NULL);
        free (done->body);
        free (done);
    }
}

//  DONE {jobId, ok, result | error {code, message, exitCode?}, startedAt,
//        finishedAt}.  result_data is a msgpack value (result_size bytes).
static void
s_send_done (bm_worker_t *self, job_t *job, const char *result_data, size_t result_size,
             const char *code, const char *message, int exit_code, int64_t finished_at)
{
    bool ok = code == NULL;
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 5);
    bm_pack_kv_str (&pk, "jobId", job->id);
    bm_pack_kv_bool (&pk, "ok", ok);
    if (ok) {
        bm_pack_str (&pk, "result");
        msgpack_sbuffer_write (&sbuf, result_data, result_size);
    }
    else {
        bm_pack_str (&pk, "error");
        msgpack_pack_map (&pk, 2 + (exit_code >= 0) + (job->limit_hit != NULL));
        bm_pack_kv_str (&pk, "code", code);
        bm_pack_kv_str (&pk, "message", message);
        if (exit_code >= 0)
            bm_pack_kv_int (&pk, "exitCode", exit_code);
        if (job->limit_hit)
            bm_pack_kv_str (&pk, "limit", job->limit_hit);
    }
    bm_pack_kv_int (&pk, "startedAt", job->started_at);
    bm_pack_kv_int (&pk, "finishedAt", finished_at);
    s_send (self, BM_DONE, &sbuf, job->id);
    s_remember_done (self, &sbuf);
    msgpack_sbuffer_destroy (&sbuf);

    int64_t took = bm_mono_ms () - job->started_mono;
    if (ok && self->config->mode == BM_WORKER_NOOP)
        bm_debug (job->id, "completed (noop)");     //  Thousands a second
    else
    if (ok)
        bm_info (job->id, "completed in %lld ms (attempt %lld)", (long long) took,
                 (long long) job->attempt);
    else
        bm_info (job->id, "failed in %lld ms (attempt %lld): %s: %.300s", (long long) took,
                 (long long) job->attempt, code, message);
}

//  A DONE for a job we never started (bad bot type, payload, spawn).
static void
s_send_done_early (bm_worker_t *self, const char *job_id, int64_t attempt,
                   const char *code, const char *message)
{
    job_t job;
    memset (&job, 0, sizeof job);
    snprintf (job.id, sizeof job.id, "%s", job_id);
    job.attempt = attempt;
    job.started_at = bm_now_ms ();
    job.started_mono = bm_mono_ms ();
    s_send_done (self, &job, NULL, 0, code, message, -1, job.started_at);
}

//  --------------------------------------------------------------------------
//  Connection to the broker

//  The broker connection was lost (bm_worker_link replaces it).  Jobs still
//  running were dispatched on the old connection: the broker behind the
//  new one does not count them, so they come off the credit the coming
//  READY announces until they end (or until the broker dispatches them to
//  us again).
static void
s_on_link_lost (void *arg)
{
    bm_worker_t *self = (bm_worker_t *) arg;
    job_t *job;
    self->orphans = 0;
    for (job = (job_t *) zhashx_first (self->jobs); job; job = (job_t *) zhashx_next (self->jobs)) {
        job->orphan = true;
        self->orphans++;
    }
    bm_worker_link_set_credit (self->link, s_credit (self));
}

//  The new connection said READY.  DONEs sent just before the broker went
//  away may be lost: send them again.  One the broker already has is
//  answered NACK not_owner.
static void
s_on_link_reconnected (void *arg)
{
    bm_worker_t *self = (bm_worker_t *) arg;
    s_prune_done (self);
    done_t *done;
    for (done = (done_t *) zlistx_first (self->recent_done); done;
         done = (done_t *) zlistx_next (self->recent_done))
        bm_worker_link_send (self->link, BM_DONE, done->body, done->size, NULL);
}

//  --------------------------------------------------------------------------
//  Ending jobs

//  Signal what runs the job: its bot's process group (spawn), its child
//  (fork) or its pool process.  Returns 1 if a pooled job was still waiting
//  for a process (now dropped), else 0 or -1.
static int
s_job_signal (job_t *job, int signum)
{
    if (job->bot)
        return bm_bot_signal (job->bot, signum);
    if (job->pool)
        return bm_pool_signal (job->pool, job, signum);
    return -1;
}

//  Stop a running job: kill its bot (SIGTERM to the group, SIGKILL after
//  the kill grace), or end a simulation at once.  The first reason sticks.
static void
s_job_stop (bm_worker_t *self, job_t *job, stop_t reason)
{
    if (job->stop == STOP_NONE)
        job->stop = reason;
    if (job->bot || job->pool) {
        if (!job->term_sent) {
            job->term_sent = true;
            if (s_job_signal (job, SIGTERM) == 1)
                s_job_finish (self, job, NULL);     //  It waited for a process
            else
                s_job_set_timer (self, job, self->config->kill_grace_ms, TIMER_KILL);
        }
    }
    else
        s_job_finish (self, job, NULL);
}

//  Parse a bot's stdout as JSON and pack it.  Returns 0 with *data/*size
//  (caller frees), or -1 with a message.
static int
s_parse_result (bm_worker_t *self, const char *text, size_t size, char **data, size_t *data_size,
                char *error, size_t error_size)
{
    json_error_t jerr;
    const int flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_t *value = json_loadb (text, size, flags, &jerr);
    if (!value) {
        //  A bot that logs to stdout before its result: try the last
        //  non-empty line alone.
        size_t end = size;
        while (end > 0 && (text [end - 1] == '\n' || text [end - 1] == '\r'
                        || text [end - 1] == ' ' || text [end - 1] == '\t'))
            end--;
        size_t start = end;
        while (start > 0 && text [start - 1] != '\n')
            start--;
        if (start > 0 && end > start)
            value = json_loadb (text + start, end - start, flags, NULL);
    }
    if (!value) {
        if (size == 0)
            snprintf (error, error_size, "the bot wrote nothing on stdout (a result must be JSON)");
        else
            snprintf (error, error_size, "the bot's stdout is not JSON: %s (line %d, column %d)",
                      jerr.text, jerr.line, jerr.column);
        return -1;
    }
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    int rc = bm_json_pack (&pk, value, BM_RESULT_MAX_DEPTH);
    json_decref (value);
    if (rc) {
        snprintf (error, error_size, "the bot's result nests deeper than %d levels", BM_RESULT_MAX_DEPTH);
        msgpack_sbuffer_destroy (&sbuf);
        return -1;
    }
    if ((int64_t) sbuf.size > self->config->max_payload) {
        snprintf (error, error_size, "the bot's result is %zu bytes, more than the %lld allowed",
                  sbuf.size, (long long) self->config->max_payload);
        msgpack_sbuffer_destroy (&sbuf);
        return -1;
    }
    *data = sbuf.data;
    *data_size = sbuf.size;
    return 0;
}

//  Keep the last `max` bytes of text (in place), starting at a UTF-8
//  character boundary: the end of stderr is what explains a failure.
static void
s_keep_end (char *text, size_t max)
{
    size_t len = strlen (text);
    if (len <= max)
        return;
    size_t start = len - max;
    while (start < len && ((unsigned char) text [start] & 0xc0) == 0x80)
        start++;
    memmove (text, text + start, len - start + 1);
}

//  One more run that hit this limit.
static void
s_count_limit_kill (bm_worker_t *self, const char *limit)
{
    int kind = bm_limits_kind (limit);
    if (kind >= 0)
        self->limit_kills [kind]++;
}

//  Send what ends the job (DONE or RELEASE) and forget it.
static void
s_job_finish (bm_worker_t *self, job_t *job, const bm_pool_outcome_t *outcome)
{
    int64_t finished_at = bm_now_ms ();
    if (job->stop == STOP_RELEASE) {
        bm_worker_link_send_simple (self->link, BM_RELEASE, "jobId", job->id);
        bm_info (job->id, "released back to the broker (shutting down)");
    }
    else
    if (job->stop == STOP_CANCEL) {
        char message [96];
        snprintf (message, sizeof message, "stopped by the broker (%s)", job->cancel_code);
        s_send_done (self, job, NULL, 0, job->cancel_code, message, -1, finished_at);
    }
    else
    if (job->stop == STOP_TIMEOUT) {
        char message [96];
        snprintf (message, sizeof message, "the bot ran past its timeout of %lld ms and was killed",
                  (long long) job->limit_ms);
        s_send_done (self, job, NULL, 0, "timeout", message, -1, finished_at);
    }
    else
    if (!outcome) {
        //  A simulation.
        if (job->sim_fails)
            s_send_done (self, job, NULL, 0, "bot_failed", "simulated failure", 1, finished_at);
        else {
            msgpack_sbuffer sbuf;
            msgpack_sbuffer_init (&sbuf);
            msgpack_packer pk;
            msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
            msgpack_pack_map (&pk, 5);
            bm_pack_kv_bool (&pk, "simulated", true);
            bm_pack_kv_str (&pk, "botType", job->type->name);
            bm_pack_kv_str (&pk, "jobId", job->id);
            bm_pack_kv_int (&pk, "attempt", job->attempt);
            bm_pack_kv_int (&pk, "durationMs", job->sim_duration);
            s_send_done (self, job, sbuf.data, sbuf.size, NULL, NULL, -1, finished_at);
            msgpack_sbuffer_destroy (&sbuf);
        }
    }
    else {
        //  A bot ran (spawned or pooled): how it ended.
        if (job->bot)
            finished_at = bm_bot_finished_at (job->bot);
        char message [512];
        char *tail = strdup (outcome->message ? outcome->message : "");
        //  A resource limit: the spawned run knows its rusage and cgroup;
        //  for a pooled one, what its exit and stderr show.
        int status = outcome->signal ? outcome->signal : (outcome->exit_code & 0xff) << 8;
        const char *limit = outcome->init_failed ? NULL
                          : job->bot ? bm_bot_limit_verdict (job->bot, message, sizeof message)
                          : bm_limits_verdict (&job->type->limits, status, NULL, tail, message, sizeof message);
        if (outcome->overflowed) {
            snprintf (message, sizeof message,
                      "the bot wrote more than %lld bytes on stdout and was killed",
                      (long long) self->config->output_max);
            s_send_done (self, job, NULL, 0, "bad_output", message, -1, finished_at);
        }
        else
        if (outcome->init_failed) {
            s_keep_end (tail, BM_MESSAGE_MAX);
            s_send_done (self, job, NULL, 0, "bot_init_failed", tail, -1, finished_at);
        }
        else
        if (limit) {
            bm_warn (job->id, "the %s bot hit its %s limit", job->type->name, limit);
            job->limit_hit = limit;
            s_count_limit_kill (self, limit);
            s_send_done (self, job, NULL, 0, "resource_limit", message,
                         outcome->signal ? -1 : outcome->exit_code, finished_at);
        }
        else
        if (outcome->signal) {
            s_keep_end (tail, BM_MESSAGE_MAX - 64);
            const char *name = sigabbrev_np (outcome->signal);
            char *text = zsys_sprintf ("the bot was killed by signal SIG%s (%d)%s%s",
                                       name ? name : "?", outcome->signal,
                                       *tail ? ": " : "", tail);
            s_send_done (self, job, NULL, 0, "bot_failed", text, -1, finished_at);
            zstr_free (&text);
        }
        else
        if (outcome->exit_code != 0) {
            s_keep_end (tail, BM_MESSAGE_MAX);
            if (!*tail)
                snprintf (message, sizeof message, "the bot exited with status %d", outcome->exit_code);
            s_send_done (self, job, NULL, 0, "bot_failed", *tail ? tail : message,
                         outcome->exit_code, finished_at);
        }
        else {
            char *data;
            size_t data_size;
            if (s_parse_result (self, outcome->output, outcome->output_size, &data, &data_size,
                                message, sizeof message))
                s_send_done (self, job, NULL, 0, "bad_output", message, -1, finished_at);
            else {
                s_send_done (self, job, data, data_size, NULL, NULL, -1, finished_at);
                free (data);
            }
        }
        free (tail);
    }
    bool was_orphan = job->orphan;
    if (was_orphan)
        self->orphans--;
    zhashx_delete (self->jobs, job->id);        //  Destroys the job
    if (was_orphan && !self->draining)
        s_send_ready (self);                    //  Our credit grew back
    s_maybe_disconnect (self);
}

//  --------------------------------------------------------------------------
//  Bot events

static void
s_on_bot_exit (bm_bot_t *bot, void *arg)
{
    job_t *job = (job_t *) arg;
    int status = bm_bot_status (bot);
    char *tail = bm_bot_stderr_text (bot);
    bm_pool_outcome_t outcome = {
        .overflowed = bm_bot_overflowed (bot),
        .exit_code = WIFEXITED (status) ? WEXITSTATUS (status) : -1,
        .signal = WIFSIGNALED (status) ? WTERMSIG (status) : 0,
        .message = tail };
    outcome.output = bm_bot_stdout (bot, &outcome.output_size);
    s_job_finish (job->worker, job, &outcome);
    free (tail);
}

static int s_pool_submit (bm_worker_t *self, job_t *job, char *error, size_t error_size);
static void s_on_bot_progress (bm_bot_t *bot, int progress, void *arg);

//  A pooled job ended.  A pool process killed under it by someone else
//  (kill -9, the kernel's OOM killer) may have died of an earlier job's
//  doing: the job runs once more, as the next attempt, on a new process.
static void
s_on_pool_done (void *arg, const bm_pool_outcome_t *outcome, void *worker)
{
    job_t *job = (job_t *) arg;
    bm_worker_t *self = (bm_worker_t *) worker;
    if (outcome->lost && job->stop == STOP_NONE && !job->rerun) {
        job->rerun = true;
        job->attempt++;
        char error [512];
        bm_warn (job->id, "its %s process was killed by signal %d: running it again (attempt %lld)",
                 job->type->name, outcome->signal, (long long) job->attempt);
        if (s_pool_submit (self, job, error, sizeof error) == 0)
            return;
    }
    s_job_finish (self, job, outcome);
}

static void
s_on_pool_progress (void *arg, int progress, void *worker)
{
    (void) worker;
    s_on_bot_progress (NULL, progress, arg);
}

static void
s_on_bot_progress (bm_bot_t *bot, int progress, void *arg)
{
    (void) bot;
    job_t *job = (job_t *) arg;
    if (progress == job->progress_sent) {
        job->progress_pending = -1;
        return;
    }
    if (bm_mono_ms () - job->progress_sent_mono >= BM_PROGRESS_MIN_GAP_MS || progress == 100)
        s_send_progress (job->worker, job, progress);
    else
        job->progress_pending = progress;       //  The heartbeat sends it
}

//  Reap every child that exited.  Bots finish (and are freed) here: this
//  runs from the signalfd poller, where freeing a bot is safe.
static void
s_reap_children (bm_worker_t *self)
{
    pid_t pid;
    while ((pid = bm_bot_exited_child ())) {
        job_t *found = NULL;
        job_t *job;
        for (job = (job_t *) zhashx_first (self->jobs); job; job = (job_t *) zhashx_next (self->jobs))
            if (job->bot && bm_bot_running (job->bot) && bm_bot_pid (job->bot) == pid) {
                found = job;
                break;
            }
        bool pooled = false;
        for (int i = 0; !found && !pooled && i < self->config->type_count; i++)
            pooled = self->pools [i] && bm_pool_reap (self->pools [i], pid);
        if (found)
            bm_bot_reap (found->bot);           //  Calls s_on_bot_exit
        else
        if (!pooled)
            bm_bot_reap_other (pid);            //  An orphan of some bot
    }
}

//  --------------------------------------------------------------------------
//  Starting jobs

//  The environment of a bot: ours, minus any BOT_* keys we set, plus them.
static char **
s_bot_env (bm_worker_t *self, job_t *job, int64_t deadline)
{
    size_t count = 0;
    while (self->env_base [count])
        count++;
    char **envp = (char **) calloc (count + 8, sizeof (char *));
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        envp [n++] = strdup (self->env_base [i]);
    envp [n++] = zsys_sprintf ("BOT_JOB_ID=%s", job->id);
    envp [n++] = zsys_sprintf ("BOT_TYPE=%s", job->type->name);
    envp [n++] = zsys_sprintf ("BOT_ATTEMPT=%lld", (long long) job->attempt);
    envp [n++] = zsys_sprintf ("BOT_TIMEOUT_MS=%lld", (long long) job->limit_ms);
    envp [n++] = zsys_sprintf ("BOT_DEADLINE=%lld", (long long) deadline);
    envp [n++] = strdup ("BOT_PROGRESS_FD=3");
    envp [n++] = zsys_sprintf ("BOT_WORKER=%s", self->config->name);
    if (job->type->sandboxed) {
        //  Only what the job is given: not the worker's credentials.
        char **confined = bm_sandbox_env (envp);
        bm_bot_argv_free (&envp);
        return confined;
    }
    return envp;
}

//  Give a job to its type's pool: the job frame {job, env, payload}
//  (docs/bots.md), env holding the job's own BOT_* variables.
static int
s_pool_submit (bm_worker_t *self, job_t *job, char *error, size_t error_size)
{
    size_t base = 0;
    while (self->env_base [base])
        base++;
    char **envp = s_bot_env (self, job, job->deadline);
    json_t *env = json_object ();
    for (char **e = envp + base; *e; e++) {
        char *eq = strchr (*e, '=');
        *eq = 0;
        json_object_set_new (env, *e, json_string (eq + 1));
    }
    bm_bot_argv_free (&envp);
    json_t *frame = json_object ();
    json_object_set_new (frame, "job", json_string (job->id));
    json_object_set_new (frame, "env", env);
    json_object_set (frame, "payload", job->payload);
    char *text = json_dumps (frame, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION (16));
    json_decref (frame);
    if (!text) {
        snprintf (error, error_size, "the payload cannot be given to the bot as JSON");
        return -1;
    }
    int rc = bm_pool_submit (job->pool, job, text, strlen (text), error, error_size);
    free (text);
    return rc;
}

static bool
s_is_job_key (const char *entry)
{
    static const char *keys [] = { "BOT_JOB_ID=", "BOT_TYPE=", "BOT_ATTEMPT=", "BOT_TIMEOUT_MS=",
                                   "BOT_DEADLINE=", "BOT_PROGRESS_FD=", "BOT_WORKER=", NULL };
    for (int i = 0; keys [i]; i++)
        if (strncmp (entry, keys [i], strlen (keys [i])) == 0)
            return true;
    return false;
}

static uint64_t
s_random (bm_worker_t *self)
{
    uint64_t x = self->random;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    self->random = x;
    return x;
}

//  JOB {jobId, botType, payload, attempt, timeoutMs, deadline}
static void
s_on_job (bm_worker_t *self, const msgpack_object *body)
{
    char job_id [BM_MAX_ID_LEN + 1];
    if (!bm_obj_strcpy (body, "jobId", job_id, sizeof job_id)
    ||  !bm_valid_id (job_id, strlen (job_id))) {
        bm_warn (NULL, "JOB without a valid jobId: ignored");
        return;
    }
    int64_t attempt = 1;
    if (!bm_obj_int (body, "attempt", &attempt) || attempt < 1)
        attempt = 1;

    //  The broker gave us again a job we still run (it lost track of us,
    //  for instance after a reconnect): carry on with the same bot.
    job_t *job = (job_t *) zhashx_lookup (self->jobs, job_id);
    if (job) {
        bm_info (job_id, "dispatched again (attempt %lld) while still running: carrying on",
                 (long long) attempt);
        job->attempt = attempt;
        if (job->orphan) {
            job->orphan = false;
            self->orphans--;
            s_send_ready (self);
        }
        return;
    }
    if (self->draining || (int64_t) zhashx_size (self->jobs) >= self->config->concurrency) {
        bm_info (job_id, "no credit left (%s): released", self->draining ? "shutting down" : "full");
        bm_worker_link_send_simple (self->link, BM_RELEASE, "jobId", job_id);
        return;
    }
    char type_name [BM_MAX_BOT_TYPE_LEN + 1] = "";
    const bm_worker_type_t *type = NULL;
    if (bm_obj_strcpy (body, "botType", type_name, sizeof type_name))
        for (int i = 0; i < self->config->type_count; i++)
            if (streq (self->config->types [i].name, type_name))
                type = &self->config->types [i];
    if (!type) {
        char message [128];
        snprintf (message, sizeof message, "this worker does not serve bot type '%.40s'", type_name);
        bm_warn (job_id, "%s", message);
        s_send_done_early (self, job_id, attempt, "spawn_failed", message);
        return;
    }
    //  The run-time limit: timeoutMs from now, but never past the deadline.
    int64_t now = bm_now_ms ();
    int64_t limit = 300000;
    if (!bm_obj_int (body, "timeoutMs", &limit) || limit <= 0)
        limit = 300000;
    if (limit > 86400000)
        limit = 86400000;               //  The broker's own bound; no overflow below
    int64_t deadline = 0;
    if (bm_obj_int (body, "deadline", &deadline) && deadline > 0 && deadline - now < limit)
        limit = deadline - now > 0 ? deadline - now : 0;
    deadline = now + limit;

    if (self->config->mode == BM_WORKER_NOOP) {
        job_t noop;
        memset (&noop, 0, sizeof noop);
        snprintf (noop.id, sizeof noop.id, "%s", job_id);
        noop.attempt = attempt;
        noop.started_at = now;
        noop.started_mono = bm_mono_ms ();
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 4);
        bm_pack_kv_bool (&pk, "noop", true);
        bm_pack_kv_str (&pk, "botType", type->name);
        bm_pack_kv_str (&pk, "jobId", job_id);
        bm_pack_kv_int (&pk, "attempt", attempt);
        s_send_done (self, &noop, sbuf.data, sbuf.size, NULL, NULL, -1, now);
        msgpack_sbuffer_destroy (&sbuf);
        return;
    }

    job = (job_t *) zmalloc (sizeof (job_t));
    job->worker = self;
    snprintf (job->id, sizeof job->id, "%s", job_id);
    job->type = type;
    job->attempt = attempt;
    job->limit_ms = limit;
    job->started_at = now;
    job->started_mono = bm_mono_ms ();
    job->progress_sent = -1;
    job->progress_pending = -1;

    if (self->config->mode == BM_WORKER_SIMULATE) {
        int64_t span = type->sim_max_ms - type->sim_min_ms;
        job->sim_duration = type->sim_min_ms + (span > 0 ? (int64_t) (s_random (self) % (uint64_t) (span + 1)) : 0);
        job->sim_fails = (double) (s_random (self) >> 11) / (double) (1ULL << 53) < type->sim_fail_rate;
        zhashx_insert (self->jobs, job->id, job);
        if (job->sim_duration > limit) {
            s_job_set_timer (self, job, limit, TIMER_DEADLINE);
        }
        else
            s_job_set_timer (self, job, job->sim_duration, TIMER_SIMULATION);
        bm_debug (job->id, "simulating %s for %lld ms", type->name, (long long) job->sim_duration);
        return;
    }

    //  A real bot: the payload as JSON on its stdin.
    const msgpack_object *payload = bm_obj_get (body, "payload");
    msgpack_object nil;
    nil.type = MSGPACK_OBJECT_NIL;
    json_t *json = bm_json_from_msgpack (payload ? payload : &nil, BM_JSON_MAX_DEPTH);
    char *input = json ? json_dumps (json, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION (16)) : NULL;
    if (!input) {
        json_decref (json);
        s_send_done_early (self, job_id, attempt, "spawn_failed",
                           "the payload cannot be given to the bot as JSON (nested too deeply)");
        free (job);
        return;
    }
    job->deadline = deadline;
    job->pool = self->pools [type - self->config->types];
    if (job->pool) {
        char error [BM_MESSAGE_MAX + 1];
        job->payload = json;
        free (input);
        zhashx_insert (self->jobs, job->id, job);
        if (s_pool_submit (self, job, error, sizeof error)) {
            bool init = strstr (error, "failed while loading") != NULL;
            s_send_done_early (self, job_id, attempt, init ? "bot_init_failed" : "spawn_failed", error);
            zhashx_delete (self->jobs, job_id);
            return;
        }
        s_job_set_timer (self, job, limit, TIMER_DEADLINE);
        bm_debug (job->id, "queued for the %s pool, attempt=%lld timeout=%lld ms", type->name,
                  (long long) attempt, (long long) limit);
        return;
    }
    json_decref (json);
    job->bot = bm_bot_new (self->loop, self->config->output_max, self->config->stderr_tail,
                           s_on_bot_exit, s_on_bot_progress, job);
    bm_bot_set_limits (job->bot, &type->limits, job->id);
    char **envp = s_bot_env (self, job, deadline);
    int rc = bm_bot_start (job->bot, type->argv, envp, input, strlen (input));
    bm_bot_argv_free (&envp);
    free (input);
    if (rc) {
        bm_error (job_id, "cannot start the %s bot: %s", type->name, bm_bot_errstr (job->bot));
        s_send_done_early (self, job_id, attempt, "spawn_failed", bm_bot_errstr (job->bot));
        s_job_destroy (&job);
        return;
    }
    zhashx_insert (self->jobs, job->id, job);
    s_job_set_timer (self, job, limit, TIMER_DEADLINE);
    bm_info (job->id, "started %s bot pid=%d attempt=%lld timeout=%lld ms", type->name,
             (int) bm_bot_pid (job->bot), (long long) attempt, (long long) limit);
}

//  A job's timer fired.
static int
s_on_job_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    bm_worker_t *self = (bm_worker_t *) arg;
    job_t *job = (job_t *) zhashx_lookup (self->timers, (void *) (intptr_t) timer_id);
    if (!job)
        return self->stopped ? -1 : 0;          //  Its job already ended
    zhashx_delete (self->timers, (void *) (intptr_t) timer_id);
    jtimer_t kind = job->timer_kind;
    job->timer_id = 0;
    job->timer_kind = TIMER_NONE;
    if (kind == TIMER_SIMULATION)
        s_job_finish (self, job, NULL);
    else
    if (kind == TIMER_DEADLINE) {
        bm_warn (job->id, "ran past its timeout of %lld ms: stopping it", (long long) job->limit_ms);
        s_job_stop (self, job, STOP_TIMEOUT);
    }
    else
    if (kind == TIMER_KILL) {
        bm_warn (job->id, "the bot did not stop within %lld ms of SIGTERM: SIGKILL",
                 (long long) self->config->kill_grace_ms);
        s_job_signal (job, SIGKILL);
    }
    return self->stopped ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  Messages from the broker

static void
s_on_cancel (bm_worker_t *self, const msgpack_object *body)
{
    char job_id [BM_MAX_ID_LEN + 1];
    if (!bm_obj_strcpy (body, "jobId", job_id, sizeof job_id)) {
        bm_warn (NULL, "CANCEL without a jobId: ignored");
        return;
    }
    job_t *job = (job_t *) zhashx_lookup (self->jobs, job_id);
    if (!job) {
        bm_debug (job_id, "CANCEL for a job we do not run: ignored");
        return;
    }
    char reason [32] = "cancelled";
    bm_obj_strcpy (body, "reason", reason, sizeof reason);
    snprintf (job->cancel_code, sizeof job->cancel_code, "%s",
              streq (reason, "timeout") ? "timeout" : "cancelled");
    bm_info (job_id, "CANCEL from the broker (%s): stopping the bot", reason);
    s_job_stop (self, job, STOP_CANCEL);
}

//  JOB and CANCEL from the broker (bm_worker_link handles the rest).  Once
//  we stopped, the loop ends.
static int
s_on_link_job (void *arg, const msgpack_object *body)
{
    bm_worker_t *self = (bm_worker_t *) arg;
    s_on_job (self, body);
    return self->stopped ? -1 : 0;
}

static int
s_on_link_cancel (void *arg, const msgpack_object *body)
{
    bm_worker_t *self = (bm_worker_t *) arg;
    s_on_cancel (self, body);
    return self->stopped ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  Heartbeat, stop

static int
s_on_heartbeat (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop, (void) timer_id;
    bm_worker_t *self = (bm_worker_t *) arg;
    //  Progress values the rate limit held back.
    job_t *job;
    for (job = (job_t *) zhashx_first (self->jobs); job; job = (job_t *) zhashx_next (self->jobs))
        if (job->progress_pending >= 0)
            s_send_progress (self, job, job->progress_pending);
    s_prune_done (self);
    return self->stopped ? -1 : 0;
}

//  The grace period is over (or a second signal came): stop every job
//  still running and hand it back.
static void
s_release_all (bm_worker_t *self)
{
    if (self->grace_timer) {
        zloop_timer_end (self->loop, self->grace_timer);
        self->grace_timer = 0;
    }
    zlist_t *ids = zlist_new ();
    zlist_autofree (ids);
    job_t *job;
    for (job = (job_t *) zhashx_first (self->jobs); job; job = (job_t *) zhashx_next (self->jobs))
        zlist_append (ids, job->id);
    if (zlist_size (ids))
        bm_warn (NULL, "grace period over: stopping %zu job(s) and handing them back",
                 zlist_size (ids));
    for (char *id = (char *) zlist_first (ids); id; id = (char *) zlist_next (ids)) {
        job = (job_t *) zhashx_lookup (self->jobs, id);
        if (job)
            s_job_stop (self, job, STOP_RELEASE);
    }
    zlist_destroy (&ids);
}

//  When stopping: once no job is left, and the settle period after our
//  READY credit 0 has passed, send DISCONNECT and leave the loop.  The
//  settle period catches JOBs the broker sent before it read our READY:
//  they are still on the wire, and we hand them back (RELEASE) rather than
//  let the broker count them as lost with us.
static int
s_on_settle (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop, (void) timer_id;
    bm_worker_t *self = (bm_worker_t *) arg;
    self->settle_timer = 0;                     //  One-shot: zloop frees it
    s_maybe_disconnect (self);
    return self->stopped ? -1 : 0;
}

static void
s_maybe_disconnect (bm_worker_t *self)
{
    if (!self->draining || self->stopped || zhashx_size (self->jobs) > 0)
        return;
    int64_t settle = self->config->grace_ms < BM_SETTLE_MS ? self->config->grace_ms : BM_SETTLE_MS;
    int64_t left = self->drain_since + settle - bm_mono_ms ();
    if (left > 0) {
        if (!self->settle_timer)
            self->settle_timer = zloop_timer (self->loop, (size_t) left, 1, s_on_settle, self);
        return;
    }
    if (self->settle_timer) {
        zloop_timer_end (self->loop, self->settle_timer);
        self->settle_timer = 0;
    }
    bm_worker_link_send_simple (self->link, BM_DISCONNECT, "reason", "shutdown");
    self->stopped = true;
    bm_info (NULL, "all jobs ended or handed back; disconnected");
}

static int
s_on_grace (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop, (void) timer_id;
    bm_worker_t *self = (bm_worker_t *) arg;
    self->grace_timer = 0;                      //  One-shot: zloop frees it
    s_release_all (self);
    return self->stopped ? -1 : 0;
}

static void
s_shutdown (bm_worker_t *self, int signum)
{
    if (self->stopped)
        return;
    if (self->draining) {
        bm_warn (NULL, "second SIG%s: ending the grace period now", sigabbrev_np (signum));
        s_release_all (self);
        return;
    }
    self->draining = true;
    s_send_ready (self);                        //  credit 0: no more jobs
    size_t running = zhashx_size (self->jobs);
    bm_info (NULL, "SIG%s: stopping; %zu job(s) running, grace period %lld ms",
             sigabbrev_np (signum), running, (long long) self->config->grace_ms);
    self->drain_since = bm_mono_ms ();
    if (running > 0)
        self->grace_timer = zloop_timer (self->loop, (size_t) self->config->grace_ms, 1,
                                         s_on_grace, self);
    s_maybe_disconnect (self);
}

static int
s_on_signal (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop, (void) item;
    bm_worker_t *self = (bm_worker_t *) arg;
    struct signalfd_siginfo info;
    while (read (self->signal_fd, &info, sizeof info) == sizeof info) {
        if (info.ssi_signo == SIGCHLD)
            s_reap_children (self);
        else
        if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT)
            s_shutdown (self, (int) info.ssi_signo);
    }
    //  SIGCHLD coalesces and a read may race with an exit: reap anyway.
    s_reap_children (self);
    return self->stopped ? -1 : 0;
}

//  --------------------------------------------------------------------------

bm_worker_t *
bm_worker_new (const bm_worker_config_t *config)
{
    sigset_t mask;
    sigemptyset (&mask);
    sigaddset (&mask, SIGCHLD);
    sigaddset (&mask, SIGTERM);
    sigaddset (&mask, SIGINT);
    int signal_fd = signalfd (-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd < 0) {
        bm_error (NULL, "cannot create a signalfd: %s", strerror (errno));
        return NULL;
    }
    bm_worker_t *self = (bm_worker_t *) zmalloc (sizeof (bm_worker_t));
    self->config = config;
    self->signal_fd = signal_fd;
    self->loop = zloop_new ();
    self->jobs = zhashx_new ();
    zhashx_set_destructor (self->jobs, s_job_free_fn);
    self->timers = zhashx_new ();
    zhashx_set_key_hasher (self->timers, s_int_hash);
    zhashx_set_key_comparator (self->timers, s_int_compare);
    zhashx_set_key_duplicator (self->timers, NULL);
    zhashx_set_key_destructor (self->timers, NULL);
    self->recent_done = zlistx_new ();
    size_t count = 0;
    for (char **e = environ; *e; e++)
        count++;
    self->env_base = (char **) calloc (count + 1, sizeof (char *));
    size_t n = 0;
    for (char **e = environ; *e; e++)
        if (!s_is_job_key (*e))
            self->env_base [n++] = strdup (*e);
    self->random = (uint64_t) bm_now_ms () * 0x9e3779b97f4a7c15ULL ^ (uint64_t) getpid ();
    if (self->random == 0)
        self->random = 1;
    //  Children of our bots that outlive them are reparented to us (not to
    //  init), so we reap them, and see them go.
    prctl (PR_SET_CHILD_SUBREAPER, 1);
    return self;
}

void
bm_worker_destroy (bm_worker_t **self_p)
{
    if (*self_p) {
        bm_worker_t *self = *self_p;
        for (int i = 0; i < BM_WORKER_MAX_TYPES; i++)
            bm_pool_destroy (&self->pools [i]); //  Kills their processes
        bm_metrics_http_destroy (&self->metrics_http);
        bm_metrics_destroy (&self->metrics);
        zhashx_destroy (&self->jobs);           //  Kills bots still running
        if (bm_limits_sweep (1000))
            bm_warn (NULL, "some bot cgroups could not be removed (processes still in them)");
        zhashx_destroy (&self->timers);
        done_t *done;
        while ((done = (done_t *) zlistx_detach (self->recent_done, NULL))) {
            free (done->body);
            free (done);
        }
        zlistx_destroy (&self->recent_done);
        bm_worker_link_destroy (&self->link, 0);
        zloop_destroy (&self->loop);
        bm_bot_argv_free (&self->env_base);
        close (self->signal_fd);
        free (self);
        *self_p = NULL;
    }
}

//  A pool per bot type in pool or fork mode; its processes get our
//  environment plus BOT_TYPE, BOT_WORKER, BOT_MODE and BOT_PROGRESS_FD.
static void
s_start_pools (bm_worker_t *self)
{
    const bm_worker_config_t *config = self->config;
    size_t base = 0;
    while (self->env_base [base])
        base++;
    for (int i = 0; config->mode == BM_WORKER_BOTS && i < config->type_count; i++) {
        const bm_worker_type_t *type = &config->types [i];
        if (type->bot_mode == BM_BOT_SPAWN)
            continue;
        bool fork = type->bot_mode == BM_BOT_FORK;
        char **envp = (char **) calloc (base + 5, sizeof (char *));
        if (!envp)
            continue;
        for (size_t n = 0; n < base; n++)
            envp [n] = strdup (self->env_base [n]);
        envp [base] = zsys_sprintf ("BOT_TYPE=%s", type->name);
        envp [base + 1] = zsys_sprintf ("BOT_WORKER=%s", config->name);
        envp [base + 2] = zsys_sprintf ("BOT_MODE=%s", fork ? "fork" : "pool");
        envp [base + 3] = strdup ("BOT_PROGRESS_FD=3");
        bm_pool_config_t pool_config = {
            .type = type->name, .argv = type->argv, .fork = fork,
            .min_procs = type->min_procs, .max_procs = type->max_procs,
            .max_jobs = type->max_jobs, .max_rss_mb = type->max_rss_mb, .idle_ms = type->idle_ms,
            .output_max = config->output_max, .stderr_tail = config->stderr_tail,
            .kill_grace_ms = config->kill_grace_ms, .limits = &type->limits };
        if (type->sandboxed) {
            //  Only what the job is given: not the worker's credentials.
            char **confined = bm_sandbox_env (envp);
            bm_bot_argv_free (&envp);
            envp = confined;
        }
        self->pools [i] = bm_pool_new (self->loop, &pool_config, envp, s_on_pool_done,
                                       s_on_pool_progress, self);
        if (self->metrics)
            bm_pool_export (self->pools [i], self->metrics);
        bm_bot_argv_free (&envp);
        bm_info (NULL, "%s bots in %s mode: %lld-%lld processes, recycled after %lld jobs%s",
                 type->name, fork ? "fork" : "pool", (long long) type->min_procs,
                 (long long) type->max_procs, (long long) type->max_jobs,
                 type->max_rss_mb > 0 ? " or past BOT_<TYPE>_MAX_RSS_MB" : "");
    }
}

int
bm_worker_run (bm_worker_t *self)
{
    const bm_worker_config_t *config = self->config;
    char types [BM_WORKER_MAX_TYPES * (BM_MAX_BOT_TYPE_LEN + 1) + 1] = "";
    for (int i = 0; i < config->type_count; i++) {
        if (i)
            strcat (types, ",");
        strcat (types, config->types [i].name);
    }
    bm_info (NULL, "worker %s serving %s (%s) with credit %lld, broker %s", config->name, types,
             config->mode == BM_WORKER_NOOP ? "noop"
             : config->mode == BM_WORKER_SIMULATE ? "simulated" : "bots",
             (long long) config->concurrency, config->endpoint);

    if (config->metrics_port > 0) {
        self->metrics = bm_metrics_new ();
        self->metrics_http = bm_metrics_http_new (self->metrics, config->metrics_addr,
                                                  (int) config->metrics_port);
        if (!self->metrics_http) {
            bm_error (NULL, "cannot serve metrics on %s:%lld (WORKER_METRICS_PORT)",
                      config->metrics_addr, (long long) config->metrics_port);
            return -1;
        }
    }
    s_start_pools (self);
    zmq_pollitem_t item = { NULL, self->signal_fd, ZMQ_POLLIN, 0 };
    zloop_poller (self->loop, &item, s_on_signal, self);
    zloop_poller_set_tolerant (self->loop, &item);
    zloop_timer (self->loop, (size_t) config->heartbeat_ms, 0, s_on_heartbeat, self);
    const char *names [BM_WORKER_MAX_TYPES];
    for (int i = 0; i < config->type_count; i++)
        names [i] = config->types [i].name;
    bm_worker_link_config_t link_config = {
        .endpoint = config->endpoint, .name = config->name,
        .types = names, .type_count = config->type_count, .credit = s_credit (self),
        .heartbeat_ms = config->heartbeat_ms, .liveness = config->liveness,
        .max_frame = config->max_frame, .limit_socket = true, .hwm = BM_SNDHWM };
    bm_worker_link_handlers_t handlers = {
        .job = s_on_link_job, .cancel = s_on_link_cancel, .lost = s_on_link_lost, .reconnected = s_on_link_reconnected };
    self->link = bm_worker_link_new (&link_config, self->loop, &handlers, self);
    if (!self->link)
        return -1;
    //  zloop_start returns when a handler returns -1 (we stopped), or on
    //  an error of zmq_poll.  Signals cannot interrupt it: they are blocked
    //  and read from the signalfd.
    while (!self->stopped) {
        zloop_start (self->loop);
        if (!self->stopped) {
            bm_error (NULL, "event loop ended unexpectedly (%s)", zmq_strerror (zmq_errno ()));
            return -1;
        }
    }
    //  Give RELEASE and DISCONNECT a moment to leave.
    bm_info (NULL, "stopped (%llu reconnects)",
             (unsigned long long) bm_worker_link_reconnects (self->link));
    bm_worker_link_destroy (&self->link, BM_LINGER_MS);
    return 0;
}

/*  bm_runner.c - runs the worker's jobs: bots, pooled runs, simulations.  */
#include "bm_runner.h"
#include "bm_config.h"
#include "bm_job_report.h"
#include "bm_log.h"
#include "bm_progress.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct _bm_runner_t {
    zloop_t *loop;                      //  The worker's loop (borrowed)
    const bm_worker_config_t *config;   //  Its configuration (borrowed)
    bm_job_env_t *env;                  //  Bots' environment (borrowed)
    const bool *stopped;                //  The worker stopped: end the loop
    bm_runner_end_fn *on_end;           //  A job ended
    bm_runner_progress_fn *on_progress; //  Send a job's progress
    bm_runner_wait_fn *on_wait;         //  A job waits, or began after it
    void *arg;                          //  For the three
    zhashx_t *timers;                   //  Timer id -> job_t (borrowed)
    uint64_t random;                    //  xorshift state for simulations
};

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

bm_runner_t *
bm_runner_new (zloop_t *loop, const bm_worker_config_t *config, bm_job_env_t *env,
               const bool *stopped, bm_runner_end_fn *on_end,
               bm_runner_progress_fn *on_progress, bm_runner_wait_fn *on_wait, void *arg)
{
    bm_runner_t *self = (bm_runner_t *) zmalloc (sizeof (bm_runner_t));
    self->loop = loop;
    self->config = config;
    self->env = env;
    self->stopped = stopped;
    self->on_end = on_end;
    self->on_progress = on_progress;
    self->on_wait = on_wait;
    self->arg = arg;
    self->timers = zhashx_new ();
    zhashx_set_key_hasher (self->timers, s_int_hash);
    zhashx_set_key_comparator (self->timers, s_int_compare);
    zhashx_set_key_duplicator (self->timers, NULL);
    zhashx_set_key_destructor (self->timers, NULL);
    self->random = (uint64_t) bm_now_ms () * 0x9e3779b97f4a7c15ULL ^ (uint64_t) getpid ();
    if (self->random == 0)
        self->random = 1;
    return self;
}

void
bm_runner_destroy (bm_runner_t **self_p)
{
    if (*self_p) {
        bm_runner_t *self = *self_p;
        zhashx_destroy (&self->timers);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Jobs and their timers

static void
s_job_clear_timer (bm_runner_t *self, job_t *job)
{
    if (job->timer_id) {
        zloop_timer_end (self->loop, job->timer_id);
        zhashx_delete (self->timers, (void *) (intptr_t) job->timer_id);
        job->timer_id = 0;
        job->timer_kind = TIMER_NONE;
    }
}

static int s_on_job_timer (zloop_t *loop, int timer_id, void *arg);

void
bm_job_set_timer (job_t *job, int64_t delay, jtimer_t kind)
{
    bm_runner_t *self = job->runner;
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

job_t *
bm_runner_job (bm_runner_t *self, const char *id, const bm_worker_type_t *type,
               int64_t attempt, int64_t limit_ms, int64_t now)
{
    job_t *job = (job_t *) zmalloc (sizeof (job_t));
    job->runner = self;
    snprintf (job->id, sizeof job->id, "%s", id);
    job->type = type;
    job->attempt = attempt;
    job->limit_ms = limit_ms;
    job->started_at = now;
    job->started_mono = bm_mono_ms ();
    job->progress_sent = 0;             //  Where the broker starts each run
    job->progress_sent_mono = job->started_mono;
    job->progress_pending = -1;
    return job;
}

void
bm_job_destroy (job_t **job_p)
{
    if (*job_p) {
        job_t *job = *job_p;
        s_job_clear_timer (job->runner, job);
        if (job->progress_timer) {
            zloop_timer_end (job->runner->loop, job->progress_timer);
            zhashx_delete (job->runner->timers, (void *) (intptr_t) job->progress_timer);
        }
        bm_bot_destroy (&job->bot);
        json_decref (job->payload);
        free (job);
        *job_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Stopping jobs

int
bm_job_signal (job_t *job, int signum)
{
    if (job->bot)
        return bm_bot_signal (job->bot, signum);
    if (job->pool)
        return bm_pool_signal (job->pool, job, signum);
    return -1;
}

void
bm_job_stop (job_t *job, stop_t reason)
{
    bm_runner_t *self = job->runner;
    if (job->stop == STOP_NONE)
        job->stop = reason;
    if (job->bot || job->pool) {
        if (!job->term_sent) {
            job->term_sent = true;
            if (bm_job_signal (job, SIGTERM) == 1)
                self->on_end (job, NULL, self->arg);        //  It waited for a process
            else
                bm_job_set_timer (job, self->config->kill_grace_ms, TIMER_KILL);
        }
    }
    else
        self->on_end (job, NULL, self->arg);
}

//  A job's timer fired.
static int
s_on_job_timer (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    bm_runner_t *self = (bm_runner_t *) arg;
    job_t *job = (job_t *) zhashx_lookup (self->timers, (void *) (intptr_t) timer_id);
    if (!job)
        return *self->stopped ? -1 : 0;         //  Its job already ended
    zhashx_delete (self->timers, (void *) (intptr_t) timer_id);
    if (timer_id == job->progress_timer) {
        //  The gap since the last progress sent is over: the value held.
        job->progress_timer = 0;
        if (job->progress_pending >= 0)
            self->on_progress (job, job->progress_pending, self->arg);
        return *self->stopped ? -1 : 0;
    }
    jtimer_t kind = job->timer_kind;
    job->timer_id = 0;
    job->timer_kind = TIMER_NONE;
    if (kind == TIMER_SIMULATION)
        self->on_end (job, NULL, self->arg);
    else
    if (kind == TIMER_WAIT) {
        job->wait_told = true;
        self->on_wait (job, false, bm_mono_ms () - job->started_mono, self->arg);
    }
    else
    if (kind == TIMER_DEADLINE) {
        bm_warn (job->id, "ran past its timeout of %lld ms: stopping it", (long long) job->limit_ms);
        bm_job_stop (job, STOP_TIMEOUT);
    }
    else
    if (kind == TIMER_KILL) {
        bm_warn (job->id, "the bot did not stop within %lld ms of SIGTERM: SIGKILL",
                 (long long) self->config->kill_grace_ms);
        bm_job_signal (job, SIGKILL);
    }
    return *self->stopped ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  Bot events

static void
s_on_bot_exit (bm_bot_t *bot, void *arg)
{
    job_t *job = (job_t *) arg;
    bm_runner_t *self = job->runner;
    int status = bm_bot_status (bot);
    char *tail = bm_bot_stderr_text (bot);
    bm_pool_outcome_t outcome = {
        .overflowed = bm_bot_overflowed (bot),
        .exit_code = WIFEXITED (status) ? WEXITSTATUS (status) : -1,
        .signal = WIFSIGNALED (status) ? WTERMSIG (status) : 0,
        .sandboxed = job->type->sandboxed, .memory_var = job->type->memory_var,
        .message = tail, .log = tail };
    outcome.output = bm_bot_stdout (bot, &outcome.output_size);
    //  A pooled bot run in spawn mode: its ready frame is no result.
    char pooled [256];
    if (outcome.exit_code == 0 && !outcome.overflowed
    &&  bm_job_report_pool_ready (outcome.output, outcome.output_size)) {
        char var [64];
        snprintf (pooled, sizeof pooled, "the bot's stdout begins with a pooled bot's ready frame "
                  "({\"ready\": true}): it speaks the pool protocol but runs in spawn mode (set "
                  "%s=pool)", bm_bot_type_var (var, sizeof var, job->type->name, "_MODE"));
        outcome.bad_output = pooled;
    }
    self->on_end (job, &outcome, self->arg);
    free (tail);
}

static void
s_on_bot_progress (bm_bot_t *bot, int progress, void *arg)
{
    job_t *job = (job_t *) arg;
    if (progress == BM_PROGRESS_BAD) {
        bm_warn (job->id, "the bot wrote a progress line that is not 'PROGRESS <0-100>' on fd 3: "
                 "'%s' (ignored, as are this job's further bad lines)",
                 bot ? bm_bot_progress_bad (bot) : bm_pool_progress_bad (job->pool, job));
        return;
    }
    if (progress == job->progress_sent) {
        job->progress_pending = -1;
        return;
    }
    bm_runner_t *self = job->runner;
    int64_t wait = job->progress_sent_mono + BM_PROGRESS_MIN_GAP_MS - bm_mono_ms ();
    if (wait <= 0) {
        self->on_progress (job, progress, self->arg);
        return;
    }
    //  Held back until the gap is over, then sent (the latest value held):
    //  a job that ends first carries it in its DONE instead.
    job->progress_pending = progress;
    if (!job->progress_timer) {
        int id = zloop_timer (self->loop, (size_t) wait, 1, s_on_job_timer, self);
        if (id > 0) {
            job->progress_timer = id;
            zhashx_insert (self->timers, (void *) (intptr_t) id, job);
        }
        else
            self->on_progress (job, progress, self->arg);  //  No timer: now
    }
}

//  A pooled job ended.  A pool process killed under it by someone else
//  (kill -9, the kernel's OOM killer) may have died of an earlier job's
//  doing: the job runs once more, as the next attempt, on a new process.
void
bm_runner_on_pool_done (void *arg, const bm_pool_outcome_t *outcome, void *runner)
{
    job_t *job = (job_t *) arg;
    bm_runner_t *self = (bm_runner_t *) runner;
    //  Killed from outside (kill -9, the OOM killer): maybe by an earlier
    //  job's doing, so not this job's failure.  The broker runs it again as
    //  its next attempt, as if this worker had died under it.
    if (outcome->lost && job->stop == STOP_NONE) {
        job->stop = STOP_LOST;
        bm_warn (job->id, "its %s process was killed by signal %d: handed back to the broker "
                 "as a lost attempt (%lld)", job->type->name, outcome->signal, (long long) job->attempt);
    }
    self->on_end (job, outcome, self->arg);
}

void
bm_runner_on_pool_progress (void *arg, int progress, void *runner)
{
    (void) runner;
    s_on_bot_progress (NULL, progress, arg);
}

//  --------------------------------------------------------------------------
//  Starting jobs

//  A pooled job that waited for a process got one: it starts now.  Its
//  frame is made anew, for BOT_DEADLINE.
char *
bm_runner_on_pool_start (void *arg, size_t *size, void *runner)
{
    job_t *job = (job_t *) arg;
    bm_runner_t *self = (bm_runner_t *) runner;
    int64_t mono = bm_mono_ms ();
    int64_t waited_ms = mono - job->started_mono;
    job->waiting = false;
    job->started_at = bm_now_ms ();
    job->started_mono = mono;
    job->progress_sent_mono = mono;
    job->deadline = job->started_at + job->limit_ms;
    bm_job_set_timer (job, job->limit_ms, TIMER_DEADLINE);
    if (job->wait_told)
        self->on_wait (job, true, waited_ms, self->arg);
    else
        bm_debug (job->id, "began on a %s process after waiting %lld ms in this worker",
                  job->type->name, (long long) waited_ms);
    char *text = bm_job_env_frame (self->env, job->id, job->type, job->attempt, job->limit_ms,
                                   job->deadline, self->config->name, job->payload);
    *size = text ? strlen (text) : 0;
    return text;
}

int
bm_runner_submit (bm_runner_t *self, job_t *job, char *error, size_t error_size)
{
    char *text = bm_job_env_frame (self->env, job->id, job->type, job->attempt, job->limit_ms,
                                   job->deadline, self->config->name, job->payload);
    if (!text) {
        snprintf (error, error_size, "the payload cannot be given to the bot as JSON");
        return -1;
    }
    int rc = bm_pool_submit (job->pool, job, job->id, text, strlen (text), error, error_size);
    free (text);
    if (rc == 0) {
        job->waiting = bm_pool_job_waits (job->pool, job);
        int64_t notice = job->limit_ms / 2 < BM_RUNNER_WAIT_NOTICE_MS ? job->limit_ms / 2
                       : BM_RUNNER_WAIT_NOTICE_MS;
        if (job->waiting && notice == 0) {
            job->wait_told = true;
            self->on_wait (job, false, 0, self->arg);
        }
        else
            bm_job_set_timer (job, job->waiting ? notice : job->limit_ms,
                              job->waiting ? TIMER_WAIT : TIMER_DEADLINE);
    }
    return rc;
}

int
bm_runner_spawn (bm_runner_t *self, job_t *job, const char *input, size_t size)
{
    const bm_worker_type_t *type = job->type;
    job->bot = bm_bot_new (self->loop, self->config->output_max, self->config->stderr_tail,
                           s_on_bot_exit, s_on_bot_progress, job);
    bm_bot_set_limits (job->bot, &type->limits, job->id);
    char **envp = bm_job_env_bot (self->env, job->id, type, job->attempt, job->limit_ms,
                                  job->deadline, self->config->name);
    int rc = bm_bot_start (job->bot, type->argv, envp, input, size);
    bm_bot_argv_free (&envp);
    return rc;
}

static uint64_t
s_random (bm_runner_t *self)
{
    uint64_t x = self->random;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    self->random = x;
    return x;
}

void
bm_runner_simulate (bm_runner_t *self, job_t *job)
{
    const bm_worker_type_t *type = job->type;
    int64_t span = type->sim_max_ms - type->sim_min_ms;
    job->sim_duration = type->sim_min_ms + (span > 0 ? (int64_t) (s_random (self) % (uint64_t) (span + 1)) : 0);
    job->sim_fails = (double) (s_random (self) >> 11) / (double) (1ULL << 53) < type->sim_fail_rate;
    if (job->sim_duration > job->limit_ms)
        bm_job_set_timer (job, job->limit_ms, TIMER_DEADLINE);
    else
        bm_job_set_timer (job, job->sim_duration, TIMER_SIMULATION);
}

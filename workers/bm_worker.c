/*  bm_worker.c - a botmesh worker: one DEALER to the broker, BMW01, bots.  */
#include "bm_worker.h"
#include "bm_bot.h"
#include "bm_config.h"
#include "bm_json.h"
#include "bm_log.h"
#include "bm_sandbox.h"
#include "bm_worker_link.h"
#include "bm_pool.h"
#include "bm_done_replay.h"
#include "bm_job_env.h"
#include "bm_job_report.h"
#include "bm_runner.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define BM_SETTLE_MS            200     //  After READY credit 0, wait this
                                        //  long for JOBs already in flight
#define BM_SNDHWM               10000   //  Messages queued while the broker
                                        //  is away; past it sends fail
                                        //  rather than block the loop
#define BM_LINGER_MS            1000    //  Time RELEASE and DISCONNECT get
                                        //  to leave at the end

struct _bm_worker_t {
    const bm_worker_config_t *config;   //  Our configuration (borrowed)
    zloop_t *loop;                      //  The one event loop
    bm_worker_link_t *link;             //  BMW01 connection to the broker
    int signal_fd;                      //  SIGCHLD, SIGTERM, SIGINT
    zhashx_t *jobs;                     //  jobId -> job_t, owns them
    bm_pool_t *pools [BM_WORKER_MAX_TYPES]; //  Per type in pool/fork mode
    bm_metrics_t *metrics;              //  Registry of GET /metrics, or NULL
    bm_metrics_http_t *metrics_http;    //  Its server, or NULL
    bm_runner_t *runner;                //  Starts, times and stops our jobs
    bm_done_replay_t *recent_done;      //  DONEs to send again after a reconnect
    bm_job_env_t *env;                  //  What our bots get in their environment
    bool draining;                      //  Stopping: no new jobs
    int grace_timer;                    //  Grace period timer, or 0
    int64_t drain_since;                //  Monotonic ms when stopping began
    int settle_timer;                   //  Settle period timer, or 0
    bool stopped;                       //  DISCONNECT sent: leave the loop
    bm_codec_heartbeat_t bots_sent;     //  Warm bots as last told the broker
    bm_packer_t done;                   //  The DONE being sent (one buffer
                                        //  kept for every job)
    bm_packer_t noop_result;            //  --noop: the result it carries
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

static void
s_job_free_fn (void **item)
{
    bm_job_destroy ((job_t **) item);
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
    return self->config->concurrency;
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
    bm_job_report_progress (&sbuf, job->id, progress);
    s_send (self, BM_PROGRESS, &sbuf, job->id);
    msgpack_sbuffer_destroy (&sbuf);
    job->progress_sent = progress;
    job->progress_sent_mono = bm_mono_ms ();
    job->progress_pending = -1;
}

//  Forget DONEs older than twice the time a broker holds a lost worker's
//  jobs (after our loss, or after its own recovery from Redis), 2 x
//  heartbeat x liveness, before it dispatches them again: the JOB it then
//  sends us for one must still find its DONE here (a broker that recovered
//  just after our READY dispatches them the hold's length after it, not
//  before).  They age only while a broker connection is up (bm_done_replay).
static void
s_prune_done (bm_worker_t *self)
{
    bm_done_replay_heard (self->recent_done, bm_worker_link_heard (self->link));
    bm_done_replay_prune (self->recent_done, bm_mono_ms (),
                          2 * 2 * self->config->heartbeat_ms * self->config->liveness);
}

//  DONE (bm_job_report_done) for a job: result_data is a msgpack value
//  (result_size bytes) when code is NULL.  The first `own` bytes of
//  message are the worker's words, the rest the bot's stderr, which may be
//  secret: it goes in the DONE, never in the log line (SIZE_MAX: all own).
static void
s_send_done (bm_worker_t *self, job_t *job, const char *result_data, size_t result_size,
             const char *code, const char *message, size_t own, int exit_code,
             int64_t finished_at)
{
    bool ok = code == NULL;
    bm_packer_t *done = &self->done;
    bm_packer_reset (done);
    bm_job_report_done (done, job->id, result_data, result_size, code, message, exit_code,
                        job->limit_hit, job->attempt, job->started_at, finished_at,
                        job->progress_pending, job->type && job->type->keep_log ? job->log : NULL);
    job->progress_pending = -1;         //  Sent with it
    int64_t now_mono = bm_mono_ms ();
    if (bm_packer_failed (done))
        bm_error (job->id, "no memory to build its DONE: not sent");
    else {
        s_send (self, BM_DONE, &done->sbuf, job->id);
        bm_done_replay_heard (self->recent_done, bm_worker_link_heard (self->link));
        bm_done_replay_remember (self->recent_done, done->sbuf.data, done->sbuf.size,
                                 job->id, ok, now_mono);
    }
    //  A large result leaves a large buffer: let it go.
    if (done->sbuf.alloc > 65536)
        bm_packer_destroy (done);

    int64_t took = now_mono - job->started_mono;
    char said [400] = "";
    if (!ok) {
        if (!message)
            message = "";
        size_t size = strlen (message);
        if (own >= size)
            snprintf (said, sizeof said, "%.300s", message);
        else
            snprintf (said, sizeof said, "%.*s%s[%zu bytes of the bot's stderr, in the job's "
                      "error]", (int) (own > 300 ? 300 : own), message, own ? ": " : "",
                      size - own);
    }
    if (ok && self->config->mode == BM_WORKER_NOOP)
        bm_debug (job->id, "completed (noop)");     //  Thousands a second
    else
    if (ok)
        bm_info (job->id, "completed in %lld ms (attempt %lld)", (long long) took,
                 (long long) job->attempt);
    else
    if (job->waiting)
        //  No process took it: nothing ran or was stopped.
        bm_info (job->id, "dropped before it started, after waiting %lld ms in this worker for "
                 "a %s process (attempt %lld): %s: %s", (long long) took, job->type->name,
                 (long long) job->attempt, code, said);
    else
        bm_info (job->id, "failed in %lld ms (attempt %lld): %s: %s", (long long) took,
                 (long long) job->attempt, code, said);
}

//  A DONE for a job we never started (bad bot type, payload, spawn, a
//  bot that cannot start; limit: the resource limit that stops it, or NULL).
static void
s_send_done_early (bm_worker_t *self, const char *job_id, int64_t attempt,
                   const char *code, const char *limit, const char *message)
{
    job_t job;
    memset (&job, 0, sizeof job);
    snprintf (job.id, sizeof job.id, "%s", job_id);
    job.attempt = attempt;
    job.limit_hit = limit;
    job.started_at = bm_now_ms ();
    job.started_mono = bm_mono_ms ();
    s_send_done (self, &job, NULL, 0, code, message, SIZE_MAX, -1, job.started_at);
}

//  --------------------------------------------------------------------------
//  Connection to the broker

//  The broker connection was lost (bm_worker_link replaces it).  The READY
//  on the new one lists the jobs still running (s_on_link_running): the
//  broker behind it takes them as ours (or cancels those it cannot let
//  us finish) and counts them against our credit, which stays whole.
static void
s_on_link_lost (void *arg)
{
    bm_worker_t *self = (bm_worker_t *) arg;
    bm_worker_link_set_credit (self->link, s_credit (self));
    bm_done_replay_link_down (self->recent_done);
}

//  READY running: the ids of the jobs we run.
static int
s_on_link_running (void *arg, const char **ids, int max)
{
    bm_worker_t *self = (bm_worker_t *) arg;
    int count = 0;
    for (job_t *job = (job_t *) zhashx_first (self->jobs); job && count < max;
         job = (job_t *) zhashx_next (self->jobs))
        ids [count++] = job->id;
    return count;
}

//  Our warm bots per type (mode, processes, recycles, init failures).
static void
s_collect_bots (bm_worker_t *self, bm_codec_heartbeat_t *beat)
{
    memset (beat, 0, sizeof *beat);
    for (int i = 0; i < self->config->type_count; i++)
        if (self->pools [i])
            bm_pool_report (self->pools [i], &beat->bots [beat->count++]);
}

//  READY bots: the broker's STATS shows each type's mode from our READY
//  on, not from the first HEARTBEAT an interval later (until then it said
//  spawn for a type we run warm).
static void
s_on_link_bots (void *arg, bm_codec_heartbeat_t *bots)
{
    bm_worker_t *self = (bm_worker_t *) arg;
    s_collect_bots (self, bots);
    self->bots_sent = *bots;
}

//  Our warm bots in a HEARTBEAT, when they changed since we last said
//  (always, with force): the broker shows them per type in STATS.
static void
s_report_bots (bm_worker_t *self, bool force)
{
    bm_codec_heartbeat_t beat;
    s_collect_bots (self, &beat);
    if (beat.count == 0 || (!force && memcmp (&beat, &self->bots_sent, sizeof beat) == 0))
        return;
    if (bm_worker_link_send_heartbeat (self->link, &beat) == 0)
        self->bots_sent = beat;
}

static void s_on_job_wait (job_t *job, bool started, int64_t waited_ms, void *arg);

//  The new connection said READY.  DONEs sent just before the broker went
//  away may be lost: send them again.  One the broker already has is
//  answered NACK not_owner.
static void
s_on_link_reconnected (void *arg)
{
    bm_worker_t *self = (bm_worker_t *) arg;
    bm_done_replay_link_up (self->recent_done, bm_mono_ms ());
    bm_done_replay_send (self->recent_done, self->link);
    s_report_bots (self, true);
    //  The broker behind the new connection takes the jobs we listed as
    //  running, their timeouts from now: those still waiting for a process
    //  are said again.
    for (job_t *job = (job_t *) zhashx_first (self->jobs); job;
         job = (job_t *) zhashx_next (self->jobs))
        if (job->waiting && job->wait_told)
            s_on_job_wait (job, false, bm_mono_ms () - job->started_mono, self);
}

//  --------------------------------------------------------------------------
//  Ending jobs

//  Send what ends the job (DONE or RELEASE) and forget it.
static void
s_job_finish (bm_worker_t *self, job_t *job, const bm_pool_outcome_t *outcome)
{
    int64_t finished_at = bm_now_ms ();
    job->log = outcome ? outcome->log : NULL;
    if (job->stop == STOP_RELEASE) {
        bm_worker_link_send_simple (self->link, BM_RELEASE, "jobId", job->id);
        bm_info (job->id, "released back to the broker (shutting down)");
    }
    else
    if (job->stop == STOP_LOST)
        //  The broker counts the attempt and runs the job again (or fails
        //  it with worker_lost past its maxAttempts, naming the signal).
        bm_worker_link_send_lost (self->link, job->id, outcome ? outcome->signal : 0);
    else
    if (job->stop == STOP_CANCEL) {
        char message [96];
        snprintf (message, sizeof message, "stopped by the broker (%s)", job->cancel_reason);
        s_send_done (self, job, NULL, 0, job->cancel_code, message, SIZE_MAX, -1, finished_at);
    }
    else
    if (job->stop == STOP_TIMEOUT) {
        char message [96];
        snprintf (message, sizeof message, "the job ran longer than its timeout of %lld ms",
                  (long long) job->limit_ms);
        s_send_done (self, job, NULL, 0, "timeout", message, SIZE_MAX, -1, finished_at);
    }
    else
    if (!outcome) {
        //  A simulation.
        if (job->sim_fails)
            s_send_done (self, job, NULL, 0, "bot_failed", "simulated failure", SIZE_MAX, 1,
                         finished_at);
        else {
            msgpack_sbuffer sbuf;
            bm_job_report_simulated (&sbuf, job->type->name, job->id, job->attempt,
                                     job->sim_duration);
            s_send_done (self, job, sbuf.data, sbuf.size, NULL, NULL, SIZE_MAX, -1, finished_at);
            msgpack_sbuffer_destroy (&sbuf);
        }
    }
    else {
        //  A bot ran (spawned or pooled): how it ended.
        if (job->bot)
            finished_at = bm_bot_finished_at (job->bot);
        bm_job_verdict_t verdict;
        bm_job_report_verdict (outcome, job->bot, &job->type->limits, self->config->output_max,
                               self->config->max_payload, &verdict);
        if (verdict.limit) {
            bm_warn (job->id, "the %s bot hit its %s limit", job->type->name, verdict.limit);
            //  DONE error.limit carries it to the broker, which counts it
            //  (bot_limit_kills_total on its /metrics, limitKills in STATS):
            //  one count per run for the whole mesh.
            job->limit_hit = verdict.limit;
        }
        s_send_done (self, job, verdict.result, verdict.result_size, verdict.code,
                     verdict.message, verdict.own, verdict.exit_code, finished_at);
        bm_job_verdict_clear (&verdict);
    }
    zhashx_delete (self->jobs, job->id);        //  Destroys the job
    s_maybe_disconnect (self);
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

//  JOB {jobId, botType, payload, attempt, timeoutMs, deadline}
static void
s_on_job (bm_worker_t *self, const bm_codec_job_t *body)
{
    //  The codec checked every field (a JOB that does not decode is
    //  answered DONE bad_request by the link and never comes here).
    const char *job_id = body->job_id;
    int64_t attempt = body->attempt;

    //  The broker gave us again a job we still run (it lost track of us,
    //  for instance after a reconnect): carry on with the same bot.
    job_t *job = zhashx_size (self->jobs) ? (job_t *) zhashx_lookup (self->jobs, job_id) : NULL;
    if (job) {
        bm_info (job_id, "dispatched again (attempt %lld) while still running: carrying on",
                 (long long) attempt);
        job->attempt = attempt;
        return;
    }
    //  A job we completed moments ago: the broker lost our DONE (it
    //  restarted, or took us for dead) and dispatched it again.  Our DONE
    //  answers for this attempt too; the bot does not run twice.
    size_t kept_size;
    const char *kept = bm_done_replay_completed (self->recent_done, job_id, &kept_size);
    msgpack_sbuffer again;
    if (kept && bm_job_report_done_again (&again, kept, kept_size, attempt) == 0) {
        bm_info (job_id, "dispatched again (attempt %lld) after we completed it: "
                 "our DONE answers for it, the bot does not run again", (long long) attempt);
        s_send (self, BM_DONE, &again, job_id);
        msgpack_sbuffer_destroy (&again);
        return;
    }
    if (self->draining || (int64_t) zhashx_size (self->jobs) >= self->config->concurrency) {
        bm_info (job_id, "no credit left (%s): released", self->draining ? "shutting down" : "full");
        bm_worker_link_send_simple (self->link, BM_RELEASE, "jobId", job_id);
        return;
    }
    const char *type_name = body->bot_type;
    const bm_worker_type_t *type = NULL;
    for (int i = 0; i < self->config->type_count; i++)
        if (streq (self->config->types [i].name, type_name))
            type = &self->config->types [i];
    if (!type) {
        char message [128];
        snprintf (message, sizeof message, "this worker does not serve bot type '%.40s'", type_name);
        bm_warn (job_id, "%s", message);
        s_send_done_early (self, job_id, attempt, "spawn_failed", NULL, message);
        return;
    }
    //  The run-time limit: timeoutMs, measured from now on this worker's own
    //  monotonic clock (the timer below).  The JOB's `deadline` is the
    //  broker's wall clock: clocks of two hosts are not compared.  The bot's
    //  BOT_DEADLINE is this host's wall clock plus the limit.
    int64_t now = bm_now_ms ();
    int64_t limit = body->timeout_ms;   //  1..BM_MAX_TIMEOUT_MS, checked
    int64_t deadline = now + limit;

    if (self->config->mode == BM_WORKER_NOOP) {
        job_t noop;
        memset (&noop, 0, sizeof noop);
        bm_id_copy (noop.id, sizeof noop.id, job_id);
        noop.attempt = attempt;
        noop.started_at = now;
        noop.started_mono = bm_mono_ms ();
        bm_packer_reset (&self->noop_result);
        bm_job_report_noop (&self->noop_result, type->name, job_id, attempt);
        s_send_done (self, &noop, self->noop_result.sbuf.data, self->noop_result.sbuf.size,
                     NULL, NULL, SIZE_MAX, -1, now);
        return;
    }

    job = bm_runner_job (self->runner, job_id, type, attempt, limit, now);
    if (self->config->mode == BM_WORKER_SIMULATE) {
        bm_runner_simulate (self->runner, job);
        zhashx_insert (self->jobs, job->id, job);
        bm_debug (job->id, "simulating %s for %lld ms", type->name, (long long) job->sim_duration);
        return;
    }

    //  A real bot: the payload as JSON on its stdin.
    const msgpack_object *payload = body->payload.obj;
    msgpack_object nil;
    nil.type = MSGPACK_OBJECT_NIL;
    unsigned lost = 0;
    json_t *json = bm_json_from_msgpack_lossy (payload ? payload : &nil, BM_JSON_MAX_DEPTH, &lost);
    if (json && lost) {
        //  Values JSON cannot hold (a client's bytes, NaN, ...): the bot
        //  sees them changed; one line says how.
        char kinds [256];
        bm_json_lost_text (lost, kinds, sizeof kinds);
        bm_info (job_id, "payload has values JSON cannot hold; the bot gets %s", kinds);
    }
    char *input = bm_json_dumps (json, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!input) {
        json_decref (json);
        s_send_done_early (self, job_id, attempt, "spawn_failed", NULL,
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
        int rc = bm_runner_submit (self->runner, job, error, sizeof error);
        if (rc) {
            s_send_done_early (self, job_id, attempt, "spawn_failed", NULL, error);
            zhashx_delete (self->jobs, job_id);
            return;
        }
        bm_debug (job->id, "%s the %s pool, attempt=%lld timeout=%lld ms",
                  job->waiting ? "waits for a process of" : "given to", type->name,
                  (long long) attempt, (long long) limit);
        return;
    }
    json_decref (json);
    int rc = bm_runner_spawn (self->runner, job, input, strlen (input));
    free (input);
    if (rc) {
        bm_error (job_id, "cannot start the %s bot: %s", type->name, bm_bot_errstr (job->bot));
        s_send_done_early (self, job_id, attempt, "spawn_failed", NULL, bm_bot_errstr (job->bot));
        bm_job_destroy (&job);
        return;
    }
    zhashx_insert (self->jobs, job->id, job);
    bm_job_set_timer (job, limit, TIMER_DEADLINE);
    bm_info (job->id, "started %s bot pid=%d attempt=%lld timeout=%lld ms", type->name,
             (int) bm_bot_pid (job->bot), (long long) attempt, (long long) limit);
}

//  --------------------------------------------------------------------------
//  Messages from the broker

static void
s_on_cancel (bm_worker_t *self, const bm_codec_job_notice_t *body)
{
    const char *job_id = body->job_id;
    job_t *job = (job_t *) zhashx_lookup (self->jobs, job_id);
    char reason [32] = "cancelled";
    if (body->reason.ptr && body->reason.len > 0)
        snprintf (reason, sizeof reason, "%.*s", (int) body->reason.len, body->reason.ptr);
    if (!job && bm_done_replay_discard (self->recent_done, job_id)) {
        //  We completed it moments ago, but the CANCEL crossed our DONE (a
        //  timeout or a cancel), or the broker had taken us for lost (we
        //  were paused, or cut off) and given the job to another worker:
        //  our result does not count, so it is neither sent again nor the
        //  answer to a later JOB for the job.
        bm_warn (job_id, "result discarded: CANCEL from the broker (%s) for the run we completed: "
                 "%s", reason,
                 streq (reason, "finished") ? "the broker had given the job to another worker, "
                                              "which finished it"
                 : streq (reason, "duplicate") ? "the broker had given the job to another "
                                                 "worker, which runs it"
                 : streq (reason, "unknown") ? "the broker does not know the job"
                 : "the broker did not take our result");
        return;
    }
    if (!job) {
        bm_debug (job_id, "CANCEL for a job we do not run: ignored");
        return;
    }
    //  The DONE says why the run stopped: "cancelled" only for a CANCEL
    //  "cancelled" (the broker ends a job cancelled on it), "timeout" for a
    //  timeout; any other reason (the broker had given the job to another
    //  worker, or did not know it) is no one's cancel: "stopped", a failed
    //  run, should a broker take it.
    snprintf (job->cancel_code, sizeof job->cancel_code, "%s",
              streq (reason, "timeout") ? "timeout"
              : streq (reason, "cancelled") ? "cancelled" : "stopped");
    snprintf (job->cancel_reason, sizeof job->cancel_reason, "%s", reason);
    if (streq (reason, "duplicate") || streq (reason, "finished"))
        bm_warn (job_id, "CANCEL from the broker (%s): the broker had given the job to another "
                 "worker; stopping the bot, its result will not count", reason);
    else
    if (job->waiting)
        bm_info (job_id, "CANCEL from the broker (%s): dropping the job, which waits in this "
                 "worker for a %s process (no bot runs it yet)", reason, job->type->name);
    else
        bm_info (job_id, "CANCEL from the broker (%s): stopping the bot", reason);
    bm_job_stop (job, STOP_CANCEL);
}

//  JOB and CANCEL from the broker (bm_worker_link handles the rest).  Once
//  we stopped, the loop ends.
static int
s_on_link_job (void *arg, const bm_codec_job_t *body)
{
    bm_worker_t *self = (bm_worker_t *) arg;
    s_on_job (self, body);
    return self->stopped ? -1 : 0;
}

static int
s_on_link_cancel (void *arg, const bm_codec_job_notice_t *body)
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
    s_prune_done (self);
    //  cgroups whose processes were still dying when tried (a run's end,
    //  or the start-up sweep of those a worker killed with -9 left): an
    //  idle worker must not keep them until its next run.
    bm_limits_sweep (0);
    if (self->link && !self->stopped)
        s_report_bots (self, false);
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
            bm_job_stop (job, STOP_RELEASE);
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
    bm_worker_link_stopping (self->link);       //  Replaced now: gone for good
    s_send_ready (self);                        //  credit 0: no more jobs
    for (int i = 0; i < BM_WORKER_MAX_TYPES; i++)
        if (self->pools [i])
            bm_pool_stop (self->pools [i]);     //  No more warm starts
    //  Jobs waiting here for a process (prefetched) go back at once: the
    //  grace period is for the jobs that run.
    zlist_t *ids = zlist_new ();
    zlist_autofree (ids);
    job_t *job;
    for (job = (job_t *) zhashx_first (self->jobs); job; job = (job_t *) zhashx_next (self->jobs))
        if (job->waiting)
            zlist_append (ids, job->id);
    for (char *id = (char *) zlist_first (ids); id; id = (char *) zlist_next (ids))
        if ((job = (job_t *) zhashx_lookup (self->jobs, id)))
            bm_job_stop (job, STOP_RELEASE);
    zlist_destroy (&ids);
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
//  What the runner reports

static void
s_on_job_end (job_t *job, const bm_pool_outcome_t *outcome, void *arg)
{
    s_job_finish ((bm_worker_t *) arg, job, outcome);
}

static void
s_on_job_progress (job_t *job, int progress, void *arg)
{
    s_send_progress ((bm_worker_t *) arg, job, progress);
}

//  A job waits here for a process (PROGRESS {waiting: true}: the broker
//  stops its timeout), or began on one after such a wait (PROGRESS
//  {started: true}: its timeout and startedAt count from now).
static void
s_on_job_wait (job_t *job, bool started, int64_t waited_ms, void *arg)
{
    bm_worker_t *self = (bm_worker_t *) arg;
    msgpack_sbuffer sbuf;
    bm_job_report_waiting (&sbuf, job->id, started);
    s_send (self, BM_PROGRESS, &sbuf, job->id);
    msgpack_sbuffer_destroy (&sbuf);
    if (started)
        bm_info (job->id, "began on a %s process after waiting %lld ms in this worker: its "
                 "timeout of %lld ms runs from now", job->type->name, (long long) waited_ms,
                 (long long) job->limit_ms);
    else
        bm_debug (job->id, "waits in this worker for a %s process (%lld ms so far): its timeout "
                  "runs once one takes it", job->type->name, (long long) waited_ms);
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
    self->recent_done = bm_done_replay_new (BM_DONE_REPLAY_MAX, BM_DONE_REPLAY_BYTES);
    bm_done_replay_link_up (self->recent_done, bm_mono_ms ());
    bm_packer_init (&self->done);
    bm_packer_init (&self->noop_result);
    self->env = bm_job_env_new ();
    if (self->env && self->config->mode == BM_WORKER_BOTS) {
        //  And from each type's bots, the other types' settings.
        char others [256] = "";
        size_t used = 0;
        for (int i = 0; i < config->type_count && used < sizeof others; i++) {
            int n = snprintf (others + used, sizeof others - used, "%s%s %zu", i ? ", " : "",
                              config->types [i].name,
                              bm_job_env_other_types (self->env, config->types [i].name));
            used += n > 0 ? (size_t) n : 0;
        }
        bm_info (NULL, "bot environment: %zu variables of the worker withheld from bots "
                 "(botmesh's secrets and BOT_ENV_DENY), and from each type's bots the other "
                 "types' settings (%s)", bm_job_env_withheld (self->env), others);
    }
    self->runner = bm_runner_new (self->loop, config, self->env, &self->stopped, s_on_job_end,
                                  s_on_job_progress, s_on_job_wait, self);
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
        bm_runner_destroy (&self->runner);
        bm_done_replay_destroy (&self->recent_done);
        bm_worker_link_destroy (&self->link, 0);
        zloop_destroy (&self->loop);
        bm_job_env_destroy (&self->env);
        bm_packer_destroy (&self->done);
        bm_packer_destroy (&self->noop_result);
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
    for (int i = 0; config->mode == BM_WORKER_BOTS && i < config->type_count; i++) {
        const bm_worker_type_t *type = &config->types [i];
        if (type->bot_mode == BM_BOT_SPAWN)
            continue;
        bool fork = type->bot_mode == BM_BOT_FORK;
        char **envp = bm_job_env_pool (self->env, type, config->name, fork);
        if (!envp)
            continue;
        bm_pool_config_t pool_config = {
            .type = type->name, .argv = type->argv, .fork = fork,
            .min_procs = type->min_procs, .max_procs = type->max_procs,
            .max_jobs = type->max_jobs, .max_rss_mb = type->max_rss_mb,
            .rss_var = type->rss_var, .memory_var = type->memory_var, .idle_ms = type->idle_ms,
            .ready_timeout_ms = type->ready_timeout_ms, .ready_var = type->ready_var,
            .output_max = config->output_max, .stderr_tail = config->stderr_tail,
            .kill_grace_ms = config->kill_grace_ms, .sandboxed = type->sandboxed,
            .limits = &type->limits };
        self->pools [i] = bm_pool_new (self->loop, &pool_config, envp, bm_runner_on_pool_done,
                                       bm_runner_on_pool_progress, self->runner);
        bm_pool_set_on_start (self->pools [i], bm_runner_on_pool_start);
        if (self->metrics)
            bm_pool_export (self->pools [i], self->metrics);
        bm_bot_argv_free (&envp);
        char past_rss [BM_MAX_BOT_TYPE_LEN + 64] = "";
        if (type->max_rss_mb > 0)
            snprintf (past_rss, sizeof past_rss, " or past %s=%lld", type->rss_var,
                      (long long) type->max_rss_mb);
        //  READY_TIMEOUT_MS=0 is no deadline: said at start, as a start
        //  that hangs then holds the jobs that wait for it.
        char no_deadline [BM_MAX_BOT_TYPE_LEN + 192] = "";
        if (type->ready_timeout_ms == 0)
            snprintf (no_deadline, sizeof no_deadline, "; no ready deadline (%s=0): a process "
                      "that never writes its ready line is not killed, and the jobs waiting "
                      "for it wait on", type->ready_var);
        bm_info (NULL, "%s bots in %s mode: %lld-%lld processes, recycled after %lld jobs%s%s",
                 type->name, fork ? "fork" : "pool", (long long) type->min_procs,
                 (long long) type->max_procs, (long long) type->max_jobs, past_rss, no_deadline);
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

    if (config->metrics_port != 0) {
        //  -1: any free port (the "listening metrics=" line says which).
        self->metrics = bm_metrics_new ();
        self->metrics_http = bm_metrics_http_new (self->metrics, config->metrics_addr,
                                                  config->metrics_port < 0 ? 0
                                                  : (int) config->metrics_port);
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
        .max_frame = config->max_frame, .limit_socket = true, .hwm = BM_SNDHWM,
        //  JOB_MANY in, DONE_MANY out: the DONEs of one turn of the loop
        //  (a reaper pass, a JOB_MANY answered at once) go together.
        .batch = true, .curve = &config->curve,
        //  Our DONEs are replayed after each new READY (s_on_link_reconnected)
        .dones_kept = true };
    bm_worker_link_handlers_t handlers = {
        .job_decoded = s_on_link_job, .cancel_decoded = s_on_link_cancel, .lost = s_on_link_lost, .reconnected = s_on_link_reconnected,
        .running = s_on_link_running, .bots = s_on_link_bots };
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

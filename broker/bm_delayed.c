/*  bm_delayed.c - delayed jobs: due later by SUBMIT (delayMs, runAt) or
    waiting between two runs after their bot failed (attempts, backoff).

    A delayed job is in the broker's due-time heap (broker->delayed, by
    run_at then submission order): O(log n) to add, remove or take the
    earliest, and no memory per job beyond the job itself.  One one-shot
    zloop timer is armed for the earliest due time, so that a job is queued
    within a loop turn of its time (the 100 ms tick would be too coarse).
    Due times are epoch ms on the broker's clock only; Redis keeps them
    (the record's runAt) so that they survive a restart.  */
#include "bm_broker_internal.h"
#include "bm_codec_field.h"

//  A failed run that does not get another: the bot said so (exit status
//  BM_PERMANENT_EXIT_STATUS or error code "permanent_failure", docs/bots.md),
//  or the failure is not the bot's (cancel, lost workers).
#define BM_PERMANENT_EXIT_STATUS    78      //  EX_CONFIG of sysexits.h
#define BM_PERMANENT_CODE           "permanent_failure"
//  An attempt error's message is cut to this in the record: the record
//  keeps one per failed run.
#define BM_ATTEMPT_ERROR_MAX        512

bool
bm_job_due_less (const void *a, const void *b)
{
    const bm_job_t *x = (const bm_job_t *) a, *y = (const bm_job_t *) b;
    return x->run_at < y->run_at || (x->run_at == y->run_at && x->seq < y->seq);
}

void
bm_job_due_index (void *item, size_t index)
{
    ((bm_job_t *) item)->due_index = index;
}

//  --------------------------------------------------------------------------
//  The timer: fires at the earliest due time, queues every job that is due,
//  and arms itself for the next.

static int
s_on_due (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    bm_broker_t *self = (bm_broker_t *) arg;
    self->due_timer = -1;
    if (!self->serving)
        return 0;       //  Left leading (a shutdown's release): the next leader's
    int64_t now = bm_now_ms ();
    bm_job_t *job;
    while ((job = (bm_job_t *) bm_heap_peek (self->delayed)) && job->run_at <= now)
        bm_delayed_promote (self, job);
    bm_delayed_arm (self);
    return 0;
}

//  Arm a one-shot timer for the earliest item of a due-time heap (its due
//  time from due_of), or end it when the heap is empty or the earliest
//  changed.  *timer is -1 when none is armed; *timer_at when it fires.
void
bm_due_timer_arm (bm_broker_t *self, bm_heap_t *heap, int64_t (*due_of) (const void *item),
                  int *timer, int64_t *timer_at, zloop_timer_fn *handler)
{
    if (!self->loop)
        return;         //  Set-up or tear-down: no loop to arm
    void *first = bm_heap_peek (heap);
    if (*timer != -1 && (!first || due_of (first) != *timer_at)) {
        zloop_timer_end (self->loop, *timer);
        *timer = -1;
    }
    if (!first || *timer != -1)
        return;
    int64_t wait = due_of (first) - bm_now_ms ();
    //  zloop takes a size_t of ms; 0 fires on the next turn.
    if (wait < 0)
        wait = 0;
    if (wait > BM_MAX_DELAY_MS)
        wait = BM_MAX_DELAY_MS;
    *timer = zloop_timer (self->loop, (size_t) wait, 1, handler, self);
    *timer_at = due_of (first);
}

static int64_t
s_run_at (const void *job)
{
    return ((const bm_job_t *) job)->run_at;
}

void
bm_delayed_arm (bm_broker_t *self)
{
    bm_due_timer_arm (self, self->delayed, s_run_at, &self->due_timer, &self->due_timer_at, s_on_due);
}

static void
s_gauge (bm_service_t *service)
{
    bm_series_set (service->m_delayed, (double) service->delayed);
}

//  Put a job whose run_at is set into the heap (state delayed).
void
bm_delayed_add (bm_broker_t *self, bm_job_t *job)
{
    job->state = JOB_DELAYED;
    bm_heap_push (self->delayed, job);
    job->service->delayed++;
    s_gauge (job->service);
    bm_delayed_arm (self);
    BM_JOB_EVENT (self, job, BM_EV_DELAYED, NULL, false);
}

//  Take a job out of the heap, if it is in it.
void
bm_delayed_remove (bm_broker_t *self, bm_job_t *job)
{
    if (job->due_index == SIZE_MAX)
        return;
    bm_heap_remove (self->delayed, job->due_index);
    job->service->delayed--;
    s_gauge (job->service);
    bm_delayed_arm (self);
}

//  Due (or promoted): out of the heap, into the queue, written, dispatched.
void
bm_delayed_promote (bm_broker_t *self, bm_job_t *job)
{
    bm_delayed_remove (self, job);
    job->run_at = 0;
    bm_job_enqueue (self, job);
    bm_jobstore_persist_state (self, job);
    bm_debug (job->id, "due: queued");
    bm_dispatch (self, job->service);
}

//  --------------------------------------------------------------------------
//  Retries

static bool
s_retryable (const bm_job_t *job, const char *code)
{
    if (job->failed_runs >= job->run_attempts)
        return false;
    if (!code || streq (code, "cancelled") || streq (code, "worker_lost")
    ||  streq (code, BM_PERMANENT_CODE))
        return false;
    return !(job->has_exit_code && job->exit_code == BM_PERMANENT_EXIT_STATUS);
}

//  One more entry of attemptErrors: {attempt, code, message, at, exitCode?}
static void
s_add_attempt_error (bm_job_t *job, const char *code, const char *message)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4 + job->has_exit_code);
    bm_pack_kv_int (&pk, "attempt", job->failed_runs + 1);
    bm_pack_kv_str (&pk, "code", code);
    const char *text = message ? message : "";
    size_t len = bm_field_utf8_cut (text, strlen (text), BM_ATTEMPT_ERROR_MAX);
    bm_pack_str (&pk, "message");
    bm_pack_strn (&pk, text, len);
    bm_pack_kv_int (&pk, "at", bm_now_ms ());
    if (job->has_exit_code)
        bm_pack_kv_int (&pk, "exitCode", job->exit_code);
    char *grown = (char *) realloc (job->attempt_errors, job->attempt_errors_size + sbuf.size);
    if (grown) {
        memcpy (grown + job->attempt_errors_size, sbuf.data, sbuf.size);
        job->attempt_errors = grown;
        job->attempt_errors_size += sbuf.size;
    }
    else
        bm_error (job->id, "out of memory recording an attempt error");
    msgpack_sbuffer_destroy (&sbuf);
}

//  The record's attemptErrors: an array of the entries.
void
bm_delayed_pack_errors (msgpack_packer *pk, const bm_job_t *job)
{
    msgpack_pack_array (pk, (uint32_t) job->failed_runs);
    if (job->attempt_errors_size)
        msgpack_sbuffer_write (pk->data, job->attempt_errors, job->attempt_errors_size);
}

//  A job failed: its error joins attemptErrors; when it may run again it
//  waits out its backoff (state delayed) and this returns true; else false
//  (the job ends).  The job is off its worker and out of its queue already.
bool
bm_delayed_retry (bm_broker_t *self, bm_job_t *job, const char *code, const char *message)
{
    //  A job failed by its dependencies never ran: no run to retry
    if (bm_job_is_delivery (job) || job->state == JOB_WAITING_CHILDREN)
        return false;
    s_add_attempt_error (job, code ? code : "failed", message);
    job->failed_runs++;
    if (!s_retryable (job, code))
        return false;
    bm_set_str (&job->error_code, code);
    bm_set_str (&job->error_message, message);
    uint64_t random = ((uint64_t) (uint32_t) rand () << 32) ^ (uint64_t) (uint32_t) rand ();
    int64_t wait = bm_backoff_delay (&job->backoff, job->failed_runs, random);
    job->run_at = bm_now_ms () + wait;
    bm_job_clear_run (job);
    job->lost = false;          //  Its DONE came: last_worker's run is counted
    job->service->retries++;
    bm_series_inc (job->service->m_retries);
    bm_info (job->id, "run %" PRId64 " of %" PRId64 " failed (%s): runs again in %" PRId64 " ms",
             job->failed_runs, job->run_attempts, code, wait);
    BM_JOB_EVENT (self, job, BM_EV_FAILED, NULL, true);
    bm_delayed_add (self, job);
    bm_jobstore_persist_state (self, job);
    return true;
}

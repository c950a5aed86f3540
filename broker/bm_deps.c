/*  bm_deps.c - job dependencies (SUBMIT dependsOn, docs/protocol.md
    section 3, "Dependencies").

    A job submitted with dependsOn whose dependencies have not all
    completed waits in state waiting-children, in no queue.  The broker
    keeps an index, dependency id -> the ids of the jobs waiting for it
    (self->dependents), filled as such a job is admitted, recovered or
    retried; a job that ends (bm_job_finish_at) or is deleted before it
    ended (REMOVE, drain, a SUBMIT not confirmed) looks its id up there
    once, so a job without dependents costs one hash lookup only while
    some job waits at all.  Entries hold ids, not pointers: a waiting job
    cancelled or removed meanwhile is skipped when its dependency ends.

    Durable: dependsOn (and its options) are in the record's "r" map,
    which dependencies are still pending in its "x" map (bm_record.c),
    rewritten as each dependency ends, and each result kept in a field of
    its own, written once (bm_jobstore.c).  A recovery
    (restart, takeover) checks each waiting job's pending dependencies
    again: one that ended while no broker was there to see it (its DONE
    taken at the recovery) is resolved then, one only Redis holds is read
    back.  */
#include "bm_broker_internal.h"
#include "bm_deps.h"

const char bm_deps_read [] = "dependencies_unread";

//  The ids of the jobs that wait for one dependency.
typedef struct {
    size_t count, alloc;
    size_t stale;               //  Jobs that left the wait since the last sweep
    char (*ids) [BM_ID_SLOT];
} s_ids_t;

//  The index holds delta more ids.
static void
s_entries (bm_broker_t *self, int64_t delta)
{
    self->dependent_entries += delta;
    if (self->m_dependent_entries)
        bm_series_set (self->m_dependent_entries, (double) self->dependent_entries);
}

typedef struct {
    size_t holders;
    size_t size;
    char data [];
} s_result_t;

static s_result_t *
s_result_of (char *result)
{
    return (s_result_t *) (result - offsetof (s_result_t, data));
}

char *
bm_deps_result_new (const char *data, size_t size)
{
    s_result_t *result = (s_result_t *) bm_realloc_or_abort (NULL, sizeof (s_result_t) + size,
                                                             "dependency result");
    result->holders = 1;
    result->size = size;
    memcpy (result->data, data, size);
    return result->data;
}

char *
bm_deps_result_ref (char *result)
{
    if (result)
        s_result_of (result)->holders++;
    return result;
}

void
bm_deps_result_free (char **result_p)
{
    if (*result_p) {
        s_result_t *result = s_result_of (*result_p);
        if (--result->holders == 0)
            free (result);
        *result_p = NULL;
    }
}

bm_deps_t *
bm_deps_new (size_t count)
{
    bm_deps_t *self = (bm_deps_t *) bm_realloc_or_abort (NULL, sizeof (bm_deps_t)
                                                         + count * sizeof (bm_dep_t), "dependencies");
    memset (self, 0, sizeof (bm_deps_t) + count * sizeof (bm_dep_t));
    self->count = count;
    return self;
}

void
bm_deps_destroy (bm_deps_t **self_p)
{
    bm_deps_t *self = *self_p;
    if (!self)
        return;
    for (size_t i = 0; i < self->count; i++) {
        free (self->items [i].id);
        bm_deps_result_free (&self->items [i].result);
        free (self->items [i].code);
    }
    free (self);
    *self_p = NULL;
}

bm_dep_t *
bm_deps_find (bm_deps_t *self, const char *id, size_t len)
{
    for (size_t i = 0; i < self->count; i++)
        if (strlen (self->items [i].id) == len && memcmp (self->items [i].id, id, len) == 0)
            return &self->items [i];
    return NULL;
}

//  The results the bot gets, packed: what they add to its JOB body.
size_t
bm_deps_results_size (const bm_deps_t *self)
{
    size_t size = 32;
    for (size_t i = 0; i < self->count; i++)
        size += strlen (self->items [i].id) + 8 + (self->items [i].result
                                                   ? self->items [i].result_size : 1);
    return size;
}

static void
s_index_add (bm_broker_t *self, const char *dep_id, const char *job_id)
{
    if (!self->dependents)
        self->dependents = zhashx_new ();
    s_ids_t *ids = (s_ids_t *) zhashx_lookup (self->dependents, dep_id);
    if (!ids) {
        ids = (s_ids_t *) zmalloc (sizeof (s_ids_t));
        zhashx_insert (self->dependents, dep_id, ids);
    }
    //  No search for the id already there (quadratic with many dependents):
    //  a job listed twice (recovered, retried) is told once, as the second
    //  word finds its dependency no longer pending, and its copies go at
    //  the list's next sweep (its earlier leave counted one stale).
    if (ids->count == ids->alloc) {
        ids->alloc = ids->alloc ? ids->alloc * 2 : 4;
        ids->ids = bm_realloc_or_abort (ids->ids, ids->alloc * sizeof *ids->ids, "dependents");
    }
    bm_id_copy (ids->ids [ids->count++], BM_ID_SLOT, job_id);
    s_entries (self, 1);
}

static void s_admitted_sweep (bm_broker_t *self, bool all);

void
bm_deps_free_index (bm_broker_t *self)
{
    s_admitted_sweep (self, true);
    if (!self->dependents)
        return;
    for (s_ids_t *ids = (s_ids_t *) zhashx_first (self->dependents); ids;
         ids = (s_ids_t *) zhashx_next (self->dependents)) {
        free (ids->ids);
        free (ids);
    }
    zhashx_destroy (&self->dependents);
    s_entries (self, -self->dependent_entries);
}

//  The job waits in waiting-children (counted by its type, STATS).
static void
s_enter (bm_broker_t *self, bm_job_t *job)
{
    (void) self;
    job->state = JOB_WAITING_CHILDREN;
    job->service->waiting_children++;
}

//  The ids of the jobs that still wait for dep_id kept, each once (leaving,
//  about to leave, goes; a job cancelled and retried was listed again);
//  none left: the dependency's entry goes.
static void
s_sweep (bm_broker_t *self, const char *dep_id, s_ids_t *ids, const bm_job_t *leaving)
{
    size_t kept = 0;
    zhashx_t *seen = zhashx_new ();
    for (size_t i = 0; i < ids->count; i++) {
        const bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, ids->ids [i]);
        const bm_dep_t *dep = job && job != leaving && job->deps
                           && job->state == JOB_WAITING_CHILDREN
                            ? bm_deps_find (job->deps, dep_id, strlen (dep_id)) : NULL;
        if (dep && dep->pending && zhashx_insert (seen, ids->ids [i], (void *) job) == 0) {
            if (kept != i)
                memcpy (ids->ids [kept], ids->ids [i], BM_ID_SLOT);
            kept++;
        }
    }
    zhashx_destroy (&seen);
    s_entries (self, (int64_t) kept - (int64_t) ids->count);
    ids->count = kept;
    ids->stale = 0;
    if (!kept) {
        zhashx_delete (self->dependents, dep_id);
        free (ids->ids);
        free (ids);
    }
}

void
bm_deps_leave (bm_broker_t *self, bm_job_t *job)
{
    job->service->waiting_children--;
    //  Its ids in the lists of the dependencies it still waited for are
    //  stale: a list is swept once they are half of it (cancelled or
    //  failed dependents of a dependency that does not end leave no
    //  memory behind them).
    for (size_t i = 0; self->dependents && job->deps && i < job->deps->count; i++) {
        if (!job->deps->items [i].pending)
            continue;
        const char *dep_id = job->deps->items [i].id;
        s_ids_t *ids = (s_ids_t *) zhashx_lookup (self->dependents, dep_id);
        if (ids && ++ids->stale * 2 > ids->count)
            s_sweep (self, dep_id, ids, job);
    }
}

static const char *s_end_code (const bm_job_t *job);
static bm_dep_t *s_failed (bm_job_t *job);

//  How a dependency that did not complete ended, as its dependent's error
//  message goes on ("dependency <id> failed: bot_failed", "... was
//  cancelled"): "failed: <code>" or "was cancelled" / "was removed".
static char *
s_failed_text (const char *code)
{
    char text [96];
    snprintf (text, sizeof text, "%s%s", streq (code, "removed") || streq (code, "cancelled")
              ? "was " : "failed: ", code);
    return strdup (text);
}

//  The result of other, completed, for a job admitted with it: one copy
//  for all the jobs admitted with it while any holds it (SUBMITs of many
//  dependents of one completed job), checked the same bytes (a RETRY may
//  have ended it again since).
static char *
s_admitted_result (bm_broker_t *self, const bm_job_t *other)
{
    if (!self->deps_admitted)
        self->deps_admitted = zhashx_new ();
    char *kept = (char *) zhashx_lookup (self->deps_admitted, other->id);
    if (kept && s_result_of (kept)->size == other->result_size
    &&  memcmp (kept, other->result, other->result_size) == 0)
        return bm_deps_result_ref (kept);
    if (kept) {
        zhashx_delete (self->deps_admitted, other->id);
        bm_deps_result_free (&kept);
    }
    kept = bm_deps_result_new (other->result, other->result_size);
    zhashx_insert (self->deps_admitted, other->id, kept);
    return bm_deps_result_ref (kept);
}

//  The copies no admitted job holds any more go.
static void
s_admitted_sweep (bm_broker_t *self, bool all)
{
    if (!self->deps_admitted)
        return;
    zlistx_t *gone = zlistx_new ();
    for (char *kept = (char *) zhashx_first (self->deps_admitted); kept;
         kept = (char *) zhashx_next (self->deps_admitted))
        if (all || s_result_of (kept)->holders == 1)
            zlistx_add_end (gone, (void *) zhashx_cursor (self->deps_admitted));
    for (const char *id = (const char *) zlistx_first (gone); id; id = (const char *) zlistx_next (gone)) {
        char *kept = (char *) zhashx_lookup (self->deps_admitted, id);
        zhashx_delete (self->deps_admitted, id);
        bm_deps_result_free (&kept);
    }
    zlistx_destroy (&gone);
    if (zhashx_size (self->deps_admitted) == 0)
        zhashx_destroy (&self->deps_admitted);
}

const char *
bm_deps_admit (bm_broker_t *self, const bm_codec_submit_t *submit, bm_deps_t **deps_p,
               char *message, size_t size)
{
    *deps_p = NULL;
    bm_deps_t *deps = bm_deps_new (submit->depends_count);
    deps->ignore_failure = submit->ignore_dependency_failure;
    deps->results = submit->dependency_results;
    size_t results = 0;
    for (size_t i = 0; i < deps->count; i++) {
        bm_dep_t *dep = &deps->items [i];
        dep->id = strndup (submit->depends_on [i].ptr, submit->depends_on [i].len);
        bm_job_t *other = (bm_job_t *) bm_jobtab_lookup (self->jobs, dep->id);
        if (!other && self->deps_known) {
            other = (bm_job_t *) zhashx_lookup (self->deps_known, dep->id);
            if (other && !other->service)
                other = NULL;           //  Read: Redis has no such job
            else
            if (!other && self->store) {
                //  Held when the others were read, pushed out of memory
                //  since (KEEP_FINISHED_JOBS): read in turn
                bm_deps_destroy (&deps);
                return BM_DEPS_READ;
            }
        }
        else
        if (!other && self->store) {
            //  Only Redis may hold it: the caller reads the ids the
            //  broker does not hold (bm_deps_lookup), then admits again.
            bm_deps_destroy (&deps);
            return BM_DEPS_READ;
        }
        if (!other || bm_job_is_delivery (other)) {
            snprintf (message, size, "dependsOn[%zu] (%.64s%s) names no job", i, dep->id,
                      strlen (dep->id) > 64 ? "..." : "");
            bm_deps_destroy (&deps);
            return "bad_request";
        }
        if (other->state == JOB_COMPLETED) {
            if (deps->results && other->result) {
                dep->result = s_admitted_result (self, other);
                dep->result_size = other->result_size;
                results += other->result_size;
            }
        }
        else
        if (bm_job_terminal (other)) {
            //  Failed or cancelled already: as if it ended now (the job,
            //  once durable, fails dependency_failed unless ignored), so
            //  a client meets one outcome whatever the timing.
            dep->failed = true;
            dep->code = s_failed_text (s_end_code (other));
        }
        else {
            dep->pending = true;
            deps->pending++;
        }
    }
    if (deps->results && (int64_t) (results + submit->payload.size) > self->config.max_payload) {
        snprintf (message, size, "the results of dependsOn's completed jobs and the payload are "
                  "%zu bytes, more than MAX_PAYLOAD_BYTES (%" PRId64 ")",
                  results + submit->payload.size, self->config.max_payload);
        bm_deps_destroy (&deps);
        return "payload_too_large";
    }
    *deps_p = deps;
    return NULL;
}

void
bm_deps_attach (bm_broker_t *self, bm_job_t *job, bm_deps_t *deps)
{
    job->deps = deps;
    if (!deps->pending && !s_failed (job))
        return;         //  Every dependency completed already: queued as any job
    //  Waits, also when a dependency failed already: its SUBMIT's
    //  confirmation fails it (bm_deps_confirmed).
    s_enter (self, job);
    for (size_t i = 0; i < deps->count; i++)
        if (deps->items [i].pending)
            s_index_add (self, deps->items [i].id, job->id);
}

//  The dependency that fails the job (ended failed, cancelled or removed,
//  not ignored), or NULL.
static bm_dep_t *
s_failed (bm_job_t *job)
{
    if (job->deps->ignore_failure)
        return NULL;
    for (size_t i = 0; i < job->deps->count; i++)
        if (job->deps->items [i].failed)
            return &job->deps->items [i];
    return NULL;
}

static void
s_fail (bm_broker_t *self, bm_job_t *job, bm_dep_t *dep)
{
    char message [256];
    snprintf (message, sizeof message, "dependency %.128s %s", dep->id,
              dep->code ? dep->code : "failed");
    bm_job_finish (self, job, JOB_FAILED, "dependency_failed", message);
}

//  Every dependency is done: the job is queued by its priority, or
//  delayed until its runAt (delayMs counts from the SUBMIT).
static void
s_release (bm_broker_t *self, bm_job_t *job)
{
    bm_deps_t *deps = job->deps;
    bm_deps_leave (self, job);
    bm_info (job->id, "its %zu dependencies are done: %s", deps->count,
             job->run_at > bm_now_ms () ? "delayed until its runAt" : "queued");
    if (job->run_at > bm_now_ms ())
        bm_delayed_add (self, job);
    else {
        job->run_at = 0;
        bm_job_enqueue (self, job);
    }
    bm_jobstore_persist_state (self, job);
    bm_dispatch (self, job->service);
}

//  Once the job's SUBMIT (or RETRY) write is durable, or a dependency
//  ends: fails it, releases it, or writes what changed.
//  The results kept and the payload no longer fit in the JOB frame the bot
//  would get: the job fails now, not once its last dependency ends.
static bool
s_too_large (bm_broker_t *self, bm_job_t *job)
{
    if (!job->deps->results)
        return false;
    size_t room = self->config.max_frame > 8192 ? (size_t) self->config.max_frame - 8192 : 0;
    size_t size = job->payload_size + bm_deps_results_size (job->deps);
    if (size <= room)
        return false;
    char message [240];
    snprintf (message, sizeof message, "the dependencies' results%s and the payload are %zu "
              "bytes, more than a JOB frame holds (MAX_FRAME_BYTES %" PRId64 ")",
              job->deps->pending ? " kept so far" : "", size, self->config.max_frame);
    bm_job_finish (self, job, JOB_FAILED, "dependency_results_too_large", message);
    return true;
}

static void
s_settle (bm_broker_t *self, bm_job_t *job, bool changed)
{
    bm_dep_t *failed = s_failed (job);
    if (failed)
        s_fail (self, job, failed);
    else
    if (s_too_large (self, job))
        ;
    else
    if (!job->deps->pending)
        s_release (self, job);
    else
    if (changed)
        bm_jobstore_persist_state (self, job);
}

//  One dependency of a waiting job ended: completed (result, if any, the
//  dependency's), or failed (code: its error code, "cancelled" or
//  "removed").
//  *shared_p: the one copy of result the jobs told of this end hold
//  (made by the first that keeps it; the caller frees its own hold).
static void
s_resolve (bm_broker_t *self, bm_job_t *job, const char *dep_id, bool completed,
           const char *code, const char *result, size_t result_size, char **shared_p)
{
    if (!job || !job->deps || job->state != JOB_WAITING_CHILDREN)
        return;
    bm_dep_t *dep = bm_deps_find (job->deps, dep_id, strlen (dep_id));
    if (!dep || !dep->pending)
        return;
    dep->pending = false;
    dep->wait_retry = false;
    dep->failed_at = 0;
    job->deps->pending--;
    if (completed) {
        if (job->deps->results && result) {
            if (!*shared_p)
                *shared_p = bm_deps_result_new (result, result_size);
            bm_deps_result_free (&dep->result);
            dep->result = bm_deps_result_ref (*shared_p);
            dep->result_size = result_size;
            dep->result_saved = false;
        }
    }
    else {
        dep->failed = true;
        free (dep->code);
        dep->code = s_failed_text (code);
        bm_info (job->id, "dependency %s %s%s", dep_id, dep->code,
                 job->deps->ignore_failure ? " (ignored: onDependencyFailure ignore)" : "");
    }
    if (job->durable)           //  Else its SUBMIT's confirmation settles it
        s_settle (self, job, true);
}

//  How a job that ended other than completed ended, for its dependents.
static const char *
s_end_code (const bm_job_t *job)
{
    return job->state == JOB_CANCELLED ? "cancelled" : job->error_code ? job->error_code : "failed";
}

//  The jobs waiting for one that ended (or went) are told.
static void
s_tell (bm_broker_t *self, const char *id, bool completed, const char *code, const char *result,
        size_t result_size)
{
    s_ids_t *ids = (s_ids_t *) zhashx_lookup (self->dependents, id);
    if (!ids)
        return;
    zhashx_delete (self->dependents, id);
    s_entries (self, -(int64_t) ids->count);
    bm_dispatch_hold (self);
    char *shared = NULL;        //  One copy of the result for all of them
    for (size_t i = 0; i < ids->count; i++)
        s_resolve (self, (bm_job_t *) bm_jobtab_lookup (self->jobs, ids->ids [i]), id, completed,
                   code, result, result_size, &shared);
    bm_deps_result_free (&shared);
    bm_dispatch_release (self);
    free (ids->ids);
    free (ids);
}

//  A job that ended while its dependency's dependents were told (failed by
//  it): told after, in turn, not from within (a chain of waiting jobs
//  would nest one call per job, deep enough to overflow the stack).  Its
//  outcome is copied: the job may be forgotten (KEEP_FINISHED_JOBS) before
//  its turn.
typedef struct {
    char id [BM_ID_SLOT];
    bool completed;
    char *code, *result;
    size_t result_size;
} s_end_t;

static void
s_end_destroy (s_end_t **end_p)
{
    if (*end_p) {
        free ((*end_p)->code);
        free ((*end_p)->result);
        free (*end_p);
        *end_p = NULL;
    }
}

static void
s_tell_all (bm_broker_t *self, const char *id, bool completed, const char *code,
            const char *result, size_t result_size)
{
    //  No job waits for it: one lookup (nothing adds to the index while
    //  dependents are told, so one not there now is not there later)
    if (!zhashx_lookup (self->dependents, id))
        return;
    if (self->deps_ends) {
        s_end_t *end = (s_end_t *) zmalloc (sizeof (s_end_t));
        bm_id_copy (end->id, sizeof end->id, id);
        end->completed = completed;
        end->code = code ? strdup (code) : NULL;
        if (result) {
            end->result = bm_memdup (result, result_size);
            end->result_size = result_size;
        }
        zlistx_add_end (self->deps_ends, end);
        return;
    }
    self->deps_ends = zlistx_new ();
    zlistx_set_destructor (self->deps_ends, (zlistx_destructor_fn *) s_end_destroy);
    s_tell (self, id, completed, code, result, result_size);
    s_end_t *end;
    while ((end = (s_end_t *) zlistx_detach (self->deps_ends, NULL))) {
        if (self->dependents)
            s_tell (self, end->id, end->completed, end->code, end->result, end->result_size);
        s_end_destroy (&end);
    }
    zlistx_destroy (&self->deps_ends);
}

void
bm_deps_ended (bm_broker_t *self, bm_job_t *ended)
{
    s_tell_all (self, ended->id, ended->state == JOB_COMPLETED, s_end_code (ended), ended->result,
                ended->result_size);
}

void
bm_deps_gone (bm_broker_t *self, const bm_job_t *gone)
{
    s_tell_all (self, gone->id, false, "removed", NULL, 0);
}

void
bm_deps_forgotten (bm_broker_t *self, const bm_job_t *job)
{
    if (!zhashx_lookup (self->dependents, job->id))
        return;
    if (!self->deps_forgotten) {
        self->deps_forgotten = zlistx_new ();
        zlistx_set_destructor (self->deps_forgotten, (zlistx_destructor_fn *) s_end_destroy);
    }
    s_end_t *end = (s_end_t *) zmalloc (sizeof (s_end_t));
    bm_id_copy (end->id, sizeof end->id, job->id);
    end->completed = job->state == JOB_COMPLETED;
    end->code = strdup (s_end_code (job));
    zlistx_add_end (self->deps_forgotten, end);
}

void
bm_deps_tick (bm_broker_t *self)
{
    s_admitted_sweep (self, false);
    if (!self->deps_forgotten)
        return;
    zlistx_t *forgotten = self->deps_forgotten;
    self->deps_forgotten = NULL;
    s_end_t *end;
    while ((end = (s_end_t *) zlistx_detach (forgotten, NULL))) {
        //  Unless it is back meanwhile (a RETRY read it from Redis)
        bm_job_t *back = (bm_job_t *) bm_jobtab_lookup (self->jobs, end->id);
        if (self->dependents && !(back && !bm_job_terminal (back)))
            s_tell_all (self, end->id, end->completed, end->code, NULL, 0);
        s_end_destroy (&end);
    }
    zlistx_destroy (&forgotten);
}

void
bm_deps_confirmed (bm_broker_t *self, bm_job_t *job)
{
    s_settle (self, job, false);
}

//  --- dependencies only Redis holds, read before the admission -----------

//  The reads of one SUBMIT (or SUBMIT_MANY item): the jobs found, by id.
typedef struct {
    bm_broker_t *broker;
    zhashx_t *known;            //  Id -> bm_job_t read (owned)
    size_t waiting;             //  Reads not answered yet
    bool unanswered;            //  Redis could not say for one
    bm_deps_looked_fn *done;
    void *arg;
} s_lookup_t;

typedef struct {
    s_lookup_t *lookup;
    char id [BM_ID_SLOT];
} s_lookup_read_t;

static void
s_known_free (void **item)
{
    bm_job_destroy ((bm_job_t **) item);
}

static void
s_on_looked (bm_broker_t *self, const bm_job_t *job, bool answered, void *arg)
{
    s_lookup_read_t *read = (s_lookup_read_t *) arg;
    s_lookup_t *lookup = read->lookup;
    if (!answered)
        lookup->unanswered = true;
    else
    if (read->id [0] && !zhashx_lookup (lookup->known, read->id)
    &&  (!job || bm_job_is_delivery (job)))
        //  Read, and no job of dependsOn: a mark without a type says so
        //  (one not in known at all was held then, and is read again)
        zhashx_insert (lookup->known, read->id, bm_job_new ());
    else
    if (job && !bm_job_is_delivery (job) && !zhashx_lookup (lookup->known, read->id)) {
        //  A copy of what admission reads: state, error code, result
        bm_job_t *copy = bm_job_new ();
        bm_id_copy (copy->id, sizeof copy->id, job->id);
        copy->state = job->state;
        copy->service = job->service;
        bm_set_str (&copy->error_code, job->error_code);
        if (job->result) {
            copy->result = bm_memdup (job->result, job->result_size);
            copy->result_size = job->result_size;
        }
        zhashx_insert (lookup->known, read->id, copy);
    }
    free (read);
    if (--lookup->waiting)
        return;
    if (self && !lookup->unanswered) {
        //  Admitted again with what was read (the admission is synchronous)
        self->deps_known = lookup->known;
        lookup->done (self, true, lookup->arg);
        self->deps_known = NULL;
    }
    else
        lookup->done (self, false, lookup->arg);
    zhashx_destroy (&lookup->known);
    free (lookup);
}

void
bm_deps_lookup (bm_broker_t *self, const msgpack_object *body, bm_deps_looked_fn *done, void *arg)
{
    s_lookup_t *lookup = (s_lookup_t *) zmalloc (sizeof (s_lookup_t));
    lookup->broker = self;
    lookup->known = zhashx_new ();
    zhashx_set_destructor (lookup->known, s_known_free);
    lookup->done = done;
    lookup->arg = arg;
    lookup->waiting = 1;        //  Held while the reads are issued
    const msgpack_object *deps = bm_obj_get (body, "dependsOn");
    for (uint32_t i = 0; deps && deps->type == MSGPACK_OBJECT_ARRAY && i < deps->via.array.size; i++) {
        const msgpack_object *id = &deps->via.array.ptr [i];
        if (id->type != MSGPACK_OBJECT_STR || id->via.str.size >= BM_ID_SLOT)
            continue;
        s_lookup_read_t *read = (s_lookup_read_t *) zmalloc (sizeof (s_lookup_read_t));
        read->lookup = lookup;
        memcpy (read->id, id->via.str.ptr, id->via.str.size);
        if (bm_jobtab_lookup (self->jobs, read->id)) {
            free (read);
            continue;
        }
        lookup->waiting++;
        bm_job_read (self, read->id, s_on_looked, read);
    }
    s_lookup_read_t *last = (s_lookup_read_t *) zmalloc (sizeof (s_lookup_read_t));
    last->lookup = lookup;
    s_on_looked (self, NULL, true, last);
}

//  --- recovery and RETRY: the pending dependencies checked again ----------

typedef struct {
    char job [BM_ID_SLOT];      //  The waiting job
    char dep [BM_ID_SLOT];      //  Its dependency read from Redis
} s_check_t;

static void s_check (bm_broker_t *self, bm_job_t *job, bm_dep_t *dep);

//  One job told of one dependency's end.
static void
s_resolve_one (bm_broker_t *self, bm_job_t *job, const char *dep_id, bool completed,
               const char *code, const char *result, size_t result_size)
{
    char *shared = NULL;
    s_resolve (self, job, dep_id, completed, code, result, result_size, &shared);
    bm_deps_result_free (&shared);
}

//  Whether dep, which other (ended, not completed) is, is still waited
//  for: the job waits for its RETRY, and it has not ended again since
//  (a RETRY's run that failed while no broker saw it fails the job).  The
//  first end seen since the job's RETRY is the one waited past.
static bool
s_waits_retry (bm_broker_t *self, bm_job_t *job, bm_dep_t *dep, const bm_job_t *other)
{
    if (!dep->wait_retry)
        return false;
    if (!dep->failed_at && other->finished_at > 0) {
        dep->failed_at = other->finished_at;
        if (job->durable)
            bm_jobstore_persist_state (self, job);
    }
    return !dep->failed_at || dep->failed_at == other->finished_at;
}

static void
s_on_checked (bm_broker_t *self, const bm_job_t *dep, bool answered, void *arg)
{
    s_check_t *check = (s_check_t *) arg;
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, check->job);
    bm_dep_t *item = job && job->deps && job->state == JOB_WAITING_CHILDREN
                   ? bm_deps_find (job->deps, check->dep, strlen (check->dep)) : NULL;
    if (!answered)
        bm_warn (check->job, "dependency %s: the job store could not say how it ended; the job "
                 "waits, and the next recovery reads it again", check->dep);
    else
    if (!item || !item->pending)
        ;                       //  Left the wait meanwhile
    else
    if (bm_jobtab_lookup (self->jobs, check->dep))
        //  Back in memory meanwhile (a RETRY read it): newer than the read
        s_check (self, job, item);
    else
    if (!dep)
        s_resolve_one (self, job, check->dep, false, "removed", NULL, 0);
    else
    if (bm_job_terminal (dep)
    &&  (dep->state == JOB_COMPLETED || !s_waits_retry (self, job, item, dep)))
        s_resolve_one (self, job, check->dep, dep->state == JOB_COMPLETED, s_end_code (dep),
                       dep->result, dep->result_size);
    else
        //  Runs, or failed and waited for: its end (a RETRY's) tells the job
        s_index_add (self, check->dep, check->job);
    free (check);
}

//  One pending dependency of a durable waiting job: watched (it has not
//  ended), resolved (it has), or read back from Redis (the broker does
//  not hold it).  A failed one is watched when the job waits for its
//  RETRY (s_waits_retry).
static void
s_check (bm_broker_t *self, bm_job_t *job, bm_dep_t *dep)
{
    bm_job_t *other = (bm_job_t *) bm_jobtab_lookup (self->jobs, dep->id);
    if (other && (!bm_job_terminal (other)
              || (other->state != JOB_COMPLETED && s_waits_retry (self, job, dep, other))))
        s_index_add (self, dep->id, job->id);
    else
    if (other)
        s_resolve_one (self, job, dep->id, other->state == JOB_COMPLETED, s_end_code (other),
                       other->result, other->result_size);
    else
    if (!self->store)
        s_resolve_one (self, job, dep->id, false, "removed", NULL, 0);
    else {
        s_check_t *check = (s_check_t *) zmalloc (sizeof (s_check_t));
        bm_id_copy (check->job, sizeof check->job, job->id);
        bm_id_copy (check->dep, sizeof check->dep, dep->id);
        bm_job_read (self, dep->id, s_on_checked, check);
    }
}

void
bm_deps_recovered_job (bm_broker_t *self, bm_job_t *job)
{
    if (!job->deps) {
        //  A record that says waiting-children without dependsOn: queued
        bm_warn (job->id, "recovered as waiting-children without dependsOn: queued");
        bm_job_enqueue (self, job);
        bm_jobstore_persist_state (self, job);
        return;
    }
    job->service->waiting_children++;
    if (!self->deps_recovered)
    {
        self->deps_recovered = zlistx_new ();
        zlistx_set_destructor (self->deps_recovered, (zlistx_destructor_fn *) zstr_free);
    }
    zlistx_add_end (self->deps_recovered, strdup (job->id));
}

void
bm_deps_recovery_done (bm_broker_t *self)
{
    if (!self->deps_recovered)
        return;
    size_t count = zlistx_size (self->deps_recovered);
    char *id;
    bm_dispatch_hold (self);
    while ((id = (char *) zlistx_detach (self->deps_recovered, NULL))) {
        bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, id);
        free (id);
        if (!job || job->state != JOB_WAITING_CHILDREN || !job->deps)
            continue;
        for (size_t i = 0; i < job->deps->count && job->state == JOB_WAITING_CHILDREN; i++)
            if (job->deps->items [i].pending)
                s_check (self, job, &job->deps->items [i]);
        if (job->state == JOB_WAITING_CHILDREN)
            s_settle (self, job, false);
    }
    bm_dispatch_release (self);
    zlistx_destroy (&self->deps_recovered);
    bm_info (NULL, "recovered %zu jobs waiting for their dependencies", count);
}

void
bm_deps_retry (bm_broker_t *self, bm_job_t *job)
{
    bm_deps_t *deps = job->deps;
    deps->pending = 0;
    for (size_t i = 0; i < deps->count; i++) {
        bm_dep_t *dep = &deps->items [i];
        bm_job_t *other = (bm_job_t *) bm_jobtab_lookup (self->jobs, dep->id);
        bool done = other ? other->state == JOB_COMPLETED
                          : !dep->failed && !dep->pending;      //  Completed before
        //  Ended, not completed (a job not held ended: only finished jobs
        //  leave memory): waited for until its own RETRY, also by a
        //  recovery, where one that ended unseen fails the job
        dep->wait_retry = !done && (!other || bm_job_terminal (other));
        dep->failed_at = dep->wait_retry && other ? other->finished_at : 0;
        dep->failed = false;
        free (dep->code);
        dep->code = NULL;
        dep->pending = !done;
        deps->pending += !done;
        if (done && other && deps->results && other->result && !dep->result) {
            dep->result = bm_deps_result_new (other->result, other->result_size);
            dep->result_size = other->result_size;
            dep->result_saved = false;
        }
    }
    if (!deps->pending) {
        bm_job_enqueue (self, job);
        return;
    }
    s_enter (self, job);
    BM_JOB_EVENT (self, job, BM_EV_WAITING_CHILDREN, NULL, false);
    for (size_t i = 0; i < deps->count && job->state == JOB_WAITING_CHILDREN; i++)
        if (deps->items [i].pending)
            s_check (self, job, &deps->items [i]);
}

//  --- what clients and bots see ---------------------------------------------

//  The results a record shows (dependencyValues), at most these bytes in
//  all: BullMQ's getChildrenValues from outside the bot, kept well within a
//  frame that carries the job's payload and result too.
#define BM_DEPS_VALUES_MAX  65536

//  How many of the kept results the record shows: the completed
//  dependencies' with a result, in dependsOn's order, while they fit.
static size_t
s_values_shown (const bm_deps_t *deps)
{
    size_t shown = 0, bytes = 0;
    for (size_t i = 0; i < deps->count; i++)
        if (deps->items [i].result) {
            bytes += deps->items [i].result_size;
            if (bytes > BM_DEPS_VALUES_MAX)
                break;
            shown++;
        }
    return shown;
}

int
bm_deps_record_keys (const bm_job_t *job, bool full)
{
    return job->deps ? 3 + job->deps->ignore_failure + job->deps->results
                         + (full && job->deps->results) : 0;
}

void
bm_deps_pack_record (msgpack_packer *pk, const bm_job_t *job, bool full)
{
    const bm_deps_t *deps = job->deps;
    if (!deps)
        return;
    bm_pack_str (pk, "dependsOn");
    msgpack_pack_array (pk, deps->count);
    for (size_t i = 0; i < deps->count; i++)
        bm_pack_str (pk, deps->items [i].id);
    bm_pack_str (pk, "pendingDependencies");
    msgpack_pack_array (pk, deps->pending);
    for (size_t i = 0; i < deps->count; i++)
        if (deps->items [i].pending)
            bm_pack_str (pk, deps->items [i].id);
    size_t failed = 0;
    for (size_t i = 0; i < deps->count; i++)
        failed += deps->items [i].failed;
    bm_pack_str (pk, "failedDependencies");
    msgpack_pack_array (pk, failed);
    for (size_t i = 0; i < deps->count; i++)
        if (deps->items [i].failed)
            bm_pack_str (pk, deps->items [i].id);
    if (deps->ignore_failure)
        bm_pack_kv_str (pk, "onDependencyFailure", "ignore");
    if (deps->results)
        bm_pack_kv_bool (pk, "dependencyResults", true);
    if (full && deps->results) {
        size_t shown = s_values_shown (deps);
        bm_pack_str (pk, "dependencyValues");
        msgpack_pack_map (pk, shown);
        for (size_t i = 0; i < deps->count && shown; i++)
            if (deps->items [i].result) {
                bm_pack_str (pk, deps->items [i].id);
                msgpack_sbuffer_write ((msgpack_sbuffer *) pk->data, deps->items [i].result,
                                       deps->items [i].result_size);
                shown--;
            }
    }
}

void
bm_deps_pack_payload (msgpack_sbuffer *sbuf, msgpack_packer *pk, const bm_job_t *job)
{
    const bm_deps_t *deps = job->deps;
    msgpack_pack_map (pk, 2);
    bm_pack_str (pk, "payload");
    msgpack_sbuffer_write (sbuf, job->payload, job->payload_size);
    bm_pack_str (pk, "dependencies");
    msgpack_pack_map (pk, deps->count);
    for (size_t i = 0; i < deps->count; i++) {
        bm_pack_str (pk, deps->items [i].id);
        if (deps->items [i].result)
            msgpack_sbuffer_write (sbuf, deps->items [i].result, deps->items [i].result_size);
        else
            msgpack_pack_nil (pk);
    }
}

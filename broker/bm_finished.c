/*  bm_finished.c - the finished jobs of each bot type in Redis, by finish
    time: they delete the records whose retention ran out, and let clean and
    the retention by count reach the finished jobs that live only in Redis
    (after a restart, or pushed out of memory by KEEP_FINISHED_JOBS).

    Three sorted sets per bot type, {bm}:finished:completed:<type>,
    {bm}:finished:failed:<type> and {bm}:finished:cancelled:<type>: member
    the job id, score its finishedAt (ms since the epoch).  A job that ends
    completed, failed or cancelled is added in
    the group of its terminal write (one ZADD per set a loop turn, like the
    live set's); a job removed (REMOVE, clean, retention) leaves its set.
    The types that have sets are listed in {bm}:finished:types (one SADD
    per type and broker process, ahead of the type's first ZADD).

    Such a record carries no TTL: the leading broker's sweep (every
    BM_FINISHED_SWEEP_MS, more often for a retention under 20 s) reads each
    set's ids older than COMPLETED_JOB_TTL / FAILED_JOB_TTL (cancelled
    jobs: FAILED_JOB_TTL) a page at a
    time and deletes their records with one UNLINK and one ZREM a page.  A
    sweep starts from the types set, so it reaches the records of types no
    worker or client has named since a restart.  Until the sweep deletes a
    record, STATUS already answers not_found for it (the broker checks
    finishedAt against the retention when it reads a record).  Sets are
    also trimmed by count for a type with KEEP_COMPLETED_<TYPE> /
    KEEP_FAILED_<TYPE> (the oldest beyond N, after the tick that follows a
    job's end; cancelled jobs have no count).  Webhook deliveries are not
    kept in them: a delivery's record is deleted when it ends.  */
#include "bm_broker_internal.h"

//  How often the leader sweeps the records whose retention ran out: a
//  record outlives its retention by at most this much (plus the sweep's
//  own time); half the shorter retention when that is less, at least
//  BM_FINISHED_SWEEP_MIN_MS.  Clean's query skips such ids by score, and
//  STATUS answers not_found for them meanwhile.
#define BM_FINISHED_SWEEP_MS 10000
#define BM_FINISHED_SWEEP_MIN_MS 1000

//  Ids a sweep reads (and deletes) per query.
#define BM_FINISHED_SWEEP_PAGE 1000

//  A read-back's record reads that Redis answered with an error (BUSY,
//  LOADING, NOPERM, ...) are sent again up to this many times, the first
//  after BM_FINISHED_RESTORE_RETRY_MS, each next after twice the wait
//  before (250 ms to 4 s: about 8 s in all).
#define BM_FINISHED_RESTORE_TRIES 5
#define BM_FINISHED_RESTORE_RETRY_MS 250

typedef struct _s_restore_t s_restore_t;

//  An id and finish time waiting for this turn's ZADD of its set.
typedef struct {
    const bm_service_t *service;        //  The set's bot type (services live
    int which;                          //  as long as the broker) and state
    char id [BM_ID_SLOT];
    int64_t finished_at;
} s_add_t;

struct _bm_finished_t {
    s_add_t *adds;              //  This turn's additions, in order
    size_t count, alloc;
    zhashx_t *dirty;            //  "<which>:<type>" -> "" for the count trim
    zhashx_t *listed;           //  Types this process added to the types set
    int64_t sweep_at;           //  Mono ms of the next sweep
    bool sweeping;              //  A sweep's query is out
    bool scanned;               //  The SCAN for unlisted sets began
    int restoring;              //  Read-backs under way (bm_finished_restore)
    zhashx_t *removed;          //  Ids whose records were deleted while one
                                //  is: its reads may predate the deletion
    s_restore_t *retrying;      //  Read-backs waiting to read again, by next
};

static void s_restore_free (s_restore_t *restore);

static const char *s_state_names [BM_FINISHED_SETS] = { "completed", "failed", "cancelled" };

static bm_finished_t *
s_sets (bm_broker_t *self)
{
    if (!self->finished_sets) {
        self->finished_sets = (bm_finished_t *) zmalloc (sizeof (bm_finished_t));
        self->finished_sets->dirty = zhashx_new ();
        self->finished_sets->listed = zhashx_new ();
        self->finished_sets->removed = zhashx_new ();
    }
    return self->finished_sets;
}

void
bm_finished_destroy (bm_finished_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->adds);
        zhashx_destroy (&(*self_p)->dirty);
        zhashx_destroy (&(*self_p)->listed);
        zhashx_destroy (&(*self_p)->removed);
        //  Their timers went with the loop
        while ((*self_p)->retrying)
            s_restore_free ((*self_p)->retrying);
        free (*self_p);
        *self_p = NULL;
    }
}

//  0 for completed, 1 for failed, 2 for cancelled, -1 for a state the sets
//  do not keep.
int
bm_finished_which (bm_job_state_t state)
{
    return state == JOB_COMPLETED ? 0 : state == JOB_FAILED ? 1 : state == JOB_CANCELLED ? 2 : -1;
}

//  The key of a set (which) without its prefix and bot type, for bm_cmd_start.
const char *
bm_finished_what (int which)
{
    return which == 0 ? "finished:completed:" : which == 1 ? "finished:failed:" : "finished:cancelled:";
}

//  The set of a bot type's finished jobs in one state (which), into key.
void
bm_finished_key (bm_broker_t *self, const char *bot_type, int which, char *key, size_t size)
{
    snprintf (key, size, "%s{bm}:finished:%s:%s", self->config.redis_prefix,
              s_state_names [which], bot_type);
}

//  One command of argc words (binary-safe lengths worked out here) as a
//  durable write of the open group.
static void
s_write (bm_broker_t *self, size_t argc, const char **argv)
{
    size_t *lens = (size_t *) bm_realloc_or_abort (NULL, argc * sizeof (size_t), "a finished-set write");
    for (size_t i = 0; i < argc; i++)
        lens [i] = strlen (argv [i]);
    bm_store_write (self->store, true, NULL, NULL, (int) argc, argv, lens);
    free (lens);
}

//  A job ended completed, failed or cancelled (its terminal write is in the open
//  group): its id goes into its set with this turn's ZADD.
void
bm_finished_add (bm_broker_t *self, const bm_job_t *job)
{
    int which = bm_finished_which (job->state);
    if (!self->store || which < 0 || bm_job_is_delivery (job))
        return;
    bm_finished_t *sets = s_sets (self);
    if (sets->count == sets->alloc) {
        sets->alloc = sets->alloc ? sets->alloc * 2 : 64;
        sets->adds = (s_add_t *) bm_realloc_or_abort (sets->adds, sets->alloc * sizeof (s_add_t),
                                                      "the finished sets' additions");
    }
    s_add_t *add = &sets->adds [sets->count++];
    add->service = job->service;
    add->which = which;
    bm_id_copy (add->id, sizeof add->id, job->id);
    add->finished_at = job->finished_at;
    if (which < 2 && job->service->keep [which] > 0) {
        char dirty [BM_MAX_BOT_TYPE_LEN + 8];
        snprintf (dirty, sizeof dirty, "%d:%s", which, job->service->name);
        zhashx_update (sets->dirty, dirty, (void *) "");
    }
}

//  Part of the store's flush hook: this turn's additions as one ZADD per
//  set (a turn's jobs are mostly of one type and state).
void
bm_finished_flush (bm_broker_t *self)
{
    bm_finished_t *sets = self->finished_sets;
    if (!sets || sets->count == 0)
        return;
    const char **argv = (const char **) bm_realloc_or_abort (NULL, (2 + 2 * sets->count) * sizeof (char *),
                                                             "a finished-set ZADD");
    char (*scores) [24] = bm_realloc_or_abort (NULL, sets->count * 24, "a finished-set ZADD");
    bool *sent = (bool *) bm_realloc_or_abort (NULL, sets->count * sizeof (bool), "a finished-set ZADD");
    memset (sent, 0, sets->count * sizeof (bool));
    char key [BM_FINISHED_KEY_SLOT];
    //  A type's first finished job in this process: the type joins the
    //  types set ahead of its ZADD, so that a sweep after a restart finds
    //  its sets.
    size_t argc = 0;
    for (size_t i = 0; i < sets->count; i++) {
        const char *name = sets->adds [i].service->name;
        if (zhashx_lookup (sets->listed, name))
            continue;
        zhashx_insert (sets->listed, name, (void *) "");
        if (argc == 0) {
            snprintf (key, sizeof key, "%s{bm}:finished:types", self->config.redis_prefix);
            argv [argc++] = "SADD";
            argv [argc++] = key;
        }
        argv [argc++] = name;
    }
    if (argc)
        s_write (self, argc, argv);
    for (size_t i = 0; i < sets->count; i++) {
        if (sent [i])
            continue;
        const s_add_t *first = &sets->adds [i];
        bm_finished_key (self, first->service->name, first->which, key, sizeof key);
        argc = 0;
        argv [argc++] = "ZADD";
        argv [argc++] = key;
        for (size_t j = i; j < sets->count; j++) {
            if (sent [j] || sets->adds [j].service != first->service
            ||  sets->adds [j].which != first->which)
                continue;
            sent [j] = true;
            bm_int_text (sets->adds [j].finished_at, scores [j]);
            argv [argc++] = scores [j];
            argv [argc++] = sets->adds [j].id;
        }
        s_write (self, argc, argv);
    }
    sets->count = 0;
    free (argv);
    free (scores);
    free (sent);
}

//  Ids out of one set: one ZREM, after this turn's additions (which the
//  store's flush hook would otherwise add after it, undoing it).
void
bm_finished_remove_ids (bm_broker_t *self, const char *key, const char **ids, size_t count)
{
    if (!self->store || count == 0)
        return;
    bm_finished_flush (self);
    const char **argv = (const char **) bm_realloc_or_abort (NULL, (2 + count) * sizeof (char *),
                                                             "a finished-set ZREM");
    argv [0] = "ZREM";
    argv [1] = key;
    memcpy (argv + 2, ids, count * sizeof (char *));
    s_write (self, 2 + count, argv);
    free (argv);
}

//  A finished job removed (REMOVE, clean, retention): out of its set.
void
bm_finished_forget (bm_broker_t *self, const bm_job_t *job)
{
    int which = bm_finished_which (job->state);
    if (!self->store || which < 0 || bm_job_is_delivery (job))
        return;
    char key [BM_FINISHED_KEY_SLOT];
    bm_finished_key (self, job->service->name, which, key, sizeof key);
    const char *id = job->id;
    bm_finished_remove_ids (self, key, &id, 1);
}

//  A finished job's record lives this long in Redis (COMPLETED_JOB_TTL,
//  FAILED_JOB_TTL for failed and cancelled ones); the sets keep its id no
//  longer.
int64_t
bm_finished_ttl_ms (bm_broker_t *self, int which)
{
    return 1000 * (which == 0 ? self->config.completed_ttl_s : self->config.failed_ttl_s);
}

//  True for a completed, failed or cancelled client job whose retention ran out by
//  now (ms since the epoch): its record is gone, or about to be swept.
bool
bm_finished_expired (bm_broker_t *self, const bm_job_t *job, int64_t now)
{
    int which = bm_finished_which (job->state);
    return which >= 0 && !bm_job_is_delivery (job) && job->finished_at > 0
        && job->finished_at + bm_finished_ttl_ms (self, which) <= now;
}

//  The ids of one set that a query read (bot_type's jobs in state which):
//  each finished job deleted (a job in memory only if it is still finished
//  in that state; one whose end is being written is left alone), and every
//  id but those out of the set.  Returns how many jobs were removed.  by:
//  who asked (a clean), each removal logged at INFO naming it; NULL for a
//  count trim.
int64_t
bm_finished_remove_listed (bm_broker_t *self, const char *bot_type, int which, const redisReply *reply,
                           const char *by)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0)
        return 0;
    const char **ids = (const char **) bm_realloc_or_abort (NULL, reply->elements * sizeof (char *),
                                                            "a finished-set removal");
    size_t count = 0;
    int64_t removed = 0;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *el = reply->element [i];
        if (el->type != REDIS_REPLY_STRING || el->len > BM_MAX_ID_LEN + 15)
            continue;
        bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, el->str);
        if (job && job->confirming)
            continue;
        if (job && bm_finished_which (job->state) == which) {
            bm_control_remove (self, job, by);  //  Out of the set too
            removed++;
            continue;
        }
        if (!job) {
            //  Finished, and only in Redis
            bm_jobstore_forget (self, el->str);
            if (by)
                bm_info (el->str, "removed (%s, %s; only Redis held it): by %s", bot_type,
                         s_state_names [which], by);
            removed++;
        }
        ids [count++] = el->str;                //  Else it was run again since
    }
    char key [BM_FINISHED_KEY_SLOT];
    bm_finished_key (self, bot_type, which, key, sizeof key);
    bm_finished_remove_ids (self, key, ids, count);
    free (ids);
    return removed;
}

//  The count trim of one set, answered: the ids beyond the newest N,
//  oldest first.
typedef struct {
    bm_broker_t *broker;
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    int which;
} s_trim_t;

static void
s_on_trim (redisReply *reply, void *arg)
{
    s_trim_t *trim = (s_trim_t *) arg;
    int64_t removed = bm_finished_remove_listed (trim->broker, trim->bot_type, trim->which, reply,
                                                 NULL);
    if (removed)
        bm_debug (NULL, "bot type %s: %" PRId64 " %s jobs beyond its count removed from redis",
                  trim->bot_type, removed, s_state_names [trim->which]);
    free (trim);
}

//  The sweep interval: BM_FINISHED_SWEEP_MS, or half the shorter
//  retention when that is less (at least BM_FINISHED_SWEEP_MIN_MS).
static int64_t
s_sweep_interval (bm_broker_t *self)
{
    int64_t shorter = bm_finished_ttl_ms (self, 0) < bm_finished_ttl_ms (self, 1)
                    ? bm_finished_ttl_ms (self, 0) : bm_finished_ttl_ms (self, 1);
    int64_t interval = shorter / 2;
    return interval > BM_FINISHED_SWEEP_MS ? BM_FINISHED_SWEEP_MS
         : interval < BM_FINISHED_SWEEP_MIN_MS ? BM_FINISHED_SWEEP_MIN_MS : interval;
}

//  A sweep under way: the types to visit, in order, both sets of each.
typedef struct {
    bm_broker_t *broker;
    char (*types) [BM_MAX_BOT_TYPE_LEN + 1];
    size_t count;               //  Types
    size_t index;               //  The type being swept
    int which;                  //  Its set being swept
    int64_t bound [BM_FINISHED_SETS];   //  Ended at or before it: retention over
    int64_t skipped;            //  Ids of this set left alone (in use)
    int64_t deleted;            //  Records deleted so far
} s_sweep_t;

static void s_on_sweep_page (redisReply *reply, void *arg);

static void
s_sweep_end (s_sweep_t *sweep)
{
    if (sweep->deleted)
        bm_debug (NULL, "sweep: %" PRId64 " finished job records past their retention deleted "
                  "from redis", sweep->deleted);
    if (sweep->broker->finished_sets)
        sweep->broker->finished_sets->sweeping = false;
    free (sweep->types);
    free (sweep);
}

//  The next page of the set being swept, or of the next set; the sweep
//  ends after the last.
static void
s_sweep_next (s_sweep_t *sweep)
{
    bm_broker_t *self = sweep->broker;
    if (sweep->index >= sweep->count || !self->serving || !self->store || !bm_store_up (self->store)) {
        s_sweep_end (sweep);
        return;
    }
    bm_finished_flush (self);           //  The query sees this turn's ends
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "ZRANGEBYSCORE", bm_finished_what (sweep->which),
                  sweep->types [sweep->index]);
    bm_cmd_arg_str (&cmd, "-inf");
    bm_cmd_arg_int (&cmd, sweep->bound [sweep->which]);
    bm_cmd_arg_str (&cmd, "LIMIT");
    bm_cmd_arg_int (&cmd, sweep->skipped);
    bm_cmd_arg_int (&cmd, BM_FINISHED_SWEEP_PAGE);
    bm_jobstore_query (self, &cmd, s_on_sweep_page, sweep);
}

//  One page of ids past their retention: their records go with one
//  UNLINK, then the ids with one ZREM (in this order, so that a crash
//  between them leaves an id whose record is gone, swept again next time,
//  never a record no set lists).  A job in memory that ended again since
//  (its new ZADD is on its way) or is being written is left alone; one
//  that runs again (RETRY) keeps its record and leaves the set.
static void
s_on_sweep_page (redisReply *reply, void *arg)
{
    s_sweep_t *sweep = (s_sweep_t *) arg;
    bm_broker_t *self = sweep->broker;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || !self->serving) {
        if (reply && reply->type == REDIS_REPLY_ERROR)
            bm_warn (NULL, "sweep of bot type %s: redis refused the query: %s",
                     sweep->types [sweep->index], reply->str);
        s_sweep_end (sweep);
        return;
    }
    int which = sweep->which;
    int64_t now = bm_now_ms ();
    size_t count = reply->elements;
    const char **ids = (const char **) bm_realloc_or_abort (NULL, (count + 2) * sizeof (char *),
                                                            "a sweep's ids");
    const char **keys = (const char **) bm_realloc_or_abort (NULL, (count + 1) * sizeof (char *),
                                                             "a sweep's keys");
    char (*names) [BM_FINISHED_KEY_SLOT] = bm_realloc_or_abort (NULL, (count + 1) * BM_FINISHED_KEY_SLOT,
                                                                "a sweep's keys");
    size_t n_ids = 0, n_keys = 0;
    keys [n_keys++] = "UNLINK";
    for (size_t i = 0; i < count; i++) {
        const redisReply *el = reply->element [i];
        if (el->type != REDIS_REPLY_STRING || el->len == 0 || el->len > BM_MAX_ID_LEN + 15) {
            sweep->skipped++;
            continue;
        }
        bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, el->str);
        if (job && (job->confirming
                 || (bm_finished_which (job->state) == which && !bm_finished_expired (self, job, now)))) {
            sweep->skipped++;
            continue;
        }
        if (job && bm_finished_which (job->state) != which) {
            ids [n_ids++] = el->str;    //  Run again since: the record stays
            continue;
        }
        if (job)
            bm_job_delete (self, job);  //  Ended, retention over
        snprintf (names [n_keys], BM_FINISHED_KEY_SLOT, "%s{bm}:job:%s", self->config.redis_prefix,
                  el->str);
        keys [n_keys] = names [n_keys];
        n_keys++;
        ids [n_ids++] = el->str;
    }
    if (n_keys > 1) {
        s_write (self, n_keys, keys);
        sweep->deleted += (int64_t) n_keys - 1;
    }
    char key [BM_FINISHED_KEY_SLOT];
    bm_finished_key (self, sweep->types [sweep->index], which, key, sizeof key);
    bm_finished_remove_ids (self, key, ids, n_ids);
    free (ids);
    free (keys);
    free (names);
    if (count < BM_FINISHED_SWEEP_PAGE) {
        sweep->skipped = 0;
        if (++sweep->which == BM_FINISHED_SETS) {
            sweep->which = 0;
            sweep->index++;
        }
    }
    s_sweep_next (sweep);
}

//  A job's record is being deleted (bm_jobstore_forget): while a
//  read-back is under way, its id is kept, so that a read of the record
//  sent before the deletion does not bring the job back.
void
bm_finished_removed (bm_broker_t *self, const char *id)
{
    bm_finished_t *sets = self->finished_sets;
    if (sets && sets->restoring > 0)
        zhashx_update (sets->removed, id, (void *) "");
}

//  Reads of records that may race their deletion, outside the read-back
//  (QUEUE retry): while one is under way, deleted ids are kept as for a
//  read-back, and bm_finished_deleted tells them.
void
bm_finished_reads_begin (bm_broker_t *self)
{
    s_sets (self)->restoring++;
}

void
bm_finished_reads_end (bm_broker_t *self)
{
    bm_finished_t *sets = self->finished_sets;
    if (sets && --sets->restoring == 0)
        zhashx_purge (sets->removed);
}

bool
bm_finished_deleted (bm_broker_t *self, const char *id)
{
    bm_finished_t *sets = self->finished_sets;
    return sets && zhashx_lookup (sets->removed, id) != NULL;
}

//  The types set read: the sweep visits those types and every type in
//  memory (sets a broker before the types set wrote).
static void
s_on_sweep_types (redisReply *reply, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || !self->serving || !self->store) {
        if (self->finished_sets)
            self->finished_sets->sweeping = false;
        return;
    }
    zhashx_t *seen = zhashx_new ();
    s_sweep_t *sweep = (s_sweep_t *) zmalloc (sizeof (s_sweep_t));
    sweep->broker = self;
    size_t room = reply->elements + zhashx_size (self->services) + 1;
    sweep->types = bm_realloc_or_abort (NULL, room * sizeof *sweep->types, "a sweep's types");
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *el = reply->element [i];
        if (el->type == REDIS_REPLY_STRING && el->len > 0 && el->len <= BM_MAX_BOT_TYPE_LEN
        &&  memchr (el->str, 0, el->len) == NULL && !zhashx_lookup (seen, el->str)) {
            zhashx_insert (seen, el->str, (void *) "");
            snprintf (sweep->types [sweep->count++], BM_MAX_BOT_TYPE_LEN + 1, "%s", el->str);
        }
    }
    for (bm_service_t *service = (bm_service_t *) zhashx_first (self->services); service;
         service = (bm_service_t *) zhashx_next (self->services))
        if (!zhashx_lookup (seen, service->name)) {
            zhashx_insert (seen, service->name, (void *) "");
            snprintf (sweep->types [sweep->count++], BM_MAX_BOT_TYPE_LEN + 1, "%s", service->name);
        }
    zhashx_destroy (&seen);
    int64_t now = bm_now_ms ();
    for (int which = 0; which < BM_FINISHED_SETS; which++)
        sweep->bound [which] = now - bm_finished_ttl_ms (self, which);
    s_sweep_next (sweep);
}

//  Sets of types missing from the types set: a broker of an earlier
//  version wrote finished sets but no types set, and a type that finished
//  jobs only then would never be swept.  Once per process, the leader
//  walks the keyspace (SCAN ... MATCH <prefix>{bm}:finished:*, a page of
//  1,000 keys a reply) and adds the types of the sets it finds.
static void s_scan_next (bm_broker_t *self, const char *cursor);

static void
s_on_scan (redisReply *reply, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    if (!reply || !self->serving || !self->store) {
        if (self->finished_sets)
            self->finished_sets->scanned = false;      //  Again once Redis is back
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
    ||  reply->element [0]->type != REDIS_REPLY_STRING
    ||  reply->element [1]->type != REDIS_REPLY_ARRAY) {
        bm_warn (NULL, "redis: cannot list the finished sets (SCAN: %s): a bot type that "
                 "finished jobs only under an earlier version is not swept",
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "an unexpected reply");
        return;
    }
    const redisReply *keys = reply->element [1];
    size_t skip = strlen (self->config.redis_prefix) + strlen ("{bm}:finished:");
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "SADD", "finished:types", NULL);
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *key = keys->element [i];
        if (key->type != REDIS_REPLY_STRING || key->len <= skip)
            continue;
        const char *rest = key->str + skip;
        const char *type = strncmp (rest, "completed:", 10) == 0 ? rest + 10
                         : strncmp (rest, "failed:", 7) == 0 ? rest + 7
                         : strncmp (rest, "cancelled:", 10) == 0 ? rest + 10 : NULL;
        size_t len = type ? key->len - (size_t) (type - key->str) : 0;
        if (len == 0 || len > BM_MAX_BOT_TYPE_LEN || memchr (type, 0, len))
            continue;
        bm_cmd_arg_str (&cmd, type);
        if (cmd.argc == BM_CMD_MAX_ARGS) {
            bm_jobstore_issue (self, &cmd, false, NULL, NULL);
            bm_cmd_start (self, &cmd, "SADD", "finished:types", NULL);
        }
    }
    if (cmd.argc > 2)
        bm_jobstore_issue (self, &cmd, false, NULL, NULL);
    if (!streq (reply->element [0]->str, "0"))
        s_scan_next (self, reply->element [0]->str);
}

static void
s_scan_next (bm_broker_t *self, const char *cursor)
{
    char pattern [256];
    snprintf (pattern, sizeof pattern, "%s{bm}:finished:*", self->config.redis_prefix);
    bm_cmd_t cmd;
    cmd.argc = 0;
    bm_cmd_arg_str (&cmd, "SCAN");
    bm_cmd_arg_str (&cmd, cursor);
    bm_cmd_arg_str (&cmd, "MATCH");
    bm_cmd_arg_str (&cmd, pattern);
    bm_cmd_arg_str (&cmd, "COUNT");
    bm_cmd_arg_str (&cmd, "1000");
    bm_jobstore_query (self, &cmd, s_on_scan, self);
}

//  From the broker's tick: the count trim of the sets that grew, and now
//  and then the sweep of the records whose retention ran out.
void
bm_finished_tick (bm_broker_t *self, int64_t now_mono)
{
    if (!self->store || !bm_store_up (self->store))
        return;
    bm_finished_t *sets = s_sets (self);
    bm_finished_flush (self);           //  The queries below see them
    for (const char *dirty = (const char *) zhashx_first (sets->dirty); dirty;
         dirty = (const char *) zhashx_next (sets->dirty)) {
        const char *name = (const char *) zhashx_cursor (sets->dirty);
        int which = name [0] == '1';
        bm_service_t *service = (bm_service_t *) zhashx_lookup (self->services, name + 2);
        if (!service || service->keep [which] <= 0)
            continue;
        s_trim_t *trim = (s_trim_t *) zmalloc (sizeof (s_trim_t));
        trim->broker = self;
        trim->which = which;
        snprintf (trim->bot_type, sizeof trim->bot_type, "%s", service->name);
        bm_cmd_t cmd;
        bm_cmd_start (self, &cmd, "ZRANGE", bm_finished_what (which), service->name);
        bm_cmd_arg_str (&cmd, "0");
        bm_cmd_arg_int (&cmd, -(service->keep [which] + 1));
        bm_jobstore_query (self, &cmd, s_on_trim, trim);
    }
    zhashx_purge (sets->dirty);
    if (!sets->scanned) {
        sets->scanned = true;
        s_scan_next (self, "0");
    }
    if (now_mono < sets->sweep_at || sets->sweeping)
        return;
    sets->sweep_at = now_mono + s_sweep_interval (self);
    sets->sweeping = true;
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "SMEMBERS", "finished:types", NULL);
    bm_jobstore_query (self, &cmd, s_on_sweep_types, self);
}

//  --------------------------------------------------------------------------
//  After a recovery (a start, a failover, Redis back), the newest finished
//  jobs Redis holds come back into memory, so that LIST (GET
//  /jobs?state=failed, ?webhook=failed) shows the jobs that finished before
//  the restart as it showed them before it: the newest KEEP_FINISHED_JOBS
//  ids of all the finished sets by finish time, each record read
//  (HGETALL) and placed by its own times (bm_job_restore).  A job already
//  in memory (a RETRY or REDELIVER that read it meanwhile, a job of this
//  process) is left as it is.  A job whose webhook is on its way (pending,
//  retrying) comes back only while its delivery, recovered with the
//  unfinished jobs, is still under way: the delivery's end then finds it in
//  memory.  One whose delivery ended meanwhile may have been read ahead of
//  the delivery's write to its record: it is left to Redis.  So is a job
//  whose record was deleted (REMOVE, clean, a count trim) after the
//  read-back began: its read may have gone out ahead of the deletion
//  (bm_finished_removed).  A read Redis answers with an error (BUSY,
//  LOADING, NOPERM) says nothing of the record: it is sent again, up to
//  BM_FINISHED_RESTORE_TRIES times, the read-back under way until then.

typedef struct {
    char id [BM_ID_SLOT];
    int64_t finished_at;
} s_found_t;

struct _s_restore_t {
    bm_broker_t *broker;
    s_found_t *found;           //  Ids the sets gave, with their scores
    size_t count, alloc;
    int pending;                //  Queries out
    int64_t restored;
    size_t *again;              //  Indexes in found whose read got an error
    size_t again_count, again_alloc;
    int tries;                  //  Rounds of reads sent again so far
    char error [128];           //  The round's first error answer
    s_restore_t *next;          //  In the sets' retrying list
};

typedef struct {
    s_restore_t *restore;
    size_t index;               //  In restore->found
} s_restore_ref_t;

static void
s_restore_free (s_restore_t *restore)
{
    bm_finished_t *sets = restore->broker->finished_sets;
    s_restore_t **p = sets ? &sets->retrying : NULL;
    while (p && *p && *p != restore)
        p = &(*p)->next;
    if (p && *p)
        *p = restore->next;
    free (restore->found);
    free (restore->again);
    free (restore);
}

static void
s_restore_end (s_restore_t *restore)
{
    bm_finished_t *sets = restore->broker->finished_sets;
    if (sets && --sets->restoring == 0)
        zhashx_purge (sets->removed);
    if (restore->restored)
        bm_info (NULL, "%" PRId64 " finished jobs read back from redis for the job listings",
                 restore->restored);
    if (restore->again_count)
        bm_warn (NULL, "%zu finished jobs could not be read back from redis (%s): not in the "
                 "job listings until the next recovery", restore->again_count, restore->error);
    s_restore_free (restore);
    bm_stats_trim ("reading back the finished jobs");
}

static void s_restore_send (s_restore_t *restore, const size_t *indexes, size_t count);

static int
s_on_restore_again (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop, (void) timer_id;
    s_restore_t *restore = (s_restore_t *) arg;
    bm_broker_t *self = restore->broker;
    bm_finished_t *sets = self->finished_sets;
    s_restore_t **p = &sets->retrying;
    while (*p != restore)
        p = &(*p)->next;
    *p = restore->next;
    restore->next = NULL;
    restore->tries++;
    //  The reads of this round may fail again: they fill again anew
    size_t *indexes = restore->again;
    size_t count = restore->again_count;
    restore->again = NULL;
    restore->again_count = restore->again_alloc = 0;
    if (self->serving && self->store)
        s_restore_send (restore, indexes, count);
    else
        s_restore_end (restore);
    free (indexes);
    return 0;
}

//  Every read of a round answered: the ones Redis answered with an error
//  are sent again later, while tries are left; else the read-back ends.
static void
s_restore_round_done (s_restore_t *restore)
{
    bm_broker_t *self = restore->broker;
    bm_finished_t *sets = self->finished_sets;
    if (!restore->again_count || restore->tries >= BM_FINISHED_RESTORE_TRIES
    ||  !self->serving || !self->store || !sets || !self->loop) {
        s_restore_end (restore);
        return;
    }
    int wait = BM_FINISHED_RESTORE_RETRY_MS << restore->tries;
    if (zloop_timer (self->loop, (size_t) wait, 1, s_on_restore_again, restore) == -1) {
        s_restore_end (restore);
        return;
    }
    bm_warn (NULL, "reading back finished jobs: redis answered %zu record reads with an error "
             "(%s); read again in %d ms", restore->again_count, restore->error, wait);
    restore->next = sets->retrying;
    sets->retrying = restore;
}

//  True unless job's webhook is on its way and its delivery not (still)
//  under way in memory.
static bool
s_delivery_settled (bm_broker_t *self, const bm_job_t *job)
{
    if (job->wh_state != BM_WEBHOOK_PENDING && job->wh_state != BM_WEBHOOK_RETRYING)
        return true;
    char id [BM_ID_SLOT + 32];
    snprintf (id, sizeof id, "%s.wh%" PRId64, job->id, job->deliveries);
    const bm_job_t *delivery = (const bm_job_t *) bm_jobtab_lookup (self->jobs, id);
    return delivery && !bm_job_terminal (delivery);
}

static void
s_on_restore_job (redisReply *reply, void *arg)
{
    s_restore_ref_t *ref = (s_restore_ref_t *) arg;
    s_restore_t *restore = ref->restore;
    bm_broker_t *self = restore->broker;
    size_t index = ref->index;
    const char *id = restore->found [index].id;
    free (ref);
    bm_finished_t *sets = self->finished_sets;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        //  One WARN line a round says how many (a BUSY Redis fails them all)
        bm_debug (id, "reading its record back from redis failed: %s", reply->str);
        if (!restore->again_count)
            snprintf (restore->error, sizeof restore->error, "%s", reply->str);
        if (restore->again_count == restore->again_alloc) {
            restore->again_alloc = restore->again_alloc ? 2 * restore->again_alloc : 16;
            restore->again = bm_realloc_or_abort (restore->again,
                                                  restore->again_alloc * sizeof (size_t),
                                                  "the finished jobs to read back again");
        }
        restore->again [restore->again_count++] = index;
    }
    else
    if (reply && self->serving && !bm_jobtab_lookup (self->jobs, id)
    &&  !(sets && zhashx_lookup (sets->removed, id))) {
        bm_job_t *job = bm_jobstore_job_from_hash (self, id, reply, NULL);
        if (job && bm_finished_which (job->state) >= 0 && !bm_job_is_delivery (job)
        &&  !bm_finished_expired (self, job, bm_now_ms ()) && s_delivery_settled (self, job)) {
            bm_job_restore (self, job);
            restore->restored++;
        }
        else
            bm_job_destroy (&job);
    }
    if (--restore->pending == 0)
        s_restore_round_done (restore);
}

static int
s_newest_first (const void *a, const void *b)
{
    const s_found_t *x = (const s_found_t *) a, *y = (const s_found_t *) b;
    return x->finished_at < y->finished_at ? 1 : x->finished_at > y->finished_at ? -1 : 0;
}

//  Every set read: the newest ids, read back.
static void
s_restore_read (s_restore_t *restore)
{
    bm_broker_t *self = restore->broker;
    if (restore->count > 1)             //  found is NULL when no set held an id
        qsort (restore->found, restore->count, sizeof (s_found_t), s_newest_first);
    size_t count = restore->count;
    if ((int64_t) count > self->config.keep_finished)
        count = (size_t) self->config.keep_finished;
    if (count == 0 || !self->serving || !self->store) {
        s_restore_end (restore);
        return;
    }
    size_t *indexes = bm_realloc_or_abort (NULL, count * sizeof (size_t),
                                           "the finished jobs to read back");
    for (size_t i = 0; i < count; i++)
        indexes [i] = i;
    s_restore_send (restore, indexes, count);
    free (indexes);
}

//  A round of reads: the records of found [indexes [0..count)].
static void
s_restore_send (s_restore_t *restore, const size_t *indexes, size_t count)
{
    bm_broker_t *self = restore->broker;
    restore->pending = (int) count + 1;     //  Held until every query is out
    for (size_t i = 0; i < count; i++) {
        s_restore_ref_t *ref = (s_restore_ref_t *) zmalloc (sizeof (s_restore_ref_t));
        ref->restore = restore;
        ref->index = indexes [i];
        bm_cmd_t cmd;
        bm_cmd_start (self, &cmd, "HGETALL", "job:", restore->found [indexes [i]].id);
        bm_jobstore_query (self, &cmd, s_on_restore_job, ref);
    }
    if (--restore->pending == 0)
        s_restore_round_done (restore);
}

//  One set's newest ids (ZREVRANGE ... WITHSCORES).
static void
s_on_restore_ids (redisReply *reply, void *arg)
{
    s_restore_t *restore = (s_restore_t *) arg;
    if (reply && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i + 1 < reply->elements; i += 2) {
            const redisReply *el = reply->element [i], *score = reply->element [i + 1];
            if (el->type != REDIS_REPLY_STRING || el->len == 0 || el->len > BM_MAX_ID_LEN + 15
            ||  score->type != REDIS_REPLY_STRING)
                continue;
            if (restore->count == restore->alloc) {
                restore->alloc = restore->alloc ? 2 * restore->alloc : 64;
                restore->found = bm_realloc_or_abort (restore->found, restore->alloc * sizeof (s_found_t),
                                                      "the finished jobs to read back");
            }
            s_found_t *found = &restore->found [restore->count++];
            snprintf (found->id, sizeof found->id, "%s", el->str);
            found->finished_at = strtoll (score->str, NULL, 10);
        }
    }
    if (--restore->pending == 0)
        s_restore_read (restore);
}

static void
s_on_restore_types (redisReply *reply, void *arg)
{
    s_restore_t *restore = (s_restore_t *) arg;
    bm_broker_t *self = restore->broker;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements == 0
    ||  !self->serving || !self->store) {
        s_restore_end (restore);
        return;
    }
    restore->pending = 1;               //  Held until every query is out
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *el = reply->element [i];
        if (el->type != REDIS_REPLY_STRING || el->len == 0 || el->len > BM_MAX_BOT_TYPE_LEN
        ||  memchr (el->str, 0, el->len) || streq (el->str, BM_WEBHOOK_TYPE))
            continue;
        for (int which = 0; which < BM_FINISHED_SETS; which++) {
            bm_cmd_t cmd;
            bm_cmd_start (self, &cmd, "ZREVRANGE", bm_finished_what (which), el->str);
            bm_cmd_arg_str (&cmd, "0");
            bm_cmd_arg_int (&cmd, self->config.keep_finished - 1);
            bm_cmd_arg_str (&cmd, "WITHSCORES");
            restore->pending++;
            bm_jobstore_query (self, &cmd, s_on_restore_ids, restore);
        }
    }
    if (--restore->pending == 0)
        s_restore_read (restore);
}

void
bm_finished_restore (bm_broker_t *self)
{
    if (!self->store || self->config.keep_finished <= 0)
        return;
    s_restore_t *restore = (s_restore_t *) zmalloc (sizeof (s_restore_t));
    restore->broker = self;
    s_sets (self)->restoring++;
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "SMEMBERS", "finished:types", NULL);
    bm_jobstore_query (self, &cmd, s_on_restore_types, restore);
}

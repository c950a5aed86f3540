/*  bm_stats.c - STATS, the metrics registry and the Redis snapshots.  */
#include "bm_broker_internal.h"
#include "bm_lease.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#define BM_BOTS_GONE_MAX    64      //  Workers kept by name per type

//  The totals of a worker that left, as its last HEARTBEAT said.
typedef struct {
    int64_t pid;                //  Its process (0: its READY gave none)
    int64_t recycles, init_failures;
} s_gone_t;

static void
s_gone_destroy (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

void
bm_stats_worker_gone (bm_service_t *service, bm_worker_entry_t *worker)
{
    s_gone_t gone = { .pid = worker->pid };
    bool reported = false;
    for (int i = 0; worker->bots && i < worker->bots->count; i++)
        if (streq (worker->bots->bots [i].type, service->name)) {
            gone.recycles += worker->bots->bots [i].recycles;
            gone.init_failures += worker->bots->bots [i].init_failures;
            reported = true;
        }
    if (!reported)
        return;
    if (!service->bots_gone) {
        service->bots_gone = zhashx_new ();
        zhashx_set_destructor (service->bots_gone, s_gone_destroy);
    }
    //  Kept by name: a worker of that name back with the same process
    //  reports them again itself, and leaves with them again (they
    //  replace these).  An earlier process of that name, or a worker over
    //  the bound, is folded into the type's sums for good.
    const char *key = worker->name;
    s_gone_t *earlier = (s_gone_t *) zhashx_lookup (service->bots_gone, key);
    if (!earlier && zhashx_size (service->bots_gone) >= BM_BOTS_GONE_MAX) {
        earlier = (s_gone_t *) zhashx_first (service->bots_gone);
        key = (const char *) zhashx_cursor (service->bots_gone);
    }
    if (earlier && (earlier->pid != gone.pid || key != worker->name)) {
        service->gone_recycles += earlier->recycles;
        service->gone_init_failures += earlier->init_failures;
    }
    if (earlier) {
        char *doomed = strdup (key);    //  The hash's own copy goes with it
        assert (doomed);
        zhashx_delete (service->bots_gone, doomed);
        free (doomed);
    }
    s_gone_t *kept = (s_gone_t *) bm_calloc_or_abort (sizeof *kept, "a gone worker's bot totals");
    *kept = gone;
    zhashx_insert (service->bots_gone, worker->name, kept);
}

//  The warm bots of a type over the workers that serve it, as their
//  HEARTBEATs said: mode ("spawn" when none runs it warm, "mixed" when
//  they differ; nil when no worker serves it), warm processes (of the
//  workers connected now), recycles and init failures (theirs, and the
//  last totals of the workers that left).
static void
s_pack_bots (bm_service_t *service, msgpack_packer *pk)
{
    const char *mode = NULL;
    int64_t processes = 0;
    int64_t recycles = service->gone_recycles, init_failures = service->gone_init_failures;
    bm_worker_entry_t *worker = (bm_worker_entry_t *) zlistx_first (service->workers);
    while (worker) {
        for (int i = 0; worker->bots && i < worker->bots->count; i++) {
            const bm_codec_bot_pool_t *bot = &worker->bots->bots [i];
            if (!streq (bot->type, service->name))
                continue;
            mode = !mode || streq (mode, bot->mode) ? bot->mode : "mixed";
            processes += bot->processes;
            recycles += bot->recycles;
            init_failures += bot->init_failures;
        }
        worker = (bm_worker_entry_t *) zlistx_next (service->workers);
    }
    //  A worker that left and is back with the same process reports its
    //  totals itself.
    for (s_gone_t *gone = service->bots_gone ? (s_gone_t *) zhashx_first (service->bots_gone) : NULL;
         gone; gone = (s_gone_t *) zhashx_next (service->bots_gone)) {
        const char *name = (const char *) zhashx_cursor (service->bots_gone);
        bool back = false;
        for (worker = (bm_worker_entry_t *) zlistx_first (service->workers); worker && !back;
             worker = (bm_worker_entry_t *) zlistx_next (service->workers))
            back = streq (worker->name, name) && worker->pid == gone->pid;
        if (!back) {
            recycles += gone->recycles;
            init_failures += gone->init_failures;
        }
    }
    if (mode || zlistx_size (service->workers) > 0)
        bm_pack_kv_str (pk, "mode", mode ? mode : "spawn");
    else {
        bm_pack_str (pk, "mode");
        msgpack_pack_nil (pk);
    }
    bm_pack_kv_int (pk, "warmProcesses", processes);
    bm_pack_kv_int (pk, "recycles", recycles);
    bm_pack_kv_int (pk, "initFailures", init_failures);
}

//  rate: {max, periodMs} (null: unlimited), and rateLimited: the starts
//  the limit holds back now (its window is full while jobs, permits and
//  workers' credit are ready: as many as could start but for it).
void
bm_stats_pack_rate (const bm_service_t *service, msgpack_packer *pk)
{
    bm_pack_str (pk, "rate");
    if (!service->rate_max)
        msgpack_pack_nil (pk);
    else {
        msgpack_pack_map (pk, 2);
        bm_pack_kv_int (pk, "max", service->rate_max);
        bm_pack_kv_int (pk, "periodMs", service->rate_period_ms);
    }
}

static void
s_pack_rate (bm_service_t *service, msgpack_packer *pk)
{
    bm_stats_pack_rate (service, pk);
    int64_t held_back = 0;
    if (service->rate_max && !service->paused
    &&  bm_service_rate_room (service, bm_mono_ms_unheld ()) <= 0) {
        int64_t credit = 0;
        bm_worker_entry_t *worker = (bm_worker_entry_t *) zlistx_first (service->workers);
        while (worker) {
            if (!worker->congested && !worker->holding && worker->credit > worker->running)
                credit += worker->credit - worker->running;
            worker = (bm_worker_entry_t *) zlistx_next (service->workers);
        }
        held_back = (int64_t) bm_service_queue_size (service);
        if (held_back > bm_service_permits_free (service))
            held_back = bm_service_permits_free (service);
        if (held_back > credit)
            held_back = credit;
        if (held_back < 0)
            held_back = 0;
    }
    bm_pack_kv_int (pk, "rateLimited", held_back);
}

//  The jobs of service that wait in their worker for a process (prefetched,
//  counted in running): a walk over the jobs of the workers that serve it
//  (a STATS over many types walks each running job once per type its worker
//  serves, not once per type).
static int64_t
s_prefetched (bm_service_t *service)
{
    int64_t count = 0;
    for (bm_worker_entry_t *worker = (bm_worker_entry_t *) zlistx_first (service->workers); worker;
         worker = (bm_worker_entry_t *) zlistx_next (service->workers))
        for (bm_job_t *job = bm_joblist_first (&worker->jobs); job;
             job = bm_joblist_next (&worker->jobs, job))
            count += job->waits && job->service == service;
    return count;
}

void
bm_stats_pack (bm_broker_t *self, msgpack_packer *pk)
{
    bm_pack_str (pk, "types");
    msgpack_pack_map (pk, zhashx_size (self->services));
    bm_service_t *service = (bm_service_t *) zhashx_first (self->services);
    while (service) {
        bm_pack_str (pk, service->name);
        //  Webhook deliveries are no bot processes: their type has no mode
        //  nor warm processes.
        bool bots = !streq (service->name, BM_WEBHOOK_TYPE);
        msgpack_pack_map (pk, bots? 23: 19);    //  19 here, 4 in s_pack_bots
        bm_pack_kv_bool (pk, "paused", service->paused);
        bm_pack_kv_int (pk, "waiting", (int64_t) bm_heap_size (service->queue));
        bm_pack_kv_int (pk, "delayed", service->delayed);
        bm_pack_kv_int (pk, "waitingChildren", service->waiting_children);
        bm_pack_kv_int (pk, "retries", (int64_t) service->retries);
        bm_pack_kv_int (pk, "running", service->usage);
        bm_pack_kv_int (pk, "prefetched", s_prefetched (service));
        bm_pack_kv_int (pk, "completed", (int64_t) (service->earlier_completed + service->completed));
        bm_pack_kv_int (pk, "failed", (int64_t) (service->earlier_failed + service->failed));
        bm_pack_kv_int (pk, "cancelled", (int64_t) (service->earlier_cancelled + service->cancelled));
        bm_pack_kv_int (pk, "limit", service->limit);
        bm_pack_kv_int (pk, "usage", service->usage);
        bm_pack_kv_int (pk, "waitingForPermit", bm_service_waiting_for_permit (service));
        bm_pack_kv_int (pk, "held", service->held);
        bm_pack_kv_int (pk, "workers", (int64_t) zlistx_size (service->workers));
        bm_pack_kv_int (pk, "submitted", (int64_t) (service->earlier_submitted + service->submitted));
        bm_pack_kv_int (pk, "limitKills", (int64_t) service->limit_kills);
        s_pack_rate (service, pk);
        if (bots)
            s_pack_bots (service, pk);
        service = (bm_service_t *) zhashx_next (self->services);
    }
    bm_pack_str (pk, "workers");
    msgpack_pack_array (pk, zhashx_size (self->workers));
    bm_worker_entry_t *worker = (bm_worker_entry_t *) zhashx_first (self->workers);
    while (worker) {
        msgpack_pack_map (pk, 6);
        bm_pack_kv_str (pk, "name", worker->name);
        bm_pack_str (pk, "types");
        msgpack_pack_array (pk, worker->service_count);
        for (int i = 0; i < worker->service_count; i++)
            bm_pack_str (pk, worker->services [i]->name);
        bm_pack_kv_int (pk, "credit", worker->credit);
        bm_pack_kv_int (pk, "running", worker->running);
        bm_pack_kv_int (pk, "lastHeartbeat", worker->last_seen);
        bm_pack_kv_int (pk, "pid", worker->pid);
        worker = (bm_worker_entry_t *) zhashx_next (self->workers);
    }
    bm_pack_str (pk, "totals");
    msgpack_pack_map (pk, 7);
    //  False until the last snapshot of earlier leaders was read: the
    //  counts are then only this process's.  A broker without Redis has
    //  no earlier counts to read: its own are the totals.
    bm_pack_kv_bool (pk, "known", self->totals_known || !self->store);
    bm_pack_kv_int (pk, "submitted", (int64_t) (self->earlier.submitted + self->submitted));
    bm_pack_kv_int (pk, "completed", (int64_t) (self->earlier.completed + self->completed));
    bm_pack_kv_int (pk, "failed", (int64_t) (self->earlier.failed + self->failed));
    bm_pack_kv_int (pk, "cancelled", (int64_t) (self->earlier.cancelled + self->cancelled));
    bm_pack_kv_int (pk, "rejected", (int64_t) (self->earlier.rejected + self->rejected));
    bm_pack_kv_int (pk, "retried", (int64_t) (self->earlier.retried + self->retried));
}

bool
bm_stats_recovering (bm_broker_t *self)
{
    return self->store && self->serving && !self->recovered && bm_store_writable (self->store);
}

const char *
bm_stats_store_refusal (bm_broker_t *self)
{
    if (self->store && !self->recovered && bm_store_writable (self->store))
        return BM_TEXT_RECOVERING;
    const char *refusal = self->store ? bm_store_refusal (self->store) : NULL;
    if (!refusal)
        return "the job store (Redis) is unavailable; retry later";
    //  Redis's own words (its OOM error ends with a full stop).
    int len = (int) strlen (refusal);
    if (len && refusal [len - 1] == '.')
        len--;
    snprintf (self->store_refusal, sizeof self->store_refusal,
              "Redis refused the write: %.*s; retry later", len, refusal);
    return self->store_refusal;
}

void
bm_stats_ready_gauges (bm_broker_t *self)
{
    //  Redis reachable and taking writes, recovered or not, leading or
    //  not: a standby that reaches Redis can take over.  Ready to serve
    //  is redis_up with broker_leader 1 and broker_recovering 0.
    //  Redis refusing the lease (MISCONF) refuses writes too: the lease
    //  is one, and nobody can take it meanwhile.
    bool lease_refused = self->lease && *bm_lease_refused (self->lease);
    bm_series_set (self->m_redis_up, (!self->store || bm_store_writable (self->store))
                                     && !lease_refused ? 1 : 0);
    bm_series_set (self->m_recovering, bm_stats_recovering (self) ? 1 : 0);
    if (self->store) {
        bm_series_set (self->m_redis_refusing, bm_store_refusal (self->store) || lease_refused
                                               ? 1 : 0);
        bm_series_add (self->m_redis_write_errors, (double) bm_store_write_errors (self->store)
                                                   - bm_series_value (self->m_redis_write_errors));
    }
    atomic_store (&self->redis_reached, self->store && bm_store_up (self->store));
}

bool
bm_stats_redis_ok (bm_broker_t *self)
{
    //  As SUBMIT's admission: writable, not merely connected.
    return !self->store || (bm_store_writable (self->store) && self->recovered);
}

static int
s_cmp_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

static void
s_put_count (json_t *object, const char *name, uint64_t count)
{
    json_object_set_new (object, name, json_integer ((json_int_t) count));
}

//  Write the key series to Redis (bounded history) for the dashboard.
void
bm_stats_snapshot (bm_broker_t *self)
{
    //  Not before the totals of earlier leaders are known: a snapshot of
    //  this process's counts alone would be the one the next leader
    //  continues from.
    if (!self->store || !bm_store_up (self->store) || !self->recovered || !self->totals_known)
        return;
    //  Rates over the time since the last snapshot written: after one or
    //  more skipped (Redis away), the jobs that ended meanwhile are spread
    //  over that whole time, not counted as one interval's.
    int64_t now = bm_mono_ms ();
    double interval = self->snap_written && now > self->snap_written
                    ? (double) (now - self->snap_written) / 1000.0
                    : (double) self->config.snapshot_interval_s;
    self->snap_written = now;
    json_t *snap = json_object ();
    json_object_set_new (snap, "t", json_integer (bm_now_ms ()));
    json_t *types = json_object ();
    bm_service_t *service = (bm_service_t *) zhashx_first (self->services);
    while (service) {
        json_t *t = json_object ();
        json_object_set_new (t, "waiting", json_integer ((json_int_t) bm_heap_size (service->queue)));
        json_object_set_new (t, "running", json_integer (service->usage));
        json_object_set_new (t, "delayed", json_integer (service->delayed));
        json_object_set_new (t, "waitingChildren", json_integer (service->waiting_children));
        json_object_set_new (t, "paused", json_boolean (service->paused));
        json_object_set_new (t, "limit", json_integer (service->limit));
        s_put_count (t, "submitted", service->earlier_submitted + service->submitted);
        s_put_count (t, "completed", service->earlier_completed + service->completed);
        s_put_count (t, "failed", service->earlier_failed + service->failed);
        s_put_count (t, "cancelled", service->earlier_cancelled + service->cancelled);
        json_object_set_new (t, "throughput",
                             json_real ((service->completed - service->snap_completed) / interval));
        service->snap_completed = service->completed;
        size_t n = service->duration_count < BM_DURATION_SAMPLES
                 ? service->duration_count : BM_DURATION_SAMPLES;
        if (n) {
            qsort (service->durations, n, sizeof (double), s_cmp_double);
            json_object_set_new (t, "p50", json_real (service->durations [n * 50 / 100]));
            json_object_set_new (t, "p95", json_real (service->durations [n * 95 / 100]));
            json_object_set_new (t, "p99", json_real (service->durations [n * 99 / 100]));
        }
        else {
            json_object_set_new (t, "p50", json_null ());
            json_object_set_new (t, "p95", json_null ());
            json_object_set_new (t, "p99", json_null ());
        }
        service->duration_count = 0;
        json_object_set_new (types, service->name, t);
        service = (bm_service_t *) zhashx_next (self->services);
    }
    json_object_set_new (snap, "types", types);
    json_t *wh = json_object ();
    s_put_count (wh, "delivered", self->earlier.wh_delivered + self->wh_delivered);
    s_put_count (wh, "failed", self->earlier.wh_failed + self->wh_failed);
    json_object_set_new (snap, "webhook", wh);
    json_t *totals = json_object ();
    s_put_count (totals, "submitted", self->earlier.submitted + self->submitted);
    s_put_count (totals, "completed", self->earlier.completed + self->completed);
    s_put_count (totals, "failed", self->earlier.failed + self->failed);
    s_put_count (totals, "cancelled", self->earlier.cancelled + self->cancelled);
    s_put_count (totals, "rejected", self->earlier.rejected + self->rejected);
    s_put_count (totals, "retried", self->earlier.retried + self->retried);
    json_object_set_new (snap, "totals", totals);
    char *text = bm_json_dumps (snap, JSON_COMPACT);
    json_decref (snap);
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "LPUSH", "snapshots", NULL);
    bm_cmd_arg_str (&cmd, text);
    bm_jobstore_issue (self, &cmd, false, NULL, NULL);
    bm_cmd_start (self, &cmd, "LTRIM", "snapshots", NULL);
    bm_cmd_arg_int (&cmd, 0);
    bm_cmd_arg_int (&cmd, self->config.snapshot_history - 1);
    bm_jobstore_issue (self, &cmd, false, NULL, NULL);
    free (text);
}

//  This process's resident memory in kB (0 when unknown).
static int64_t
s_rss_kb (void)
{
    long pages = 0;
    FILE *file = fopen ("/proc/self/statm", "r");
    if (file) {
        if (fscanf (file, "%*s %ld", &pages) != 1)
            pages = 0;
        fclose (file);
    }
    return (int64_t) pages * (sysconf (_SC_PAGESIZE) / 1024);
}

void
bm_stats_trim (const char *after)
{
#ifdef __GLIBC__
    //  A recovery's reads (HSCAN pages of idempotency keys, job records,
    //  the finished jobs of the listings) are freed once parsed, between
    //  what stays (the index, the jobs): glibc keeps those pages resident
    //  until told, tens of MB after a large recovery.
    int64_t before = s_rss_kb ();
    int64_t started = bm_mono_ms ();
    malloc_trim (0);
    int64_t took = bm_mono_ms () - started;
    int64_t now = s_rss_kb ();
    bm_info (NULL, "memory: %.1f MB resident after %s (%.1f MB of its reads given back "
             "in %" PRId64 " ms)", (double) now / 1024, after, (double) (before - now) / 1024, took);
#else
    (void) after;
#endif
}

//  A count of a snapshot's object: 0 when missing or not a count.
static uint64_t
s_count (json_t *object, const char *name)
{
    json_t *value = json_object_get (object, name);
    return json_is_integer (value) && json_integer_value (value) > 0
         ? (uint64_t) json_integer_value (value) : 0;
}

//  LINDEX snapshots 0: the last snapshot an earlier leader (or this
//  broker before its restart) wrote, whose counts this one continues.
static void
s_on_last_snapshot (redisReply *reply, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    if (!reply) {
        //  Redis went away before answering: the recovery starts over
        //  once it is back and asks again; until then no snapshot is
        //  written (it would be this process's counts alone) and STATS
        //  says the totals are not known.
        self->totals_asked = false;
        bm_warn (NULL, "the last metric snapshot could not be read (no answer from redis): "
                 "asked again when redis is back");
        return;
    }
    self->totals_known = true;
    if (reply->type == REDIS_REPLY_ERROR) {
        bm_warn (NULL, "the last metric snapshot could not be read (%s): the totals of STATS "
                 "start from 0", reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_STRING) {
        bm_info (NULL, "no metric snapshot in redis: the totals of STATS start from 0");
        return;
    }
    json_error_t error;
    json_t *snap = json_loadb (reply->str, reply->len, 0, &error);
    if (!json_is_object (snap)) {
        bm_warn (NULL, "the last metric snapshot in redis is not a JSON object (%s): the "
                 "totals of STATS start from 0", snap ? "another value" : error.text);
        json_decref (snap);
        return;
    }
    json_t *totals = json_object_get (snap, "totals");
    self->earlier.submitted = s_count (totals, "submitted");
    self->earlier.completed = s_count (totals, "completed");
    self->earlier.failed = s_count (totals, "failed");
    self->earlier.cancelled = s_count (totals, "cancelled");
    self->earlier.rejected = s_count (totals, "rejected");
    self->earlier.retried = s_count (totals, "retried");
    json_t *wh = json_object_get (snap, "webhook");
    self->earlier.wh_delivered = s_count (wh, "delivered");
    self->earlier.wh_failed = s_count (wh, "failed");
    //  The per-type counts wait for the end of the recovery
    //  (bm_stats_earlier_types): only the types still known then go on.
    const char *name;
    json_t *counts;
    size_t types = 0;
    if (!self->earlier_types) {
        self->earlier_types = zhashx_new ();
        zhashx_set_destructor (self->earlier_types, (zhashx_destructor_fn *) zstr_free);
    }
    zhashx_purge (self->earlier_types);
    json_object_foreach (json_object_get (snap, "types"), name, counts) {
        if (!bm_valid_bot_type (name, strlen (name)) && !streq (name, BM_WEBHOOK_TYPE))
            continue;
        uint64_t *earlier = (uint64_t *) bm_calloc_or_abort (4 * sizeof *earlier,
                                                             "a type's earlier counts");
        earlier [0] = s_count (counts, "submitted");
        earlier [1] = s_count (counts, "completed");
        earlier [2] = s_count (counts, "failed");
        earlier [3] = s_count (counts, "cancelled");
        zhashx_update (self->earlier_types, name, earlier);
        types++;
    }
    json_t *at = json_object_get (snap, "t");
    bm_info (NULL, "totals continue from the last metric snapshot (written %" PRId64 " ms "
             "ago, %zu bot types): %" PRIu64 " submitted, %" PRIu64 " completed, %" PRIu64
             " failed, %" PRIu64 " cancelled", json_is_integer (at)
             ? bm_now_ms () - (int64_t) json_integer_value (at) : (int64_t) -1, types,
             self->earlier.submitted, self->earlier.completed, self->earlier.failed,
             self->earlier.cancelled);
    json_decref (snap);
}

void
bm_stats_earlier_types (bm_broker_t *self)
{
    if (!self->earlier_types)
        return;
    size_t forgotten = 0;
    uint64_t *earlier = (uint64_t *) zhashx_first (self->earlier_types);
    while (earlier) {
        const char *name = (const char *) zhashx_cursor (self->earlier_types);
        bm_service_t *service = (bm_service_t *) zhashx_lookup (self->services, name);
        if (service) {
            service->earlier_submitted = earlier [0];
            service->earlier_completed = earlier [1];
            service->earlier_failed = earlier [2];
            service->earlier_cancelled = earlier [3];
        }
        else
            forgotten++;
        earlier = (uint64_t *) zhashx_next (self->earlier_types);
    }
    if (forgotten)
        bm_info (NULL, "%zu bot types of the last metric snapshot are no longer known (no "
                 "worker served them for BROKER_TYPE_TTL_MS, no job or config names them): "
                 "their counts are not carried on", forgotten);
    zhashx_destroy (&self->earlier_types);
}

void
bm_stats_continue (bm_broker_t *self)
{
    if (self->totals_asked)
        return;
    self->totals_asked = true;
    //  Snapshots off: no snapshot to continue from (an old one would be
    //  stale), the counts are this process's.
    if (self->config.snapshot_interval_s <= 0) {
        self->totals_known = true;
        return;
    }
    bm_cmd_t cmd;
    bm_cmd_start (self, &cmd, "LINDEX", "snapshots", NULL);
    bm_cmd_arg_int (&cmd, 0);
    bm_jobstore_query (self, &cmd, s_on_last_snapshot, self);
}

//  The label values of the broker's labelled counters that are a closed
//  set.  Each series is made at 0 when its family is registered, so
//  Prometheus has a sample before the first event and rate() or increase()
//  sees that event (a series that appears at 1 has no increase).  A code
//  added where a counter is incremented belongs in its list too.
static const char *s_rejected_reasons [] = {         //  SUBMIT refusals (bm_broker_clients.c)
    "bad_request", "shutting_down", "unknown_bot_type", "idempotency_key_reused",
    "queue_full", "store_unavailable", "payload_too_large", NULL
};
static const char *s_frame_reasons [] = {            //  protocol.md section 7a
    "bad_header", "bad_command", "bad_frame", "bad_request", "not_owner",
    "name_in_use", "not_a_worker", "types_changed", NULL
};
static const char *s_requeue_reasons [] = { "worker_lost", "process_lost", "released", NULL };
//  A worker name taken over by a new connection: a reconnect or restart,
//  or two live processes sharing the name (bm_broker_workers.c).
static const char *s_replace_reasons [] = { "reconnect", "duplicate_name", NULL };
static const char *s_drop_reasons [] = { "peer_queue_full", "peer_gone", NULL };
static const char *s_handshake_reasons [] = { "auth", "protocol", "no_detail", NULL };

//  The resource limits a worker names in DONE error.limit; any other name
//  is counted as "other".
const char *bm_stats_limit_names [] = { "memory", "cpu", "pids", "files", NULL };

static void
s_series_at_zero (bm_metric_t *family, const char **values)
{
    for (int i = 0; values [i]; i++)
        bm_metric_series (family, values [i]);
}

void
bm_stats_setup_metrics (bm_broker_t *self)
{
    bm_metrics_t *m = self->metrics = bm_metrics_new ();
    self->mf_executions = bm_metrics_counter (m, "bot_executions_total",
        "Bot executions that ended, by bot type and status", "bot_type,status");
    static const double duration_buckets [] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
        2.5, 5, 10, 30, 60, 120, 300, 600 };
    self->mf_duration = bm_metrics_histogram (m, "bot_execution_duration_seconds",
        "Run time of completed bot executions", "bot_type", duration_buckets,
        sizeof duration_buckets / sizeof duration_buckets [0]);
    self->mf_queue = bm_metrics_gauge (m, "queue_size", "Jobs waiting in the queue", "queue_name");
    self->mf_delayed = bm_metrics_gauge (m, "delayed_queue_size",
        "Jobs waiting for their due time (delayMs, runAt, or a retry's backoff)", "queue_name");
    self->mf_retries = bm_metrics_counter (m, "bot_retries_total",
        "Failed bot runs that will run again after their backoff", "bot_type");
    self->mf_schedule_runs = bm_metrics_counter (m, "schedule_runs_total",
        "Jobs made by a repeatable schedule, by its key", "schedule");
    self->mf_usage = bm_metrics_gauge (m, "semaphore_usage",
        "Permits of the bot type's semaphore in use (jobs running)", "semaphore_name");
    self->mf_waiting = bm_metrics_gauge (m, "semaphore_waiting",
        "Tasks waiting for semaphores: ready queued jobs of the bot type while all its permits are in use", "semaphore_name");
    self->mf_limit = bm_metrics_gauge (m, "semaphore_limit",
        "Size of the bot type's semaphore (MAX_<TYPE>_BOTS)", "semaphore_name");
    self->mf_limit_kills = bm_metrics_counter (m, "bot_limit_kills_total",
        "Bot runs that hit a resource limit of their type (memory, cpu, pids, files)",
        "bot_type,limit");
    self->m_dependent_entries = bm_metric_series (bm_metrics_gauge (m,
        "broker_dependency_watches", "Entries of the dependents index: a job waiting "
        "(waiting-children) for a dependency that has not ended, or one that left the wait "
        "and is not swept yet (at most as many again)", NULL));
    self->mf_submitted = bm_metrics_counter (m, "broker_jobs_submitted_total",
        "Jobs accepted for submission", "bot_type");
    self->mf_rejected = bm_metrics_counter (m, "broker_jobs_rejected_total",
        "Submissions rejected, by reason", "reason");
    self->mf_wait = bm_metrics_histogram (m, "job_wait_seconds",
        "Time jobs spent queued before they started", "bot_type", NULL, 0);
    self->mf_frames = bm_metrics_counter (m, "broker_frames_rejected_total",
        "Messages the broker could not accept, by reason", "reason");
    self->mf_handshakes = bm_metrics_counter (m, "broker_handshakes_failed_total",
        "Connections refused at the CURVE handshake (auth: key not accepted; "
        "protocol, no_detail: e.g. a wrong server key or no CURVE)", "reason");
    self->mf_redispatched = bm_metrics_counter (m, "broker_jobs_requeued_total",
        "Running jobs put back in the queue, by reason", "reason");
    self->mf_replaced = bm_metrics_counter (m, "broker_workers_replaced_total",
        "Worker connections replaced by a new one under the same name (reconnect: a "
        "reconnect or restart; duplicate_name: two live processes share the name)", "reason");
    self->mf_dropped = bm_metrics_counter (m, "broker_messages_dropped_total",
        "Messages not sent because the peer was gone or its queue full", "reason");
    self->m_workers = bm_metric_series (bm_metrics_gauge (m, "broker_workers_connected",
        "Bot workers connected to the broker (webhook managers, which connect as workers "
        "of the webhook type only, are not counted: broker_webhook_managers_connected)",
        NULL));
    self->m_webhook_managers = bm_metric_series (bm_metrics_gauge (m,
        "broker_webhook_managers_connected",
        "Webhook managers connected to the broker (to take webhook deliveries)", NULL));
    self->mf_type_workers = bm_metrics_gauge (m, "broker_workers",
        "Workers connected to the broker that serve the bot type", "bot_type");
    self->mf_queue_limit = bm_metrics_gauge (m, "queue_limit",
        "Bound of the queue (MAX_QUEUE, MAX_QUEUE_<TYPE>): submissions beyond it are "
        "rejected queue_full", "queue_name");
    self->mf_rate_limited = bm_metrics_counter (m, "bot_rate_limited_total",
        "Job starts of the bot type its rate limit (RATE_<TYPE>) delayed: a job, a permit and "
        "a worker's credit were ready but the window was full", "bot_type");
    self->m_redis_up = bm_metric_series (bm_metrics_gauge (m, "redis_up",
        "1 when the broker's job store (Redis) is connected and takes writes (a standby's "
        "too: it could take over); serving also needs broker_recovering 0", NULL));
    self->m_recovering = bm_metric_series (bm_metrics_gauge (m, "broker_recovering",
        "1 while the broker reads its queues back from Redis (after a start or a failover)",
        NULL));
    self->m_store_pending = bm_metric_series (bm_metrics_gauge (m, "broker_store_pending",
        "Redis writes buffered or in flight", NULL));
    self->m_redis_write_errors = bm_metric_series (bm_metrics_counter (m,
        "broker_redis_write_errors_total",
        "Writes Redis answered with an error (OOM under maxmemory, MISCONF, READONLY): "
        "one per write refused; a fenced or Sentinel-mode group refused as a whole counts one",
        NULL));
    self->m_redis_refusing = bm_metric_series (bm_metrics_gauge (m, "broker_redis_writes_refused",
        "1 while Redis refuses the broker's writes (new jobs are refused store_unavailable; "
        "the writes are kept and sent again), or its lease (MISCONF: no broker can lead)", NULL));
    s_series_at_zero (self->mf_rejected, s_rejected_reasons);
    s_series_at_zero (self->mf_frames, s_frame_reasons);
    s_series_at_zero (self->mf_redispatched, s_requeue_reasons);
    s_series_at_zero (self->mf_dropped, s_drop_reasons);
    s_series_at_zero (self->mf_replaced, s_replace_reasons);
    s_series_at_zero (self->mf_handshakes, s_handshake_reasons);
}

//  A worker registered (delta +1) or is being deleted (-1, after it left
//  its services' lists): broker_workers_connected counts the bot workers,
//  broker_webhook_managers_connected the workers of the webhook type (a
//  webhook manager serves that type only), broker_workers{bot_type} the
//  workers serving each bot type.
void
bm_stats_worker_counted (bm_broker_t *self, const bm_worker_entry_t *worker, int delta)
{
    bool bot_worker = false, webhook_manager = false;
    for (int i = 0; i < worker->service_count; i++) {
        bm_service_t *service = worker->services [i];
        bm_series_set (service->m_workers, (double) zlistx_size (service->workers));
        if (streq (service->name, BM_WEBHOOK_TYPE))
            webhook_manager = true;
        else
            bot_worker = true;
    }
    if (bot_worker) {
        self->bot_workers += delta;
        bm_series_set (self->m_workers, (double) self->bot_workers);
    }
    if (webhook_manager) {
        self->webhook_managers += delta;
        bm_series_set (self->m_webhook_managers, (double) self->webhook_managers);
    }
}

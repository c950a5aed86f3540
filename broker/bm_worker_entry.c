/*  bm_worker_entry.c - a worker as the broker sees it.  See
    bm_worker_entry.h.  */
#include "bm_broker_internal.h"

static void
s_stopping_free (void **item)
{
    free (*item);
    *item = NULL;
}

bm_worker_entry_t *
bm_worker_entry_new (const char *key, zframe_t *identity, const char *name, int64_t credit)
{
    bm_worker_entry_t *self = (bm_worker_entry_t *) zmalloc (sizeof (bm_worker_entry_t));
    self->key = strdup (key);
    self->identity = zframe_dup (identity);
    self->name = strdup (name);
    if (!self->key || !self->identity || !self->name) {
        bm_error (NULL, "out of memory registering worker %s", name);
        abort ();
    }
    self->credit = credit;
    bm_joblist_init (&self->jobs, BM_JOBLIST_WORKER);
    self->stopping = zlistx_new ();
    zlistx_set_destructor (self->stopping, s_stopping_free);
    return self;
}

void
bm_worker_entry_destroy (bm_worker_entry_t **self_p)
{
    if (*self_p) {
        bm_worker_entry_t *self = *self_p;
        free (self->key);
        free (self->name);
        zframe_destroy (&self->identity);
        zlistx_destroy (&self->stopping);
        zhashx_destroy (&self->reported);
        free (self->bots);
        free (self);
        *self_p = NULL;
    }
}

bool
bm_worker_entry_add_service (bm_worker_entry_t *self, bm_service_t *service)
{
    if (self->service_count == BM_MAX_WORKER_TYPES)
        return false;
    for (int i = 0; i < self->service_count; i++)
        if (self->services [i] == service)
            return false;
    self->services [self->service_count++] = service;
    return true;
}

int64_t
bm_worker_entry_free_credit (const bm_worker_entry_t *self)
{
    return self->credit > self->running ? self->credit - self->running : 0;
}

void
bm_worker_entry_stopping_add (bm_worker_entry_t *self, const char *job_id, bm_service_t *service,
                              const char *reason)
{
    bm_stopping_t *stop = (bm_stopping_t *) zmalloc (sizeof (bm_stopping_t));
    snprintf (stop->id, sizeof stop->id, "%s", job_id);
    stop->service = service;
    snprintf (stop->reason, sizeof stop->reason, "%s", reason);
    zlistx_add_end (self->stopping, stop);
}

const char *
bm_worker_entry_stopping_reason (bm_worker_entry_t *self, const char *job_id)
{
    bm_stopping_t *stop = (bm_stopping_t *) zlistx_first (self->stopping);
    while (stop) {
        if (streq (stop->id, job_id))
            return stop->reason;
        stop = (bm_stopping_t *) zlistx_next (self->stopping);
    }
    return NULL;
}

bool
bm_worker_entry_stopping_holds (bm_worker_entry_t *self, const char *job_id)
{
    return bm_worker_entry_stopping_reason (self, job_id) != NULL;
}

bm_service_t *
bm_worker_entry_stopping_take (bm_worker_entry_t *self, const char *job_id)
{
    bm_stopping_t *stop = (bm_stopping_t *) zlistx_first (self->stopping);
    while (stop) {
        if (streq (stop->id, job_id)) {
            bm_service_t *service = stop->service;
            zlistx_delete (self->stopping, zlistx_cursor (self->stopping));
            return service;
        }
        stop = (bm_stopping_t *) zlistx_next (self->stopping);
    }
    return NULL;
}

bool
bm_name_streak_replace (bm_name_streak_t *self, int64_t now_ms, const char *who,
                        const char *old_who)
{
    if (!self->last_ms || now_ms - self->last_ms > BM_NAME_STREAK_QUIET_MS)
        memset (self, 0, sizeof *self);
    //  The same process on a new connection (its TCP connection reset): a
    //  reconnect, not a second process.  Kept out of the ring, or its next
    //  reconnect would find itself there.
    if (*who && streq (who, old_who))
        return false;
    bool flaps = false;
    if (*who) {
        for (int i = 0; i < BM_NAME_GONE_MAX; i++)
            if (streq (self->gone [i], who))
                flaps = true;
    }
    else
        flaps = self->last_ms && now_ms - self->last_ms <= BM_NAME_FLAP_MS;
    snprintf (self->gone [self->gone_next], BM_NAME_WHO_LEN, "%s", old_who);
    self->gone_next = (self->gone_next + 1) % BM_NAME_GONE_MAX;
    self->count++;
    self->last_ms = now_ms;
    return flaps;
}

//  --------------------------------------------------------------------------
//  Self test

void
bm_worker_entry_test (bool verbose)
{
    (void) verbose;
    printf (" * bm_worker_entry: ");
    zframe_t *identity = zframe_new ("\x00\x01", 2);
    bm_worker_entry_t *worker = bm_worker_entry_new ("0001", identity, "w-1", 2);
    zframe_destroy (&identity);
    BM_CHECK (worker && streq (worker->key, "0001") && streq (worker->name, "w-1"));
    BM_CHECK (zframe_size (worker->identity) == 2 && worker->service_count == 0);

    //  Free credit: credit less the slots in use, never below 0 (a
    //  second READY may lower the credit under what runs).
    BM_CHECK (bm_worker_entry_free_credit (worker) == 2);
    worker->running = 3;
    BM_CHECK (bm_worker_entry_free_credit (worker) == 0);
    worker->running = 0;

    //  Services: each once, at most BM_MAX_WORKER_TYPES.
    bm_service_t *python = bm_service_new ("python", 1, 10);
    bm_service_t *node = bm_service_new ("node", 1, 10);
    BM_CHECK (bm_worker_entry_add_service (worker, python));
    BM_CHECK (!bm_worker_entry_add_service (worker, python));
    BM_CHECK (bm_worker_entry_add_service (worker, node) && worker->service_count == 2);
    for (int i = 2; i < BM_MAX_WORKER_TYPES; i++)
        worker->services [worker->service_count++] = node;      //  Fill it up
    bm_service_t *more = bm_service_new ("more", 1, 10);
    BM_CHECK (!bm_worker_entry_add_service (worker, more));

    //  Stopping jobs: taken once each, by id, with their service.
    bm_worker_entry_stopping_add (worker, "j-1", python, "cancelled");
    bm_worker_entry_stopping_add (worker, "j-2", node, "timeout");
    BM_CHECK (zlistx_size (worker->stopping) == 2);
    BM_CHECK (bm_worker_entry_stopping_holds (worker, "j-2"));
    BM_CHECK (streq (bm_worker_entry_stopping_reason (worker, "j-2"), "timeout"));
    BM_CHECK (bm_worker_entry_stopping_take (worker, "j-2") == node);
    BM_CHECK (!bm_worker_entry_stopping_holds (worker, "j-2"));
    BM_CHECK (bm_worker_entry_stopping_holds (worker, "j-1"));
    BM_CHECK (bm_worker_entry_stopping_take (worker, "j-2") == NULL);
    BM_CHECK (bm_worker_entry_stopping_take (worker, "j-3") == NULL);
    BM_CHECK (zlistx_size (worker->stopping) == 1);

    //  Destroying frees what is left on the list (ASan checks).
    bm_worker_entry_destroy (&worker);
    BM_CHECK (worker == NULL);
    bm_worker_entry_destroy (&worker);                         //  Idempotent
    bm_service_destroy (&python);
    bm_service_destroy (&node);
    bm_service_destroy (&more);
    //  A name's streak: a restart (a new pid each time) never flaps; a
    //  replaced process that comes back does, and so does a name replaced
    //  twice within BM_NAME_FLAP_MS by connections with no pid; the
    //  streak ends after BM_NAME_STREAK_QUIET_MS with no replacement.
    bm_name_streak_t streak = { 0 };
    BM_CHECK (!bm_name_streak_replace (&streak, 1000, "pid 2 at 10.0.0.1", "pid 1 at 10.0.0.1"));
    BM_CHECK (!bm_name_streak_replace (&streak, 1500, "pid 3 at 10.0.0.1", "pid 2 at 10.0.0.1"));
    BM_CHECK (streak.count == 2);
    BM_CHECK (bm_name_streak_replace (&streak, 2500, "pid 2 at 10.0.0.1", "pid 3 at 10.0.0.1"));
    BM_CHECK (bm_name_streak_replace (&streak, 40000, "pid 3 at 10.0.0.1", "pid 2 at 10.0.0.1"));
    BM_CHECK (streak.count == 4);
    //  The same pid from another host is another process.
    BM_CHECK (!bm_name_streak_replace (&streak, 41000, "pid 3 at 10.0.0.2", "pid 3 at 10.0.0.1"));
    BM_CHECK (!bm_name_streak_replace (&streak, 41000 + BM_NAME_STREAK_QUIET_MS + 1,
                                       "pid 3 at 10.0.0.1", "pid 3 at 10.0.0.2"));
    BM_CHECK (streak.count == 1);
    bm_name_streak_t anonymous = { 0 };
    BM_CHECK (!bm_name_streak_replace (&anonymous, 1000, "", ""));
    BM_CHECK (bm_name_streak_replace (&anonymous, 1000 + BM_NAME_FLAP_MS, "", ""));
    BM_CHECK (!bm_name_streak_replace (&anonymous, 1001 + 2 * BM_NAME_FLAP_MS, "", ""));
    //  One process whose connection is reset again and again (same pid,
    //  same address) reconnects each time: never a flap, never in the
    //  ring, so a second process taking the name later is judged alone.
    bm_name_streak_t resets = { 0 };
    for (int i = 0; i < 3; i++)
        BM_CHECK (!bm_name_streak_replace (&resets, 1000 + i * 100, "pid 5 at 10.0.0.1",
                                           "pid 5 at 10.0.0.1"));
    BM_CHECK (!bm_name_streak_replace (&resets, 2000, "pid 6 at 10.0.0.2", "pid 5 at 10.0.0.1"));
    BM_CHECK (!bm_name_streak_replace (&resets, 2100, "pid 6 at 10.0.0.2", "pid 6 at 10.0.0.2"));
    BM_CHECK (bm_name_streak_replace (&resets, 3000, "pid 5 at 10.0.0.1", "pid 6 at 10.0.0.2"));

    printf ("OK\n");
}

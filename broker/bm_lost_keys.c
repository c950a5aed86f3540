/*  bm_lost_keys.c - with CURVE, the key that may reclaim a lost run.  */
#include "bm_lost_keys.h"
#include "bm_selftest.h"

#include <czmq.h>

typedef struct {
    char key [41];              //  Z85 public key of the worker that ran it
    void *handle;               //  Its job id's place in order
} s_entry_t;

struct _bm_lost_keys_t {
    zhashx_t *entries;          //  job id -> s_entry_t (owned)
    zlistx_t *order;            //  Job ids, oldest first (owned strings)
    size_t max;                 //  Entries kept at most
    bm_lost_keys_dropped_fn *dropped;
    void *arg;
};

static void
s_free (void **item)
{
    free (*item);
    *item = NULL;
}

bm_lost_keys_t *
bm_lost_keys_new (size_t max, bm_lost_keys_dropped_fn *dropped, void *arg)
{
    assert (max >= 1);
    bm_lost_keys_t *self = (bm_lost_keys_t *) zmalloc (sizeof (bm_lost_keys_t));
    self->entries = zhashx_new ();
    zhashx_set_destructor (self->entries, s_free);
    self->order = zlistx_new ();
    zlistx_set_destructor (self->order, s_free);
    self->max = max;
    self->dropped = dropped;
    self->arg = arg;
    return self;
}

void
bm_lost_keys_destroy (bm_lost_keys_t **self_p)
{
    if (*self_p) {
        bm_lost_keys_t *self = *self_p;
        zhashx_destroy (&self->entries);
        zlistx_destroy (&self->order);
        free (self);
        *self_p = NULL;
    }
}

void
bm_lost_keys_put (bm_lost_keys_t *self, const char *job_id, const char *key)
{
    s_entry_t *entry = (s_entry_t *) zhashx_lookup (self->entries, job_id);
    if (entry) {
        zlistx_move_end (self->order, entry->handle);
        snprintf (entry->key, sizeof entry->key, "%s", key);
        return;
    }
    while (zhashx_size (self->entries) >= self->max) {
        char *oldest = (char *) zlistx_detach (self->order, NULL);
        zhashx_delete (self->entries, oldest);
        if (self->dropped)
            self->dropped (oldest, self->arg);
        free (oldest);
    }
    entry = (s_entry_t *) zmalloc (sizeof (s_entry_t));
    snprintf (entry->key, sizeof entry->key, "%s", key);
    entry->handle = zlistx_add_end (self->order, strdup (job_id));
    zhashx_insert (self->entries, job_id, entry);
}

const char *
bm_lost_keys_lookup (bm_lost_keys_t *self, const char *job_id)
{
    s_entry_t *entry = (s_entry_t *) zhashx_lookup (self->entries, job_id);
    return entry ? entry->key : NULL;
}

void
bm_lost_keys_delete (bm_lost_keys_t *self, const char *job_id)
{
    s_entry_t *entry = (s_entry_t *) zhashx_lookup (self->entries, job_id);
    if (entry) {
        zlistx_delete (self->order, entry->handle);
        zhashx_delete (self->entries, job_id);
    }
}

size_t
bm_lost_keys_size (bm_lost_keys_t *self)
{
    return zhashx_size (self->entries);
}

//  --------------------------------------------------------------------------
//  Self-test

static void
s_on_dropped (const char *job_id, void *arg)
{
    char *dropped = (char *) arg;
    strcat (dropped, job_id);
    strcat (dropped, " ");
}

void
bm_lost_keys_test (bool verbose)
{
    if (verbose)
        printf (" * bm_lost_keys: ");
    char dropped [256] = "";
    bm_lost_keys_t *lost = bm_lost_keys_new (3, s_on_dropped, dropped);
    BM_CHECK (bm_lost_keys_lookup (lost, "j1") == NULL);

    //  Three fit; each job keeps the key that ran it.
    bm_lost_keys_put (lost, "j1", "keyA");
    bm_lost_keys_put (lost, "j2", "keyB");
    bm_lost_keys_put (lost, "j3", "keyA");
    BM_CHECK (bm_lost_keys_size (lost) == 3 && !*dropped);
    BM_CHECK (streq (bm_lost_keys_lookup (lost, "j2"), "keyB"));

    //  A fourth drops the oldest only, and says which.
    bm_lost_keys_put (lost, "j4", "keyC");
    BM_CHECK (bm_lost_keys_size (lost) == 3 && streq (dropped, "j1 "));
    BM_CHECK (bm_lost_keys_lookup (lost, "j1") == NULL);
    BM_CHECK (streq (bm_lost_keys_lookup (lost, "j2"), "keyB"));

    //  A job lost again takes its new key and becomes the newest: j3 is
    //  then the oldest.
    bm_lost_keys_put (lost, "j2", "keyD");
    BM_CHECK (streq (bm_lost_keys_lookup (lost, "j2"), "keyD") && bm_lost_keys_size (lost) == 3);
    bm_lost_keys_put (lost, "j5", "keyE");
    BM_CHECK (streq (dropped, "j1 j3 "));
    BM_CHECK (streq (bm_lost_keys_lookup (lost, "j2"), "keyD"));

    //  A reclaimed run's entry goes; there is room again, nothing dropped.
    bm_lost_keys_delete (lost, "j4");
    bm_lost_keys_delete (lost, "j4");
    BM_CHECK (bm_lost_keys_size (lost) == 2 && bm_lost_keys_lookup (lost, "j4") == NULL);
    bm_lost_keys_put (lost, "j6", "keyF");
    BM_CHECK (streq (dropped, "j1 j3 ") && bm_lost_keys_size (lost) == 3);

    bm_lost_keys_destroy (&lost);
    bm_lost_keys_destroy (&lost);
    BM_CHECK (lost == NULL);

    //  Many: the bound holds, the newest are kept.
    lost = bm_lost_keys_new (1000, NULL, NULL);
    char id [32];
    for (int i = 0; i < 5000; i++) {
        snprintf (id, sizeof id, "job-%d", i);
        bm_lost_keys_put (lost, id, "k");
    }
    BM_CHECK (bm_lost_keys_size (lost) == 1000);
    BM_CHECK (bm_lost_keys_lookup (lost, "job-3999") == NULL);
    BM_CHECK (bm_lost_keys_lookup (lost, "job-4000") != NULL);
    bm_lost_keys_destroy (&lost);
    if (verbose)
        printf ("OK\n");
}

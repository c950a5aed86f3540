/*  bm_idem.c - the idempotency index: idempotencyKey -> first job id.  */
#include "bm_idem.h"
#include "bm_proto.h"
#include "bm_selftest.h"

#include <czmq.h>

typedef struct {
    char job_id [BM_MAX_ID_LEN + 1];    //  The first job with the key
    int64_t expires;                    //  Epoch ms
} s_entry_t;

struct _bm_idem_t {
    zhashx_t *entries;          //  key -> s_entry_t (owned)
    zlistx_t *order;            //  keys by insertion (owned strings); a key
                                //  put again appears again
};

static void
s_free (void **item)
{
    free (*item);
    *item = NULL;
}

bm_idem_t *
bm_idem_new (void)
{
    bm_idem_t *self = (bm_idem_t *) zmalloc (sizeof (bm_idem_t));
    self->entries = zhashx_new ();
    zhashx_set_destructor (self->entries, s_free);
    self->order = zlistx_new ();
    zlistx_set_destructor (self->order, s_free);
    return self;
}

void
bm_idem_destroy (bm_idem_t **self_p)
{
    if (*self_p) {
        zhashx_destroy (&(*self_p)->entries);
        zlistx_destroy (&(*self_p)->order);
        free (*self_p);
        *self_p = NULL;
    }
}

const char *
bm_idem_lookup (bm_idem_t *self, const char *key, int64_t now)
{
    s_entry_t *entry = (s_entry_t *) zhashx_lookup (self->entries, key);
    return entry && entry->expires > now ? entry->job_id : NULL;
}

void
bm_idem_put (bm_idem_t *self, const char *key, const char *job_id, int64_t expires)
{
    s_entry_t *entry = (s_entry_t *) zmalloc (sizeof (s_entry_t));
    snprintf (entry->job_id, sizeof entry->job_id, "%s", job_id);
    entry->expires = expires;
    zhashx_update (self->entries, key, entry);
    zlistx_add_end (self->order, strdup (key));
}

void
bm_idem_forget (bm_idem_t *self, const char *key, const char *job_id, int64_t now)
{
    s_entry_t *entry = (s_entry_t *) zhashx_lookup (self->entries, key);
    if (entry && (!job_id || (streq (entry->job_id, job_id) && entry->expires < now)))
        zhashx_delete (self->entries, key);
}

void
bm_idem_expire (bm_idem_t *self, int64_t now)
{
    char *key;
    while ((key = (char *) zlistx_first (self->order))) {
        s_entry_t *entry = (s_entry_t *) zhashx_lookup (self->entries, key);
        if (entry && entry->expires > now)
            break;
        if (entry)
            zhashx_delete (self->entries, key);
        zlistx_delete (self->order, zlistx_cursor (self->order));
    }
}

size_t
bm_idem_size (bm_idem_t *self)
{
    return zhashx_size (self->entries);
}

//  --------------------------------------------------------------------------
//  Self-test

void
bm_idem_test (bool verbose)
{
    if (verbose)
        printf (" * bm_idem: ");
    bm_idem_t *idem = bm_idem_new ();
    BM_CHECK (bm_idem_lookup (idem, "k1", 0) == NULL);

    //  k1 -> j1 until 100; k2 -> j2 until 200.
    bm_idem_put (idem, "k1", "j1", 100);
    bm_idem_put (idem, "k2", "j2", 200);
    BM_CHECK (streq (bm_idem_lookup (idem, "k1", 99), "j1"));
    BM_CHECK (bm_idem_lookup (idem, "k1", 100) == NULL);     //  Expired at 100
    BM_CHECK (streq (bm_idem_lookup (idem, "k2", 150), "j2"));

    //  Forgetting with a job id: only that job's key, and only once expired.
    bm_idem_forget (idem, "k2", "other", 300);
    BM_CHECK (bm_idem_size (idem) == 2);
    bm_idem_forget (idem, "k2", "j2", 150);
    BM_CHECK (bm_idem_size (idem) == 2);
    bm_idem_forget (idem, "k2", "j2", 300);
    BM_CHECK (bm_idem_size (idem) == 1);

    //  Expiry, oldest first: at 150, k1 goes; k3 (until 500) stays.
    bm_idem_put (idem, "k3", "j3", 500);
    bm_idem_expire (idem, 150);
    BM_CHECK (bm_idem_lookup (idem, "k1", 0) == NULL);
    BM_CHECK (streq (bm_idem_lookup (idem, "k3", 150), "j3"));
    BM_CHECK (bm_idem_size (idem) == 1);

    //  Forgetting without a job id: at once (a SUBMIT Redis refused).
    bm_idem_forget (idem, "k3", NULL, 0);
    BM_CHECK (bm_idem_size (idem) == 0);

    //  A key put again keeps its newer expiry.
    bm_idem_put (idem, "k4", "j4", 100);
    bm_idem_put (idem, "k4", "j5", 1000);
    bm_idem_expire (idem, 500);
    BM_CHECK (streq (bm_idem_lookup (idem, "k4", 500), "j5"));
    bm_idem_expire (idem, 2000);
    BM_CHECK (bm_idem_size (idem) == 0);

    bm_idem_destroy (&idem);
    bm_idem_destroy (&idem);
    BM_CHECK (idem == NULL);
    if (verbose)
        printf ("OK\n");
}

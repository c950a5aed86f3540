/*  bm_idem.c - the idempotency index: idempotencyKey -> first job id.  */
#include "bm_idem.h"
#include "bm_proto.h"
#include "bm_selftest.h"

#include <czmq.h>
#include <string.h>

typedef struct {
    char job_id [BM_MAX_ID_LEN + 1];    //  The first job with the key
    uint64_t fingerprint;               //  Its bot type and payload (0: unknown)
    int64_t expires;                    //  Epoch ms
} s_entry_t;

//  A key's place in the expiry order.
typedef struct {
    int64_t expires;            //  As it was put
    char key [];
} s_order_t;

struct _bm_idem_t {
    zhashx_t *entries;          //  key -> s_entry_t (owned)
    zlistx_t *order;            //  s_order_t by expiry (owned); a key put
                                //  again appears again
};

static int
s_by_expiry (const void *a, const void *b)
{
    int64_t x = ((const s_order_t *) a)->expires, y = ((const s_order_t *) b)->expires;
    return (x > y) - (x < y);
}

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
    zlistx_set_comparator (self->order, s_by_expiry);
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
bm_idem_lookup (bm_idem_t *self, const char *key, int64_t now, uint64_t *fingerprint_p)
{
    s_entry_t *entry = (s_entry_t *) zhashx_lookup (self->entries, key);
    if (!entry || entry->expires <= now)
        return NULL;
    if (fingerprint_p)
        *fingerprint_p = entry->fingerprint;
    return entry->job_id;
}

//  The key's entry, and a new s_order_t for it (the caller places it).
static s_order_t *
s_put (bm_idem_t *self, const char *key, const char *job_id, uint64_t fingerprint,
       int64_t expires)
{
    s_entry_t *entry = (s_entry_t *) zmalloc (sizeof (s_entry_t));
    snprintf (entry->job_id, sizeof entry->job_id, "%s", job_id);
    entry->fingerprint = fingerprint;
    entry->expires = expires;
    zhashx_update (self->entries, key, entry);
    size_t size = strlen (key) + 1;
    s_order_t *order = (s_order_t *) zmalloc (sizeof (s_order_t) + size);
    order->expires = expires;
    memcpy (order->key, key, size);
    return order;
}

void
bm_idem_put (bm_idem_t *self, const char *key, const char *job_id, uint64_t fingerprint,
             int64_t expires)
{
    //  In expiry order, searched from the newest: with one window for all
    //  keys, a new key goes last at once.
    zlistx_insert (self->order, s_put (self, key, job_id, fingerprint, expires), false);
}

void
bm_idem_put_unsorted (bm_idem_t *self, const char *key, const char *job_id,
                      uint64_t fingerprint, int64_t expires)
{
    zlistx_add_end (self->order, s_put (self, key, job_id, fingerprint, expires));
}

static int
s_by_expiry_p (const void *a, const void *b)
{
    return s_by_expiry (*(const void **) a, *(const void **) b);
}

void
bm_idem_sort (bm_idem_t *self)
{
    //  Out of the list into an array, qsort, back in (zlistx_sort is a comb
    //  sort walking the links: slow for millions of keys).
    size_t size = zlistx_size (self->order);
    if (size < 2)
        return;
    void **items = (void **) malloc (size * sizeof (void *));
    if (!items)
        return;             //  Left as it is: keys then expire late, not early
    for (size_t i = 0; i < size; i++)
        items [i] = zlistx_detach (self->order, NULL);
    qsort (items, size, sizeof (void *), s_by_expiry_p);
    for (size_t i = 0; i < size; i++)
        zlistx_add_end (self->order, items [i]);
    free (items);
}

void
bm_idem_forget (bm_idem_t *self, const char *key, const char *job_id, int64_t now)
{
    s_entry_t *entry = (s_entry_t *) zhashx_lookup (self->entries, key);
    if (entry && (!job_id || (streq (entry->job_id, job_id) && entry->expires < now)))
        zhashx_delete (self->entries, key);
}

bool
bm_idem_drop (bm_idem_t *self, const char *key, const char *job_id)
{
    s_entry_t *entry = (s_entry_t *) zhashx_lookup (self->entries, key);
    if (!entry || !streq (entry->job_id, job_id))
        return false;
    //  Its place in the expiry order finds no entry, or a later one
    zhashx_delete (self->entries, key);
    return true;
}

void
bm_idem_expire (bm_idem_t *self, int64_t now, bm_idem_gone_fn *gone, void *arg)
{
    s_order_t *order;
    while ((order = (s_order_t *) zlistx_first (self->order)) && order->expires <= now) {
        s_entry_t *entry = (s_entry_t *) zhashx_lookup (self->entries, order->key);
        //  A key put again since lives on (its later place comes later)
        if (!entry || entry->expires <= now) {
            if (entry)
                zhashx_delete (self->entries, order->key);
            if (gone)
                gone (order->key, arg);
        }
        zlistx_delete (self->order, zlistx_cursor (self->order));
    }
}

size_t
bm_idem_size (bm_idem_t *self)
{
    return zhashx_size (self->entries);
}

static uint64_t
s_fnv1a (uint64_t hash, const void *data, size_t size)
{
    const unsigned char *byte = (const unsigned char *) data;
    for (size_t i = 0; i < size; i++) {
        hash ^= byte [i];
        hash *= 1099511628211ULL;
    }
    return hash;
}

uint64_t
bm_idem_fingerprint (const char *bot_type, const msgpack_object *payload)
{
    uint64_t hash = s_fnv1a (14695981039346656037ULL, bot_type, strlen (bot_type) + 1);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    if (payload)
        msgpack_pack_object (&pk, *payload);
    else
        msgpack_pack_nil (&pk);
    hash = s_fnv1a (hash, sbuf.data, sbuf.size);
    msgpack_sbuffer_destroy (&sbuf);
    return hash ? hash : 1;
}

uint64_t
bm_idem_fingerprint_bytes (const char *bot_type, const char *payload, size_t size)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    uint64_t hash = 0;
    if (payload && msgpack_unpack_next (&unpacked, payload, size, &offset) == MSGPACK_UNPACK_SUCCESS)
        hash = bm_idem_fingerprint (bot_type, &unpacked.data);
    msgpack_unpacked_destroy (&unpacked);
    return hash;
}

//  --------------------------------------------------------------------------
//  Self-test

void
bm_idem_test (bool verbose)
{
    if (verbose)
        printf (" * bm_idem: ");
    bm_idem_t *idem = bm_idem_new ();
    BM_CHECK (bm_idem_lookup (idem, "k1", 0, NULL) == NULL);

    //  k1 -> j1 until 100; k2 -> j2 until 200.
    bm_idem_put (idem, "k1", "j1", 0, 100);
    bm_idem_put (idem, "k2", "j2", 0, 200);
    BM_CHECK (streq (bm_idem_lookup (idem, "k1", 99, NULL), "j1"));
    BM_CHECK (bm_idem_lookup (idem, "k1", 100, NULL) == NULL);     //  Expired at 100
    BM_CHECK (streq (bm_idem_lookup (idem, "k2", 150, NULL), "j2"));

    //  Forgetting with a job id: only that job's key, and only once expired.
    bm_idem_forget (idem, "k2", "other", 300);
    BM_CHECK (bm_idem_size (idem) == 2);
    bm_idem_forget (idem, "k2", "j2", 150);
    BM_CHECK (bm_idem_size (idem) == 2);
    bm_idem_forget (idem, "k2", "j2", 300);
    BM_CHECK (bm_idem_size (idem) == 1);

    //  Expiry, oldest first: at 150, k1 goes; k3 (until 500) stays.
    bm_idem_put (idem, "k3", "j3", 0, 500);
    bm_idem_expire (idem, 150, NULL, NULL);
    BM_CHECK (bm_idem_lookup (idem, "k1", 0, NULL) == NULL);
    BM_CHECK (streq (bm_idem_lookup (idem, "k3", 150, NULL), "j3"));
    BM_CHECK (bm_idem_size (idem) == 1);

    //  Dropping: only the key of that job, expired or not.
    bm_idem_put (idem, "k8", "j8", 0, 1000);
    BM_CHECK (!bm_idem_drop (idem, "k8", "other") && bm_idem_size (idem) == 2);
    BM_CHECK (bm_idem_drop (idem, "k8", "j8") && bm_idem_size (idem) == 1);
    BM_CHECK (!bm_idem_drop (idem, "k8", "j8"));
    BM_CHECK (bm_idem_lookup (idem, "k8", 0, NULL) == NULL);

    //  Forgetting without a job id: at once (a SUBMIT Redis refused).
    bm_idem_forget (idem, "k3", NULL, 0);
    BM_CHECK (bm_idem_size (idem) == 0);

    //  A key put again keeps its newer expiry.
    bm_idem_put (idem, "k4", "j4", 0, 100);
    bm_idem_put (idem, "k4", "j5", 0, 1000);
    bm_idem_expire (idem, 500, NULL, NULL);
    BM_CHECK (streq (bm_idem_lookup (idem, "k4", 500, NULL), "j5"));
    bm_idem_expire (idem, 2000, NULL, NULL);
    BM_CHECK (bm_idem_size (idem) == 0);

    //  Expiry follows the keys' windows, not their insertion order (the
    //  window changed across a restart): k7 (until 100) goes before k6.
    bm_idem_put (idem, "k6", "j6", 0, 1000);
    bm_idem_put (idem, "k7", "j7", 0, 100);
    bm_idem_expire (idem, 500, NULL, NULL);
    BM_CHECK (bm_idem_lookup (idem, "k7", 0, NULL) == NULL);
    BM_CHECK (bm_idem_size (idem) == 1);
    bm_idem_forget (idem, "k6", NULL, 0);

    //  Keys put in no order, then sorted: they expire oldest first, and a
    //  key put again keeps its later expiry.
    bm_idem_put_unsorted (idem, "u3", "j3", 0, 300);
    bm_idem_put_unsorted (idem, "u1", "j1", 0, 100);
    bm_idem_put_unsorted (idem, "u2", "j2", 0, 200);
    bm_idem_put_unsorted (idem, "u1", "j1", 0, 400);
    bm_idem_sort (idem);
    bm_idem_expire (idem, 250, NULL, NULL);
    BM_CHECK (bm_idem_size (idem) == 2);
    BM_CHECK (bm_idem_lookup (idem, "u2", 0, NULL) == NULL);
    BM_CHECK (streq (bm_idem_lookup (idem, "u1", 250, NULL), "j1"));
    bm_idem_expire (idem, 350, NULL, NULL);
    BM_CHECK (bm_idem_size (idem) == 1 && bm_idem_lookup (idem, "u3", 0, NULL) == NULL);
    bm_idem_expire (idem, 500, NULL, NULL);
    BM_CHECK (bm_idem_size (idem) == 0);

    //  The fingerprint comes back with the job id.
    uint64_t fingerprint = 0;
    bm_idem_put (idem, "k5", "j6", 42, 100);
    BM_CHECK (streq (bm_idem_lookup (idem, "k5", 50, &fingerprint), "j6") && fingerprint == 42);

    //  Fingerprints: by bot type and payload value, not by its encoding.
    msgpack_object small = { .type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = 5 };
    uint64_t python5 = bm_idem_fingerprint ("python", &small);
    BM_CHECK (python5 != 0 && python5 == bm_idem_fingerprint ("python", &small));
    BM_CHECK (python5 != bm_idem_fingerprint ("node", &small));
    BM_CHECK (python5 != bm_idem_fingerprint ("python", NULL));
    BM_CHECK (bm_idem_fingerprint_bytes ("python", "\x05", 1) == python5);
    BM_CHECK (bm_idem_fingerprint_bytes ("python", "\xcc\x05", 2) == python5);   //  uint8 5
    BM_CHECK (bm_idem_fingerprint_bytes ("python", "\x06", 1) != python5);
    BM_CHECK (bm_idem_fingerprint_bytes ("python", "\xc1", 1) == 0);             //  never used
    BM_CHECK (bm_idem_fingerprint_bytes ("python", "", 0) == 0);

    bm_idem_destroy (&idem);
    bm_idem_destroy (&idem);
    BM_CHECK (idem == NULL);
    if (verbose)
        printf ("OK\n");
}

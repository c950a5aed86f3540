/*  bm_idem.c - the idempotency index: idempotencyKey -> first job id.  */
#include "bm_idem.h"
#include "bm_log.h"
#include "bm_proto.h"
#include "bm_selftest.h"

#include <czmq.h>
#include <string.h>

//  One a live key: sized to its job id (a 26-character id takes 48 bytes
//  of the heap, not 160 as a slot for the longest id would).
typedef struct {
    uint64_t fingerprint;               //  Its bot type and payload (0: unknown)
    int64_t expires;                    //  Epoch ms
    char job_id [];                     //  The first job with the key
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
    size_t id_len = strnlen (job_id, BM_MAX_ID_LEN);
    s_entry_t *entry = (s_entry_t *) zmalloc (sizeof (s_entry_t) + id_len + 1);
    memcpy (entry->job_id, job_id, id_len);
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

//  A map with its pairs in canonical order: one pair's key as packed
//  canonically, and where the pair is.
typedef struct {
    const char *key;            //  In the scratch buffer (set once it is done growing)
    size_t offset, size;        //  Of the key's bytes in the scratch buffer
    uint32_t index;             //  The pair's place as received (a tie keeps it)
} s_pair_t;

static int
s_by_key (const void *a, const void *b)
{
    const s_pair_t *x = (const s_pair_t *) a, *y = (const s_pair_t *) b;
    size_t common = x->size < y->size ? x->size : y->size;
    int rc = common ? memcmp (x->key, y->key, common) : 0;
    if (rc == 0)
        rc = (x->size > y->size) - (x->size < y->size);
    if (rc == 0)
        rc = (x->index > y->index) - (x->index < y->index);
    return rc;
}

//  Two string keys (their bytes, not encoded): by length, then by bytes.
static int
s_by_string (const void *a, const void *b)
{
    const s_pair_t *x = (const s_pair_t *) a, *y = (const s_pair_t *) b;
    int rc = (x->size > y->size) - (x->size < y->size);
    //  Byte by byte: keys are short, and most differ early
    for (size_t i = 0; rc == 0 && i < x->size; i++)
        rc = (int) (unsigned char) x->key [i] - (int) (unsigned char) y->key [i];
    if (rc == 0)
        rc = (x->index > y->index) - (x->index < y->index);
    return rc;
}

static bool
s_has_map (const msgpack_object *object)
{
    if (object->type == MSGPACK_OBJECT_MAP)
        return true;
    if (object->type == MSGPACK_OBJECT_ARRAY)
        for (uint32_t i = 0; i < object->via.array.size; i++) {
            const msgpack_object *item = &object->via.array.ptr [i];
            if (item->type == MSGPACK_OBJECT_MAP
            || (item->type == MSGPACK_OBJECT_ARRAY && s_has_map (item)))
                return true;
        }
    return false;
}

//  A map's keys as packed, on the stack up to S_INLINE_KEYS bytes.
#define S_INLINE_PAIRS  16
#define S_INLINE_KEYS   512

typedef struct {
    char *data;                 //  inline_data, or on the heap once it outgrew it
    size_t size, capacity;
    char inline_data [S_INLINE_KEYS];
} s_keys_t;

static int
s_keys_write (void *data, const char *buf, size_t len)
{
    s_keys_t *keys = (s_keys_t *) data;
    if (keys->size + len > keys->capacity) {
        size_t capacity = keys->capacity * 2 > keys->size + len ? keys->capacity * 2
                                                                : keys->size + len;
        char *grown = (char *) bm_realloc_or_abort (keys->data == keys->inline_data
                                                    ? NULL : keys->data, capacity,
                                                    "a payload's fingerprint");
        if (keys->data == keys->inline_data)
            memcpy (grown, keys->inline_data, keys->size);
        keys->data = grown;
        keys->capacity = capacity;
    }
    if (len)
        memcpy (keys->data + keys->size, buf, len);
    keys->size += len;
    return 0;
}

//  object in msgpack's shortest encoding with every map's pairs sorted by
//  their keys' canonical bytes (shorter first on a common prefix), at any
//  depth, arrays' maps included: one value, one encoding, whatever order
//  its map keys came in.  The recursion is bounded by the decoder's
//  nesting limit (BM_MAX_NESTING, checked before any object is built).
static void
s_pack_canonical (msgpack_packer *pk, const msgpack_object *object)
{
    if (object->type == MSGPACK_OBJECT_ARRAY) {
        msgpack_pack_array (pk, object->via.array.size);
        for (uint32_t i = 0; i < object->via.array.size; i++)
            s_pack_canonical (pk, &object->via.array.ptr [i]);
        return;
    }
    if (object->type != MSGPACK_OBJECT_MAP) {
        msgpack_pack_object (pk, *object);
        return;
    }
    uint32_t size = object->via.map.size;
    if (size < 2) {
        msgpack_pack_map (pk, size);
        if (size == 1) {
            s_pack_canonical (pk, &object->via.map.ptr [0].key);
            s_pack_canonical (pk, &object->via.map.ptr [0].val);
        }
        return;
    }
    //  String keys (the usual map: JSON's) sort by their bytes as they
    //  are: a string's shortest header orders by its length, so encoded
    //  they sort by length, then by bytes.  Other keys are packed
    //  canonically, one after the other, and sorted by those bytes.  On
    //  the stack for the usual map (no allocation), else on the heap.
    bool strings = true;
    for (uint32_t i = 0; i < size && strings; i++)
        strings = object->via.map.ptr [i].key.type == MSGPACK_OBJECT_STR;
    s_pair_t inline_pairs [S_INLINE_PAIRS];
    s_pair_t *pairs = size <= S_INLINE_PAIRS ? inline_pairs
                    : (s_pair_t *) bm_realloc_or_abort (NULL, size * sizeof (s_pair_t),
                                                        "a payload's fingerprint");
    s_keys_t keys;
    keys.data = keys.inline_data;
    keys.size = 0;
    keys.capacity = sizeof keys.inline_data;
    if (strings)
        for (uint32_t i = 0; i < size; i++) {
            const msgpack_object *key = &object->via.map.ptr [i].key;
            pairs [i].key = key->via.str.ptr;
            pairs [i].size = key->via.str.size;
            pairs [i].index = i;
        }
    else {
        msgpack_packer key_pk;
        msgpack_packer_init (&key_pk, &keys, s_keys_write);
        for (uint32_t i = 0; i < size; i++) {
            pairs [i].offset = keys.size;
            s_pack_canonical (&key_pk, &object->via.map.ptr [i].key);
            pairs [i].size = keys.size - pairs [i].offset;
            pairs [i].index = i;
        }
        for (uint32_t i = 0; i < size; i++)
            pairs [i].key = keys.data + pairs [i].offset;
    }
    int (*compare) (const void *, const void *) = strings ? s_by_string : s_by_key;
    if (size <= S_INLINE_PAIRS) {
        //  Insertion sort: fewer calls than qsort for a few pairs, and
        //  size - 1 comparisons for keys sorted already
        for (uint32_t i = 1; i < size; i++) {
            s_pair_t pair = pairs [i];
            uint32_t j = i;
            for (; j > 0 && compare (&pairs [j - 1], &pair) > 0; j--)
                pairs [j] = pairs [j - 1];
            pairs [j] = pair;
        }
    }
    else
        qsort (pairs, size, sizeof (s_pair_t), compare);
    msgpack_pack_map (pk, size);
    for (uint32_t i = 0; i < size; i++) {
        if (strings)
            msgpack_pack_str_with_body (pk, pairs [i].key, pairs [i].size);
        else
            pk->callback (pk->data, pairs [i].key, pairs [i].size);
        s_pack_canonical (pk, &object->via.map.ptr [pairs [i].index].val);
    }
    if (pairs != inline_pairs)
        free (pairs);
    if (keys.data != keys.inline_data)
        free (keys.data);
}

//  The fingerprint of payload, canonical or with its maps' keys in the
//  order they came.
static uint64_t
s_fingerprint (const char *bot_type, const msgpack_object *payload, bool canonical)
{
    uint64_t hash = s_fnv1a (14695981039346656037ULL, bot_type, strlen (bot_type) + 1);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    if (!payload)
        msgpack_pack_nil (&pk);
    else
    if (canonical && s_has_map (payload))
        s_pack_canonical (&pk, payload);
    else
        msgpack_pack_object (&pk, *payload);      //  No map: canonical already
    hash = s_fnv1a (hash, sbuf.data, sbuf.size);
    msgpack_sbuffer_destroy (&sbuf);
    return hash ? hash : 1;
}

uint64_t
bm_idem_fingerprint (const char *bot_type, const msgpack_object *payload)
{
    return s_fingerprint (bot_type, payload, true);
}

uint64_t
bm_idem_fingerprint_submit (const char *bot_type, const msgpack_object *body)
{
    uint64_t hash = s_fingerprint (bot_type, bm_obj_get (body, "payload"), true);
    const msgpack_object *deps = bm_obj_get (body, "dependsOn");
    if (!deps || deps->type != MSGPACK_OBJECT_ARRAY || deps->via.array.size == 0)
        return hash;
    for (uint32_t i = 0; i < deps->via.array.size; i++) {
        const msgpack_object *id = &deps->via.array.ptr [i];
        if (id->type == MSGPACK_OBJECT_STR)
            hash = s_fnv1a (hash, id->via.str.ptr, id->via.str.size);
        hash = s_fnv1a (hash, "", 1);                  //  Ends each id
    }
    const char *on_failure = "";
    size_t on_failure_len = 0;
    bm_obj_str (body, "onDependencyFailure", &on_failure, &on_failure_len);
    bool ignore = on_failure_len == 6 && memcmp (on_failure, "ignore", 6) == 0;
    bool results = false;
    bm_obj_bool (body, "dependencyResults", &results);
    char options [2] = { ignore ? 'i' : 'f', results ? 'r' : '-' };
    hash = s_fnv1a (hash, options, sizeof options);
    return hash ? hash : 1;
}

bool
bm_idem_same_job (uint64_t first, uint64_t fingerprint, const char *bot_type,
                  const msgpack_object *payload)
{
    if (first == 0 || first == fingerprint)
        return true;
    //  A key an earlier version stored: its maps' keys in the order they
    //  came (the two differ only for a payload with a map of 2+ pairs)
    return payload && s_has_map (payload)
        && first == s_fingerprint (bot_type, payload, false);
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

    //  Map keys in any order, at any depth, inside arrays too: one value.
    const char ba [] = "\x82\xa1" "b" "\x02\xa1" "a" "\x01";         //  {"b":2,"a":1}
    const char ab [] = "\x82\xa1" "a" "\x01\xa1" "b" "\x02";         //  {"a":1,"b":2}
    const char ab3 [] = "\x82\xa1" "a" "\x01\xa1" "b" "\x03";        //  {"a":1,"b":3}
    uint64_t by_ab = bm_idem_fingerprint_bytes ("python", ab, 7);
    BM_CHECK (by_ab && bm_idem_fingerprint_bytes ("python", ba, 7) == by_ab);
    BM_CHECK (bm_idem_fingerprint_bytes ("python", ab3, 7) != by_ab);
    //  [{"x":{"b":2,"a":1},"c":[{"b":2,"a":1}]}] and the same sorted
    const char deep [] = "\x91\x82\xa1" "x" "\x82\xa1" "b" "\x02\xa1" "a" "\x01"
                         "\xa1" "c" "\x91\x82\xa1" "b" "\x02\xa1" "a" "\x01";
    const char deep_sorted [] = "\x91\x82\xa1" "c" "\x91\x82\xa1" "a" "\x01\xa1" "b" "\x02"
                                "\xa1" "x" "\x82\xa1" "a" "\x01\xa1" "b" "\x02";
    BM_CHECK (bm_idem_fingerprint_bytes ("python", deep, sizeof deep - 1)
              == bm_idem_fingerprint_bytes ("python", deep_sorted, sizeof deep_sorted - 1));
    //  Keys sorted by their bytes: "a" (a1 61) before "aa" (a2 61 61)
    //  before 1 (01): {1:0,"aa":0,"a":0} is {"a":0,"aa":0,1:0}
    const char mixed [] = "\x83\x01\x00\xa2" "aa" "\x00\xa1" "a" "\x00";
    const char mixed_sorted [] = "\x83\x01\x00\xa1" "a" "\x00\xa2" "aa" "\x00";
    BM_CHECK (bm_idem_fingerprint_bytes ("python", mixed, sizeof mixed - 1)
              == bm_idem_fingerprint_bytes ("python", mixed_sorted, sizeof mixed_sorted - 1));
    //  Past the stack's room: 40 pairs, keys of 40 bytes (binary, so
    //  packed one by one) and of 40 characters, in two orders.
    for (int binary = 0; binary < 2; binary++) {
        uint64_t prints [2];
        for (int reverse = 0; reverse < 2; reverse++) {
            msgpack_sbuffer sbuf;
            msgpack_sbuffer_init (&sbuf);
            msgpack_packer pk;
            msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
            msgpack_pack_map (&pk, 40);
            for (int i = 0; i < 40; i++) {
                char key [41];
                snprintf (key, sizeof key, "%040d", reverse ? 39 - i : i);
                if (binary)
                    msgpack_pack_bin_with_body (&pk, key, 40);
                else
                    msgpack_pack_str_with_body (&pk, key, 40);
                msgpack_pack_int (&pk, reverse ? 39 - i : i);
            }
            prints [reverse] = bm_idem_fingerprint_bytes ("python", sbuf.data, sbuf.size);
            msgpack_sbuffer_destroy (&sbuf);
        }
        BM_CHECK (prints [0] && prints [0] == prints [1]);
    }
    //  A fingerprint an earlier version stored (keys as received) still
    //  matches the same bytes sent again; a map-free payload's is the same.
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    BM_CHECK (msgpack_unpack_next (&unpacked, ba, 7, &offset) == MSGPACK_UNPACK_SUCCESS);
    uint64_t old_ba = s_fingerprint ("python", &unpacked.data, false);
    BM_CHECK (old_ba != by_ab);
    BM_CHECK (bm_idem_same_job (old_ba, by_ab, "python", &unpacked.data));
    BM_CHECK (bm_idem_same_job (by_ab, by_ab, "python", &unpacked.data));
    BM_CHECK (bm_idem_same_job (0, by_ab, "python", &unpacked.data));
    offset = 0;
    BM_CHECK (msgpack_unpack_next (&unpacked, ab3, 7, &offset) == MSGPACK_UNPACK_SUCCESS);
    BM_CHECK (!bm_idem_same_job (old_ba, bm_idem_fingerprint ("python", &unpacked.data),
                                 "python", &unpacked.data));
    BM_CHECK (s_fingerprint ("python", &small, false) == python5);
    msgpack_unpacked_destroy (&unpacked);

    bm_idem_destroy (&idem);
    bm_idem_destroy (&idem);
    BM_CHECK (idem == NULL);
    if (verbose)
        printf ("OK\n");
}

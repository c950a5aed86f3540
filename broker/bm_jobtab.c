/*  bm_jobtab.c - the broker's job table (bm_jobtab.h).  */
#include "bm_jobtab.h"
#include "bm_log.h"
#include "bm_selftest.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define BM_JOBTAB_MIN 1024      //  Slots at first (a power of two)

typedef struct {
    uint64_t hash;
    void *item;                 //  NULL: empty
} s_slot_t;

struct _bm_jobtab_t {
    s_slot_t *slots;
    size_t mask;                //  Slots - 1
    size_t size;                //  Items
    size_t key_offset;
    uint64_t seed;              //  Random per table: where a key lands is not
                                //  known outside the process
};

//  A word at a time (ids are ~26 bytes), mixed so that every bit of the
//  result depends on every word: the slot is its low bits.  The table's
//  ids are the broker's own, but clients look up ids they choose: with a
//  secret seed nobody can make keys that pile up in one run of slots.
static uint64_t
s_hash (uint64_t seed, const char *key)
{
    size_t len = strlen (key);
    uint64_t h = (0x9e3779b97f4a7c15ULL ^ seed) ^ len;
    while (len >= 8) {
        uint64_t word;
        memcpy (&word, key, 8);
        h = (h ^ word) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
        key += 8;
        len -= 8;
    }
    uint64_t tail = 0;
    memcpy (&tail, key, len);
    h = (h ^ tail) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 32;
    return h;
}

static const char *
s_key (const bm_jobtab_t *self, const void *item)
{
    return (const char *) item + self->key_offset;
}

bm_jobtab_t *
bm_jobtab_new (size_t key_offset)
{
    bm_jobtab_t *self = (bm_jobtab_t *) calloc (1, sizeof (bm_jobtab_t));
    if (!self)
        return NULL;
    self->slots = (s_slot_t *) calloc (BM_JOBTAB_MIN, sizeof (s_slot_t));
    if (!self->slots) {
        free (self);
        return NULL;
    }
    self->mask = BM_JOBTAB_MIN - 1;
    self->key_offset = key_offset;
    if (getrandom (&self->seed, sizeof self->seed, GRND_NONBLOCK) != sizeof self->seed)
        self->seed = (uint64_t) (uintptr_t) self ^ (uint64_t) rand ();
    return self;
}

void
bm_jobtab_destroy (bm_jobtab_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->slots);
        free (*self_p);
        *self_p = NULL;
    }
}

//  The slot holding key, or the empty slot that ends its run.
static size_t
s_find (const bm_jobtab_t *self, const char *key, uint64_t hash)
{
    size_t i = (size_t) hash & self->mask;
    while (self->slots [i].item) {
        if (self->slots [i].hash == hash && strcmp (s_key (self, self->slots [i].item), key) == 0)
            return i;
        i = (i + 1) & self->mask;
    }
    return i;
}

void *
bm_jobtab_lookup (const bm_jobtab_t *self, const char *key)
{
    return self->slots [s_find (self, key, s_hash (self->seed, key))].item;
}

static void
s_grow (bm_jobtab_t *self)
{
    size_t slots = (self->mask + 1) * 2;
    s_slot_t *fresh = (s_slot_t *) bm_realloc_or_abort (NULL, slots * sizeof (s_slot_t), "the job table");
    memset (fresh, 0, slots * sizeof (s_slot_t));
    for (size_t i = 0; i <= self->mask; i++)
        if (self->slots [i].item) {
            size_t j = (size_t) self->slots [i].hash & (slots - 1);
            while (fresh [j].item)
                j = (j + 1) & (slots - 1);
            fresh [j] = self->slots [i];
        }
    free (self->slots);
    self->slots = fresh;
    self->mask = slots - 1;
}

int
bm_jobtab_insert (bm_jobtab_t *self, void *item)
{
    const char *key = s_key (self, item);
    uint64_t hash = s_hash (self->seed, key);
    if (self->slots [s_find (self, key, hash)].item)
        return -1;
    //  At most 3/4 full: runs stay short.
    if ((self->size + 1) * 4 > (self->mask + 1) * 3)
        s_grow (self);
    size_t i = s_find (self, key, hash);
    self->slots [i].hash = hash;
    self->slots [i].item = item;
    self->size++;
    return 0;
}

void *
bm_jobtab_remove (bm_jobtab_t *self, const char *key)
{
    size_t i = s_find (self, key, s_hash (self->seed, key));
    void *item = self->slots [i].item;
    if (!item)
        return NULL;
    //  Shift back the rest of the run: an entry moves into the hole unless
    //  its home slot lies cyclically after the hole, up to where it is.
    size_t j = i;
    while (true) {
        j = (j + 1) & self->mask;
        if (!self->slots [j].item)
            break;
        size_t home = (size_t) self->slots [j].hash & self->mask;
        bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!stays) {
            self->slots [i] = self->slots [j];
            i = j;
        }
    }
    self->slots [i].item = NULL;
    self->slots [i].hash = 0;
    self->size--;
    return item;
}

size_t
bm_jobtab_size (const bm_jobtab_t *self)
{
    return self->size;
}

void
bm_jobtab_purge (bm_jobtab_t *self, void (*fn) (void *item))
{
    for (size_t i = 0; i <= self->mask; i++)
        if (self->slots [i].item) {
            void *item = self->slots [i].item;
            self->slots [i].item = NULL;
            self->slots [i].hash = 0;
            if (fn)
                fn (item);
        }
    self->size = 0;
}

//  --------------------------------------------------------------------------
//  Self test: items with their key at an offset; inserts past several
//  growths, duplicates refused, removals in an order that wraps runs, every
//  item found or not as it should be after each step.

typedef struct {
    int tag;
    char id [32];
} s_item_t;

void
bm_jobtab_test (bool verbose)
{
    printf (" * bm_jobtab: ");
    if (verbose)
        printf ("\n");
    enum { N = 5000 };
    s_item_t *items = (s_item_t *) calloc (N, sizeof (s_item_t));
    BM_CHECK (items);
    bm_jobtab_t *table = bm_jobtab_new (offsetof (s_item_t, id));
    BM_CHECK (table && bm_jobtab_size (table) == 0);
    BM_CHECK (bm_jobtab_lookup (table, "none") == NULL);
    BM_CHECK (bm_jobtab_remove (table, "none") == NULL);
    for (int i = 0; i < N; i++) {
        items [i].tag = i;
        snprintf (items [i].id, sizeof items [i].id, "0001234abcde-inst-%08x", (unsigned) i);
        BM_CHECK (bm_jobtab_insert (table, &items [i]) == 0);
    }
    BM_CHECK (bm_jobtab_size (table) == N);
    //  A second item under a key held is refused
    s_item_t twin = items [17];
    BM_CHECK (bm_jobtab_insert (table, &twin) == -1);
    BM_CHECK (bm_jobtab_lookup (table, twin.id) == &items [17]);
    for (int i = 0; i < N; i++)
        BM_CHECK (bm_jobtab_lookup (table, items [i].id) == &items [i]);
    //  Remove every third, then check all; the item's own key works
    for (int i = 0; i < N; i += 3)
        BM_CHECK (bm_jobtab_remove (table, items [i].id) == &items [i]);
    for (int i = 0; i < N; i++)
        BM_CHECK (bm_jobtab_lookup (table, items [i].id) == (i % 3 ? &items [i] : NULL));
    BM_CHECK (bm_jobtab_size (table) == N - (N + 2) / 3);
    //  Back in, and out in reverse order
    for (int i = 0; i < N; i += 3)
        BM_CHECK (bm_jobtab_insert (table, &items [i]) == 0);
    for (int i = N - 1; i >= 0; i--) {
        BM_CHECK (bm_jobtab_remove (table, items [i].id) == &items [i]);
        if (i % 500 == 0)
            for (int k = 0; k < N; k++)
                BM_CHECK (bm_jobtab_lookup (table, items [k].id) == (k < i ? &items [k] : NULL));
    }
    BM_CHECK (bm_jobtab_size (table) == 0);
    //  Many keys on the same few slots: a table of 1,024 slots with runs
    //  that wrap around its end
    bm_jobtab_t *small = bm_jobtab_new (offsetof (s_item_t, id));
    BM_CHECK (small);
    for (int i = 0; i < 700; i++)
        BM_CHECK (bm_jobtab_insert (small, &items [i]) == 0);
    for (int i = 0; i < 700; i += 2)
        BM_CHECK (bm_jobtab_remove (small, items [i].id) == &items [i]);
    for (int i = 0; i < 700; i++)
        BM_CHECK (bm_jobtab_lookup (small, items [i].id) == (i % 2 ? &items [i] : NULL));
    bm_jobtab_purge (small, NULL);
    BM_CHECK (bm_jobtab_size (small) == 0 && bm_jobtab_lookup (small, items [1].id) == NULL);
    bm_jobtab_destroy (&small);
    bm_jobtab_destroy (&table);
    BM_CHECK (table == NULL);
    free (items);
    printf ("OK\n");
}

/*  bm_jobtab.h - the broker's job table: id -> job, open addressing.

    Every job is inserted, looked up three or four times (its SUBMIT's
    confirmation, its DONE, its terminal write's confirmation) and removed:
    czmq's zhashx made each of those a walk through separately allocated
    chain items (cache misses, an allocation per insert).  Here a slot is
    a 64-bit hash and the item, in one array probed linearly (removal
    shifts the run back: no tombstones); the key is read from the item
    itself, at a fixed offset (a job's id).  The table never owns its
    items.  Self-test: bm_jobtab_test (CTest broker.unit.jobtab).  */
#ifndef BM_JOBTAB_H
#define BM_JOBTAB_H

#include <stdbool.h>
#include <stddef.h>

typedef struct _bm_jobtab_t bm_jobtab_t;

//  Items' keys are the C strings at key_offset in each item.  NULL if out
//  of memory.
bm_jobtab_t *bm_jobtab_new (size_t key_offset);
//  Free the table (not its items); *self_p becomes NULL.
void bm_jobtab_destroy (bm_jobtab_t **self_p);
//  The item with this key, or NULL.
void *bm_jobtab_lookup (const bm_jobtab_t *self, const char *key);
//  Add an item under its key: 0, or -1 if an item has that key already
//  (the table is unchanged).  Aborts when out of memory, like the broker's
//  other tables.
int bm_jobtab_insert (bm_jobtab_t *self, void *item);
//  Take out the item with this key and return it, or NULL.  key may be the
//  item's own.
void *bm_jobtab_remove (bm_jobtab_t *self, const char *key);
//  Items held.
size_t bm_jobtab_size (const bm_jobtab_t *self);
//  Call fn on every item and empty the table (fn may free the item).
void bm_jobtab_purge (bm_jobtab_t *self, void (*fn) (void *item));

void bm_jobtab_test (bool verbose);

#endif

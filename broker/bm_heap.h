/*  bm_heap.h - a binary min-heap of pointers with O(log n) removal.

    Items carry their own position (the heap calls set_index whenever an
    item moves), so any item can be removed in O(log n): the broker uses
    one heap per bot type for its queue (priority, then submission order)
    and one for the deadlines of running jobs.  The heap does not own its
    items.  */
#ifndef BM_HEAP_H
#define BM_HEAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct _bm_heap_t bm_heap_t;

//  Return true when a must come out before b.
typedef bool (bm_heap_less_fn) (const void *a, const void *b);
//  Record an item's position (SIZE_MAX when it leaves the heap).
typedef void (bm_heap_index_fn) (void *item, size_t index);

bm_heap_t *bm_heap_new (bm_heap_less_fn *less, bm_heap_index_fn *set_index);
void bm_heap_destroy (bm_heap_t **self_p);
size_t bm_heap_size (const bm_heap_t *self);
void bm_heap_push (bm_heap_t *self, void *item);
//  The first item, or NULL when empty.
void *bm_heap_peek (const bm_heap_t *self);
void *bm_heap_pop (bm_heap_t *self);
//  Remove the item at index (as last given to set_index).
void bm_heap_remove (bm_heap_t *self, size_t index);
//  Item at a position, for iteration in no particular order.
void *bm_heap_at (const bm_heap_t *self, size_t index);

void bm_heap_test (bool verbose);

#endif

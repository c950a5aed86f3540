/*  wh_heap.h - a binary min-heap of intrusive nodes, keyed by a deadline.

    The deliveries waiting for their next attempt sit here, keyed by the
    monotonic ms at which they are due; the loop arms one timer for the
    earliest.  10,000 waiting deliveries cost one array of pointers, and
    push, pop and remove are O(log n) -- zloop's own timers are a list that
    every poll scans, which would not scale to that many.

    A node is embedded in the caller's struct; the heap never owns it.  */
#ifndef WH_HEAP_H
#define WH_HEAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WH_HEAP_NONE    ((size_t) -1)

//  Embed one in each item.  Set key before pushing; do not change it while
//  the node is in the heap.  index is the heap's (WH_HEAP_NONE when out).
typedef struct {
    int64_t key;                //  Smaller comes out first
    uint64_t seq;               //  Push order: equal keys come out FIFO
    size_t index;               //  Position in the heap, or WH_HEAP_NONE
} wh_heap_node_t;

typedef struct _wh_heap_t wh_heap_t;

wh_heap_t *wh_heap_new (void);
void wh_heap_destroy (wh_heap_t **self_p);

//  Prepare a node that is in no heap (index = WH_HEAP_NONE).
void wh_heap_node_init (wh_heap_node_t *node);

//  Add a node (not already in a heap).  0, or -1 out of memory.
int wh_heap_push (wh_heap_t *self, wh_heap_node_t *node);

//  The node with the smallest key, or NULL; peek leaves it in.
wh_heap_node_t *wh_heap_peek (wh_heap_t *self);
wh_heap_node_t *wh_heap_pop (wh_heap_t *self);

//  Take a node out from anywhere; no-op if it is in no heap.
void wh_heap_remove (wh_heap_t *self, wh_heap_node_t *node);

size_t wh_heap_size (wh_heap_t *self);

void wh_heap_test (bool verbose);

#endif

/*  bm_heap.c - a binary min-heap of pointers with O(log n) removal.  */
#include "bm_heap.h"
#include "bm_log.h"
#include "bm_selftest.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct _bm_heap_t {
    void **items;               //  The array, items [0] first
    size_t size;                //  Items in the heap
    size_t capacity;            //  Slots allocated
    bm_heap_less_fn *less;      //  Order
    bm_heap_index_fn *set_index;    //  Position callback
};

bm_heap_t *
bm_heap_new (bm_heap_less_fn *less, bm_heap_index_fn *set_index)
{
    bm_heap_t *self = (bm_heap_t *) bm_calloc_or_abort (sizeof (bm_heap_t), "a queue");
    self->less = less;
    self->set_index = set_index;
    return self;
}

void
bm_heap_destroy (bm_heap_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->items);
        free (*self_p);
        *self_p = NULL;
    }
}

size_t
bm_heap_size (const bm_heap_t *self)
{
    return self->size;
}

static void
s_place (bm_heap_t *self, size_t index, void *item)
{
    self->items [index] = item;
    self->set_index (item, index);
}

static void
s_sift_up (bm_heap_t *self, size_t index)
{
    void *item = self->items [index];
    while (index > 0) {
        size_t parent = (index - 1) / 2;
        if (!self->less (item, self->items [parent]))
            break;
        s_place (self, index, self->items [parent]);
        index = parent;
    }
    s_place (self, index, item);
}

static void
s_sift_down (bm_heap_t *self, size_t index)
{
    void *item = self->items [index];
    while (true) {
        size_t child = 2 * index + 1;
        if (child >= self->size)
            break;
        if (child + 1 < self->size && self->less (self->items [child + 1], self->items [child]))
            child++;
        if (!self->less (self->items [child], item))
            break;
        s_place (self, index, self->items [child]);
        index = child;
    }
    s_place (self, index, item);
}

void
bm_heap_push (bm_heap_t *self, void *item)
{
    if (self->size == self->capacity) {
        self->capacity = self->capacity ? self->capacity * 2 : 64;
        self->items = (void **) bm_realloc_or_abort (self->items, self->capacity * sizeof (void *),
                                                     "a queue");
    }
    self->items [self->size++] = item;
    s_sift_up (self, self->size - 1);
}

void *
bm_heap_peek (const bm_heap_t *self)
{
    return self->size ? self->items [0] : NULL;
}

void *
bm_heap_at (const bm_heap_t *self, size_t index)
{
    return index < self->size ? self->items [index] : NULL;
}

void
bm_heap_remove (bm_heap_t *self, size_t index)
{
    assert (index < self->size);
    void *item = self->items [index];
    self->size--;
    if (index < self->size) {
        self->items [index] = self->items [self->size];
        //  The moved item may need to go either way.
        if (index > 0 && self->less (self->items [index], self->items [(index - 1) / 2]))
            s_sift_up (self, index);
        else
            s_sift_down (self, index);
    }
    self->set_index (item, SIZE_MAX);
}

void *
bm_heap_pop (bm_heap_t *self)
{
    if (!self->size)
        return NULL;
    void *item = self->items [0];
    bm_heap_remove (self, 0);
    return item;
}

//  --------------------------------------------------------------------------
//  Self-test (assert is compiled out in release builds: tests use BM_CHECK)



typedef struct { int key; int seq; size_t index; } s_test_item_t;

static bool
s_test_less (const void *a, const void *b)
{
    const s_test_item_t *x = (const s_test_item_t *) a, *y = (const s_test_item_t *) b;
    return x->key < y->key || (x->key == y->key && x->seq < y->seq);
}

static void
s_test_index (void *item, size_t index)
{
    ((s_test_item_t *) item)->index = index;
}

void
bm_heap_test (bool verbose)
{
    if (verbose)
        printf (" * bm_heap: ");
    enum { N = 10000 };
    static s_test_item_t items [N];
    bm_heap_t *heap = bm_heap_new (s_test_less, s_test_index);
    srand (42);
    for (int i = 0; i < N; i++) {
        items [i].key = rand () % 10;
        items [i].seq = i;
        bm_heap_push (heap, &items [i]);
    }
    //  Remove every third item from wherever it sits.
    int removed = 0;
    for (int i = 0; i < N; i += 3) {
        bm_heap_remove (heap, items [i].index);
        BM_CHECK (items [i].index == SIZE_MAX);
        removed++;
    }
    BM_CHECK (bm_heap_size (heap) == (size_t) (N - removed));
    s_test_item_t *last = NULL;
    while (bm_heap_size (heap)) {
        s_test_item_t *item = (s_test_item_t *) bm_heap_pop (heap);
        BM_CHECK (item->seq % 3 != 0);
        if (last)   //  Key order, FIFO within a key
            BM_CHECK (last->key < item->key || (last->key == item->key && last->seq < item->seq));
        last = item;
    }
    bm_heap_destroy (&heap);
    BM_CHECK (heap == NULL);
    if (verbose)
        printf ("OK\n");
}

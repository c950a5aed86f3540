/*  wh_heap.c - a binary min-heap of intrusive nodes, keyed by a deadline.  */
#include "wh_heap.h"
#include "bm_selftest.h"

#include <stdlib.h>
#include <string.h>

struct _wh_heap_t {
    wh_heap_node_t **nodes;     //  The heap array
    size_t size;                //  Nodes in it
    size_t capacity;            //  Slots allocated
    uint64_t seq;               //  Next push number
};

wh_heap_t *
wh_heap_new (void)
{
    return (wh_heap_t *) calloc (1, sizeof (wh_heap_t));
}

void
wh_heap_destroy (wh_heap_t **self_p)
{
    if (*self_p) {
        wh_heap_t *self = *self_p;
        for (size_t i = 0; i < self->size; i++)
            self->nodes [i]->index = WH_HEAP_NONE;
        free (self->nodes);
        free (self);
        *self_p = NULL;
    }
}

void
wh_heap_node_init (wh_heap_node_t *node)
{
    node->index = WH_HEAP_NONE;
}

static bool
s_less (const wh_heap_node_t *a, const wh_heap_node_t *b)
{
    return a->key < b->key || (a->key == b->key && a->seq < b->seq);
}

static void
s_place (wh_heap_t *self, size_t index, wh_heap_node_t *node)
{
    self->nodes [index] = node;
    node->index = index;
}

static void
s_up (wh_heap_t *self, size_t index)
{
    wh_heap_node_t *node = self->nodes [index];
    while (index > 0) {
        size_t parent = (index - 1) / 2;
        if (!s_less (node, self->nodes [parent]))
            break;
        s_place (self, index, self->nodes [parent]);
        index = parent;
    }
    s_place (self, index, node);
}

static void
s_down (wh_heap_t *self, size_t index)
{
    wh_heap_node_t *node = self->nodes [index];
    while (true) {
        size_t child = 2 * index + 1;
        if (child >= self->size)
            break;
        if (child + 1 < self->size && s_less (self->nodes [child + 1], self->nodes [child]))
            child++;
        if (!s_less (self->nodes [child], node))
            break;
        s_place (self, index, self->nodes [child]);
        index = child;
    }
    s_place (self, index, node);
}

int
wh_heap_push (wh_heap_t *self, wh_heap_node_t *node)
{
    if (self->size == self->capacity) {
        size_t capacity = self->capacity? self->capacity * 2: 64;
        wh_heap_node_t **nodes = (wh_heap_node_t **) realloc (self->nodes, capacity * sizeof *nodes);
        if (!nodes)
            return -1;
        self->nodes = nodes;
        self->capacity = capacity;
    }
    node->seq = self->seq++;
    s_place (self, self->size++, node);
    s_up (self, node->index);
    return 0;
}

wh_heap_node_t *
wh_heap_peek (wh_heap_t *self)
{
    return self->size? self->nodes [0]: NULL;
}

void
wh_heap_remove (wh_heap_t *self, wh_heap_node_t *node)
{
    size_t index = node->index;
    if (index == WH_HEAP_NONE || index >= self->size || self->nodes [index] != node)
        return;
    node->index = WH_HEAP_NONE;
    wh_heap_node_t *last = self->nodes [--self->size];
    if (index == self->size)
        return;                 //  It was the last one
    s_place (self, index, last);
    //  The moved node may belong above or below its new place.
    if (index > 0 && s_less (last, self->nodes [(index - 1) / 2]))
        s_up (self, index);
    else
        s_down (self, index);
}

wh_heap_node_t *
wh_heap_pop (wh_heap_t *self)
{
    wh_heap_node_t *node = wh_heap_peek (self);
    if (node)
        wh_heap_remove (self, node);
    return node;
}

size_t
wh_heap_size (wh_heap_t *self)
{
    return self->size;
}

//  --------------------------------------------------------------------------
//  Self test

void
wh_heap_test (bool verbose)
{
    printf (" * wh_heap: ");
    wh_heap_t *heap = wh_heap_new ();
    BM_CHECK (heap);
    BM_CHECK (wh_heap_pop (heap) == NULL);

    //  Random keys come out sorted, with removals from the middle.
    enum { COUNT = 5000 };
    wh_heap_node_t *nodes = (wh_heap_node_t *) calloc (COUNT, sizeof *nodes);
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < COUNT; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        wh_heap_node_init (&nodes [i]);
        nodes [i].key = (int64_t) (x % 1000);
        BM_CHECK (wh_heap_push (heap, &nodes [i]) == 0);
    }
    BM_CHECK (wh_heap_size (heap) == COUNT);
    for (int i = 0; i < COUNT; i += 3) {
        wh_heap_remove (heap, &nodes [i]);
        BM_CHECK (nodes [i].index == WH_HEAP_NONE);
        wh_heap_remove (heap, &nodes [i]);      //  Twice is harmless
    }
    size_t expected = COUNT - (COUNT + 2) / 3;
    BM_CHECK (wh_heap_size (heap) == expected);
    int64_t last = -1;
    uint64_t last_seq = 0;
    size_t popped = 0;
    wh_heap_node_t *node;
    while ((node = wh_heap_pop (heap))) {
        BM_CHECK (node->key >= last);
        if (node->key == last)
            BM_CHECK (node->seq > last_seq);    //  FIFO among equals
        last = node->key;
        last_seq = node->seq;
        BM_CHECK (node->index == WH_HEAP_NONE);
        popped++;
    }
    BM_CHECK (popped == expected);
    if (verbose)
        printf ("%zu popped in order ", popped);

    //  Destroy leaves remaining nodes marked out.
    BM_CHECK (wh_heap_push (heap, &nodes [0]) == 0);
    BM_CHECK (wh_heap_peek (heap) == &nodes [0]);
    wh_heap_destroy (&heap);
    BM_CHECK (nodes [0].index == WH_HEAP_NONE);
    wh_heap_destroy (&heap);
    free (nodes);
    printf ("OK\n");
}

/*  bm_rank.c - how many queued jobs there are at or before a priority.  */
#include "bm_rank.h"
#include "bm_log.h"
#include "bm_selftest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t priority;           //  A priority in use
    int64_t jobs;               //  Queued jobs at it, > 0
} s_entry_t;

struct _bm_rank_t {
    s_entry_t *entries;         //  Sorted by priority, ascending
    size_t size;                //  Entries in use
    size_t alloc;               //  Entries allocated
};

bm_rank_t *
bm_rank_new (void)
{
    return (bm_rank_t *) bm_calloc_or_abort (sizeof (bm_rank_t), "a queue's rank");
}

void
bm_rank_destroy (bm_rank_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->entries);
        free (*self_p);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Index of the first entry whose priority is >= priority.

static size_t
s_lower_bound (const bm_rank_t *self, int64_t priority)
{
    size_t low = 0, high = self->size;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (self->entries [mid].priority < priority)
            low = mid + 1;
        else
            high = mid;
    }
    return low;
}

int
bm_rank_add (bm_rank_t *self, int64_t priority)
{
    size_t at = s_lower_bound (self, priority);
    if (at < self->size && self->entries [at].priority == priority) {
        self->entries [at].jobs++;
        return 0;
    }
    if (self->size == self->alloc) {
        size_t alloc = self->alloc ? self->alloc * 2 : 4;
        s_entry_t *entries = (s_entry_t *) realloc (self->entries, alloc * sizeof (s_entry_t));
        if (!entries)
            return -1;
        self->entries = entries;
        self->alloc = alloc;
    }
    memmove (self->entries + at + 1, self->entries + at, (self->size - at) * sizeof (s_entry_t));
    self->entries [at].priority = priority;
    self->entries [at].jobs = 1;
    self->size++;
    return 0;
}

void
bm_rank_remove (bm_rank_t *self, int64_t priority)
{
    size_t at = s_lower_bound (self, priority);
    if (at == self->size || self->entries [at].priority != priority)
        return;
    if (--self->entries [at].jobs == 0) {
        memmove (self->entries + at, self->entries + at + 1,
                 (self->size - at - 1) * sizeof (s_entry_t));
        self->size--;
    }
}

int64_t
bm_rank_upto (const bm_rank_t *self, int64_t priority)
{
    int64_t jobs = 0;
    for (size_t i = 0; i < self->size && self->entries [i].priority <= priority; i++)
        jobs += self->entries [i].jobs;
    return jobs;
}

//  --------------------------------------------------------------------------
//  Self-test: counts against a plain array of priorities.

void
bm_rank_test (bool verbose)
{
    if (verbose)
        printf (" * bm_rank: ");
    bm_rank_t *rank = bm_rank_new ();
    BM_CHECK (rank);
    BM_CHECK (bm_rank_upto (rank, 0) == 0);
    BM_CHECK (bm_rank_upto (rank, 2097152) == 0);

    //  Jobs at 3, 3, 1, 5, 0: those at or before 3 are four.
    int64_t added [] = { 3, 3, 1, 5, 0 };
    for (size_t i = 0; i < sizeof added / sizeof added [0]; i++)
        BM_CHECK (bm_rank_add (rank, added [i]) == 0);
    BM_CHECK (bm_rank_upto (rank, 3) == 4);
    BM_CHECK (bm_rank_upto (rank, 0) == 1);
    BM_CHECK (bm_rank_upto (rank, 2) == 2);
    BM_CHECK (bm_rank_upto (rank, 5) == 5);
    BM_CHECK (bm_rank_upto (rank, 4) == 4);

    //  Removing one of the two at 3, then the job at 1, then an unknown
    //  priority (ignored).
    bm_rank_remove (rank, 3);
    BM_CHECK (bm_rank_upto (rank, 3) == 3);
    bm_rank_remove (rank, 1);
    BM_CHECK (bm_rank_upto (rank, 3) == 2);
    bm_rank_remove (rank, 7);
    BM_CHECK (bm_rank_upto (rank, 100) == 3);

    //  Many priorities (the array grows), counted against brute force.
    int64_t brute [1000];
    for (int i = 0; i < 1000; i++) {
        brute [i] = (i * 7919) % 97;
        BM_CHECK (bm_rank_add (rank, brute [i]) == 0);
    }
    for (int64_t p = -1; p < 100; p++) {
        int64_t expect = 0;
        for (int i = 0; i < 1000; i++)
            expect += brute [i] <= p;
        expect += (p >= 0) + (p >= 3) + (p >= 5);   //  The three still in
        BM_CHECK (bm_rank_upto (rank, p) == expect);
    }
    for (int i = 0; i < 1000; i++)
        bm_rank_remove (rank, brute [i]);
    BM_CHECK (bm_rank_upto (rank, 100) == 3);
    bm_rank_destroy (&rank);
    bm_rank_destroy (&rank);
    BM_CHECK (rank == NULL);
    if (verbose)
        printf ("OK\n");
}

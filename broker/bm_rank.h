/*  bm_rank.h - how many queued jobs there are at or before a priority.

    One per bot type, beside its queue: the queue is a heap (no order to
    count in), so the place of a new job (ACCEPTED's `position`) comes from
    these counts instead: a sorted array of (priority, jobs), one entry per
    priority in use.  Queues hold few distinct priorities, so add, remove
    and count are a binary search plus a short scan.  */
#ifndef BM_RANK_H
#define BM_RANK_H

#include <stdbool.h>
#include <stdint.h>

typedef struct _bm_rank_t bm_rank_t;

//  NULL if out of memory.
bm_rank_t *bm_rank_new (void);
void bm_rank_destroy (bm_rank_t **self_p);

//  One more queued job at this priority; -1 if out of memory (counts unchanged).
int bm_rank_add (bm_rank_t *self, int64_t priority);

//  One queued job fewer at this priority (a priority with no jobs is ignored).
void bm_rank_remove (bm_rank_t *self, int64_t priority);

//  Queued jobs with a priority number lower than or equal to this one.
int64_t bm_rank_upto (const bm_rank_t *self, int64_t priority);

void bm_rank_test (bool verbose);

#endif

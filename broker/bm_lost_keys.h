/*  bm_lost_keys.h - with CURVE, the key that may reclaim a lost run.

    When a worker is lost while it runs jobs, its jobs are queued again and
    the CURVE key that ran each is kept here: the run's DONE, which the
    worker sends again once it is back (protocol.md section 5), is taken
    from that key only, never from another key under the worker's name.

    Bounded: past max entries the oldest one goes, and dropped (if not
    NULL) is called with its job id so that its owner can make sure no key
    reclaims that run (the job then runs again: at least once); a job
    whose lost run was taken or dispatched again meanwhile has nothing to
    fear.  Entries of jobs that are no longer waiting are dropped the same
    way as they come to be the oldest.  One thread only, like the broker.  */
#ifndef BM_LOST_KEYS_H
#define BM_LOST_KEYS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct _bm_lost_keys_t bm_lost_keys_t;

//  Called with the job id of an entry dropped to stay within max (the id
//  is borrowed for the call).
typedef void (bm_lost_keys_dropped_fn) (const char *job_id, void *arg);

//  At most max entries (max >= 1).
bm_lost_keys_t *bm_lost_keys_new (size_t max, bm_lost_keys_dropped_fn *dropped, void *arg);
void bm_lost_keys_destroy (bm_lost_keys_t **self_p);

//  Key (a Z85 public key, copied) ran job_id's lost run: replaces what the
//  job had, and makes its entry the newest.  May drop the oldest.
void bm_lost_keys_put (bm_lost_keys_t *self, const char *job_id, const char *key);

//  The key that ran job_id's lost run (borrowed until the next change), or
//  NULL.
const char *bm_lost_keys_lookup (bm_lost_keys_t *self, const char *job_id);

//  Forget job_id's entry, if any (its run was reclaimed).
void bm_lost_keys_delete (bm_lost_keys_t *self, const char *job_id);

//  Entries held.
size_t bm_lost_keys_size (bm_lost_keys_t *self);

void bm_lost_keys_test (bool verbose);

#endif

/*  bm_done_replay.h - recent DONEs, kept to send again after a reconnect.

    DONEs sent just before the broker went away may be lost; the worker
    keeps a copy of each (at most `max` of at most `max_bytes` of bodies,
    oldest dropped first; the ring grows as needed) and, once a
    new connection said READY, sends those still young enough again.  A
    DONE ages only while a connection is up, from its run's end or from
    the last READY, whichever is later: a broker that is away for long,
    then recovers from Redis, still gets the DONEs of the runs that ended
    meanwhile.  Dropping a DONE no live broker got (the cap, or its age)
    is logged as a WARN naming its job.  A
    DONE the broker already has is answered NACK not_owner.  The completed
    ones are also found by job id: a JOB for a job we completed moments
    ago (the broker lost our DONE and dispatched it again) is answered
    with that DONE instead of running the bot a second time, unless a
    CANCEL for the job came after it (bm_done_replay_discard).  */
#ifndef BM_DONE_REPLAY_H
#define BM_DONE_REPLAY_H

#include "bm_worker_link.h"

#include <stddef.h>
#include <stdint.h>

typedef struct _bm_done_replay_t bm_done_replay_t;

//  What a worker keeps: its DONEs of the last 12 s (4 heartbeats of 1 s,
//  3 times) up to ~8,000 jobs/s, bounded in memory.
#define BM_DONE_REPLAY_MAX      100000
#define BM_DONE_REPLAY_BYTES    (64u << 20)

//  Keep at most max DONEs, of at most max_bytes of bodies.  The link
//  starts up, at time 0.
bm_done_replay_t *bm_done_replay_new (size_t max, size_t max_bytes);
void bm_done_replay_destroy (bm_done_replay_t **self_p);

//  Keep a copy of a DONE body (msgpack, size bytes) of job_id, sent at
//  now_mono; completed when the run completed (then found by job id).
void bm_done_replay_remember (bm_done_replay_t *self, const char *body, size_t size,
                              const char *job_id, bool completed, int64_t now_mono);

//  The body of the completed DONE kept for job_id (its size in *size), or
//  NULL.  Valid until the next call that changes self.
const char *bm_done_replay_completed (bm_done_replay_t *self, const char *job_id,
                                      size_t *size);

//  Forget the completed DONE kept for job_id: a CANCEL for its job crossed
//  it, so the broker did not take it; it is neither sent again nor found by
//  bm_done_replay_completed.  False if none was kept.
bool bm_done_replay_discard (bm_done_replay_t *self, const char *job_id);

//  The broker last spoke at heard_mono: a DONE sent on this connection
//  before that reached a live broker (dropping one that did not is
//  logged).
void bm_done_replay_heard (bm_done_replay_t *self, int64_t heard_mono);

//  The connection to the broker was lost: until the next is up, no DONE
//  ages.
void bm_done_replay_link_down (bm_done_replay_t *self);

//  A new connection said READY at now_mono (and every DONE kept is sent
//  on it again): each ages from then at the earliest.
void bm_done_replay_link_up (bm_done_replay_t *self, int64_t now_mono);

//  While the link is up, forget the DONEs last sent (at their run's end,
//  or again at the last READY) more than age_ms before now_mono.
void bm_done_replay_prune (bm_done_replay_t *self, int64_t now_mono, int64_t age_ms);

//  Send every DONE kept, oldest first, on link.
void bm_done_replay_send (bm_done_replay_t *self, bm_worker_link_t *link);

//  How many DONEs are kept to send again.
size_t bm_done_replay_size (bm_done_replay_t *self);

//  How many DONEs were dropped (the bounds, or their age) before a live
//  broker got them: each a job that may run again, each logged.
size_t bm_done_replay_lost (bm_done_replay_t *self);

//  Self-test.
void bm_done_replay_test (bool verbose);

#endif

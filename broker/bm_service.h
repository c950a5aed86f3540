/*  bm_service.h - a bot type (Majordomo's service): its priority queue,
    its semaphore of MAX_<TYPE>_BOTS permits, its workers and counts.

    Ownership: the broker's services table owns its services; the queue
    and the workers list only point at jobs and worker entries.  The class
    keeps the queue and its per-priority counts (bm_rank) together; making
    a broker's service with its metric series, and dispatch, are the
    broker's (bm_broker_internal.h).  Self-test: bm_service_test (CTest
    broker.unit.service).  */
#ifndef BM_SERVICE_H
#define BM_SERVICE_H

#include "bm_heap.h"
#include "bm_job.h"
#include "bm_metrics.h"
#include "bm_rank.h"

#define BM_DURATION_SAMPLES 1024   //  Run times kept per type for percentiles

struct _bm_service_t {
    char *name;                 //  Bot type
    int64_t limit;              //  Semaphore size
    int64_t usage;              //  Permits held by running jobs
    int64_t held;               //  Permits kept for its jobs recovered as
                                //  running and held for their workers
    int64_t max_queue;          //  Queue bound
    bm_heap_t *queue;           //  Queued jobs
    bm_rank_t *rank;            //  Queued jobs per priority (ACCEPTED position)
    zlistx_t *workers;          //  Workers serving it (not owned)
    bool configured;            //  A limit was configured
    bool served;                //  A worker has registered for it since start
    int64_t recorded_at;        //  Its last-seen in Redis's types record
                                //  (epoch ms, as read back or last written;
                                //  0: none), bm_types_store.c
    int64_t recorded_until;     //  Epoch ms: known from that record till then
    int64_t served_at;          //  Epoch ms a worker was last seen serving it
                                //  (this broker's, to the second; 0: none)
    bool paused;                //  Nothing dispatched (QUEUE pause)
    bool dispatch_pending;      //  bm_dispatch asked while dispatch was held
    int64_t confirming;         //  SUBMITs waiting for Redis (count in the bound)
    uint64_t completed, failed, cancelled, submitted;
    //  Those earlier leaders counted (bm_stats_continue): STATS and the
    //  snapshots add them; submitted alone (this process's) makes a type
    //  known.
    uint64_t earlier_completed, earlier_failed, earlier_cancelled, earlier_submitted;
    int64_t retry_attempts;     //  RETRY_<TYPE>_ATTEMPTS: runs of a job
    int64_t retry_backoff_ms;   //  RETRY_<TYPE>_BACKOFF_MS: first wait
    int64_t delayed;            //  Its jobs in broker->delayed
    int64_t waiting_children;   //  Its jobs in waiting-children (bm_deps.c)
    uint64_t retries;           //  Failed runs that were retried
    int64_t keep [2];           //  KEEP_COMPLETED_<TYPE>, KEEP_FAILED_<TYPE>:
                                //  records kept, 0 = all (until their TTL)
    zlistx_t *kept [2];         //  Ids of its completed, failed jobs, oldest
                                //  first (owned strings), when keep is set
    uint64_t limit_kills;       //  Runs that hit a resource limit (DONE
                                //  error.limit)
    zhashx_t *bots_gone;        //  Warm-bot totals of workers that left, by
                                //  worker name (bm_stats_worker_gone), or NULL
    int64_t gone_recycles, gone_init_failures;  //  Folded from bots_gone
    double durations [BM_DURATION_SAMPLES];    //  Run times since the last snapshot
    size_t duration_count;
    uint64_t snap_completed;    //  completed at the last snapshot
    bm_series_t *m_queue, *m_usage, *m_waiting, *m_limit, *m_submitted;
    bm_series_t *m_completed, *m_failed, *m_cancelled, *m_duration, *m_wait;
    bm_series_t *m_delayed, *m_retries;
    bm_series_t *m_workers, *m_queue_limit;
    //  RATE_<TYPE>=N/PERIOD: at most rate_max starts in any window of
    //  rate_period_ms (a sliding log: the start times of the last rate_max
    //  starts, a ring on the monotonic clock); rate_max 0 = unlimited.
    int64_t rate_max, rate_period_ms;
    int64_t *rate_starts;       //  The ring, rate_max slots
    int64_t rate_oldest;        //  Its oldest start's slot
    int64_t rate_count;         //  Starts in it (still in the window, or
                                //  not yet seen to have left it)
    int rate_timer;             //  zloop timer waking dispatch when the next
                                //  start is allowed, or -1
    int64_t rate_timer_at;      //  Mono ms it fires at
    bool rate_blocked;          //  The last dispatch stopped at the limit
    uint64_t rate_limited;      //  Starts the limit delayed
    bm_series_t *m_rate_limited;
};

//  A service with an empty queue and no workers; its metric series are
//  NULL until the broker sets them.
bm_service_t *bm_service_new (const char *name, int64_t limit, int64_t max_queue);
//  Free it (not its jobs or workers); *self_p becomes NULL.
void bm_service_destroy (bm_service_t **self_p);
//  Queue a job (its priority and seq order it).
void bm_service_queue_push (bm_service_t *self, bm_job_t *job);
//  The next job to run, out of the queue; NULL when empty.
bm_job_t *bm_service_queue_pop (bm_service_t *self);
//  Take a job out of the queue, if it is in it.
void bm_service_queue_remove (bm_service_t *self, bm_job_t *job);
//  How many jobs are queued.
size_t bm_service_queue_size (const bm_service_t *self);
//  A queued job's place, 1 = next (a scan: for RETRY, not every SUBMIT).
int64_t bm_service_queue_position (bm_service_t *self, const bm_job_t *job);
//  Permits free: neither running jobs nor held ones take them.
int64_t bm_service_permits_free (const bm_service_t *self);
//  Ready queued jobs that cannot start because every permit is held
//  (by running or held jobs), else 0.
int64_t bm_service_waiting_for_permit (bm_service_t *self);
//  RATE_<TYPE>'s value into starts and period: "N/PERIOD", PERIOD s, m,
//  h, ms, a number and one of those (200ms, 2s), or a number of ms; "0" or
//  "" is unlimited (0, 0).  0, or -1 with why in error.
#define BM_RATE_MAX_STARTS 100000
#define BM_RATE_MAX_PERIOD_MS 86400000LL
int bm_service_rate_parse (const char *text, int64_t *max, int64_t *period_ms, char *error,
                           size_t error_size);
//  "N starts in any P" for a log line ("1 start in any 24 h", "5 starts in
//  any 200 ms"): P in h, min or s when it is a whole number of them.
void bm_service_rate_text (int64_t max, int64_t period_ms, char *buf, size_t size);
//  Set the limit (0: none); the window starts empty.
void bm_service_set_rate (bm_service_t *self, int64_t max, int64_t period_ms);
//  Starts the limit allows at now (mono ms); INT64_MAX when unlimited.
int64_t bm_service_rate_room (bm_service_t *self, int64_t now);
//  A start at now (mono ms), counted in the window.
void bm_service_rate_started (bm_service_t *self, int64_t now);
//  When (mono ms) the window has room again, while it is full.
int64_t bm_service_rate_next (const bm_service_t *self);
//  Configured, served by a worker since start, recorded in Redis as
//  registered by a worker within BROKER_TYPE_TTL_MS, ever submitted to, or
//  holding jobs (queued, or recovered as running and held for their
//  worker: a new leader takes that type before the worker registers).
bool bm_service_known (const bm_service_t *self);
//  No connected worker serves the type now: its jobs wait until one
//  connects (ACCEPTED unserved).
bool bm_service_unserved (const bm_service_t *self);

//  Self test.
void bm_service_test (bool verbose);

#endif

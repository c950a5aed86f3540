/*  bm_job.h - one job as the broker holds it: its fields, its record
    (protocol.md section 3), its order in a queue and on the deadline heap.

    Ownership: the broker's job table owns its jobs (bm_job_destroy when a
    job is forgotten); queues (bm_service_t), the deadline heap, a worker's
    job list and the recent and finished lists only point at them.  The
    class knows one job alone; what the broker does with its jobs (the
    table, ending a job, RESULT, eviction) is declared in
    bm_broker_internal.h.  Self-test: bm_job_test (CTest broker.unit.job).  */
#ifndef BM_JOB_H
#define BM_JOB_H

#include "bm_backoff.h"
#include "bm_proto.h"

#include <czmq.h>

//  Terminal states come last (bm_job_terminal).
typedef enum {
    JOB_QUEUED, JOB_RUNNING, JOB_DELAYED, JOB_WAITING_CHILDREN,
    JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED,
    JOB_STATES
} bm_job_state_t;

typedef struct _bm_service_t bm_service_t;

//  The client a job's RESULT goes to: one routing id shared, counted, by
//  the jobs submitted with notify from the same client in a row (the items
//  of a SUBMIT_MANY), instead of a copy each.
typedef struct {
    zframe_t *identity;
    size_t refs;
} bm_notify_t;

//  A new one for this client (a copy of identity), held once.
bm_notify_t *bm_notify_new (zframe_t *identity);
//  Hold it once more; returns it.
bm_notify_t *bm_notify_ref (bm_notify_t *self);
//  Let go of it once; freed with the last; *self_p becomes NULL.
void bm_notify_unref (bm_notify_t **self_p);
typedef struct _bm_worker_entry_t bm_worker_entry_t;
typedef struct _bm_job_t bm_job_t;
typedef struct _bm_joblist_t bm_joblist_t;

//  The lists of jobs a job can be in at once, each through a link of its
//  own (the lists are intrusive: no allocation per job and list).
typedef enum {
    BM_JOBLIST_RECENT,          //  The broker's jobs by creation
    BM_JOBLIST_FINISHED,        //  Its terminal jobs by end, for eviction
    BM_JOBLIST_WORKER,          //  The jobs a worker runs
    BM_JOBLIST_WITHHELD,        //  Withheld delivery jobs, oldest first
    BM_JOBLIST_WEBHOOK,         //  The jobs whose webhook is in one state,
                                //  by when it reached it
    BM_JOBLISTS
} bm_joblist_which_t;

typedef struct {
    bm_job_t *prev, *next;
    bm_joblist_t *list;         //  The list the job is in, or NULL
} bm_joblink_t;

//  A list of jobs (not owned), in the order they were appended.
struct _bm_joblist_t {
    bm_job_t *first, *last;
    size_t size;
    bm_joblist_which_t which;   //  The jobs' link it uses
};

struct _bm_job_t {
    char id [BM_MAX_ID_LEN + 16];   //  Job id (delivery ids are longer)
    bm_service_t *service;         //  Its bot type
    bm_job_state_t state;          //  Current state
    int64_t priority;           //  Lower runs first
    int64_t seq;                //  Submission order, FIFO within priority
    char *payload;              //  msgpack bytes
    size_t payload_size;
    char *result;               //  msgpack bytes, when completed
    size_t result_size;
    char *webhook_url;          //  Or NULL
    char *idem_key;             //  Or NULL
    struct _bm_cancel_answer_t *cancel_answers; //  CANCELs answered once their
                                //  terminal write is confirmed
    struct _bm_idem_waiter_t *idem_waiters;     //  SUBMITs with its key waiting
                                //  for its SUBMIT write to be confirmed
    char *error_code;           //  When failed or cancelled
    char *error_message;
    char *log;                  //  What its run wrote on stderr, the tail
                                //  its DONE brought (valid UTF-8), or NULL
    int64_t exit_code;          //  The bot's exit status, when its worker said
    bool has_exit_code;
    char *worker_name;          //  Who runs (or ran) the attempt; NULL
                                //  while queued or delayed
    char *last_worker;          //  While queued or delayed: who ran the
                                //  attempt that was lost (its DONE may
                                //  still come), or NULL
    bool lost;                  //  Queued because its run was lost (not
                                //  released, not failed): last_worker's
                                //  DONE for that run is still the job's
    bm_worker_entry_t *worker;           //  Running on, or NULL
    int64_t progress;
    int64_t attempts;
    int64_t max_attempts;
    int64_t timeout_ms;
    int64_t created_at;         //  Epoch ms
    int64_t started_at;
    int64_t finished_at;
    int64_t queued_mono;        //  When it last entered the queue (mono ms)
    int64_t deadline;           //  Mono ms, when running
    int64_t started_mono;       //  When the attempt started (mono ms)
    bool running_saved;         //  This attempt's running state is in Redis
    bool held;                  //  Queued, but out of its queue: recovered as
                                //  running, it waits for its worker to report
                                //  it (bm_jobstore_hold)
    int64_t held_started_at;    //  While held: the startedAt its record had for
                                //  the run it waits for (0: none recorded)
    bool adopted;               //  This run was adopted (bm_job_adopt): it
                                //  began before its broker knew it
    bool waits;                 //  Running, its worker said it waits there
                                //  for a process (PROGRESS waiting, no started
                                //  since): its run has not begun
    int64_t run_at;             //  Epoch ms, while delayed: when it is due
    size_t due_index;           //  In broker->delayed
    int64_t run_attempts;       //  Runs allowed (SUBMIT attempts)
    int64_t failed_runs;        //  Runs whose bot failed so far
    bm_backoff_t backoff;       //  Wait before the next run
    char *attempt_errors;       //  msgpack maps, one per failed run,
    size_t attempt_errors_size; //  back to back (the record's array items)
    size_t queue_index;         //  In service->queue
    size_t deadline_index;      //  In broker->deadlines
    char *wh;                   //  Webhook delivery state (msgpack map)
    size_t wh_size;
    int8_t wh_state;            //  The state wh names (bm_webhook_state_t),
                                //  or -1: none; written with wh, by
                                //  bm_delivery_set_state only
    int64_t wh_at;              //  Epoch ms when the webhook reached wh_state
                                //  (0: not known: a record without it)
    bool wh_final;              //  A delivery job's DONE carried its final state
    bool withheld;              //  A delivery job out of its queue until the
                                //  outcome it carries is durable
    int64_t deliveries;         //  Delivery jobs made for this job
    int64_t deliveries_before;  //  Those made for its outcomes before the
                                //  current one (RETRY starts another): the
                                //  current one's first is number this + 1
    char *parent;               //  For a delivery job: the job it delivers
    bm_notify_t *notify;        //  Client to send RESULT to, or NULL
    bool durable;               //  Redis confirmed the SUBMIT write
    uint16_t confirming;        //  Terminal writes sent, not yet confirmed
    bool counted;               //  Its terminal outcome is counted (totals,
                                //  bot_executions_total, retention by
                                //  count): once a run, not again when a
                                //  REDELIVER rewrites its record; set as
                                //  the terminal write goes out, which
                                //  counts it once confirmed
    uint32_t outcome_gen;       //  Which outcome: RETRY starts another, so
                                //  that a confirmation of the one before
                                //  counts that one, not the new run's
    int64_t failed_done;        //  The failed DONE last taken for it (its
                                //  worker, attempt and run times hashed, in
                                //  its record too; 0: none, or one without
                                //  times): the same DONE sent again is not
                                //  a later run's
    struct _bm_deps_t *deps;    //  Its dependsOn (bm_deps.h), or NULL
    bm_joblink_t links [BM_JOBLISTS];   //  Its places in the lists of jobs
};

//  The job states' names, by bm_job_state_t.
extern const char *bm_job_state_names [];

//  A job with nothing set, in no queue and on no heap.
bm_job_t *bm_job_new (void);
//  Free a job and what it owns; *self_p becomes NULL.
void bm_job_destroy (bm_job_t **self_p);
//  Completed, failed or cancelled.
bool bm_job_terminal (const bm_job_t *self);
//  A webhook delivery job (it has a parent).
bool bm_job_is_delivery (const bm_job_t *self);
//  Its error (copied; code NULL: none).
void bm_job_set_error (bm_job_t *self, const char *code, const char *message);
//  Its result: msgpack bytes the job takes over (NULL: none).
void bm_job_set_result (bm_job_t *self, char *result, size_t size);
//  Its log: len bytes of text (a copy, bytes that are not UTF-8 or NUL
//  as '?'; len 0: none).
void bm_job_set_log (bm_job_t *self, const char *text, size_t len);
//  Forget the last run's outcome before the job runs again (RETRY):
//  attempts, progress, times, error, result and log; the next outcome counts.
void bm_job_reset_outcome (bm_job_t *self);
//  Back to waiting: progress, startedAt and worker go (the worker's name
//  to last_worker).  True if anything changed.
bool bm_job_clear_run (bm_job_t *self);
//  Pack its record; full: with payload, result and log.
void bm_job_pack_record (msgpack_packer *pk, const bm_job_t *self, bool full);
//  Queue order (priority, then submission) and deadline order, with the
//  index callbacks bm_heap keeps up to date.
bool bm_job_queue_less (const void *a, const void *b);
void bm_job_queue_index (void *item, size_t index);
bool bm_job_deadline_less (const void *a, const void *b);
void bm_job_deadline_index (void *item, size_t index);

//  An empty list of jobs using their link which.
void bm_joblist_init (bm_joblist_t *self, bm_joblist_which_t which);
//  Append a job (one in the list already moves to its end).
void bm_joblist_append (bm_joblist_t *self, bm_job_t *job);
//  Insert a job before next, a job of this list (at the end when next is
//  NULL; one in the list already moves there).
void bm_joblist_insert (bm_joblist_t *self, bm_job_t *job, bm_job_t *next);
//  Take a job out; nothing when it is not in this list.
void bm_joblist_remove (bm_joblist_t *self, bm_job_t *job);
//  The job is in this list.
bool bm_joblist_has (const bm_joblist_t *self, const bm_job_t *job);
//  First and last job, and the job after or before one in the list (NULL
//  at the ends).  A job may be removed while walking once its neighbour
//  has been read.
bm_job_t *bm_joblist_first (const bm_joblist_t *self);
bm_job_t *bm_joblist_last (const bm_joblist_t *self);
bm_job_t *bm_joblist_next (const bm_joblist_t *self, const bm_job_t *job);
bm_job_t *bm_joblist_prev (const bm_joblist_t *self, const bm_job_t *job);
size_t bm_joblist_size (const bm_joblist_t *self);

//  Self test.
void bm_job_test (bool verbose);

#endif

/*  bm_broker_internal.h - what the broker's files share, and only they.

    The broker is one actor (bm_broker.c) whose state is split by concern
    over the files of broker/ (see broker/README.md): every one of them
    works on the bm_broker_t of the actor's own thread, so nothing here is
    locked.  Ownership: the broker's job table owns its jobs, the services
    table its services, the workers table its worker entries; queues, lists
    and workers' job lists only point at them.  Nothing outside broker/
    includes this file: the public face is bm_broker.h.  */
#ifndef BM_BROKER_INTERNAL_H
#define BM_BROKER_INTERNAL_H

#include "bm_backoff.h"
#include "bm_broker.h"
#include "bm_codec.h"
#include "bm_codec_control.h"
#include "bm_heap.h"
#include "bm_idem.h"
#include "bm_lost_keys.h"
#include "bm_rank.h"
#include "bm_redis_url.h"
#include "bm_sentinel.h"
#include "bm_store.h"
#include "bm_config.h"
#include "bm_curve.h"
#include "bm_json.h"
#include "bm_log.h"
#include "bm_proto.h"
#include "bm_metrics.h"
#include "bm_selftest.h"

#include <stdatomic.h>

#include <czmq.h>
#include <ctype.h>
#include <inttypes.h>
#include <math.h>

#include "bm_job.h"
#include "bm_deps.h"
#include "bm_events.h"
#include "bm_jobtab.h"
#include "bm_service.h"
#include "bm_worker_entry.h"

//  A runAt this far behind the broker's clock still runs (at once): the
//  client's clock may be a little behind; further back is refused.
#define BM_RUN_AT_TOLERANCE_MS 60000
//  CURVE: lost runs whose worker key is kept for their reclaim (bm_lost_keys;
//  ~150 bytes each).  More lost runs waiting at once than this is a mass
//  failure: the oldest of them then run again rather than be reclaimed.
#define BM_LOST_KEYS_MAX 10000

typedef struct _bm_schedule_t bm_schedule_t;

//  A callback waiting for a write to be confirmed.
typedef struct {
    void (*fn) (redisReply *reply, void *arg);
    void *arg;
    bool fail_fast;             //  A SUBMIT: told NULL at once if the write is
                                //  not applied at the first try
} bm_waiter_t;

//  The unfinished set's changes over one loop turn, written as one SADD
//  and one SREM when the store flushes (two commands a turn instead of two
//  a job).
typedef struct {
    char *add_ids;              //  Ids to add, each BM_MAX_ID_LEN + 16 bytes
    size_t adds, add_alloc;
    bm_waiter_t *waiters;        //  SUBMITs acknowledged once the SADD lands
    size_t waiting, waiter_alloc;
    char *rem_ids;              //  Ids to remove
    size_t rems, rem_alloc;
} bm_live_t;

#define BM_ID_SLOT (BM_MAX_ID_LEN + 16)

//  A map key that is a string literal of at most 31 bytes (a fixstr): its
//  header and bytes in one write, its length known when compiled.  The
//  records and JOB bodies pack some twenty keys a job.
#define BM_PACK_KEY(pk, lit) \
    bm_pack_key_lit ((pk), (lit), sizeof (lit) - 1 + 0 * sizeof (char [sizeof (lit) <= 32 ? 1 : -1]))
#define BM_PACK_KV_INT(pk, lit, value) \
    do { BM_PACK_KEY (pk, lit); msgpack_pack_int64 ((pk), (value)); } while (0)
#define BM_PACK_KV_STR(pk, lit, value) \
    do { BM_PACK_KEY (pk, lit); bm_pack_str ((pk), (value)); } while (0)

static inline void
bm_pack_key_lit (msgpack_packer *pk, const char *key, size_t len)
{
    char buf [32];
    buf [0] = (char) (0xa0 | len);
    memcpy (buf + 1, key, len);
    pk->callback (pk->data, buf, len + 1);
}

//  A decimal integer into buf (at least 21 bytes), without snprintf;
//  returns its length.
static inline size_t
bm_int_text (int64_t value, char *buf)
{
    char digits [24], *end = digits + sizeof digits, *p = end;
    uint64_t magnitude = value < 0 ? (uint64_t) 0 - (uint64_t) value : (uint64_t) value;
    do {
        *--p = (char) ('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0)
        *--p = '-';
    size_t len = (size_t) (end - p);
    memcpy (buf, p, len);
    buf [len] = 0;
    return len;
}

//  A finished set's key: prefix, "{bm}:finished:completed:", a bot type.
#define BM_FINISHED_KEY_SLOT 256
typedef struct _bm_finished_t bm_finished_t;

//  A packed body being built: sbuffer + packer on the stack, the buffer
//  lent by the broker's pool (bm_body_init) and given back (bm_body_free).
typedef struct {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
    bm_broker_t *owner;         //  Whose pool the buffer returns to
} bm_body_t;

//  Bodies are built in buffers kept between messages: the broker is one
//  thread, and a small pool covers the few bodies built at once.
#define BM_BODY_POOL 8
//  One larger buffer is kept too, for the batch bodies (JOB_MANY,
//  ACCEPTED_MANY): up to this size.
#define BM_BODY_BIG_MAX (2 * 1024 * 1024)

struct _bm_broker_t {
    bm_broker_config_t config;  //  Settings
    zsock_t *router;            //  The one socket
    zactor_t *auth;             //  CURVE authenticator, or NULL
    zsock_t *auth_events;       //  CURVE: the router's handshake failures
                                //  (socket monitor), or NULL
    zloop_t *loop;              //  The one loop
    bm_store_t *store;          //  Redis, or NULL
    bm_live_t live;             //  Unfinished-set changes of this loop turn
    bm_finished_t *finished_sets;   //  Finished-set additions, trims (bm_finished.c)
    bm_msg_t *msg;              //  The message being handled (reused)
    zframe_t *identity;         //  Its sender's routing id (reused)
    char peer_key [41];         //  CURVE: its sender's public key (Z85,
                                //  from the authenticator's User-Id),
                                //  else ""
    zmq_msg_t *peer_frame;      //  The message's last frame, for its
                                //  sender's Peer-Address (borrowed while
                                //  it is handled), or NULL
    zcertstore_t *worker_certs; //  CURVE_WORKERS_DIR: the keys that may
                                //  act as workers, or NULL (any key)
    bm_lost_keys_t *lost_keys;  //  CURVE: job id -> the key of the worker
                                //  that was lost running it (only that key
                                //  may reclaim the run)
    bool recovered;             //  Queues rebuilt from Redis
    bool recovering;            //  Recovery reads in flight
    int recovery_pending;       //  HGETALLs not answered
    char (*recovery_again) [BM_ID_SLOT];    //  Ids whose HGETALL Redis answered
    size_t recovery_again_count;            //  with an error, read again later
    size_t recovery_again_alloc;
    int recovery_again_tries;   //  Rounds of them read again so far
    int recovery_again_timer;   //  zloop timer of the next round, or 0
    char recovery_again_error [128];        //  The first error of the round
    char **recovery_old;        //  Ids in the earlier layout's sorted set
    size_t recovery_old_count;  //  "live", kept until the unfinished set's arrive
    zlistx_t *held;             //  Ids of the jobs recovered as running that
                                //  wait for their worker to report them
                                //  (bm_jobstore_hold), or NULL
    int64_t held_until;         //  Mono ms: when they join their queues
    int64_t types_wait_until;   //  Mono ms: till then a type nobody named
                                //  yet is refused store_unavailable, not
                                //  unknown_bot_type (the workers of the
                                //  broker before this one register again)
                                //  (0 until the recovery ends)
    size_t types_recorded;      //  Fields of Redis's types record at the
                                //  recovery's read (0: none, or unread)
    int64_t types_check_at;     //  Mono ms: the next bm_types_store_tick pass
    zhashx_t *early_dones;      //  Job id -> a DONE that came before the
                                //  recovery reached its job, kept until it
                                //  does (bm_broker_workers.c), or NULL
    size_t early_done_bytes;    //  Their bodies' bytes
    size_t early_dones_kept;    //  DONEs kept so during this recovery
                                //  (logged once at the first, summed at its end)
    zhashx_t *services;         //  name -> bm_service_t (owned)
    zhashx_t *workers;          //  key -> bm_worker_entry_t (owned)
    bm_jobtab_t *jobs;          //  id -> bm_job_t (owned)
    zhashx_t *batch_clients;    //  Clients that sent SUBMIT_MANY: their RESULTs
                                //  of a loop turn, for RESULT_MANY (owned)
    int results_timer;          //  zloop timer sending them, or 0
    int lookup_dispatch_timer;  //  zloop timer dispatching the slots that
                                //  lookups Redis could not answer freed, or 0
    void *results_last;         //  The batch client last given a RESULT
    bm_notify_t *notify_last;   //  The client of the last SUBMIT with notify (held)
    int dispatch_held;          //  bm_dispatch_hold depth: dispatch waits
    bm_service_t **dispatch_pending;    //  Services to dispatch at the release
    size_t dispatch_pending_count, dispatch_pending_alloc;
    bm_joblist_t recent;        //  Jobs by creation (not owned)
    bm_joblist_t finished;      //  Terminal jobs (not deliveries) by end,
                                //  for eviction: KEEP_FINISHED_JOBS of them
    bm_joblist_t finished_deliveries;   //  Terminal delivery jobs by end,
                                //  bounded apart (bm_job_keep_finished)
    bm_joblist_t withheld;      //  Delivery jobs withheld, oldest first
    bm_joblist_t webhooks [BM_WEBHOOK_STATES];  //  Jobs (not deliveries) by
                                //  their webhook state, each list by when
                                //  the job's webhook reached it: LIST
                                //  webhook= walks one, not every job
    bm_heap_t *deadlines;       //  Running jobs by deadline
    bm_heap_t *delayed;         //  Delayed jobs by due time (run_at)
    int due_timer;              //  zloop timer for the earliest, or -1
    int64_t due_timer_at;       //  Epoch ms it fires at
    zhashx_t *schedules;        //  key -> bm_schedule_t (owned)
    bm_heap_t *schedule_heap;   //  Schedules by next due time
    int schedule_timer;         //  zloop timer for the earliest, or -1
    int64_t schedule_timer_at;  //  Epoch ms it fires at
    bm_idem_t *idem;            //  idempotencyKey -> first job id
    int64_t seq;                //  Last submission number
    char instance [5];          //  Random, part of job ids
    uint32_t counter;           //  Part of job ids
    int64_t started_mono;       //  For uptime
    bool stopping;              //  Shutdown begun
    int64_t stop_deadline;      //  Mono ms
    bool done;                  //  Shutdown complete
    uint64_t submitted, completed, failed, cancelled, rejected, retried;
    uint64_t wh_delivered, wh_failed, snap_wh_delivered, snap_wh_failed;
    //  The totals earlier leaders counted, as the last metric snapshot in
    //  Redis said when this broker recovered: STATS and the snapshots
    //  give them plus this process's own counts (bm_stats_continue).
    struct {
        uint64_t submitted, completed, failed, cancelled, rejected, retried;
        uint64_t wh_delivered, wh_failed;
    } earlier;
    bool totals_asked;          //  bm_stats_continue asked Redis (again
                                //  after no answer)
    bool totals_known;          //  ...and had its answer: snapshots may
                                //  be written
    bool stop_snapshot;         //  The stop's snapshot was taken (flushed)
    zhashx_t *earlier_types;    //  Type name -> uint64_t [4] (submitted,
                                //  completed, failed, cancelled) of the
                                //  last snapshot, until the recovery ends
    int64_t last_snapshot;      //  Mono ms
    int64_t snap_written;       //  Mono ms of the last snapshot written (0: none yet)
    bm_metrics_t *metrics;      //  Registry
    bm_metrics_http_t *metrics_http;    //  /metrics server
    bm_metric_t *mf_executions, *mf_duration, *mf_queue, *mf_usage, *mf_waiting,
                *mf_limit, *mf_submitted, *mf_wait, *mf_rejected, *mf_frames,
                *mf_redispatched, *mf_dropped, *mf_replaced;
    bm_metric_t *mf_handshakes;         //  broker_handshakes_failed_total{reason}
    bm_metric_t *mf_limit_kills;        //  bot_limit_kills_total{bot_type,limit}
    bm_metric_t *mf_delayed;            //  delayed_queue_size{queue_name}
    bm_metric_t *mf_retries;            //  bot_retries_total{bot_type}
    bm_metric_t *mf_schedule_runs;      //  schedule_runs_total{schedule}
    bm_metric_t *mf_type_workers;       //  broker_workers{bot_type}
    bm_metric_t *mf_queue_limit;        //  queue_limit{queue_name}
    bm_metric_t *mf_rate_limited;       //  bot_rate_limited_total{bot_type}
    bm_series_t *m_workers, *m_redis_up, *m_recovering, *m_store_pending;
    bm_series_t *m_redis_write_errors, *m_redis_refusing;
    char store_refusal [256];           //  bm_stats_store_refusal's text
    atomic_bool redis_reached;          //  The store is connected (a standby's
                                        //  too): GET /ready reads it
    int64_t bot_workers;                //  broker_workers_connected
    bm_series_t *m_webhook_managers;    //  broker_webhook_managers_connected
    int64_t webhook_managers;
    msgpack_sbuffer body_pool [BM_BODY_POOL];   //  Buffers kept for bodies
    int body_pool_size;         //  How many the pool holds
    msgpack_sbuffer body_big;   //  The larger buffer kept, or none (data NULL)
    zsock_t *pipe;              //  The actor's command pipe
    bool verbose;               //  VERBOSE: debug lines for this actor
    bool bound;                 //  An endpoint is bound
    bool bind_failed;           //  The first BIND failed: no loop, no Redis
    bool bind_bad_value;        //  ... as its endpoint is malformed
    struct _bm_lease_t *lease;  //  The leadership lease (any broker with Redis), or NULL
    bool solo;                  //  BROKER_HA off with Redis: leads alone, or exits
    bool rival_logged;          //  Solo: another broker's lease was logged
    char stale_seen [600];      //  Solo: the last lease value judged (gone or not)
    bool serving;               //  Handles messages (alone, or leading)
    bool leading;               //  Holds the lease
    bool stepped_down;          //  Lost its reign: serves no more
    bool released;              //  Gave the lease up (shutdown)
    bm_series_t *m_leader, *m_failovers;
    int command;                //  The command being handled, or -1
    int64_t refusal_window;     //  Mono ms the refusal log's second began
    int refusal_lines;          //  Refusal lines written in it
    uint64_t refusal_dropped;   //  And not written (over the limit)
    zhashx_t *dependents;       //  Dependency id -> the ids of the jobs waiting
                                //  for it (bm_deps.c), or NULL
    int64_t dependent_entries;  //  Ids in it (broker_dependency_watches)
    bm_series_t *m_dependent_entries;
    zhashx_t *deps_known;       //  While a SUBMIT is admitted again: the jobs of
                                //  its dependsOn read from Redis (bm_deps_lookup)
    zlistx_t *deps_recovered;   //  Ids of the waiting jobs a recovery brought
                                //  back, checked as it ends, or NULL
    zlistx_t *deps_ends;        //  While dependents are told: the jobs that ended
                                //  meanwhile, told after (bm_deps.c), else NULL
    zlistx_t *deps_forgotten;   //  Ended jobs forgotten that jobs waited on for
                                //  their RETRY: told at the next tick, or NULL
    zhashx_t *deps_admitted;    //  Completed dependency id -> the copy of its
                                //  result the jobs admitted with it share
                                //  (bm_deps.c), or NULL
    struct _bm_events_t *events;    //  Live event subscriptions (bm_events.c)
    int event_subs;             //  How many
    bool events_on;             //  Subscriptions, or the history lingers after the
                                //  last: false makes BM_JOB_EVENT one branch
};

//  Refusals logged a second at most (a flood must not fill the log): the
//  rest are counted, and the count is logged once the second is over.
#define BM_REFUSAL_LOG_PER_S 20


//  Room for a job record's whole HSET: its own fields (BM_RECORD_FIELDS_MAX
//  arguments with the command and key) and every dependency's result, so
//  that a record is always written by one command, all or nothing.
#define BM_RECORD_FIELDS_MAX 12
#define BM_CMD_MAX_ARGS (BM_RECORD_FIELDS_MAX + 2 * BM_MAX_DEPENDS)

typedef struct {
    int argc;
    const char *argv [BM_CMD_MAX_ARGS];
    size_t len [BM_CMD_MAX_ARGS];
    char scratch [BM_CMD_MAX_ARGS][24];
    char key [256];
} bm_cmd_t;

typedef struct {
    bm_broker_t *broker;
    bm_waiter_t *waiters;
    size_t count;
} bm_waiters_t;

typedef struct {
    bm_broker_t *broker;
    char id [BM_MAX_ID_LEN + 16];
    zframe_t *identity;
    msgpack_object req;         //  Copy of the request's req (scalar), or nil
    bool has_req;
    bool has_priority;          //  A duplicate's job's priority is known...
    int64_t priority;           //  ...and is this
} bm_pending_t;


//  bm_broker.c: copies, body buffers, sending without blocking
char *bm_memdup (const void *data, size_t size);
void bm_set_str (char **field, const char *value);
char *bm_keep_value (const bm_msg_t *msg, const char *key, const msgpack_object *obj, size_t *size);
char *bm_keep_codec_value (const bm_msg_t *msg, const char *key, const bm_codec_value_t *value,
                           size_t *size);
void bm_body_init (bm_broker_t *self, bm_body_t *body);
void bm_body_free (bm_body_t *body);
//  A body for a batch (JOB_MANY): in the larger buffer kept, when free.
void bm_body_init_big (bm_broker_t *self, bm_body_t *body);
//  A packer in that buffer (ACCEPTED_MANY), and the buffer given back.
void bm_broker_packer_take (bm_broker_t *self, bm_packer_t *packer);
void bm_broker_packer_give (bm_broker_t *self, bm_packer_t *packer);
int bm_req_count (const msgpack_object *request);
void bm_pack_req (msgpack_packer *pk, const msgpack_object *request);
void bm_broker_send_client (bm_broker_t *self, zframe_t *identity, int command, bm_body_t *body);
//  The same for a body already packed, never blocking: 0, or -1 with errno
//  EAGAIN (the client's queue is at BROKER_PEER_HWM) or EHOSTUNREACH (gone).
int bm_broker_route_client (bm_broker_t *self, zframe_t *identity, int command, const char *body,
                            size_t size);
void bm_broker_reject (bm_broker_t *self, zframe_t *identity, const msgpack_object *request,
                       const char *code, const char *message);
int bm_broker_send_worker (bm_broker_t *self, bm_worker_entry_t *worker, int command, bm_body_t *body);
//  A peer's routing id in hex into key (2 * 256 + 1 bytes): the worker
//  table's key.
void bm_broker_peer_key (zframe_t *identity, char *key);
//  One WARN line for a message refused: the command (-1: the frames did
//  not parse), the peer kind, its routing id in hex and worker name (NULL:
//  not registered), the code and the message.  Rate-limited to
//  BM_REFUSAL_LOG_PER_S lines a second.
void bm_broker_log_refusal (bm_broker_t *self, zframe_t *identity, bm_peer_t peer,
                            const char *worker_name, int command, const char *job_id,
                            const char *code, const char *message);
void bm_broker_log_refusal_tick (bm_broker_t *self, int64_t now);
void bm_broker_send_worker_simple (bm_broker_t *self, zframe_t *identity, int command,
                                   const char *code, const char *message);

//  bm_job.c: the job table, the end of a job (the class: bm_job.h)
bm_job_t *bm_job_insert (bm_broker_t *self, bm_job_t *job);
void bm_job_restore (bm_broker_t *self, bm_job_t *job);
void bm_job_delete (bm_broker_t *self, bm_job_t *job);
void bm_job_send_result (bm_broker_t *self, bm_job_t *job);
void bm_job_keep_finished (bm_broker_t *self, bm_job_t *job);
void bm_job_expire (bm_broker_t *self, int64_t now);
void bm_job_finish (bm_broker_t *self, bm_job_t *job, bm_job_state_t state,
                    const char *code, const char *message);
//  The same, the run having ended at finished_at (ms since the epoch)
//  rather than now: a DONE that carries an earlier run's times.
void bm_job_finish_at (bm_broker_t *self, bm_job_t *job, bm_job_state_t state,
                       const char *code, const char *message, int64_t finished_at);
void bm_job_make_id (bm_broker_t *self, char *id, size_t size);

//  bm_jobstore.c: Redis commands and the record schema
void bm_cmd_arg_str (bm_cmd_t *cmd, const char *str);
void bm_cmd_arg_int (bm_cmd_t *cmd, int64_t value);
void bm_cmd_start (bm_broker_t *self, bm_cmd_t *cmd, const char *verb, const char *what, const char *id);
void bm_jobstore_issue (bm_broker_t *self, bm_cmd_t *cmd, bool retry, bm_store_fn *fn, void *arg);
void bm_jobstore_query (bm_broker_t *self, bm_cmd_t *cmd, bm_store_fn *fn, void *arg);
void bm_jobstore_on_live_added (redisReply *reply, void *arg);
void bm_jobstore_live_flush (void *arg);
void bm_jobstore_recovery_old_free (bm_broker_t *self);
void bm_jobstore_recovery_again_free (bm_broker_t *self);
void bm_jobstore_persist_full (bm_broker_t *self, bm_job_t *job, bool retry, bm_store_fn *fn, void *arg);
void bm_jobstore_persist_state (bm_broker_t *self, bm_job_t *job);
//  The same, fn told once Redis has it (NULL: it did not take it; without
//  Redis at once, with an OK).
void bm_jobstore_persist_state_then (bm_broker_t *self, bm_job_t *job, bm_store_fn *fn, void *arg);
void bm_jobstore_persist_terminal (bm_broker_t *self, bm_job_t *job);
void bm_jobstore_forget (bm_broker_t *self, const char *id);
//  The same, fn told once both landed; with idem_key (the job's
//  idempotencyKey, or NULL) that key too is dropped if it names the job
//  (bm_idem_store_drop), its HDEL between the DEL and the SREM.
void bm_jobstore_forget_then (bm_broker_t *self, const char *id, const char *idem_key,
                              bm_store_fn *fn, void *arg);
//  bm_idem_store.c: the idempotency keys in Redis ("{bm}:idem").  HSET a
//  new job's key (in the group of its SUBMIT write), HDEL a key, drop the
//  expired keys from the index and from Redis (the leader's tick), and
//  read them back at recovery.
void bm_jobstore_persist_idem (bm_broker_t *self, bm_job_t *job, uint64_t fingerprint);
void bm_jobstore_forget_idem (bm_broker_t *self, const char *key);
//  A job is gone (removed, or its record found gone): its key, if it still
//  names that job, is dropped from the index and (HDEL) from Redis, so
//  that the next SUBMIT with it makes a new job, after a restart too.
void bm_idem_store_drop (bm_broker_t *self, const char *key, const char *job_id);
void bm_idem_store_tick (bm_broker_t *self, int64_t now);
//  A key's field value (HGET) read: its job id into job_id[size]; false
//  when there is none, it does not read, or it has expired.
bool bm_idem_store_parse (const redisReply *value, char *job_id, size_t size);
//  Recovery reads the hash page by page (HSCAN), then calls done once:
//  read false when Redis went away meanwhile (the recovery starts over).
typedef void (bm_idem_store_done_fn) (bm_broker_t *self, bool read);
void bm_idem_store_recover (bm_broker_t *self, bm_idem_store_done_fn *done);
//  bm_types_store.c: the bot types workers registered, in Redis
//  ("{bm}:types", field = type, value = last-seen in epoch ms).  A type a
//  worker registers is written when first seen and again once its
//  last-seen is old (bm_types_store_seen); the leader's tick keeps the
//  served types fresh and deletes those no worker served for
//  BROKER_TYPE_TTL_MS; recovery reads them back (bm_types_store_recover,
//  a query ahead of the idempotency keys') so that they are known at once.
void bm_types_store_seen (bm_broker_t *self, bm_service_t *service);
void bm_types_store_tick (bm_broker_t *self, int64_t now);
void bm_types_store_recover (bm_broker_t *self);
//  The recovery ended: the types of the workers registered meanwhile are
//  written.
void bm_types_store_recovered (bm_broker_t *self);
void bm_jobstore_persist_webhook (bm_broker_t *self, const char *job_id, const char *wh, size_t wh_size,
                                  int64_t wh_at);
bm_job_t *bm_jobstore_job_from_hash (bm_broker_t *self, const char *id, redisReply *reply,
                                     bool *held);
void bm_jobstore_save_running (bm_broker_t *self, int64_t now);
void bm_jobstore_hold_tick (bm_broker_t *self, int64_t now);
void bm_jobstore_hold_free (bm_broker_t *self);
void bm_jobstore_on_store_state (bool up, void *arg);

//  bm_service.c: the broker's bot types, dispatch (the class: bm_service.h)
bm_service_t *bm_service_require (bm_broker_t *self, const char *name);
void bm_dispatch (bm_broker_t *self, bm_service_t *service);
void bm_dispatch_worker (bm_broker_t *self, bm_worker_entry_t *worker);
//  Hold dispatch over a loop that confirms, queues or ends many jobs (the
//  items of SUBMIT_MANY or DONE_MANY, the SUBMITs one ZADD confirms):
//  bm_dispatch only marks the type, and the last release dispatches each
//  type marked once, so that a worker that takes batches gets one
//  JOB_MANY instead of a JOB for each job as it comes.  Holds nest.
void bm_dispatch_hold (bm_broker_t *self);
void bm_dispatch_release (bm_broker_t *self);

//  A batch's Redis writes leave in groups of BM_PUSH_WRITES while the rest
//  of the batch is read (SUBMIT_MANY, DONE_MANY): Redis runs the first
//  items' writes while the broker decodes the next ones, instead of the
//  whole batch's after it.  Called between items: sends the open group
//  (with the turn's batched set writes) once it holds that many writes,
//  while fewer than BM_PUSH_IN_FLIGHT writes wait for Redis's answer.
//  With more waiting (many batches at once, as the gateway's), Redis has
//  work queued already: smaller groups then only cost both sides more
//  (wake-ups, reads) for no gain, and the group goes at the end of the
//  turn instead.
#define BM_PUSH_WRITES     256
#define BM_PUSH_IN_FLIGHT  2048
void bm_broker_push_writes (bm_broker_t *self);
void bm_job_enqueue (bm_broker_t *self, bm_job_t *job);
void bm_job_set_held (bm_job_t *job, bool held);
void bm_job_unassign (bm_broker_t *self, bm_job_t *job);
//  A running job goes back to the queue, or past its maxAttempts fails
//  with worker_lost, its message saying how the dispatch was lost (loss,
//  e.g. "the worker running the job was lost") and which one it was.
void bm_job_requeue (bm_broker_t *self, bm_job_t *job, const char *reason, const char *loss);
//  A queued job that a worker reports running (READY running) becomes its
//  running job, for the attempt it runs (no new attempt, no JOB sent).
void bm_job_adopt (bm_broker_t *self, bm_job_t *job, bm_worker_entry_t *worker);
bool bm_service_type_known (bm_broker_t *self, const char *name);
//  True for a while after a start or takeover (types_wait_until): a type
//  not known yet is refused store_unavailable (BM_TEXT_TYPES_WAIT).
bool bm_types_waiting (bm_broker_t *self);
//  For a type not known: the store_unavailable message while the broker
//  reads its queues back or bm_types_waiting, else NULL (unknown_bot_type).
const char *bm_types_unknown_refusal (bm_broker_t *self);

//  bm_broker_ha.c: leader and standby (BROKER_HA=redis)
int bm_ha_setup (bm_broker_t *self);
void bm_ha_destroy (bm_broker_t *self);
void bm_ha_bound (bm_broker_t *self);
void bm_ha_tick (bm_broker_t *self, int64_t now);
void bm_ha_check (bm_broker_t *self, int64_t now);
bool bm_ha_may_recover (bm_broker_t *self);
bool bm_ha_release (bm_broker_t *self);
void bm_ha_refuse (bm_broker_t *self, zframe_t *identity, bm_msg_t *msg);
void bm_ha_pack (bm_broker_t *self, msgpack_packer *pk);
int bm_ha_end_loop (zloop_t *loop, int timer_id, void *arg);

//  bm_delivery.c: webhook deliveries
//  The one writer of a job's webhook state: the msgpack map wh (copied),
//  and state, the state it names (bm_webhook_state_t, or -1: none).
void bm_delivery_set_state (bm_job_t *job, const char *wh, size_t size, int state);
//  After its webhook state is set: the job joins the list of that state.
void bm_delivery_index (bm_broker_t *self, bm_job_t *job);
//  A delivery's webhook state (wh, naming state) becomes its job's, in
//  memory and in Redis, with the job's redeliveries and previousError
//  added.
void bm_delivery_to_parent (bm_broker_t *self, const bm_job_t *delivery, const char *wh, size_t size,
                            int state);
char *bm_delivery_simple_state (bm_broker_t *self, bm_webhook_state_t state, int64_t attempts,
                                const char *error, size_t *size);
void bm_delivery_create (bm_broker_t *self, bm_job_t *parent);
//  True when id names a webhook delivery job ("<jobId>.wh<N>").
bool bm_delivery_id (const char *id);
void bm_delivery_update (bm_broker_t *self, bm_job_t *delivery, const bm_codec_webhook_t *state);
void bm_delivery_release (bm_broker_t *self, bm_job_t *parent);
void bm_delivery_drop_withheld (bm_broker_t *self, bm_job_t *parent);
void bm_delivery_lost (bm_broker_t *self, bm_job_t *delivery);
//  The HTTP attempts a delivery's managers reported (0: none yet).
int64_t bm_delivery_attempts (const bm_job_t *delivery);

//  bm_delayed.c: delayed jobs (SUBMIT delayMs/runAt, waits between runs)
bool bm_job_due_less (const void *a, const void *b);
void bm_job_due_index (void *item, size_t index);
bool bm_delayed_retry (bm_broker_t *self, bm_job_t *job, const char *code, const char *message);
void bm_delayed_add (bm_broker_t *self, bm_job_t *job);
void bm_delayed_remove (bm_broker_t *self, bm_job_t *job);
void bm_delayed_promote (bm_broker_t *self, bm_job_t *job);
void bm_delayed_arm (bm_broker_t *self);
void bm_due_timer_arm (bm_broker_t *self, bm_heap_t *heap, int64_t (*due_of) (const void *item),
                       int *timer, int64_t *timer_at, zloop_timer_fn *handler);
void bm_delayed_pack_errors (msgpack_packer *pk, const bm_job_t *job);

//  bm_control.c: QUEUE, REMOVE, PROMOTE
void bm_control_queue (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg);
void bm_control_job (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg);
void bm_control_job_act (bm_broker_t *self, zframe_t *identity, const msgpack_object *body,
                         bool promote, bm_job_t *job);
void bm_control_on_paused (redisReply *reply, void *arg);
void bm_control_retain (bm_broker_t *self, bm_job_t *job);
//  by: who asked ("REMOVE from client ..."), for its INFO log line; NULL
//  for a retention trim (a debug line).
void bm_control_remove (bm_broker_t *self, bm_job_t *job, const char *by);
//  bm_retry.c: QUEUE retry, a bot type's failed (cancelled) jobs run again
void bm_retry_start (bm_broker_t *self, zframe_t *identity, const bm_codec_queue_t *q,
                     const char *by);

//  bm_finished.c: each type's completed, failed and cancelled jobs in Redis, by end
void bm_finished_destroy (bm_finished_t **self_p);
//  The sets: 0 completed, 1 failed, 2 cancelled (bm_finished_which).
#define BM_FINISHED_SETS 3
int bm_finished_which (bm_job_state_t state);
const char *bm_finished_what (int which);
void bm_finished_reads_begin (bm_broker_t *self);
void bm_finished_reads_end (bm_broker_t *self);
bool bm_finished_deleted (bm_broker_t *self, const char *id);
void bm_finished_key (bm_broker_t *self, const char *bot_type, int which, char *key, size_t size);
int64_t bm_finished_ttl_ms (bm_broker_t *self, int which);
bool bm_finished_expired (bm_broker_t *self, const bm_job_t *job, int64_t now);
void bm_finished_add (bm_broker_t *self, const bm_job_t *job);
void bm_finished_flush (bm_broker_t *self);
void bm_finished_forget (bm_broker_t *self, const bm_job_t *job);
void bm_finished_remove_ids (bm_broker_t *self, const char *key, const char **ids, size_t count);
int64_t bm_finished_remove_listed (bm_broker_t *self, const char *bot_type, int which,
                                   const redisReply *reply, const char *by);
void bm_finished_tick (bm_broker_t *self, int64_t now_mono);
//  After a recovery: the newest finished jobs Redis holds back in memory,
//  for the listings.
void bm_finished_restore (bm_broker_t *self);
void bm_finished_removed (bm_broker_t *self, const char *id);

//  bm_schedule.c: repeatable jobs
void bm_schedule_free (void **item);
bool bm_schedule_less (const void *a, const void *b);
void bm_schedule_index (void *item, size_t index);
void bm_schedule_arm (bm_broker_t *self);
void bm_schedule_command (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg);
void bm_schedule_recover (bm_broker_t *self);

//  bm_broker_workers.c: workers and BMW01
void bm_workers_destroy (bm_worker_entry_t **self_p);
//  bm_broker_workers.c: the broker's workers and BMW01 (the class:
//  bm_worker_entry.h)
void bm_workers_delete (bm_broker_t *self, bm_worker_entry_t *worker, const char *reason);
void bm_workers_stop_job (bm_broker_t *self, bm_job_t *job, const char *reason);
void bm_workers_handle (bm_broker_t *self, zframe_t *identity, bm_msg_t *msg);
//  A message whose body did not parse: true (and acted on) when it is a
//  worker's DISCONNECT, which needs no body.
bool bm_workers_parting (bm_broker_t *self, zframe_t *identity, const void *header,
                         size_t header_size, const void *command, size_t command_size);
//  Recovery from Redis brought back this job: a worker that reported it
//  running (READY running, before recovery ended) adopts it, then a DONE
//  kept for it (it came before the recovery reached the job) is taken.
void bm_workers_claim_recovered (bm_broker_t *self, bm_job_t *job);
//  Recovery ended: the reported jobs still unknown are answered (CANCEL),
//  the DONEs still kept are handled as DONEs that come now.
void bm_workers_recovery_done (bm_broker_t *self);
//  Free the DONEs kept while the recovery runs (the broker's end).
void bm_workers_early_free (bm_broker_t *self);

//  bm_broker_clients.c: BMC01
void bm_clients_handle (bm_broker_t *self, zframe_t *identity, bm_msg_t *msg);
//  A job command (STATUS, CANCEL, RETRY, REDELIVER, REMOVE, PROMOTE) for a
//  job the broker does not hold: its record is read from Redis, then acted on.
void bm_clients_job_load (bm_broker_t *self, zframe_t *identity, const msgpack_object *body,
                          const char *id, int command);
//  RETRY's work on a failed or cancelled client job that is durable: queued
//  again afresh; fn told once Redis has the queued record.  The caller
//  dispatches.
void bm_clients_retry (bm_broker_t *self, bm_job_t *job, bm_store_fn *fn, void *arg);
//  One SUBMIT body's admission, for SUBMIT and each item of SUBMIT_MANY:
//  refused (code set, counted), a duplicate (id: the first job's), or a
//  new job in the table whose Redis write the caller issues
//  (bm_jobstore_persist_full) and then confirms with bm_submit_confirmed.
typedef struct {
    const char *code;           //  NULL: admitted
    char message [256];         //  Why not, naming the field
    bool duplicate;             //  An idempotencyKey matched: id is that job's
    const char *state;          //  A duplicate's state now (a static name), or
                                //  NULL when only Redis may hold the job: the
                                //  caller then checks it (bm_submit_duplicate_check)
    bool has_priority;          //  A duplicate's (or waited-for) job's
    int64_t priority;           //  priority, when in memory
    char id [BM_ID_SLOT];
    bm_job_t *job;              //  A new job (not a duplicate)
    bm_job_t *wait;             //  The idempotencyKey names this job, whose
                                //  SUBMIT write is not confirmed yet: the
                                //  caller waits for it (bm_idem_wait)
    bool reused;                //  With wait, or a duplicate whose state is
                                //  NULL: asks for another job (botType
                                //  or payload differ)
    uint64_t fingerprint;       //  A new job's, when it has a key
} bm_admit_t;
void bm_submit_admit (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg, bm_admit_t *admit);
//  The job of id, read: the one in memory, else one built from its Redis
//  record (HGETALL) for done only (not in the table, freed once done
//  returns), else NULL (no record, a damaged one, or one past its
//  retention).  answered is false when Redis could not say (the job is
//  then NULL): no store, the store down, the read lost, an error answer.
typedef void (bm_job_read_fn) (bm_broker_t *self, const bm_job_t *job, bool answered, void *arg);
void bm_job_read (bm_broker_t *self, const char *id, bm_job_read_fn *done, void *arg);
//  A duplicate whose job only Redis holds (admit.state NULL): its state and
//  priority are read (HGETALL) and given to done, state NULL (priority -1)
//  when Redis cannot say.
typedef void (bm_duplicate_state_fn) (const char *state, int64_t priority, void *arg);
void bm_submit_duplicate_state (bm_broker_t *self, const char *id, bm_duplicate_state_fn *done,
                                void *arg);
//  The same for a duplicate SUBMIT whose idempotencyKey (key) names id:
//  done gets the job's state and priority; or state NULL and gone true
//  when the job no longer exists (no record, or one past its retention),
//  the key then dropped (bm_idem_store_drop) so that the SUBMIT, admitted
//  again, makes a new job; or state NULL and gone false when Redis cannot
//  say (the SUBMIT is then refused, store_unavailable: never answered for a
//  job that may not exist).
typedef void (bm_duplicate_check_fn) (bm_broker_t *self, const char *state, int64_t priority,
                                      bool gone, void *arg);
void bm_submit_duplicate_check (bm_broker_t *self, const char *id, const char *key,
                                bm_duplicate_check_fn *done, void *arg);
//  Its refusal's message, when Redis cannot say.
#define BM_TEXT_DUPLICATE_UNKNOWN \
    "the job store (Redis) could not say whether the job of this idempotencyKey still exists; " \
    "retry later"
int bm_submit_confirmed (bm_broker_t *self, bm_job_t *job, redisReply *reply, int64_t *position);
//  A SUBMIT whose idempotencyKey names a job being confirmed (admit.wait)
//  waits for that job's outcome, never makes a second job: fn gets code
//  NULL and the job's state once it is durable (a duplicate of it; reused
//  gets idempotency_key_reused instead), or the first SUBMIT's refusal
//  when the job is not confirmed.  fn with self NULL: the broker is gone,
//  free arg only.  The wait lasts as long as the first job's write, which
//  the store bounds (refused or lost, and failed at the broker's end).
typedef void (bm_idem_wait_fn) (bm_broker_t *self, const char *code, const char *message,
                                const char *state, void *arg);
typedef struct _bm_idem_waiter_t bm_idem_waiter_t;
void bm_idem_wait (bm_broker_t *self, bm_job_t *first, bool reused, bm_idem_wait_fn *fn,
                   void *arg);
//  Answer every SUBMIT waiting on job: code NULL, it is durable; else refused.
void bm_idem_wake (bm_broker_t *self, bm_job_t *job, const char *code, const char *message);
//  Free the waiters of a job destroyed with the broker (no answer sent).
void bm_idem_waiters_discard (bm_job_t *job);
//  A CANCEL's answer waits for Redis to confirm the job's cancelled record
//  (of outcome outcome_gen): then REPLY {req, job}; REJECTED
//  store_unavailable if that write failed.  Freed unanswered with the job.
typedef struct _bm_cancel_answer_t bm_cancel_answer_t;
void bm_cancel_answers_wake (bm_broker_t *self, bm_job_t *job, uint32_t outcome_gen, bool ok);
void bm_cancel_answers_discard (bm_job_t *job);

//  bm_broker_batch.c: SUBMIT_MANY
void bm_clients_submit_many (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg);
//  RESULT for a job submitted with notify: kept for the client's next
//  RESULT_MANY when it sent SUBMIT_MANY (true), else not (false: send it).
bool bm_batch_keep_result (bm_broker_t *self, zframe_t *identity, bm_body_t *body);
//  Send the RESULT_MANYs kept (and stop their timer); the broker's end.
void bm_batch_send_results (bm_broker_t *self);

//  bm_stats.c: STATS, metrics, snapshots
void bm_stats_pack (bm_broker_t *self, msgpack_packer *pk);
//  A worker leaves service: keep the recycles and init failures its last
//  HEARTBEAT gave for the type, which STATS goes on counting.
void bm_stats_worker_gone (bm_service_t *service, bm_worker_entry_t *worker);
//  "rate": {max, periodMs}, or nil when the type has no rate limit.
void bm_stats_pack_rate (const bm_service_t *service, msgpack_packer *pk);
bool bm_stats_redis_ok (bm_broker_t *self);
//  True while this broker serves and reads its queues back from Redis.
bool bm_stats_recovering (bm_broker_t *self);
//  Why a SUBMIT is refused store_unavailable now, for its REJECTED's
//  message: the queues are being read back from Redis (a start or a
//  failover: Redis is fine, soon over), or Redis does not take writes.
const char *bm_stats_store_refusal (bm_broker_t *self);
//  redis_up and broker_recovering from the state now (GET /ready reads them
//  on an HTTP thread): at each tick and as soon as the state changes.
void bm_stats_ready_gauges (bm_broker_t *self);
void bm_stats_snapshot (bm_broker_t *self);
//  Give the memory freed by a recovery's reads back to the system (glibc
//  keeps it otherwise), logging the resident size after what (a log line).
void bm_stats_trim (const char *after);
//  At a recovery, until Redis answered: read the last metric snapshot back
//  so that the totals (STATS, the snapshots) continue from those of
//  earlier leaders.
void bm_stats_continue (bm_broker_t *self);
//  At the end of a recovery: the types known then take their counts of
//  the last snapshot; those of the others are forgotten.
void bm_stats_earlier_types (bm_broker_t *self);
void bm_stats_setup_metrics (bm_broker_t *self);
//  "memory", "cpu", "pids", "files", then NULL: the limits DONE error.limit names.
extern const char *bm_stats_limit_names [];
void bm_stats_worker_counted (bm_broker_t *self, const bm_worker_entry_t *worker, int delta);

//  bm_deps.c: job dependencies (SUBMIT dependsOn; the class: bm_deps.h)
//  A SUBMIT's dependsOn checked against the jobs the broker holds: NULL and
//  *deps (its dependencies, each pending or done), or the refusal's code
//  with message.
const char *bm_deps_admit (bm_broker_t *self, const bm_codec_submit_t *submit, bm_deps_t **deps_p,
                           char *message, size_t size);
//  That code (never sent): an id names no job the broker holds, and Redis
//  may hold it.  The caller reads those ids with bm_deps_lookup, whose done
//  admits the SUBMIT again with what was read (self->deps_known): ok false
//  when Redis could not say (refused store_unavailable).  done with self
//  NULL: the broker is gone, free arg only.
extern const char bm_deps_read [];
#define BM_DEPS_READ bm_deps_read
typedef void (bm_deps_looked_fn) (bm_broker_t *self, bool ok, void *arg);
void bm_deps_lookup (bm_broker_t *self, const msgpack_object *body, bm_deps_looked_fn *done,
                     void *arg);
//  The new job takes deps: it waits (waiting-children) while any is pending.
void bm_deps_attach (bm_broker_t *self, bm_job_t *job, bm_deps_t *deps);
//  A waiting job's SUBMIT is durable: failed, released or left waiting.
void bm_deps_confirmed (bm_broker_t *self, bm_job_t *job);
//  A job ended (terminal) or went before it ended (deleted): the jobs
//  waiting for it are told.  Callers test self->dependents first.
void bm_deps_ended (bm_broker_t *self, bm_job_t *ended);
void bm_deps_gone (bm_broker_t *self, const bm_job_t *gone);
//  An ended job is gone (removed, expired; without Redis, also evicted
//  from KEEP_FINISHED_JOBS): the jobs waiting for its RETRY
//  (bm_deps_retry) are told how it ended at the next tick
//  (bm_deps_tick), not from within the deletion (its caller may be walking
//  the finished list their ends join).
void bm_deps_forgotten (bm_broker_t *self, const bm_job_t *job);
void bm_deps_tick (bm_broker_t *self);
//  A waiting job leaves waiting-children (released, ended, deleted).
void bm_deps_leave (bm_broker_t *self, bm_job_t *job);
//  Recovery: a job recovered waiting; once the recovery ends its pending
//  dependencies are checked again.
void bm_deps_recovered_job (bm_broker_t *self, bm_job_t *job);
void bm_deps_recovery_done (bm_broker_t *self);
//  RETRY of a job with dependsOn: its dependencies not completed wait again.
void bm_deps_retry (bm_broker_t *self, bm_job_t *job);
void bm_deps_free_index (bm_broker_t *self);
//  Its record's keys (dependsOn, pendingDependencies, ...): how many, and
//  packed; full (STATUS, not LIST): with the results kept (dependencyValues).
int bm_deps_record_keys (const bm_job_t *job, bool full);
void bm_deps_pack_record (msgpack_packer *pk, const bm_job_t *job, bool full);
//  The bot's payload with dependencyResults: {payload, dependencies: {id: result}}.
void bm_deps_pack_payload (msgpack_sbuffer *sbuf, msgpack_packer *pk, const bm_job_t *job);
size_t bm_deps_results_size (const bm_deps_t *self);

//  bm_broker_config.c: settings
int bm_broker_config_load_types (bm_broker_t *self);

#endif

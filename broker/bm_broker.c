/*  bm_broker.c - the botmesh broker: queues, semaphores, workers, jobs.

    Vocabulary from the Guide's Majordomo broker: services (here, bot
    types) and workers; s_service_require = find-or-create, s_worker_delete
    = unlink everywhere.  Everything runs on one zloop: no locks.  */
#include "bm_broker.h"
#include "bm_heap.h"
#include "bm_rank.h"
#include "bm_store.h"
#include "bm_config.h"
#include "bm_curve.h"
#include "bm_json.h"
#include "bm_log.h"
#include "bm_proto.h"
#include "bm_redis_url.h"
#include "bm_metrics.h"

#include <czmq.h>
#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>

extern char **environ;

typedef enum {
    JOB_QUEUED, JOB_RUNNING, JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED
} job_state_t;

static const char *s_state_names [] = {
    "queued", "running", "completed", "failed", "cancelled"
};

#define MAX_WORKER_TYPES 16     //  Bot types one worker may serve
#define DURATION_SAMPLES 1024   //  Run times kept per type for percentiles

typedef struct _service_t service_t;
typedef struct _worker_t worker_t;

typedef struct {
    char id [BM_MAX_ID_LEN + 16];   //  Job id (delivery ids are longer)
    service_t *service;         //  Its bot type
    job_state_t state;          //  Current state
    int64_t priority;           //  Lower runs first
    int64_t seq;                //  Submission order, FIFO within priority
    char *payload;              //  msgpack bytes
    size_t payload_size;
    char *result;               //  msgpack bytes, when completed
    size_t result_size;
    char *webhook_url;          //  Or NULL
    char *idem_key;             //  Or NULL
    char *error_code;           //  When failed or cancelled
    char *error_message;
    int64_t exit_code;          //  The bot's exit status, when its worker said
    bool has_exit_code;
    char *worker_name;          //  Who ran the last attempt
    worker_t *worker;           //  Running on, or NULL
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
    size_t queue_index;         //  In service->queue
    size_t deadline_index;      //  In broker->deadlines
    char *wh;                   //  Webhook delivery state (msgpack map)
    size_t wh_size;
    bool wh_final;              //  A delivery job's DONE carried its final state
    int64_t deliveries;         //  Delivery jobs made for this job
    char *parent;               //  For a delivery job: the job it delivers
    zframe_t *notify;           //  Client to send RESULT to, or NULL
    bool durable;               //  Redis confirmed the SUBMIT write
    bool confirming;            //  Terminal write sent, not yet confirmed
    void *finished_handle;      //  In broker->finished, when terminal
    void *recent_handle;        //  In broker->recent
} job_t;

struct _service_t {
    char *name;                 //  Bot type
    int64_t limit;              //  Semaphore size
    int64_t usage;              //  Permits held
    int64_t max_queue;          //  Queue bound
    bm_heap_t *queue;           //  Queued jobs
    bm_rank_t *rank;            //  Queued jobs per priority (ACCEPTED position)
    zlistx_t *workers;          //  Workers serving it (not owned)
    bool configured;            //  A limit was configured
    bool served;                //  A worker has registered for it since start
    int64_t confirming;         //  SUBMITs waiting for Redis (count in the bound)
    uint64_t completed, failed, cancelled, submitted;
    uint64_t limit_kills;       //  Runs that hit a resource limit (DONE
                                //  error.limit)
    double durations [DURATION_SAMPLES];    //  Run times since the last snapshot
    size_t duration_count;
    uint64_t snap_completed;    //  completed at the last snapshot
    bm_series_t *m_queue, *m_usage, *m_waiting, *m_limit, *m_submitted;
    bm_series_t *m_completed, *m_failed, *m_cancelled, *m_duration, *m_wait;
};

struct _worker_t {
    char *key;                  //  Routing identity as hex
    zframe_t *identity;         //  Routing identity
    char *name;                 //  As the worker calls itself
    service_t *services [MAX_WORKER_TYPES];
    int service_count;
    int64_t credit;             //  Jobs it may run at once
    int64_t running;            //  Slots in use (jobs + stopping)
    zlistx_t *jobs;             //  job_t * running here (not owned)
    zlistx_t *stopping;         //  Jobs told to stop, slot held until DONE
                                //  (s_stopping_t, owned)
    int64_t expiry;             //  Mono ms: dead if silent until then
    int64_t heartbeat_at;       //  Mono ms: next heartbeat to send
    int64_t last_seen;          //  Epoch ms of its last message
    int64_t pid;
    bool congested;             //  Its queue was full: no JOBs until heard from
};

//  A job that ended while its bot still ran: the slot (credit and permit)
//  stays taken until the worker's DONE for it arrives.
typedef struct {
    char id [BM_MAX_ID_LEN + 16];
    service_t *service;
} s_stopping_t;

typedef struct {
    char job_id [BM_MAX_ID_LEN + 1];
    int64_t expires;            //  Epoch ms
} s_idem_t;

//  A callback waiting for a write to be confirmed.
typedef struct {
    void (*fn) (redisReply *reply, void *arg);
    void *arg;
} s_waiter_t;

//  The live set's changes over one loop turn, written as one ZADD and one
//  ZREM when the store flushes (two commands a turn instead of two a job).
typedef struct {
    char *add_ids;              //  Ids to add, each BM_MAX_ID_LEN + 16 bytes
    int64_t *add_seqs;          //  Their scores
    size_t adds, add_alloc;
    s_waiter_t *waiters;        //  SUBMITs acknowledged once the ZADD lands
    size_t waiting, waiter_alloc;
    char *rem_ids;              //  Ids to remove
    size_t rems, rem_alloc;
} s_live_t;

#define S_ID_SLOT (BM_MAX_ID_LEN + 16)

struct _bm_broker_t {
    bm_broker_config_t config;  //  Settings
    zsock_t *router;            //  The one socket
    zactor_t *auth;             //  CURVE authenticator, or NULL
    zloop_t *loop;              //  The one loop
    bm_store_t *store;          //  Redis, or NULL
    s_live_t live;              //  Live-set changes of this loop turn
    bm_msg_t *msg;              //  The message being handled (reused)
    zframe_t *identity;         //  Its sender's routing id (reused)
    bool recovered;             //  Queues rebuilt from Redis
    bool recovering;            //  Recovery reads in flight
    int recovery_pending;       //  HGETALLs not answered
    zhashx_t *services;         //  name -> service_t (owned)
    zhashx_t *workers;          //  key -> worker_t (owned)
    zhashx_t *jobs;             //  id -> job_t (owned)
    zlistx_t *recent;           //  job_t * by creation (not owned)
    zlistx_t *finished;         //  Terminal job_t * by end, for eviction
    bm_heap_t *deadlines;       //  Running jobs by deadline
    zhashx_t *idem;             //  key -> s_idem_t (owned)
    zlistx_t *idem_order;       //  keys in insertion order (owned strings)
    int64_t seq;                //  Last submission number
    char instance [5];          //  Random, part of job ids
    uint32_t counter;           //  Part of job ids
    int64_t started_mono;       //  For uptime
    bool stopping;              //  Shutdown begun
    int64_t stop_deadline;      //  Mono ms
    bool done;                  //  Shutdown complete
    uint64_t submitted, completed, failed, cancelled, rejected, retried;
    uint64_t wh_delivered, wh_failed, snap_wh_delivered, snap_wh_failed;
    int64_t last_snapshot;      //  Mono ms
    bm_metrics_t *metrics;      //  Registry
    bm_metrics_http_t *metrics_http;    //  /metrics server
    bm_metric_t *mf_limit_kills;        //  bot_limit_kills_total{bot_type,limit}
    bm_metric_t *mf_executions, *mf_duration, *mf_queue, *mf_usage, *mf_waiting,
                *mf_limit, *mf_submitted, *mf_wait, *mf_rejected, *mf_frames,
                *mf_redispatched, *mf_dropped;
    bm_series_t *m_workers, *m_redis_up, *m_store_pending;
};

static volatile sig_atomic_t s_stop_requested = 0;

void
bm_broker_stop (void)
{
    s_stop_requested = 1;
}

//  --------------------------------------------------------------------------
//  Small helpers

static char *
s_memdup (const void *data, size_t size)
{
    char *copy = (char *) malloc (size ? size : 1);
    if (size)
        memcpy (copy, data, size);
    return copy;
}

static void
s_set_str (char **field, const char *value)
{
    free (*field);
    *field = value ? strdup (value) : NULL;
}

//  A msgpack object, packed into new bytes.
static char *
s_pack_object (const msgpack_object *obj, size_t *size)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_object (&pk, *obj);
    //  An exact copy: the sbuffer reserved 8 KB, and a queued job keeps
    //  its payload for as long as it waits.
    *size = sbuf.size;
    char *copy = sbuf.size ? s_memdup (sbuf.data, sbuf.size) : s_memdup ("\xc0", (*size = 1));
    msgpack_sbuffer_destroy (&sbuf);
    return copy;
}

//  A copy of the bytes of a body's value (obj, found under key in msg's
//  body), as the peer encoded them: the body passed bm_msgpack_check, so
//  they are one well-formed object.  Re-encodes only if slicing fails.
static char *
s_keep_value (const bm_msg_t *msg, const char *key, const msgpack_object *obj, size_t *size)
{
    const char *start;
    if (bm_msg_raw_value (msg, key, &start, size))
        return s_memdup (start, *size);
    return s_pack_object (obj, size);
}

//  A packed body being built: sbuffer + packer on the stack.
typedef struct {
    msgpack_sbuffer sbuf;
    msgpack_packer pk;
} s_body_t;

//  Bodies are built in buffers kept between messages: the broker is one
//  thread, and a small pool covers the few bodies built at once.
#define S_BODY_POOL 8
static msgpack_sbuffer s_body_pool [S_BODY_POOL];
static int s_body_pool_size = 0;

static void
s_body_init (s_body_t *body)
{
    if (s_body_pool_size > 0)
        body->sbuf = s_body_pool [--s_body_pool_size];
    else {
        msgpack_sbuffer_init (&body->sbuf);
        body->sbuf.data = (char *) malloc (4096);
        body->sbuf.alloc = 4096;
    }
    body->sbuf.size = 0;
    msgpack_packer_init (&body->pk, &body->sbuf, msgpack_sbuffer_write);
}

static void
s_body_free (s_body_t *body)
{
    //  Keep ordinary buffers; let big ones (a large payload) go.
    if (s_body_pool_size < S_BODY_POOL && body->sbuf.alloc <= 65536)
        s_body_pool [s_body_pool_size++] = body->sbuf;
    else
        msgpack_sbuffer_destroy (&body->sbuf);
}

//  Pack "req" if the request carried one; returns how many keys (0/1).
static int
s_req_count (const msgpack_object *request)
{
    return request && bm_obj_get (request, "req") ? 1 : 0;
}

static void
s_pack_req (msgpack_packer *pk, const msgpack_object *request)
{
    const msgpack_object *req = request ? bm_obj_get (request, "req") : NULL;
    if (req) {
        bm_pack_str (pk, "req");
        msgpack_pack_object (pk, *req);
    }
}

//  --------------------------------------------------------------------------
//  Sending

//  Send to one peer without ever blocking the loop: the ROUTER is
//  mandatory, so a peer that is gone (EHOSTUNREACH) or whose queue is at
//  BROKER_PEER_HWM (EAGAIN) makes the send fail whole, and the caller
//  decides.  Returns 0 or -1.
static int
s_route (bm_broker_t *self, zframe_t *identity, const char *header, int command,
         const char *body, size_t size)
{
    void *handle = zsock_resolve (self->router);
    unsigned char byte = (unsigned char) command;
    if (zmq_send (handle, zframe_data (identity), zframe_size (identity),
                  ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
        bm_series_inc (bm_metric_series (self->mf_dropped,
                                         zmq_errno () == EAGAIN ? "peer_queue_full" : "peer_gone"));
        return -1;
    }
    zmq_send (handle, header, BM_HEADER_LEN, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (handle, &byte, 1, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (handle, body, size, ZMQ_DONTWAIT);
    return 0;
}

static void
s_send_client (bm_broker_t *self, zframe_t *identity, int command, s_body_t *body)
{
    //  A client that does not read its answers loses them (and learns by
    //  its own timeout): the broker never queues without bound for it.
    s_route (self, identity, BM_CLIENT_HEADER, command, body->sbuf.data, body->sbuf.size);
}

static void
s_reject (bm_broker_t *self, zframe_t *identity, const msgpack_object *request,
          const char *code, const char *message)
{
    s_body_t body;
    s_body_init (&body);
    msgpack_pack_map (&body.pk, 2 + s_req_count (request));
    s_pack_req (&body.pk, request);
    bm_pack_kv_str (&body.pk, "code", code);
    bm_pack_kv_str (&body.pk, "message", message);
    s_send_client (self, identity, BM_REJECTED, &body);
    s_body_free (&body);
}

//  Returns 0, or -1 when the worker's queue is full (it is then marked
//  congested: no JOB goes to it until it is heard from again).
static int
s_send_worker (bm_broker_t *self, worker_t *worker, int command, s_body_t *body)
{
    const char *data = body ? body->sbuf.data : "\x80";
    size_t size = body ? body->sbuf.size : 1;
    worker->heartbeat_at = bm_mono_ms () + self->config.heartbeat_ms;
    if (s_route (self, worker->identity, BM_WORKER_HEADER, command, data, size)) {
        if (!worker->congested)
            bm_warn (NULL, "worker %s does not read its messages fast enough: "
                     "no jobs for it until it is heard from", worker->name);
        worker->congested = true;
        return -1;
    }
    return 0;
}

static void
s_send_worker_simple (bm_broker_t *self, zframe_t *identity, int command,
                      const char *code, const char *message)
{
    s_body_t body;
    s_body_init (&body);
    if (code) {
        msgpack_pack_map (&body.pk, 2);
        bm_pack_kv_str (&body.pk, "code", code);
        bm_pack_kv_str (&body.pk, "message", message);
    }
    else
        msgpack_pack_map (&body.pk, 0);
    s_route (self, identity, BM_WORKER_HEADER, command, body.sbuf.data, body.sbuf.size);
    s_body_free (&body);
}

//  --------------------------------------------------------------------------
//  Jobs

static bool
s_job_queue_less (const void *a, const void *b)
{
    const job_t *x = (const job_t *) a, *y = (const job_t *) b;
    return x->priority < y->priority || (x->priority == y->priority && x->seq < y->seq);
}

static void
s_job_queue_index (void *item, size_t index)
{
    ((job_t *) item)->queue_index = index;
}

static bool
s_job_deadline_less (const void *a, const void *b)
{
    return ((const job_t *) a)->deadline < ((const job_t *) b)->deadline;
}

static void
s_job_deadline_index (void *item, size_t index)
{
    ((job_t *) item)->deadline_index = index;
}

static job_t *
s_job_new (void)
{
    job_t *job = (job_t *) zmalloc (sizeof (job_t));
    job->queue_index = SIZE_MAX;
    job->deadline_index = SIZE_MAX;
    return job;
}

static void
s_job_destroy (job_t **job_p)
{
    if (*job_p) {
        job_t *job = *job_p;
        free (job->payload);
        free (job->result);
        free (job->webhook_url);
        free (job->idem_key);
        free (job->error_code);
        free (job->error_message);
        free (job->worker_name);
        free (job->wh);
        free (job->parent);
        zframe_destroy (&job->notify);
        free (job);
        *job_p = NULL;
    }
}

static bool
s_job_terminal (const job_t *job)
{
    return job->state >= JOB_COMPLETED;
}

static bool
s_is_delivery (const job_t *job)
{
    return job->parent != NULL;
}

//  Pack a job's record (protocol.md section 3).  full = with payload and
//  result.
static void
s_pack_record (msgpack_packer *pk, const job_t *job, bool full)
{
    int count = 9;          //  jobId botType state priority progress attempts
                            //  maxAttempts timeoutMs createdAt
    bool payload = full;
    bool result = full && job->result;
    count += payload + result;
    count += job->webhook_url != NULL;
    count += job->started_at > 0;
    count += job->finished_at > 0;
    count += job->worker_name != NULL;
    count += job->error_code != NULL;
    count += job->wh != NULL;
    msgpack_pack_map (pk, count);
    bm_pack_kv_str (pk, "jobId", job->id);
    bm_pack_kv_str (pk, "botType", job->service->name);
    bm_pack_kv_str (pk, "state", s_state_names [job->state]);
    bm_pack_kv_int (pk, "priority", job->priority);
    bm_pack_kv_int (pk, "progress", job->progress);
    bm_pack_kv_int (pk, "attempts", job->attempts);
    bm_pack_kv_int (pk, "maxAttempts", job->max_attempts);
    bm_pack_kv_int (pk, "timeoutMs", job->timeout_ms);
    bm_pack_kv_int (pk, "createdAt", job->created_at);
    if (payload) {
        bm_pack_str (pk, "payload");
        msgpack_sbuffer_write (pk->data, job->payload, job->payload_size);
    }
    if (result) {
        bm_pack_str (pk, "result");
        msgpack_sbuffer_write (pk->data, job->result, job->result_size);
    }
    if (job->webhook_url)
        bm_pack_kv_str (pk, "webhookUrl", job->webhook_url);
    if (job->started_at > 0)
        bm_pack_kv_int (pk, "startedAt", job->started_at);
    if (job->finished_at > 0)
        bm_pack_kv_int (pk, "finishedAt", job->finished_at);
    if (job->worker_name)
        bm_pack_kv_str (pk, "worker", job->worker_name);
    if (job->error_code) {
        bm_pack_str (pk, "error");
        msgpack_pack_map (pk, 2 + job->has_exit_code);
        bm_pack_kv_str (pk, "code", job->error_code);
        bm_pack_kv_str (pk, "message", job->error_message ? job->error_message : "");
        if (job->has_exit_code)
            bm_pack_kv_int (pk, "exitCode", job->exit_code);
    }
    if (job->wh) {
        bm_pack_str (pk, "webhook");
        msgpack_sbuffer_write (pk->data, job->wh, job->wh_size);
    }
}

//  --------------------------------------------------------------------------
//  Redis commands: argv built on the stack.

#define S_MAX_ARGS 64

typedef struct {
    int argc;
    const char *argv [S_MAX_ARGS];
    size_t len [S_MAX_ARGS];
    char scratch [S_MAX_ARGS][24];
    char key [256];
} s_cmd_t;

static void
s_arg (s_cmd_t *cmd, const char *data, size_t len)
{
    if (cmd->argc < S_MAX_ARGS) {
        cmd->argv [cmd->argc] = data;
        cmd->len [cmd->argc] = len;
        cmd->argc++;
    }
}

static void
s_arg_str (s_cmd_t *cmd, const char *str)
{
    s_arg (cmd, str, strlen (str));
}

//  Integers as decimal text, without snprintf (this runs ~20 times a job).
static void
s_arg_int (s_cmd_t *cmd, int64_t value)
{
    if (cmd->argc < S_MAX_ARGS) {
        char *buf = cmd->scratch [cmd->argc];
        char *end = buf + 24, *p = end;
        uint64_t magnitude = value < 0 ? (uint64_t) 0 - (uint64_t) value : (uint64_t) value;
        do {
            *--p = (char) ('0' + magnitude % 10);
            magnitude /= 10;
        } while (magnitude);
        if (value < 0)
            *--p = '-';
        s_arg (cmd, p, (size_t) (end - p));
    }
}

//  "<prefix>{bm}:<what><id>"
static void
s_cmd_start (bm_broker_t *self, s_cmd_t *cmd, const char *verb, const char *what, const char *id)
{
    cmd->argc = 0;
    size_t prefix = strlen (self->config.redis_prefix), w = strlen (what);
    size_t i = id ? strlen (id) : 0;
    if (prefix + 5 + w + i >= sizeof cmd->key)
        i = w = 0;      //  Cannot happen with valid ids and our prefixes
    char *p = cmd->key;
    memcpy (p, self->config.redis_prefix, prefix); p += prefix;
    memcpy (p, "{bm}:", 5); p += 5;
    memcpy (p, what, w); p += w;
    if (i)
        memcpy (p, id, i);      //  id may be NULL (memcpy from NULL is UB even for 0 bytes)
    p += i;
    *p = 0;
    s_arg_str (cmd, verb);
    s_arg (cmd, cmd->key, (size_t) (p - cmd->key));
}

//  A reply standing for "OK" when the broker runs without Redis.
static redisReply s_ok_reply = { .type = REDIS_REPLY_STATUS, .str = "OK", .len = 2 };

//  A write, in this loop turn's group (bm_store_write).
static void
s_issue (bm_broker_t *self, s_cmd_t *cmd, bool retry, bm_store_fn *fn, void *arg)
{
    if (!self->store) {
        if (fn)
            fn (&s_ok_reply, arg);
        return;
    }
    if (bm_store_write (self->store, retry, fn, arg, cmd->argc, cmd->argv, cmd->len)) {
        if (fn)
            fn (NULL, arg);
    }
}

//  A read: fn gets Redis's reply, or NULL when Redis is away.
static void
s_query (bm_broker_t *self, s_cmd_t *cmd, bm_store_fn *fn, void *arg)
{
    if (!self->store
    ||  bm_store_query (self->store, fn, arg, cmd->argc, cmd->argv, cmd->len))
        fn (NULL, arg);
}

//  Queue a job for this turn's ZADD; fn (if any) is called when it lands.
static void
s_live_add (bm_broker_t *self, const job_t *job, bm_store_fn *fn, void *arg)
{
    s_live_t *live = &self->live;
    if (live->adds == live->add_alloc) {
        live->add_alloc = live->add_alloc ? live->add_alloc * 2 : 256;
        live->add_ids = (char *) realloc (live->add_ids, live->add_alloc * S_ID_SLOT);
        live->add_seqs = (int64_t *) realloc (live->add_seqs, live->add_alloc * sizeof (int64_t));
    }
    snprintf (live->add_ids + live->adds * S_ID_SLOT, S_ID_SLOT, "%s", job->id);
    live->add_seqs [live->adds++] = job->seq;
    if (fn) {
        if (live->waiting == live->waiter_alloc) {
            live->waiter_alloc = live->waiter_alloc ? live->waiter_alloc * 2 : 256;
            live->waiters = (s_waiter_t *) realloc (live->waiters,
                                                    live->waiter_alloc * sizeof (s_waiter_t));
        }
        live->waiters [live->waiting++] = (s_waiter_t) { fn, arg };
    }
}

static void
s_live_remove (bm_broker_t *self, const char *id)
{
    s_live_t *live = &self->live;
    if (live->rems == live->rem_alloc) {
        live->rem_alloc = live->rem_alloc ? live->rem_alloc * 2 : 256;
        live->rem_ids = (char *) realloc (live->rem_ids, live->rem_alloc * S_ID_SLOT);
    }
    snprintf (live->rem_ids + live->rems++ * S_ID_SLOT, S_ID_SLOT, "%s", id);
}

typedef struct {
    s_waiter_t *waiters;
    size_t count;
} s_waiters_t;

static void
s_on_live_added (redisReply *reply, void *arg)
{
    s_waiters_t *batch = (s_waiters_t *) arg;
    for (size_t i = 0; i < batch->count; i++)
        batch->waiters [i].fn (reply, batch->waiters [i].arg);
    free (batch->waiters);
    free (batch);
}

//  The store's flush hook: this turn's live-set changes as one ZADD and one
//  ZREM, ahead of the flush that sends them.
static void
s_live_flush (void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    s_live_t *live = &self->live;
    if (live->adds) {
        size_t argc = 2 + 2 * live->adds;
        const char **argv = (const char **) malloc (argc * sizeof (char *));
        size_t *lens = (size_t *) malloc (argc * sizeof (size_t));
        char (*scores) [24] = malloc (live->adds * 24);
        char key [256];
        snprintf (key, sizeof key, "%s{bm}:live", self->config.redis_prefix);
        argv [0] = "ZADD"; lens [0] = 4;
        argv [1] = key; lens [1] = strlen (key);
        for (size_t i = 0; i < live->adds; i++) {
            int n = snprintf (scores [i], 24, "%" PRId64, live->add_seqs [i]);
            argv [2 + 2 * i] = scores [i];
            lens [2 + 2 * i] = (size_t) n;
            argv [3 + 2 * i] = live->add_ids + i * S_ID_SLOT;
            lens [3 + 2 * i] = strlen (argv [3 + 2 * i]);
        }
        s_waiters_t *batch = (s_waiters_t *) zmalloc (sizeof (s_waiters_t));
        batch->waiters = live->waiters;
        batch->count = live->waiting;
        live->waiters = NULL;
        live->waiting = live->waiter_alloc = 0;
        //  Durable: a SUBMIT waits for it, and a re-sent ZADD is harmless.
        if (bm_store_write (self->store, true, s_on_live_added, batch, (int) argc, argv, lens))
            s_on_live_added (NULL, batch);
        free (argv);
        free (lens);
        free (scores);
        live->adds = 0;
    }
    if (live->rems) {
        size_t argc = 2 + live->rems;
        const char **argv = (const char **) malloc (argc * sizeof (char *));
        size_t *lens = (size_t *) malloc (argc * sizeof (size_t));
        char key [256];
        snprintf (key, sizeof key, "%s{bm}:live", self->config.redis_prefix);
        argv [0] = "ZREM"; lens [0] = 4;
        argv [1] = key; lens [1] = strlen (key);
        for (size_t i = 0; i < live->rems; i++) {
            argv [2 + i] = live->rem_ids + i * S_ID_SLOT;
            lens [2 + i] = strlen (argv [2 + i]);
        }
        bm_store_write (self->store, true, NULL, NULL, (int) argc, argv, lens);
        free (argv);
        free (lens);
        live->rems = 0;
    }
}

//  HSET every field of the job.
static void
s_persist_full (bm_broker_t *self, job_t *job, bool retry, bm_store_fn *fn, void *arg)
{
    if (!self->store) {
        if (fn)
            fn (&s_ok_reply, arg);
        return;
    }
    s_cmd_t hset [1];
    s_cmd_start (self, hset, "HSET", "job:", job->id);
    s_arg_str (hset, "jobId");          s_arg_str (hset, job->id);
    s_arg_str (hset, "botType");        s_arg_str (hset, job->service->name);
    s_arg_str (hset, "state");          s_arg_str (hset, s_state_names [job->state]);
    s_arg_str (hset, "priority");       s_arg_int (hset, job->priority);
    s_arg_str (hset, "seq");            s_arg_int (hset, job->seq);
    s_arg_str (hset, "attempts");       s_arg_int (hset, job->attempts);
    s_arg_str (hset, "maxAttempts");    s_arg_int (hset, job->max_attempts);
    s_arg_str (hset, "timeoutMs");      s_arg_int (hset, job->timeout_ms);
    s_arg_str (hset, "progress");       s_arg_int (hset, job->progress);
    s_arg_str (hset, "createdAt");      s_arg_int (hset, job->created_at);
    s_arg_str (hset, "payload");        s_arg (hset, job->payload, job->payload_size);
    if (job->webhook_url) {
        s_arg_str (hset, "webhookUrl"); s_arg_str (hset, job->webhook_url);
    }
    if (job->idem_key) {
        s_arg_str (hset, "idempotencyKey"); s_arg_str (hset, job->idem_key);
    }
    if (job->parent) {
        s_arg_str (hset, "parent");     s_arg_str (hset, job->parent);
    }
    if (job->deliveries) {
        s_arg_str (hset, "deliveries"); s_arg_int (hset, job->deliveries);
    }
    if (job->wh) {
        s_arg_str (hset, "webhook");    s_arg (hset, job->wh, job->wh_size);
    }
    if (!retry && !bm_store_up (self->store)) {
        if (fn)
            fn (NULL, arg);
        return;
    }
    s_issue (self, hset, retry, NULL, NULL);
    //  The live set lists every job that is not terminal (recovery reads
    //  it).  The ZADD goes out with this turn's others; fn waits for it.
    s_live_add (self, job, fn, arg);
}

//  A state change: HSET the fields that change with it.
static void
s_persist_state (bm_broker_t *self, job_t *job)
{
    if (!self->store)
        return;
    if (job->state == JOB_RUNNING)
        job->running_saved = true;      //  s_save_running need not write it
    s_cmd_t cmd;
    s_cmd_start (self, &cmd, "HSET", "job:", job->id);
    s_arg_str (&cmd, "state");      s_arg_str (&cmd, s_state_names [job->state]);
    s_arg_str (&cmd, "attempts");   s_arg_int (&cmd, job->attempts);
    s_arg_str (&cmd, "progress");   s_arg_int (&cmd, job->progress);
    if (job->started_at) {
        s_arg_str (&cmd, "startedAt");  s_arg_int (&cmd, job->started_at);
    }
    if (job->worker_name) {
        s_arg_str (&cmd, "worker");     s_arg_str (&cmd, job->worker_name);
    }
    s_issue (self, &cmd, true, NULL, NULL);
}

typedef struct {
    bm_broker_t *broker;
    char id [BM_MAX_ID_LEN + 16];
} s_job_ref_t;

static void s_on_terminal_durable (redisReply *reply, void *arg);

//  Terminal: the whole outcome, out of the live set, with its TTL.
static void
s_persist_terminal (bm_broker_t *self, job_t *job)
{
    job->confirming = true;
    s_job_ref_t *ref = (s_job_ref_t *) zmalloc (sizeof (s_job_ref_t));
    ref->broker = self;
    snprintf (ref->id, sizeof ref->id, "%s", job->id);
    if (!self->store) {
        s_on_terminal_durable (&s_ok_reply, ref);
        return;
    }
    s_cmd_t hset [1], expire [1];
    s_cmd_start (self, hset, "HSET", "job:", job->id);
    s_arg_str (hset, "state");      s_arg_str (hset, s_state_names [job->state]);
    s_arg_str (hset, "attempts");   s_arg_int (hset, job->attempts);
    s_arg_str (hset, "progress");   s_arg_int (hset, job->progress);
    s_arg_str (hset, "finishedAt"); s_arg_int (hset, job->finished_at);
    if (job->started_at) {
        s_arg_str (hset, "startedAt");  s_arg_int (hset, job->started_at);
    }
    if (job->worker_name) {
        s_arg_str (hset, "worker");     s_arg_str (hset, job->worker_name);
    }
    if (job->result) {
        s_arg_str (hset, "result");     s_arg (hset, job->result, job->result_size);
    }
    if (job->error_code) {
        s_arg_str (hset, "errorCode");  s_arg_str (hset, job->error_code);
        s_arg_str (hset, "errorMessage");
        s_arg_str (hset, job->error_message ? job->error_message : "");
        if (job->has_exit_code) {
            s_arg_str (hset, "errorExitCode");
            s_arg_int (hset, job->exit_code);
        }
    }
    if (job->deliveries) {
        s_arg_str (hset, "deliveries"); s_arg_int (hset, job->deliveries);
    }
    s_cmd_start (self, expire, "PEXPIRE", "job:", job->id);
    s_arg_int (expire, 1000 * (job->state == JOB_COMPLETED
                               ? self->config.completed_ttl_s : self->config.failed_ttl_s));
    s_issue (self, hset, true, NULL, NULL);
    s_issue (self, expire, true, s_on_terminal_durable, ref);
    s_live_remove (self, job->id);
}

//  The webhook state of a job, which may live only in Redis by now.
static void
s_persist_webhook (bm_broker_t *self, const char *job_id, const char *wh, size_t wh_size)
{
    if (!self->store)
        return;
    s_cmd_t cmd;
    s_cmd_start (self, &cmd, "HSET", "job:", job_id);
    s_arg_str (&cmd, "webhook");
    s_arg (&cmd, wh, wh_size);
    s_issue (self, &cmd, true, NULL, NULL);
}

//  --------------------------------------------------------------------------
//  Services

static void
s_service_destroy (service_t **self_p)
{
    if (*self_p) {
        service_t *service = *self_p;
        free (service->name);
        bm_heap_destroy (&service->queue);
        bm_rank_destroy (&service->rank);
        zlistx_destroy (&service->workers);
        free (service);
        *self_p = NULL;
    }
}

static void
s_service_gauges (service_t *service)
{
    bm_series_set (service->m_queue, (double) bm_heap_size (service->queue));
    bm_series_set (service->m_usage, (double) service->usage);
}

//  Create the service; limit from MAX_<TYPE>_BOTS (read at start) or the
//  default.
static service_t *
s_service_require (bm_broker_t *self, const char *name)
{
    service_t *service = (service_t *) zhashx_lookup (self->services, name);
    if (service)
        return service;
    service = (service_t *) zmalloc (sizeof (service_t));
    service->name = strdup (name);
    service->limit = self->config.default_limit;
    service->max_queue = self->config.max_queue;
    service->queue = bm_heap_new (s_job_queue_less, s_job_queue_index);
    service->rank = bm_rank_new ();
    if (!service->rank) {
        zsys_error ("broker: out of memory creating the queue of %s", name);
        abort ();
    }
    service->workers = zlistx_new ();
    service->m_queue = bm_metric_series (self->mf_queue, name);
    service->m_usage = bm_metric_series (self->mf_usage, name);
    service->m_waiting = bm_metric_series (self->mf_waiting, name);
    service->m_limit = bm_metric_series (self->mf_limit, name);
    service->m_submitted = bm_metric_series (self->mf_submitted, name);
    service->m_completed = bm_metric_series (self->mf_executions, name, "completed");
    service->m_failed = bm_metric_series (self->mf_executions, name, "failed");
    service->m_cancelled = bm_metric_series (self->mf_executions, name, "cancelled");
    service->m_duration = bm_metric_series (self->mf_duration, name);
    service->m_wait = bm_metric_series (self->mf_wait, name);
    bm_series_set (service->m_limit, (double) service->limit);
    zhashx_insert (self->services, name, service);
    return service;
}

//  Queued jobs that have a worker with free credit but no permit.
static int64_t
s_service_waiting_for_permit (service_t *service)
{
    if (service->usage < service->limit)
        return 0;
    int64_t free_credit = 0;
    worker_t *worker = (worker_t *) zlistx_first (service->workers);
    while (worker) {
        if (worker->credit > worker->running)
            free_credit += worker->credit - worker->running;
        worker = (worker_t *) zlistx_next (service->workers);
    }
    int64_t queued = (int64_t) bm_heap_size (service->queue);
    return queued < free_credit ? queued : free_credit;
}

//  The queue and its per-priority counts change together.
static void
s_queue_push (service_t *service, job_t *job)
{
    bm_heap_push (service->queue, job);
    if (bm_rank_add (service->rank, job->priority))
        zsys_error ("broker: out of memory counting the queue of %s", service->name);
}

static job_t *
s_queue_pop (service_t *service)
{
    job_t *job = (job_t *) bm_heap_pop (service->queue);
    if (job)
        bm_rank_remove (service->rank, job->priority);
    return job;
}

//  Take a job out of its queue, if it is in it.
static void
s_queue_remove (service_t *service, job_t *job)
{
    if (job->queue_index != SIZE_MAX) {
        bm_heap_remove (service->queue, job->queue_index);
        bm_rank_remove (service->rank, job->priority);
    }
}

//  A queued job's place in its queue, 1 = next: the jobs of a lower
//  priority number plus those of its own priority submitted before it.
//  A scan of the queue: for RETRY, not for every SUBMIT.
static int64_t
s_queue_position (service_t *service, const job_t *job)
{
    int64_t ahead = job->priority > 0 ? bm_rank_upto (service->rank, job->priority - 1) : 0;
    size_t size = bm_heap_size (service->queue);
    for (size_t i = 0; i < size; i++) {
        const job_t *other = (const job_t *) bm_heap_at (service->queue, i);
        if (other->priority == job->priority && other->seq < job->seq)
            ahead++;
    }
    return ahead + 1;
}

//  --------------------------------------------------------------------------
//  Dispatch

static void s_job_finish (bm_broker_t *self, job_t *job, job_state_t state,
                          const char *code, const char *message);

static int
s_send_job (bm_broker_t *self, job_t *job, worker_t *worker)
{
    //  Frame 2: {jobId, botType, payload, attempt, timeoutMs, deadline[, webhook]}
    s_body_t body;
    s_body_init (&body);
    msgpack_pack_map (&body.pk, 6 + (job->wh && s_is_delivery (job)));
    bm_pack_kv_str (&body.pk, "jobId", job->id);
    bm_pack_kv_str (&body.pk, "botType", job->service->name);
    bm_pack_str (&body.pk, "payload");
    msgpack_sbuffer_write (&body.sbuf, job->payload, job->payload_size);
    bm_pack_kv_int (&body.pk, "attempt", job->attempts);
    bm_pack_kv_int (&body.pk, "timeoutMs", job->timeout_ms);
    bm_pack_kv_int (&body.pk, "deadline", bm_now_ms () + job->timeout_ms);
    if (job->wh && s_is_delivery (job)) {
        bm_pack_str (&body.pk, "webhook");
        msgpack_sbuffer_write (&body.sbuf, job->wh, job->wh_size);
    }
    int rc = s_send_worker (self, worker, BM_JOB, &body);
    s_body_free (&body);
    return rc;
}

static void s_job_unassign (bm_broker_t *self, job_t *job);

//  Start a queued job (already out of the queue) on a worker.
static void
s_job_start (bm_broker_t *self, job_t *job, worker_t *worker)
{
    service_t *service = job->service;
    job->state = JOB_RUNNING;
    job->attempts++;
    job->has_exit_code = false;
    job->worker = worker;
    s_set_str (&job->worker_name, worker->name);
    job->started_at = bm_now_ms ();
    int64_t now = bm_mono_ms ();
    job->deadline = now + job->timeout_ms;
    bm_heap_push (self->deadlines, job);
    zlistx_add_end (worker->jobs, job);
    worker->running++;
    service->usage++;
    if (s_send_job (self, job, worker)) {
        //  Not sent: back to the queue as if never dispatched.
        s_job_unassign (self, job);
        job->attempts--;
        job->state = JOB_QUEUED;
        s_queue_push (service, job);
        return;
    }
    bm_series_observe (service->m_wait, (now - job->queued_mono) / 1000.0);
    //  Most jobs end sooner than BROKER_SAVE_RUNNING_MS: their running
    //  state goes to Redis with their outcome; s_save_running writes it for
    //  the others.
    job->started_mono = now;
    job->running_saved = false;
    if (self->config.save_running_ms == 0)
        s_persist_state (self, job);
    bm_debug (job->id, "dispatched to %s (attempt %" PRId64 ")", worker->name, job->attempts);
}

//  The worker of this service with the most free credit, or NULL.
static worker_t *
s_pick_worker (service_t *service)
{
    worker_t *best = NULL;
    int64_t best_free = 0;
    worker_t *worker = (worker_t *) zlistx_first (service->workers);
    while (worker) {
        int64_t free_credit = worker->congested ? 0 : worker->credit - worker->running;
        if (free_credit > best_free) {
            best = worker;
            best_free = free_credit;
        }
        worker = (worker_t *) zlistx_next (service->workers);
    }
    return best;
}

//  Dispatch as many jobs of this type as permits and credit allow.
static void
s_dispatch (bm_broker_t *self, service_t *service)
{
    while (bm_heap_size (service->queue) && service->usage < service->limit && !self->stopping) {
        worker_t *worker = s_pick_worker (service);
        if (!worker)
            break;
        job_t *job = s_queue_pop (service);
        s_job_start (self, job, worker);
    }
    s_service_gauges (service);
    bm_series_set (service->m_waiting, (double) s_service_waiting_for_permit (service));
}

static void
s_dispatch_worker (bm_broker_t *self, worker_t *worker)
{
    for (int i = 0; i < worker->service_count; i++)
        s_dispatch (self, worker->services [i]);
}

//  Put a job (back) in its queue.
static void
s_job_enqueue (bm_broker_t *self, job_t *job)
{
    (void) self;
    job->state = JOB_QUEUED;
    job->worker = NULL;
    job->queued_mono = bm_mono_ms ();
    s_queue_push (job->service, job);
}

//  Take a running job off its worker: slot, permit and deadline.
static void
s_job_unassign (bm_broker_t *self, job_t *job)
{
    worker_t *worker = job->worker;
    if (worker) {
        void *handle = zlistx_find (worker->jobs, job);
        if (handle)
            zlistx_delete (worker->jobs, handle);
        worker->running--;
        job->service->usage--;
        job->worker = NULL;
    }
    if (job->deadline_index != SIZE_MAX)
        bm_heap_remove (self->deadlines, job->deadline_index);
}

//  A running job goes back to the queue (its worker died, or released it).
static void
s_job_requeue (bm_broker_t *self, job_t *job, const char *reason)
{
    s_job_unassign (self, job);
    if (job->attempts >= job->max_attempts) {
        char message [160];
        snprintf (message, sizeof message,
                  "the worker running the job was lost on attempt %" PRId64 " of %" PRId64,
                  job->attempts, job->max_attempts);
        s_job_finish (self, job, JOB_FAILED, "worker_lost", message);
        return;
    }
    bm_info (job->id, "re-queued (%s) after attempt %" PRId64, reason, job->attempts);
    bm_series_inc (bm_metric_series (self->mf_redispatched, reason));
    s_job_enqueue (self, job);
    s_persist_state (self, job);
}

//  --------------------------------------------------------------------------
//  Webhook deliveries (protocol.md section 6)

static void
s_iso_time (int64_t ms, char *buf, size_t size)
{
    time_t secs = (time_t) (ms / 1000);
    struct tm tm;
    gmtime_r (&secs, &tm);
    snprintf (buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
              tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (ms % 1000));
}

//  The JSON text POSTed to the webhook URL. Besides botmesh's own fields it
//  carries the fields receivers of BullMQ-based bot systems read: success,
//  data (the result), error as a string (its code is in errorCode) and
//  timestamp (when the job ended).
static char *
s_webhook_body (const job_t *job)
{
    json_t *body = json_object ();
    json_object_set_new (body, "jobId", json_string (job->id));
    json_object_set_new (body, "botType", json_string (job->service->name));
    json_object_set_new (body, "status", json_string (s_state_names [job->state]));
    json_object_set_new (body, "success", json_boolean (job->state == JOB_COMPLETED));
    json_t *value = NULL;
    if (job->result) {
        msgpack_zone zone;
        msgpack_zone_init (&zone, 1024);
        msgpack_object obj;
        size_t offset = 0;
        if (msgpack_unpack (job->result, job->result_size, &offset, &zone, &obj)
            == MSGPACK_UNPACK_SUCCESS)
            value = bm_json_from_msgpack (&obj, BM_JSON_MAX_DEPTH);
        json_object_set_new (body, "result", value ? json_incref (value) : json_null ());
        msgpack_zone_destroy (&zone);
    }
    json_object_set_new (body, "data", value ? value : json_null ());
    if (job->error_code) {
        const char *message = job->error_message && *job->error_message
                            ? job->error_message : job->error_code;
        json_object_set_new (body, "error", json_string (message));
        json_object_set_new (body, "errorCode", json_string (job->error_code));
    }
    json_object_set_new (body, "attempts", json_integer (job->attempts));
    int64_t duration = job->started_at && job->finished_at > job->started_at
                     ? job->finished_at - job->started_at : 0;
    json_object_set_new (body, "durationMs", json_integer (duration));
    char when [32];
    s_iso_time (job->created_at, when, sizeof when);
    json_object_set_new (body, "createdAt", json_string (when));
    s_iso_time (job->finished_at, when, sizeof when);
    json_object_set_new (body, "finishedAt", json_string (when));
    json_object_set_new (body, "timestamp", json_string (when));
    char *text = json_dumps (body, JSON_COMPACT | JSON_REAL_PRECISION (16));
    json_decref (body);
    return text;
}

static void
s_set_wh (job_t *job, const char *wh, size_t size)
{
    free (job->wh);
    job->wh = s_memdup (wh, size);
    job->wh_size = size;
}

//  A webhook state map with just a state and optional error.
static char *
s_wh_simple (const char *state, int64_t attempts, const char *error, size_t *size)
{
    s_body_t body;
    s_body_init (&body);
    msgpack_pack_map (&body.pk, 2 + (error != NULL));
    bm_pack_kv_str (&body.pk, "state", state);
    bm_pack_kv_int (&body.pk, "attempts", attempts);
    if (error)
        bm_pack_kv_str (&body.pk, "lastError", error);
    *size = body.sbuf.size;
    char *copy = s_memdup (body.sbuf.data, body.sbuf.size);
    s_body_free (&body);
    return copy;
}

static job_t *s_job_insert (bm_broker_t *self, job_t *job);

//  Make the delivery job of a terminal job with a webhook URL.
static void
s_webhook_create (bm_broker_t *self, job_t *parent)
{
    job_t *job = s_job_new ();
    parent->deliveries++;
    snprintf (job->id, sizeof job->id, "%s.wh%" PRId64, parent->id, parent->deliveries);
    job->service = s_service_require (self, BM_WEBHOOK_TYPE);
    job->priority = 0;
    job->seq = ++self->seq;
    job->max_attempts = self->config.webhook_attempts;
    job->timeout_ms = self->config.webhook_timeout_ms;
    job->created_at = bm_now_ms ();
    job->parent = strdup (parent->id);
    job->durable = true;
    job->service->submitted++;
    //  Payload: {url, webhookId, body}
    char *text = s_webhook_body (parent);
    s_body_t body;
    s_body_init (&body);
    msgpack_pack_map (&body.pk, 3);
    bm_pack_kv_str (&body.pk, "url", parent->webhook_url);
    bm_pack_kv_str (&body.pk, "webhookId", parent->id);
    bm_pack_kv_str (&body.pk, "body", text);
    free (text);
    job->payload = s_memdup (body.sbuf.data, body.sbuf.size);
    job->payload_size = body.sbuf.size;
    s_body_free (&body);
    size_t wh_size;
    char *wh = s_wh_simple ("pending", 0, NULL, &wh_size);
    s_set_wh (parent, wh, wh_size);
    s_persist_webhook (self, parent->id, wh, wh_size);
    free (wh);
    s_job_insert (self, job);
    s_persist_full (self, job, true, NULL, NULL);
    s_job_enqueue (self, job);
    s_dispatch (self, job->service);
}

//  A delivery job reported its state: copy it to the job it delivers.
static void
s_webhook_update (bm_broker_t *self, job_t *delivery, const bm_msg_t *msg,
                  const msgpack_object *wh_obj)
{
    size_t size;
    char *wh = s_keep_value (msg, "webhook", wh_obj, &size);
    s_set_wh (delivery, wh, size);
    job_t *parent = (job_t *) zhashx_lookup (self->jobs, delivery->parent);
    if (parent)
        s_set_wh (parent, wh, size);
    s_persist_webhook (self, delivery->parent, wh, size);
    free (wh);
}

//  --------------------------------------------------------------------------
//  Job table

//  Remember a job in the tables (takes ownership).
static job_t *
s_job_insert (bm_broker_t *self, job_t *job)
{
    zhashx_insert (self->jobs, job->id, job);
    if (!s_is_delivery (job))
        job->recent_handle = zlistx_add_end (self->recent, job);
    return job;
}

//  Forget a job (frees it).
static void
s_job_delete (bm_broker_t *self, job_t *job)
{
    if (job->recent_handle)
        zlistx_delete (self->recent, job->recent_handle);
    if (job->finished_handle)
        zlistx_delete (self->finished, job->finished_handle);
    s_queue_remove (job->service, job);
    if (job->deadline_index != SIZE_MAX)
        bm_heap_remove (self->deadlines, job->deadline_index);
    if (job->idem_key) {
        s_idem_t *idem = (s_idem_t *) zhashx_lookup (self->idem, job->idem_key);
        if (idem && streq (idem->job_id, job->id) && idem->expires < bm_now_ms ())
            zhashx_delete (self->idem, job->idem_key);
    }
    zhashx_delete (self->jobs, job->id);     //  Frees it
}

static void
s_send_result (bm_broker_t *self, job_t *job)
{
    s_body_t body;
    s_body_init (&body);
    msgpack_pack_map (&body.pk, 2);
    bm_pack_kv_str (&body.pk, "jobId", job->id);
    bm_pack_str (&body.pk, "job");
    s_pack_record (&body.pk, job, true);
    s_send_client (self, job->notify, BM_RESULT, &body);
    s_body_free (&body);
    zframe_destroy (&job->notify);
}

//  The terminal state is in Redis: now the job counts.
static void
s_on_terminal_durable (redisReply *reply, void *arg)
{
    s_job_ref_t *ref = (s_job_ref_t *) arg;
    bm_broker_t *self = ref->broker;
    job_t *job = (job_t *) zhashx_lookup (self->jobs, ref->id);
    if (!reply)
        bm_error (ref->id, "terminal state not confirmed by redis");
    if (job)
        job->confirming = false;
    if (job && s_job_terminal (job)) {
        service_t *service = job->service;
        //  Totals count the jobs clients submitted; webhook deliveries
        //  count under their own type.
        bool client_job = !s_is_delivery (job);
        if (job->state == JOB_COMPLETED) {
            service->completed++;
            self->completed += client_job;
            bm_series_inc (service->m_completed);
        }
        else
        if (job->state == JOB_FAILED) {
            service->failed++;
            self->failed += client_job;
            bm_series_inc (service->m_failed);
        }
        else {
            service->cancelled++;
            self->cancelled += client_job;
            bm_series_inc (service->m_cancelled);
        }
        if (s_is_delivery (job)) {
            if (job->state == JOB_COMPLETED)
                self->wh_delivered++;
            else
                self->wh_failed++;
        }
        if (job->notify)
            s_send_result (self, job);
    }
    free (ref);
}

//  Evict the oldest terminal jobs beyond KEEP_FINISHED_JOBS.
static void
s_evict (bm_broker_t *self)
{
    while ((int64_t) zlistx_size (self->finished) > self->config.keep_finished) {
        job_t *job = (job_t *) zlistx_first (self->finished);
        //  Not before Redis has its outcome: the confirmation still needs
        //  it (counts, RESULT).  Jobs end in order, so later ones wait too.
        if (job->confirming)
            break;
        s_job_delete (self, job);
    }
}

//  End a job: record the outcome, release its slot, persist, notify.
static void
s_job_finish (bm_broker_t *self, job_t *job, job_state_t state,
              const char *code, const char *message)
{
    s_queue_remove (job->service, job);
    worker_t *worker = job->worker;
    s_job_unassign (self, job);
    job->state = state;
    job->finished_at = bm_now_ms ();
    if (state == JOB_COMPLETED) {
        s_set_str (&job->error_code, NULL);
        s_set_str (&job->error_message, NULL);
        if (job->started_at) {
            double secs = (job->finished_at - job->started_at) / 1000.0;
            bm_series_observe (job->service->m_duration, secs);
            service_t *service = job->service;
            service->durations [service->duration_count++ % DURATION_SAMPLES] = secs * 1000.0;
        }
    }
    else {
        s_set_str (&job->error_code, code);
        s_set_str (&job->error_message, message);
    }
    bm_log (state == JOB_COMPLETED ? BM_DEBUG : BM_INFO, job->id, "%s%s%s%s",
            s_state_names [state], code ? " (" : "", code ? code : "", code ? ")" : "");
    s_persist_terminal (self, job);
    if (s_is_delivery (job) && state != JOB_COMPLETED) {
        //  Make sure the job it delivers says the delivery failed.
        job_t *parent = (job_t *) zhashx_lookup (self->jobs, job->parent);
        if (!job->wh_final) {
            size_t size;
            char *wh = s_wh_simple ("failed", job->attempts, message ? message : code, &size);
            s_set_wh (job, wh, size);
            if (parent)
                s_set_wh (parent, wh, size);
            s_persist_webhook (self, job->parent, wh, size);
            free (wh);
        }
    }
    if (!s_is_delivery (job) && job->webhook_url)
        s_webhook_create (self, job);
    job->finished_handle = zlistx_add_end (self->finished, job);
    s_dispatch (self, job->service);
    if (worker)
        s_dispatch_worker (self, worker);
    s_evict (self);
}

//  --------------------------------------------------------------------------
//  Workers

static void
s_worker_destroy (worker_t **self_p)
{
    if (*self_p) {
        worker_t *worker = *self_p;
        free (worker->key);
        free (worker->name);
        zframe_destroy (&worker->identity);
        zlistx_destroy (&worker->jobs);
        zlistx_destroy (&worker->stopping);
        free (worker);
        *self_p = NULL;
    }
}

static void
s_stopping_free (void **item)
{
    free (*item);
    *item = NULL;
}

//  Unlink a worker everywhere, re-queue its jobs, free it.
static void
s_worker_delete (bm_broker_t *self, worker_t *worker, const char *reason)
{
    bm_info (NULL, "worker %s gone (%s), %zu jobs re-queued", worker->name, reason,
             zlistx_size (worker->jobs));
    for (int i = 0; i < worker->service_count; i++) {
        service_t *service = worker->services [i];
        void *handle = zlistx_find (service->workers, worker);
        if (handle)
            zlistx_delete (service->workers, handle);
    }
    job_t *job;
    while ((job = (job_t *) zlistx_first (worker->jobs)))
        s_job_requeue (self, job, "worker_lost");
    s_stopping_t *stop;
    while ((stop = (s_stopping_t *) zlistx_first (worker->stopping))) {
        stop->service->usage--;
        zlistx_delete (worker->stopping, zlistx_cursor (worker->stopping));
    }
    service_t *services [MAX_WORKER_TYPES];
    int count = worker->service_count;
    memcpy (services, worker->services, sizeof services);
    zhashx_delete (self->workers, worker->key);     //  Frees it
    bm_series_set (self->m_workers, (double) zhashx_size (self->workers));
    for (int i = 0; i < count; i++)
        s_dispatch (self, services [i]);
}

//  READY {name, types, credit, pid?}
static void
s_worker_ready (bm_broker_t *self, zframe_t *identity, const char *key,
                worker_t *worker, const msgpack_object *body)
{
    const msgpack_object *types = bm_obj_get (body, "types");
    int64_t credit;
    char name [129];
    if (!types || types->type != MSGPACK_OBJECT_ARRAY || types->via.array.size == 0
    ||  types->via.array.size > MAX_WORKER_TYPES
    ||  !bm_obj_int (body, "credit", &credit) || credit < 0 || credit > 1000000) {
        s_send_worker_simple (self, identity, BM_NACK, "bad_request",
                              "READY needs types (1-16 bot types) and credit (0-1000000)");
        return;
    }
    if (!bm_obj_strcpy (body, "name", name, sizeof name) || !bm_valid_id (name, strlen (name)))
        snprintf (name, sizeof name, "worker-%.8s", key);
    service_t *services [MAX_WORKER_TYPES];
    int count = 0;
    for (uint32_t i = 0; i < types->via.array.size; i++) {
        const msgpack_object *t = &types->via.array.ptr [i];
        if (t->type != MSGPACK_OBJECT_STR || !bm_valid_bot_type (t->via.str.ptr, t->via.str.size)) {
            s_send_worker_simple (self, identity, BM_NACK, "bad_request",
                                  "each type must be 1-32 characters of a-z, 0-9, _ and -");
            return;
        }
        char type [BM_MAX_BOT_TYPE_LEN + 1];
        memcpy (type, t->via.str.ptr, t->via.str.size);
        type [t->via.str.size] = 0;
        services [count++] = s_service_require (self, type);
    }
    if (worker) {
        //  A second READY changes the credit only.
        worker->credit = credit;
        bm_info (NULL, "worker %s credit now %" PRId64, worker->name, credit);
        s_dispatch_worker (self, worker);
        return;
    }
    worker = (worker_t *) zmalloc (sizeof (worker_t));
    worker->key = strdup (key);
    worker->identity = zframe_dup (identity);
    worker->name = strdup (name);
    worker->credit = credit;
    worker->jobs = zlistx_new ();
    worker->stopping = zlistx_new ();
    zlistx_set_destructor (worker->stopping, s_stopping_free);
    bm_obj_int (body, "pid", &worker->pid);
    for (int i = 0; i < count; i++) {
        bool dup = false;
        for (int j = 0; j < worker->service_count; j++)
            dup |= worker->services [j] == services [i];
        if (!dup) {
            worker->services [worker->service_count++] = services [i];
            zlistx_add_end (services [i]->workers, worker);
            services [i]->served = true;
        }
    }
    worker->expiry = bm_mono_ms () + self->config.heartbeat_ms * self->config.liveness;
    worker->heartbeat_at = bm_mono_ms () + self->config.heartbeat_ms;
    worker->last_seen = bm_now_ms ();
    zhashx_insert (self->workers, key, worker);
    bm_series_set (self->m_workers, (double) zhashx_size (self->workers));
    char types_text [MAX_WORKER_TYPES * (BM_MAX_BOT_TYPE_LEN + 1) + 1] = "";
    for (int i = 0; i < worker->service_count; i++) {
        if (i)
            strcat (types_text, ",");
        strcat (types_text, worker->services [i]->name);
    }
    bm_info (NULL, "worker %s ready: types %s, credit %" PRId64, name, types_text, credit);
    s_dispatch_worker (self, worker);
}

//  Release the slot of a job the worker was told to stop; true if found.
static bool
s_worker_release_stopping (bm_broker_t *self, worker_t *worker, const char *id)
{
    s_stopping_t *stop = (s_stopping_t *) zlistx_first (worker->stopping);
    while (stop) {
        if (streq (stop->id, id)) {
            stop->service->usage--;
            worker->running--;
            zlistx_delete (worker->stopping, zlistx_cursor (worker->stopping));
            s_dispatch_worker (self, worker);
            return true;
        }
        stop = (s_stopping_t *) zlistx_next (worker->stopping);
    }
    return false;
}

//  Tell a worker to stop a job that has ended (timeout, cancel); keep the
//  slot until it confirms.
static void
s_worker_stop_job (bm_broker_t *self, job_t *job, const char *reason)
{
    worker_t *worker = job->worker;
    s_stopping_t *stop = (s_stopping_t *) zmalloc (sizeof (s_stopping_t));
    snprintf (stop->id, sizeof stop->id, "%s", job->id);
    stop->service = job->service;
    zlistx_add_end (worker->stopping, stop);
    //  Keep the permit and the credit: bump them so s_job_unassign's
    //  release leaves them held by the stopping entry.
    worker->running++;
    job->service->usage++;
    s_body_t body;
    s_body_init (&body);
    msgpack_pack_map (&body.pk, 2);
    bm_pack_kv_str (&body.pk, "jobId", job->id);
    bm_pack_kv_str (&body.pk, "reason", reason);
    s_send_worker (self, worker, BM_WCANCEL, &body);
    s_body_free (&body);
}

//  The job a worker names in DONE/PROGRESS/RELEASE, if it is its own.
static job_t *
s_worker_job (bm_broker_t *self, worker_t *worker, const msgpack_object *body, char *id, size_t size)
{
    id [0] = 0;
    if (!bm_obj_strcpy (body, "jobId", id, size))
        return NULL;
    job_t *job = (job_t *) zhashx_lookup (self->jobs, id);
    if (!job || job->state != JOB_RUNNING)
        return NULL;
    if (job->worker == worker)
        return job;
    //  A worker that reconnected (new identity, same name) finishes what it
    //  ran before; the job moves to its new entry.
    if (job->worker && job->worker_name && streq (job->worker_name, worker->name)) {
        worker_t *old = job->worker;
        void *handle = zlistx_find (old->jobs, job);
        if (handle)
            zlistx_delete (old->jobs, handle);
        old->running--;
        job->worker = worker;
        zlistx_add_end (worker->jobs, job);
        worker->running++;
        return job;
    }
    return NULL;
}

//  A worker reported a run that hit a resource limit.  The limit's name
//  comes from a peer: only the four the workers know become a label.
static void
s_count_limit_kill (bm_broker_t *self, service_t *service, const char *limit)
{
    static const char *known [] = { "memory", "cpu", "pids", "files", NULL };
    const char *label = "other";
    for (int i = 0; known [i]; i++)
        if (streq (limit, known [i]))
            label = known [i];
    service->limit_kills++;
    bm_series_inc (bm_metric_series (self->mf_limit_kills, service->name, label));
}

//  A DONE from a worker that was declared dead and came back (new socket,
//  same name) for the job it ran then: the job was queued again but not
//  given to anyone else, so the outcome is taken (protocol.md section 5).
static job_t *
s_worker_reclaim (bm_broker_t *self, worker_t *worker, const char *id)
{
    job_t *job = (job_t *) zhashx_lookup (self->jobs, id);
    if (job && job->state == JOB_QUEUED && job->durable && job->attempts > 0
    &&  job->worker_name && streq (job->worker_name, worker->name)) {
        bm_info (job->id, "DONE from %s, which ran attempt %" PRId64 " before it was lost: taken",
                 worker->name, job->attempts);
        return job;
    }
    return NULL;
}

static void
s_worker_done (bm_broker_t *self, worker_t *worker, const bm_msg_t *msg)
{
    const msgpack_object *body = bm_msg_body (msg);
    char id [BM_MAX_ID_LEN + 16];
    job_t *job = s_worker_job (self, worker, body, id, sizeof id);
    if (!job && id [0])
        job = s_worker_reclaim (self, worker, id);
    if (!job) {
        //  A DONE for a job it was told to stop is expected (it frees the
        //  slot); anything else is counted.
        if (!s_worker_release_stopping (self, worker, id)) {
            bm_warn (id [0] ? id : NULL, "DONE from %s for a job it does not hold", worker->name);
            bm_series_inc (bm_metric_series (self->mf_frames, "not_owner"));
        }
        s_send_worker_simple (self, worker->identity, BM_NACK, "not_owner",
                              "this worker does not hold that job");
        return;
    }
    bool ok = false;
    bm_obj_bool (body, "ok", &ok);
    const msgpack_object *wh = bm_obj_get (body, "webhook");
    if (s_is_delivery (job) && wh && wh->type == MSGPACK_OBJECT_MAP) {
        s_webhook_update (self, job, msg, wh);
        job->wh_final = true;
    }
    int64_t progress;
    if (bm_obj_int (body, "progress", &progress) && progress >= 0 && progress <= 100)
        job->progress = progress;
    if (ok) {
        const msgpack_object *result = bm_obj_get (body, "result");
        if (result && bm_obj_depth (result) > BM_MAX_NESTING) {
            s_job_finish (self, job, JOB_FAILED, "bad_output",
                          "the result nests deeper than 30 levels");
            return;
        }
        size_t size = 1;
        char *packed = result ? s_keep_value (msg, "result", result, &size)
                              : s_memdup ("\xc0", 1);
        if ((int64_t) size > self->config.max_payload) {
            free (packed);
            s_job_finish (self, job, JOB_FAILED, "bad_output",
                          "the result is larger than MAX_PAYLOAD_BYTES");
            return;
        }
        free (job->result);
        job->result = packed;
        job->result_size = size;
        job->progress = 100;
        s_job_finish (self, job, JOB_COMPLETED, NULL, NULL);
    }
    else {
        const msgpack_object *error = bm_obj_get (body, "error");
        char code [64] = "bot_failed";
        char message [4096] = "the bot failed";
        if (error && error->type == MSGPACK_OBJECT_MAP) {
            if (!bm_obj_strcpy (error, "code", code, sizeof code))
                snprintf (code, sizeof code, "bot_failed");
            const char *text;
            size_t len;
            int64_t exit_code;
            if (bm_obj_int (error, "exitCode", &exit_code)) {
                job->exit_code = exit_code;
                job->has_exit_code = true;
            }
            char limit [16];
            if (streq (code, "resource_limit") && bm_obj_strcpy (error, "limit", limit, sizeof limit))
                s_count_limit_kill (self, job->service, limit);
            if (bm_obj_str (error, "message", &text, &len)) {
                if (len >= sizeof message) {
                    //  Cut on a UTF-8 character boundary.
                    len = sizeof message - 1;
                    while (len > 0 && ((unsigned char) text [len] & 0xc0) == 0x80)
                        len--;
                }
                memcpy (message, text, len);
                message [len] = 0;
            }
        }
        s_job_finish (self, job, JOB_FAILED, code, message);
    }
}

static void
s_worker_progress (bm_broker_t *self, worker_t *worker, const bm_msg_t *msg)
{
    const msgpack_object *body = bm_msg_body (msg);
    char id [BM_MAX_ID_LEN + 16];
    job_t *job = s_worker_job (self, worker, body, id, sizeof id);
    if (!job) {
        bm_series_inc (bm_metric_series (self->mf_frames, "not_owner"));
        s_send_worker_simple (self, worker->identity, BM_NACK, "not_owner",
                              "this worker does not hold that job");
        return;
    }
    int64_t progress;
    if (bm_obj_int (body, "progress", &progress) && progress >= 0 && progress <= 100) {
        job->progress = progress;
        s_persist_state (self, job);
    }
    const msgpack_object *wh = bm_obj_get (body, "webhook");
    if (s_is_delivery (job) && wh && wh->type == MSGPACK_OBJECT_MAP)
        s_webhook_update (self, job, msg, wh);
}

static void
s_worker_release (bm_broker_t *self, worker_t *worker, const msgpack_object *body)
{
    char id [BM_MAX_ID_LEN + 16];
    job_t *job = s_worker_job (self, worker, body, id, sizeof id);
    if (!job) {
        if (!s_worker_release_stopping (self, worker, id)) {
            bm_series_inc (bm_metric_series (self->mf_frames, "not_owner"));
            s_send_worker_simple (self, worker->identity, BM_NACK, "not_owner",
                                  "this worker does not hold that job");
        }
        return;
    }
    //  A released job does not count as an attempt.
    job->attempts--;
    s_job_requeue (self, job, "released");
    s_dispatch_worker (self, worker);
    s_dispatch (self, job->service);
}

static void
s_handle_worker (bm_broker_t *self, zframe_t *identity, bm_msg_t *msg)
{
    //  The worker table is keyed by the identity in hex (identities are
    //  binary); built on the stack, as this runs for every worker message.
    char key [2 * 256 + 1];
    size_t id_size = zframe_size (identity) > 256 ? 256 : zframe_size (identity);
    static const char hex [] = "0123456789ABCDEF";
    const byte *id = zframe_data (identity);
    for (size_t i = 0; i < id_size; i++) {
        key [2 * i] = hex [id [i] >> 4];
        key [2 * i + 1] = hex [id [i] & 15];
    }
    key [2 * id_size] = 0;
    worker_t *worker = (worker_t *) zhashx_lookup (self->workers, key);
    int command = bm_msg_command (msg);
    const msgpack_object *body = bm_msg_body (msg);
    if (worker) {
        worker->expiry = bm_mono_ms () + self->config.heartbeat_ms * self->config.liveness;
        worker->last_seen = bm_now_ms ();
        if (worker->congested) {
            worker->congested = false;
            s_dispatch_worker (self, worker);
        }
    }
    if (command == BM_READY)
        s_worker_ready (self, identity, key, worker, body);
    else
    if (!worker) {
        //  Not known (e.g. we restarted): tell it to reconnect and READY.
        if (command != BM_DISCONNECT)
            s_send_worker_simple (self, identity, BM_DISCONNECT, NULL, NULL);
    }
    else
    if (command == BM_DONE)
        s_worker_done (self, worker, msg);
    else
    if (command == BM_PROGRESS)
        s_worker_progress (self, worker, msg);
    else
    if (command == BM_HEARTBEAT)
        ;
    else
    if (command == BM_RELEASE)
        s_worker_release (self, worker, body);
    else
    if (command == BM_DISCONNECT)
        s_worker_delete (self, worker, "disconnected");
    else {
        bm_series_inc (bm_metric_series (self->mf_frames, "bad_command"));
        s_send_worker_simple (self, identity, BM_NACK, "bad_command", "unknown worker command");
    }
}

//  --------------------------------------------------------------------------
//  Clients

//  A type is known when it has a limit configured or a worker has served
//  it since the broker started (protocol.md, SUBMIT).
static bool
s_service_known (const service_t *service)
{
    return service->configured || service->served
        || service->submitted > 0 || bm_heap_size (service->queue) > 0;
}

static bool
s_is_known_type (bm_broker_t *self, const char *name)
{
    service_t *service = (service_t *) zhashx_lookup (self->services, name);
    return service && s_service_known (service);
}

typedef struct {
    bm_broker_t *broker;
    char id [BM_MAX_ID_LEN + 16];
    zframe_t *identity;
    msgpack_object req;         //  Copy of the request's req (scalar), or nil
    bool has_req;
} s_pending_t;

static void
s_pack_pending_req (msgpack_packer *pk, s_pending_t *pending)
{
    if (pending->has_req) {
        bm_pack_str (pk, "req");
        msgpack_pack_object (pk, pending->req);
    }
}

static s_pending_t *
s_pending_new (bm_broker_t *self, zframe_t *identity, const msgpack_object *request, const char *id)
{
    s_pending_t *pending = (s_pending_t *) zmalloc (sizeof (s_pending_t));
    pending->broker = self;
    pending->identity = zframe_dup (identity);
    snprintf (pending->id, sizeof pending->id, "%s", id);
    const msgpack_object *req = bm_obj_get (request, "req");
    //  Only scalars are kept (they hold no pointers into the message).
    if (req && req->type != MSGPACK_OBJECT_STR && req->type != MSGPACK_OBJECT_BIN
    &&  req->type != MSGPACK_OBJECT_ARRAY && req->type != MSGPACK_OBJECT_MAP
    &&  req->type != MSGPACK_OBJECT_EXT) {
        pending->req = *req;
        pending->has_req = true;
    }
    return pending;
}

static void
s_pending_destroy (s_pending_t **pending_p)
{
    if (*pending_p) {
        zframe_destroy (&(*pending_p)->identity);
        free (*pending_p);
        *pending_p = NULL;
    }
}

static void
s_pending_reject (s_pending_t *pending, const char *code, const char *message)
{
    s_body_t body;
    s_body_init (&body);
    msgpack_pack_map (&body.pk, 2 + pending->has_req);
    s_pack_pending_req (&body.pk, pending);
    bm_pack_kv_str (&body.pk, "code", code);
    bm_pack_kv_str (&body.pk, "message", message);
    s_send_client (pending->broker, pending->identity, BM_REJECTED, &body);
    s_body_free (&body);
}

//  Frame 2: {req?, jobId, duplicate, position?}; position is left out
//  when 0 (duplicates, REDELIVER).
static void
s_send_accepted (bm_broker_t *self, zframe_t *identity, s_pending_t *pending,
                 const msgpack_object *request, const char *id, bool duplicate,
                 int64_t position)
{
    s_body_t body;
    s_body_init (&body);
    int keys = 2 + (position > 0);
    if (pending) {
        msgpack_pack_map (&body.pk, keys + pending->has_req);
        s_pack_pending_req (&body.pk, pending);
    }
    else {
        msgpack_pack_map (&body.pk, keys + s_req_count (request));
        s_pack_req (&body.pk, request);
    }
    bm_pack_kv_str (&body.pk, "jobId", id);
    bm_pack_kv_bool (&body.pk, "duplicate", duplicate);
    if (position > 0)
        bm_pack_kv_int (&body.pk, "position", position);
    s_send_client (self, identity, BM_ACCEPTED, &body);
    s_body_free (&body);
}

//  The SUBMIT write came back.
static void
s_on_submit_durable (redisReply *reply, void *arg)
{
    s_pending_t *pending = (s_pending_t *) arg;
    bm_broker_t *self = pending->broker;
    job_t *job = (job_t *) zhashx_lookup (self->jobs, pending->id);
    if (!job) {
        s_pending_destroy (&pending);
        return;
    }
    job->service->confirming--;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        bm_warn (job->id, "submit not confirmed by redis: rejected");
        s_pending_reject (pending, "store_unavailable",
                          "the job store (Redis) is unavailable; retry later");
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "store_unavailable"));
        //  The write may have reached Redis: undo it (best effort).
        if (self->store) {
            s_cmd_t cmd;
            s_cmd_start (self, &cmd, "DEL", "job:", job->id);
            s_issue (self, &cmd, true, NULL, NULL);
            s_cmd_start (self, &cmd, "ZREM", "live", NULL);
            s_arg_str (&cmd, job->id);
            s_issue (self, &cmd, true, NULL, NULL);
        }
        if (job->idem_key)
            zhashx_delete (self->idem, job->idem_key);
        job->service->submitted--;
        s_job_delete (self, job);
        s_pending_destroy (&pending);
        return;
    }
    job->durable = true;
    s_job_enqueue (self, job);
    //  The newest of its priority: every queued job at or before it is ahead.
    int64_t position = bm_rank_upto (job->service->rank, job->priority);
    s_send_accepted (self, pending->identity, pending, NULL, job->id, false, position);
    s_dispatch (self, job->service);
    s_pending_destroy (&pending);
}

static void
s_make_id (bm_broker_t *self, char *id, size_t size)
{
    //  "%012x-<instance>-%08x" of (ms, instance, counter), by hand: snprintf
    //  was 4 % of the broker's time per job.
    static const char hex [] = "0123456789abcdef";
    uint64_t ms = (uint64_t) bm_now_ms () & 0xffffffffffffULL;
    uint32_t counter = ++self->counter;
    size_t instance_len = strlen (self->instance);
    if (size < 12 + 1 + instance_len + 1 + 8 + 1) {
        snprintf (id, size, "%012" PRIx64 "-%s-%08" PRIx32, ms, self->instance, counter);
        return;
    }
    char *p = id;
    for (int shift = 44; shift >= 0; shift -= 4)
        *p++ = hex [(ms >> shift) & 15];
    *p++ = '-';
    memcpy (p, self->instance, instance_len);
    p += instance_len;
    *p++ = '-';
    for (int shift = 28; shift >= 0; shift -= 4)
        *p++ = hex [(counter >> shift) & 15];
    *p = 0;
}

static void
s_client_submit (bm_broker_t *self, zframe_t *identity, const bm_msg_t *msg)
{
    const msgpack_object *body = bm_msg_body (msg);
    const char *reason = NULL;
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    const char *str;
    size_t len;
    int64_t priority = BM_DEFAULT_PRIORITY, timeout_ms = self->config.job_timeout_ms;
    int64_t max_attempts = self->config.job_max_attempts;
    bool notify = false;
    const msgpack_object *o;

    if (!bm_obj_str (body, "botType", &str, &len))
        reason = "botType is required and must be a string";
    else
    if (!bm_valid_bot_type (str, len))
        reason = "botType must be 1-32 characters of a-z, 0-9, _ and -";
    if (!reason) {
        memcpy (bot_type, str, len);
        bot_type [len] = 0;
        if (streq (bot_type, BM_WEBHOOK_TYPE))
            reason = "botType webhook is reserved for webhook deliveries";
    }
    if (!reason && (o = bm_obj_get (body, "priority")) && o->type != MSGPACK_OBJECT_NIL
    && (!bm_obj_int (body, "priority", &priority) || priority < 0 || priority > BM_MAX_PRIORITY))
        reason = "priority must be an integer from 0 to 2097152";
    if (!reason && (o = bm_obj_get (body, "timeoutMs")) && o->type != MSGPACK_OBJECT_NIL
    && (!bm_obj_int (body, "timeoutMs", &timeout_ms) || timeout_ms < 1 || timeout_ms > 86400000))
        reason = "timeoutMs must be an integer from 1 to 86400000";
    if (!reason && (o = bm_obj_get (body, "maxAttempts")) && o->type != MSGPACK_OBJECT_NIL
    && (!bm_obj_int (body, "maxAttempts", &max_attempts) || max_attempts < 1 || max_attempts > 100))
        reason = "maxAttempts must be an integer from 1 to 100";
    const char *url = NULL;
    size_t url_len = 0;
    if (!reason && (o = bm_obj_get (body, "webhookUrl")) && o->type != MSGPACK_OBJECT_NIL
    && (!bm_obj_str (body, "webhookUrl", &url, &url_len) || !bm_valid_url (url, url_len)))
        reason = "webhookUrl must be an http:// or https:// URL of at most 2048 characters";
    const char *idem = NULL;
    size_t idem_len = 0;
    if (!reason && (o = bm_obj_get (body, "idempotencyKey")) && o->type != MSGPACK_OBJECT_NIL
    && (!bm_obj_str (body, "idempotencyKey", &idem, &idem_len) || !bm_valid_id (idem, idem_len)))
        reason = "idempotencyKey must be 1-128 printable characters without spaces";
    if (!reason && (o = bm_obj_get (body, "notify")) && o->type != MSGPACK_OBJECT_NIL
    && !bm_obj_bool (body, "notify", &notify))
        reason = "notify must be a boolean";
    if (reason) {
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "bad_request"));
        s_reject (self, identity, body, "bad_request", reason);
        return;
    }
    if (self->stopping) {
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "shutting_down"));
        s_reject (self, identity, body, "shutting_down", "the broker is shutting down");
        return;
    }
    if (!s_is_known_type (self, bot_type)) {
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "unknown_bot_type"));
        char message [256];
        char known [200] = "";
        service_t *service = (service_t *) zhashx_first (self->services);
        while (service) {
            if (!streq (service->name, BM_WEBHOOK_TYPE) && s_service_known (service)
            &&  strlen (known) + strlen (service->name) + 3 < sizeof known) {
                if (*known)
                    strcat (known, ", ");
                strcat (known, service->name);
            }
            service = (service_t *) zhashx_next (self->services);
        }
        snprintf (message, sizeof message, "botType must be one of: %s", known);
        s_reject (self, identity, body, "unknown_bot_type", message);
        return;
    }
    //  Idempotency: the first job with this key, while the key lives.
    char idem_key [BM_MAX_ID_LEN + 1] = "";
    if (idem) {
        memcpy (idem_key, idem, idem_len);
        idem_key [idem_len] = 0;
        s_idem_t *entry = (s_idem_t *) zhashx_lookup (self->idem, idem_key);
        if (entry && entry->expires > bm_now_ms ()) {
            job_t *first = (job_t *) zhashx_lookup (self->jobs, entry->job_id);
            if (!first || first->durable) {
                s_send_accepted (self, identity, NULL, body, entry->job_id, true, 0);
                return;
            }
        }
    }
    service_t *service = s_service_require (self, bot_type);
    if ((int64_t) bm_heap_size (service->queue) + service->confirming >= service->max_queue) {
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "queue_full"));
        s_reject (self, identity, body, "queue_full",
                  "the queue of this bot type is full; retry later");
        return;
    }
    if (self->store && (!bm_store_up (self->store) || !self->recovered)) {
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "store_unavailable"));
        s_reject (self, identity, body, "store_unavailable",
                  "the job store (Redis) is unavailable; retry later");
        return;
    }
    const msgpack_object *payload = bm_obj_get (body, "payload");
    if (payload && bm_obj_depth (payload) > BM_MAX_NESTING) {
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "bad_request"));
        s_reject (self, identity, body, "bad_request", "payload nests deeper than 30 levels");
        return;
    }
    //  The payload's bytes as the client encoded them, not re-encoded.
    size_t payload_size = 1;
    char *packed = payload ? s_keep_value (msg, "payload", payload, &payload_size)
                           : s_memdup ("\xc0", 1);
    if ((int64_t) payload_size > self->config.max_payload) {
        free (packed);
        self->rejected++;
        bm_series_inc (bm_metric_series (self->mf_rejected, "payload_too_large"));
        s_reject (self, identity, body, "payload_too_large",
                  "the payload is larger than MAX_PAYLOAD_BYTES");
        return;
    }
    job_t *job = s_job_new ();
    s_make_id (self, job->id, sizeof job->id);
    job->service = service;
    job->state = JOB_QUEUED;
    job->priority = priority;
    job->seq = ++self->seq;
    job->payload = packed;
    job->payload_size = payload_size;
    job->max_attempts = max_attempts;
    job->timeout_ms = timeout_ms;
    job->created_at = bm_now_ms ();
    if (url)
        job->webhook_url = strndup (url, url_len);
    if (idem) {
        job->idem_key = strdup (idem_key);
        s_idem_t *entry = (s_idem_t *) zmalloc (sizeof (s_idem_t));
        snprintf (entry->job_id, sizeof entry->job_id, "%s", job->id);
        entry->expires = bm_now_ms () + self->config.idempotency_ttl_ms;
        zhashx_update (self->idem, idem_key, entry);
        zlistx_add_end (self->idem_order, strdup (idem_key));
    }
    if (notify)
        job->notify = zframe_dup (identity);
    service->submitted++;
    service->confirming++;
    self->submitted++;
    bm_series_inc (service->m_submitted);
    s_job_insert (self, job);
    s_pending_t *pending = s_pending_new (self, identity, body, job->id);
    s_persist_full (self, job, false, s_on_submit_durable, pending);
}

//  Reply with one job's record.
static void
s_reply_record (bm_broker_t *self, zframe_t *identity, s_pending_t *pending,
                const msgpack_object *request, job_t *job)
{
    s_body_t body;
    s_body_init (&body);
    if (pending) {
        msgpack_pack_map (&body.pk, 1 + pending->has_req);
        s_pack_pending_req (&body.pk, pending);
    }
    else {
        msgpack_pack_map (&body.pk, 1 + s_req_count (request));
        s_pack_req (&body.pk, request);
    }
    bm_pack_str (&body.pk, "job");
    s_pack_record (&body.pk, job, true);
    s_send_client (self, identity, BM_REPLY, &body);
    s_body_free (&body);
}

//  Build a job from a Redis hash (HGETALL reply); NULL if it holds none.
static job_t *
s_job_from_hash (bm_broker_t *self, redisReply *reply)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2)
        return NULL;
    job_t *job = s_job_new ();
    char type [BM_MAX_BOT_TYPE_LEN + 1] = "";
    char state [16] = "";
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        redisReply *f = reply->element [i], *v = reply->element [i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        const char *name = f->str;
        int64_t n = 0;
        bool numeric = bm_parse_int (v->str, INT64_MIN, INT64_MAX, &n) == 0;
        if (streq (name, "jobId") && v->len < (int) sizeof job->id)
            snprintf (job->id, sizeof job->id, "%s", v->str);
        else if (streq (name, "botType") && v->len < (int) sizeof type)
            snprintf (type, sizeof type, "%s", v->str);
        else if (streq (name, "state") && v->len < (int) sizeof state)
            snprintf (state, sizeof state, "%s", v->str);
        else if (streq (name, "priority") && numeric) job->priority = n;
        else if (streq (name, "seq") && numeric) job->seq = n;
        else if (streq (name, "attempts") && numeric) job->attempts = n;
        else if (streq (name, "maxAttempts") && numeric) job->max_attempts = n;
        else if (streq (name, "timeoutMs") && numeric) job->timeout_ms = n;
        else if (streq (name, "progress") && numeric) job->progress = n;
        else if (streq (name, "createdAt") && numeric) job->created_at = n;
        else if (streq (name, "startedAt") && numeric) job->started_at = n;
        else if (streq (name, "finishedAt") && numeric) job->finished_at = n;
        else if (streq (name, "deliveries") && numeric) job->deliveries = n;
        else if (streq (name, "payload")) {
            free (job->payload);
            job->payload = s_memdup (v->str, v->len);
            job->payload_size = v->len;
        }
        else if (streq (name, "result")) {
            free (job->result);
            job->result = s_memdup (v->str, v->len);
            job->result_size = v->len;
        }
        else if (streq (name, "webhook"))
            s_set_wh (job, v->str, v->len);
        else if (streq (name, "webhookUrl")) s_set_str (&job->webhook_url, v->str);
        else if (streq (name, "idempotencyKey")) s_set_str (&job->idem_key, v->str);
        else if (streq (name, "parent")) s_set_str (&job->parent, v->str);
        else if (streq (name, "worker")) s_set_str (&job->worker_name, v->str);
        else if (streq (name, "errorCode")) s_set_str (&job->error_code, v->str);
        else if (streq (name, "errorMessage")) s_set_str (&job->error_message, v->str);
        else if (streq (name, "errorExitCode") && numeric) {
            job->exit_code = n;
            job->has_exit_code = true;
        }
    }
    int state_index = -1;
    for (int i = 0; i < 5; i++)
        if (streq (state, s_state_names [i]))
            state_index = i;
    //  Records from elsewhere, or damaged: refuse rather than guess.
    if (!job->id [0] || !bm_valid_bot_type (type, strlen (type)) || state_index < 0
    ||  !job->payload || bm_msgpack_check (job->payload, job->payload_size)
    ||  (job->result && bm_msgpack_check (job->result, job->result_size))
    ||  (job->wh && bm_msgpack_check (job->wh, job->wh_size))) {
        s_job_destroy (&job);
        return NULL;
    }
    if (job->max_attempts < 1)
        job->max_attempts = self->config.job_max_attempts;
    if (job->timeout_ms < 1)
        job->timeout_ms = self->config.job_timeout_ms;
    job->state = (job_state_t) state_index;
    job->service = s_service_require (self, type);
    job->durable = true;
    return job;
}

//  A job that only Redis still holds: loaded for STATUS, CANCEL, RETRY,
//  REDELIVER.
typedef struct {
    s_pending_t *pending;
    int command;
} s_load_t;

static void s_client_act (bm_broker_t *self, zframe_t *identity, s_pending_t *pending,
                          const msgpack_object *request, int command, job_t *job);

static void
s_on_load (redisReply *reply, void *arg)
{
    s_load_t *load = (s_load_t *) arg;
    s_pending_t *pending = load->pending;
    bm_broker_t *self = pending->broker;
    if (!reply)
        s_pending_reject (pending, "store_unavailable",
                          "the job store (Redis) is unavailable; retry later");
    else {
        job_t *job = (job_t *) zhashx_lookup (self->jobs, pending->id);
        if (job)        //  Arrived meanwhile (e.g. recovery)
            s_client_act (self, pending->identity, pending, NULL, load->command, job);
        else {
            job = s_job_from_hash (self, reply);
            if (!job)
                s_pending_reject (pending, "not_found", "no job with that id");
            else
            if (!s_job_terminal (job)) {
                //  Only terminal jobs live in Redis alone; anything else is
                //  being recovered: answer what Redis says.
                if (load->command == BM_STATUS)
                    s_reply_record (self, pending->identity, pending, NULL, job);
                else
                    s_pending_reject (pending, "conflict", "the job is being recovered; retry");
                s_job_destroy (&job);
            }
            else {
                //  Keep it in memory like any finished job.
                s_job_insert (self, job);
                job->finished_handle = zlistx_add_end (self->finished, job);
                s_client_act (self, pending->identity, pending, NULL, load->command, job);
                s_evict (self);
            }
        }
    }
    s_pending_destroy (&pending);
    free (load);
}

//  STATUS, CANCEL, RETRY, REDELIVER on a job we hold.
static void
s_client_act (bm_broker_t *self, zframe_t *identity, s_pending_t *pending,
              const msgpack_object *request, int command, job_t *job)
{
    #define REJECT(code, message) do { \
        if (pending) s_pending_reject (pending, code, message); \
        else s_reject (self, identity, request, code, message); } while (0)

    if (command == BM_STATUS)
        s_reply_record (self, identity, pending, request, job);
    else
    if (command == BM_CANCEL) {
        if (s_job_terminal (job))
            REJECT ("conflict", "the job has already ended");
        else
        if (job->state == JOB_QUEUED && !job->durable)
            REJECT ("conflict", "the job is not accepted yet");
        else {
            if (job->state == JOB_RUNNING && job->worker)
                s_worker_stop_job (self, job, "cancelled");
            s_job_finish (self, job, JOB_CANCELLED, "cancelled", "cancelled by request");
            s_reply_record (self, identity, pending, request, job);
        }
    }
    else
    if (command == BM_RETRY) {
        if (job->state != JOB_FAILED && job->state != JOB_CANCELLED)
            REJECT ("conflict", "only failed or cancelled jobs can be retried");
        else
        if (s_is_delivery (job))
            REJECT ("conflict", "use REDELIVER for webhook deliveries");
        else {
            if (job->finished_handle) {
                zlistx_delete (self->finished, job->finished_handle);
                job->finished_handle = NULL;
            }
            job->attempts = 0;
            job->progress = 0;
            job->started_at = job->finished_at = 0;
            s_set_str (&job->error_code, NULL);
            s_set_str (&job->error_message, NULL);
            free (job->result);
            job->result = NULL;
            s_job_enqueue (self, job);
            self->retried++;
            s_persist_full (self, job, true, NULL, NULL);
            s_send_accepted (self, identity, pending, request, job->id, false,
                             s_queue_position (job->service, job));
            s_dispatch (self, job->service);
        }
    }
    else
    if (command == BM_REDELIVER) {
        if (!s_job_terminal (job) || !job->webhook_url || s_is_delivery (job))
            REJECT ("conflict", "the job has no webhook or has not ended");
        else {
            s_webhook_create (self, job);
            s_persist_terminal (self, job);     //  Its delivery count changed
            s_send_accepted (self, identity, pending, request, job->id, false, 0);
        }
    }
    #undef REJECT
}

static void
s_client_job_command (bm_broker_t *self, zframe_t *identity, int command,
                      const msgpack_object *body)
{
    char id [BM_MAX_ID_LEN + 16];
    if (!bm_obj_strcpy (body, "jobId", id, sizeof id) || !bm_valid_id (id, strlen (id))) {
        s_reject (self, identity, body, "bad_request", "jobId is required and must be a job id");
        return;
    }
    job_t *job = (job_t *) zhashx_lookup (self->jobs, id);
    if (job) {
        s_client_act (self, identity, NULL, body, command, job);
        return;
    }
    if (!self->store) {
        s_reject (self, identity, body, "not_found", "no job with that id");
        return;
    }
    s_load_t *load = (s_load_t *) zmalloc (sizeof (s_load_t));
    load->pending = s_pending_new (self, identity, body, id);
    load->command = command;
    s_cmd_t cmd;
    s_cmd_start (self, &cmd, "HGETALL", "job:", id);
    s_query (self, &cmd, s_on_load, load);
}

static void
s_pack_stats (bm_broker_t *self, msgpack_packer *pk)
{
    bm_pack_str (pk, "types");
    msgpack_pack_map (pk, zhashx_size (self->services));
    service_t *service = (service_t *) zhashx_first (self->services);
    while (service) {
        bm_pack_str (pk, service->name);
        msgpack_pack_map (pk, 11);
        bm_pack_kv_int (pk, "waiting", (int64_t) bm_heap_size (service->queue));
        bm_pack_kv_int (pk, "running", service->usage);
        bm_pack_kv_int (pk, "completed", (int64_t) service->completed);
        bm_pack_kv_int (pk, "failed", (int64_t) service->failed);
        bm_pack_kv_int (pk, "cancelled", (int64_t) service->cancelled);
        bm_pack_kv_int (pk, "limit", service->limit);
        bm_pack_kv_int (pk, "usage", service->usage);
        bm_pack_kv_int (pk, "waitingForPermit", s_service_waiting_for_permit (service));
        bm_pack_kv_int (pk, "workers", (int64_t) zlistx_size (service->workers));
        bm_pack_kv_int (pk, "submitted", (int64_t) service->submitted);
        bm_pack_kv_int (pk, "limitKills", (int64_t) service->limit_kills);
        service = (service_t *) zhashx_next (self->services);
    }
    bm_pack_str (pk, "workers");
    msgpack_pack_array (pk, zhashx_size (self->workers));
    worker_t *worker = (worker_t *) zhashx_first (self->workers);
    while (worker) {
        msgpack_pack_map (pk, 6);
        bm_pack_kv_str (pk, "name", worker->name);
        bm_pack_str (pk, "types");
        msgpack_pack_array (pk, worker->service_count);
        for (int i = 0; i < worker->service_count; i++)
            bm_pack_str (pk, worker->services [i]->name);
        bm_pack_kv_int (pk, "credit", worker->credit);
        bm_pack_kv_int (pk, "running", worker->running);
        bm_pack_kv_int (pk, "lastHeartbeat", worker->last_seen);
        bm_pack_kv_int (pk, "pid", worker->pid);
        worker = (worker_t *) zhashx_next (self->workers);
    }
    bm_pack_str (pk, "totals");
    msgpack_pack_map (pk, 6);
    bm_pack_kv_int (pk, "submitted", (int64_t) self->submitted);
    bm_pack_kv_int (pk, "completed", (int64_t) self->completed);
    bm_pack_kv_int (pk, "failed", (int64_t) self->failed);
    bm_pack_kv_int (pk, "cancelled", (int64_t) self->cancelled);
    bm_pack_kv_int (pk, "rejected", (int64_t) self->rejected);
    bm_pack_kv_int (pk, "retried", (int64_t) self->retried);
}

static bool
s_redis_ok (bm_broker_t *self)
{
    return !self->store || (bm_store_up (self->store) && self->recovered);
}

static void
s_client_simple (bm_broker_t *self, zframe_t *identity, int command, const msgpack_object *body)
{
    s_body_t reply;
    s_body_init (&reply);
    int req = s_req_count (body);
    if (command == BM_STATS) {
        msgpack_pack_map (&reply.pk, req + 5);
        s_pack_req (&reply.pk, body);
        s_pack_stats (self, &reply.pk);
        bm_pack_kv_bool (&reply.pk, "redis", s_redis_ok (self));
        bm_pack_kv_int (&reply.pk, "uptimeMs", bm_mono_ms () - self->started_mono);
    }
    else
    if (command == BM_PING) {
        msgpack_pack_map (&reply.pk, req + 2);
        s_pack_req (&reply.pk, body);
        bm_pack_kv_bool (&reply.pk, "redis", s_redis_ok (self));
        bm_pack_kv_int (&reply.pk, "uptimeMs", bm_mono_ms () - self->started_mono);
    }
    else
    if (command == BM_METRICS) {
        bm_series_set (self->m_store_pending, self->store ? (double) bm_store_pending (self->store) : 0);
        char *text = bm_metrics_render (self->metrics);
        msgpack_pack_map (&reply.pk, req + 1);
        s_pack_req (&reply.pk, body);
        bm_pack_kv_str (&reply.pk, "text", text ? text : "");
        free (text);
    }
    else {      //  LIST
        char state [16] = "", type [BM_MAX_BOT_TYPE_LEN + 1] = "";
        bm_obj_strcpy (body, "state", state, sizeof state);
        bm_obj_strcpy (body, "botType", type, sizeof type);
        int64_t limit = 50;
        if (!bm_obj_int (body, "limit", &limit) || limit < 1)
            limit = 50;
        if (limit > 500)
            limit = 500;
        job_t *matches [500];
        int64_t count = 0;
        job_t *job = (job_t *) zlistx_last (self->recent);
        while (job && count < limit) {
            if ((!*state || streq (state, s_state_names [job->state]))
            &&  (!*type || streq (type, job->service->name)))
                matches [count++] = job;
            job = (job_t *) zlistx_prev (self->recent);
        }
        msgpack_pack_map (&reply.pk, req + 1);
        s_pack_req (&reply.pk, body);
        bm_pack_str (&reply.pk, "jobs");
        msgpack_pack_array (&reply.pk, count);
        for (int64_t i = 0; i < count; i++)
            s_pack_record (&reply.pk, matches [i], false);
    }
    s_send_client (self, identity, BM_REPLY, &reply);
    s_body_free (&reply);
}

static void
s_handle_client (bm_broker_t *self, zframe_t *identity, bm_msg_t *msg)
{
    const msgpack_object *body = bm_msg_body (msg);
    switch (bm_msg_command (msg)) {
        case BM_SUBMIT:
            s_client_submit (self, identity, msg);
            break;
        case BM_STATUS:
        case BM_CANCEL:
        case BM_RETRY:
        case BM_REDELIVER:
            s_client_job_command (self, identity, bm_msg_command (msg), body);
            break;
        case BM_STATS:
        case BM_LIST:
        case BM_PING:
        case BM_METRICS:
            s_client_simple (self, identity, bm_msg_command (msg), body);
            break;
        default:
            bm_series_inc (bm_metric_series (self->mf_frames, "bad_command"));
            s_reject (self, identity, body, "bad_command", "unknown client command");
    }
}

//  --------------------------------------------------------------------------
//  The socket

//  Receive one message's frames (up to 5) without building a zmsg.  Returns
//  the number of frames, 0 when nothing is waiting; extra frames past 5 are
//  read and dropped (the count says 6).
static int
s_recv_frames (void *router, zmq_msg_t *frames, int max)
{
    int count = 0;
    while (true) {
        zmq_msg_t *frame = &frames [count < max ? count : max - 1];
        if (count >= max)
            zmq_msg_close (frame);
        zmq_msg_init (frame);
        if (zmq_msg_recv (frame, router, ZMQ_DONTWAIT) == -1) {
            zmq_msg_close (frame);
            return count;
        }
        count++;
        if (!zmq_msg_more (frame))
            return count;
    }
}

static void
s_handle_frames (bm_broker_t *self, zmq_msg_t *frames, int count)
{
    const char *code = NULL;
    char reason [160];
    //  One frame, reset for each message: handlers that keep the sender
    //  take a zframe_dup.
    zframe_t *identity = self->identity;
    zframe_reset (identity, zmq_msg_data (&frames [0]), zmq_msg_size (&frames [0]));
    int rc = -1;
    if (count == 4)
        rc = bm_msg_parse (self->msg,
                           zmq_msg_data (&frames [1]), zmq_msg_size (&frames [1]),
                           zmq_msg_data (&frames [2]), zmq_msg_size (&frames [2]),
                           zmq_msg_data (&frames [3]), zmq_msg_size (&frames [3]),
                           (size_t) self->config.max_frame, &code, reason, sizeof reason);
    else {
        code = "bad_frame";
        snprintf (reason, sizeof reason, "a message must have exactly 3 frames");
    }
    if (rc) {
        bm_series_inc (bm_metric_series (self->mf_frames, code));
        //  Answer in the peer's own language when we can tell it: "BMW"
        //  and any version is a worker's, which gets a NACK.
        bool worker = count > 1 && zmq_msg_size (&frames [1]) >= 3
                   && memcmp (zmq_msg_data (&frames [1]), "BMW", 3) == 0;
        bm_warn (NULL, "rejected a frame from a %s: %s (%s)",
                 worker ? "worker" : "client", code, reason);
        if (worker)
            s_send_worker_simple (self, identity, BM_NACK, code, reason);
        else
            s_reject (self, identity, NULL, code, reason);
    }
    else
    if (bm_msg_peer (self->msg) == BM_PEER_WORKER)
        s_handle_worker (self, identity, self->msg);
    else
        s_handle_client (self, identity, self->msg);
}

static int
s_router_handler (zloop_t *loop, zsock_t *router, void *arg)
{
    (void) loop;
    bm_broker_t *self = (bm_broker_t *) arg;
    void *handle = zsock_resolve (router);
    //  Drain up to a batch per loop turn, so the Redis writes of many
    //  SUBMITs leave in one pipeline.
    for (int i = 0; i < 512; i++) {
        zmq_msg_t frames [5];
        int count = s_recv_frames (handle, frames, 5);
        if (count == 0)
            break;
        s_handle_frames (self, frames, count > 5 ? 5 : count);
        for (int j = 0; j < (count > 5 ? 5 : count); j++)
            zmq_msg_close (&frames [j]);
    }
    //  One group commit for everything this turn wrote.
    if (self->store)
        bm_store_flush (self->store);
    return 0;
}

//  --------------------------------------------------------------------------
//  Timers: heartbeats, deadlines, idempotency keys, snapshots, shutdown

static void s_snapshot (bm_broker_t *self);
static void s_begin_shutdown (bm_broker_t *self);

//  Write the running state of attempts that have run BROKER_SAVE_RUNNING_MS
//  (those started at dispatch were written then).
static void
s_save_running (bm_broker_t *self, int64_t now)
{
    if (!self->store || self->config.save_running_ms == 0)
        return;
    worker_t *worker = (worker_t *) zhashx_first (self->workers);
    while (worker) {
        job_t *job = (job_t *) zlistx_first (worker->jobs);
        while (job) {
            if (!job->running_saved
            &&  now - job->started_mono >= self->config.save_running_ms)
                s_persist_state (self, job);
            job = (job_t *) zlistx_next (worker->jobs);
        }
        worker = (worker_t *) zhashx_next (self->workers);
    }
}

static int
s_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id;
    bm_broker_t *self = (bm_broker_t *) arg;
    int64_t now = bm_mono_ms ();
    if (s_stop_requested && !self->stopping)
        s_begin_shutdown (self);
    if (self->stopping) {
        bool flushed = !self->store || !bm_store_up (self->store)
                    || (bm_store_pending (self->store) == 0 && self->live.adds == 0
                        && self->live.rems == 0);
        if (flushed || now >= self->stop_deadline) {
            if (!flushed)
                bm_warn (NULL, "shutdown: %zu redis writes not confirmed in time",
                         bm_store_pending (self->store));
            self->done = true;
            return -1;      //  Ends zloop_start
        }
    }
    //  Jobs past their deadline fail with timeout; the worker is told.
    job_t *job;
    while ((job = (job_t *) bm_heap_peek (self->deadlines)) && job->deadline <= now) {
        bm_heap_pop (self->deadlines);
        if (job->state != JOB_RUNNING)
            continue;
        char message [128];
        snprintf (message, sizeof message, "the job ran longer than its timeout of %" PRId64 " ms",
                  job->timeout_ms);
        if (job->worker)
            s_worker_stop_job (self, job, "timeout");
        s_job_finish (self, job, JOB_FAILED, "timeout", message);
    }
    s_save_running (self, now);
    //  Workers: expire the silent, heartbeat the rest.
    worker_t *worker = (worker_t *) zhashx_first (self->workers);
    zlistx_t *dead = NULL;
    while (worker) {
        if (worker->expiry <= now) {
            if (!dead)
                dead = zlistx_new ();
            zlistx_add_end (dead, worker);
        }
        else
        if (worker->heartbeat_at <= now)
            s_send_worker (self, worker, BM_HEARTBEAT, NULL);
        worker = (worker_t *) zhashx_next (self->workers);
    }
    if (dead) {
        while ((worker = (worker_t *) zlistx_detach (dead, NULL)))
            s_worker_delete (self, worker, "heartbeat expired");
        zlistx_destroy (&dead);
    }
    //  Idempotency keys, oldest first.
    char *key;
    int64_t wall = bm_now_ms ();
    while ((key = (char *) zlistx_first (self->idem_order))) {
        s_idem_t *entry = (s_idem_t *) zhashx_lookup (self->idem, key);
        if (entry && entry->expires > wall)
            break;
        if (entry)
            zhashx_delete (self->idem, key);
        zlistx_delete (self->idem_order, zlistx_cursor (self->idem_order));
    }
    if (self->config.snapshot_interval_s > 0
    &&  now - self->last_snapshot >= self->config.snapshot_interval_s * 1000) {
        self->last_snapshot = now;
        s_snapshot (self);
    }
    bm_series_set (self->m_redis_up, s_redis_ok (self) ? 1 : 0);
    if (self->store)
        bm_store_flush (self->store);
    return 0;
}

static int
s_cmp_double (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

//  Write the key series to Redis (bounded history) for the dashboard.
static void
s_snapshot (bm_broker_t *self)
{
    if (!self->store || !bm_store_up (self->store))
        return;
    double interval = (double) self->config.snapshot_interval_s;
    json_t *snap = json_object ();
    json_object_set_new (snap, "t", json_integer (bm_now_ms ()));
    json_t *types = json_object ();
    service_t *service = (service_t *) zhashx_first (self->services);
    while (service) {
        json_t *t = json_object ();
        json_object_set_new (t, "waiting", json_integer ((json_int_t) bm_heap_size (service->queue)));
        json_object_set_new (t, "running", json_integer (service->usage));
        json_object_set_new (t, "limit", json_integer (service->limit));
        json_object_set_new (t, "completed", json_integer ((json_int_t) service->completed));
        json_object_set_new (t, "failed", json_integer ((json_int_t) service->failed));
        json_object_set_new (t, "throughput",
                             json_real ((service->completed - service->snap_completed) / interval));
        service->snap_completed = service->completed;
        size_t n = service->duration_count < DURATION_SAMPLES
                 ? service->duration_count : DURATION_SAMPLES;
        if (n) {
            qsort (service->durations, n, sizeof (double), s_cmp_double);
            json_object_set_new (t, "p50", json_real (service->durations [n * 50 / 100]));
            json_object_set_new (t, "p95", json_real (service->durations [n * 95 / 100]));
            json_object_set_new (t, "p99", json_real (service->durations [n * 99 / 100]));
        }
        else {
            json_object_set_new (t, "p50", json_null ());
            json_object_set_new (t, "p95", json_null ());
            json_object_set_new (t, "p99", json_null ());
        }
        service->duration_count = 0;
        json_object_set_new (types, service->name, t);
        service = (service_t *) zhashx_next (self->services);
    }
    json_object_set_new (snap, "types", types);
    json_t *wh = json_object ();
    json_object_set_new (wh, "delivered", json_integer ((json_int_t) self->wh_delivered));
    json_object_set_new (wh, "failed", json_integer ((json_int_t) self->wh_failed));
    json_object_set_new (snap, "webhook", wh);
    char *text = json_dumps (snap, JSON_COMPACT);
    json_decref (snap);
    s_cmd_t cmd;
    s_cmd_start (self, &cmd, "LPUSH", "snapshots", NULL);
    s_arg_str (&cmd, text);
    s_issue (self, &cmd, false, NULL, NULL);
    s_cmd_start (self, &cmd, "LTRIM", "snapshots", NULL);
    s_arg_int (&cmd, 0);
    s_arg_int (&cmd, self->config.snapshot_history - 1);
    s_issue (self, &cmd, false, NULL, NULL);
    free (text);
}

static void
s_begin_shutdown (bm_broker_t *self)
{
    self->stopping = true;
    self->stop_deadline = bm_mono_ms () + self->config.shutdown_ms;
    size_t running = 0;
    worker_t *worker = (worker_t *) zhashx_first (self->workers);
    while (worker) {
        running += zlistx_size (worker->jobs);
        worker = (worker_t *) zhashx_next (self->workers);
    }
    if (self->store)
        bm_info (NULL, "shutting down: %zu jobs running stay recorded in redis and resume "
                 "on restart; flushing %zu redis writes", running, bm_store_pending (self->store));
    else
        bm_info (NULL, "shutting down without redis: %zu running jobs are not kept", running);
}

//  --------------------------------------------------------------------------
//  Recovery: rebuild the queues from Redis on first connect.

typedef struct {
    bm_broker_t *broker;
} s_recovery_t;

static void
s_recovery_finish (bm_broker_t *self)
{
    self->recovering = false;
    self->recovered = true;
    size_t queued = 0;
    service_t *service = (service_t *) zhashx_first (self->services);
    while (service) {
        queued += bm_heap_size (service->queue);
        service = (service_t *) zhashx_next (self->services);
    }
    bm_info (NULL, "recovered %zu unfinished jobs from redis", queued);
    service = (service_t *) zhashx_first (self->services);
    zlistx_t *all = zlistx_new ();
    while (service) {
        zlistx_add_end (all, service);
        service = (service_t *) zhashx_next (self->services);
    }
    while ((service = (service_t *) zlistx_detach (all, NULL)))
        s_dispatch (self, service);
    zlistx_destroy (&all);
}

static void
s_on_recovered_job (redisReply *reply, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    self->recovery_pending--;
    if (!reply) {
        //  Redis went away mid-recovery: it starts over on reconnect.
        if (self->recovery_pending == 0)
            self->recovering = false;
        return;
    }
    job_t *job = s_job_from_hash (self, reply);
    if (job && !zhashx_lookup (self->jobs, job->id) && !s_job_terminal (job)) {
        if (job->seq > self->seq)
            self->seq = job->seq;
        s_job_insert (self, job);
        bool was_running = job->state == JOB_RUNNING;
        if (job->idem_key) {
            s_idem_t *entry = (s_idem_t *) zmalloc (sizeof (s_idem_t));
            snprintf (entry->job_id, sizeof entry->job_id, "%s", job->id);
            entry->expires = job->created_at + self->config.idempotency_ttl_ms;
            zhashx_update (self->idem, job->idem_key, entry);
            zlistx_add_end (self->idem_order, strdup (job->idem_key));
        }
        if (was_running && job->attempts >= job->max_attempts) {
            job->state = JOB_RUNNING;
            s_job_finish (self, job, JOB_FAILED, "worker_lost",
                          "the broker restarted while the last allowed attempt ran");
        }
        else {
            s_job_enqueue (self, job);
            if (was_running) {
                bm_info (job->id, "recovered: was running (attempt %" PRId64 "), queued again",
                         job->attempts);
                s_persist_state (self, job);
            }
        }
    }
    else
    if (job) {
        //  A finished job still listed as live (its ZREM was lost in a
        //  crash): tidy the list.
        if (s_job_terminal (job))
            s_live_remove (self, job->id);
        s_job_destroy (&job);
    }
    if (self->recovery_pending == 0 && self->recovering)
        s_recovery_finish (self);
}

static void
s_on_live_ids (redisReply *reply, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    if (!reply || reply->type != REDIS_REPLY_ARRAY) {
        self->recovering = false;
        return;
    }
    self->recovery_pending = (int) reply->elements;
    if (reply->elements == 0) {
        s_recovery_finish (self);
        return;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        redisReply *id = reply->element [i];
        if (id->type != REDIS_REPLY_STRING) {
            self->recovery_pending--;
            continue;
        }
        s_cmd_t cmd;
        cmd.argc = 0;
        snprintf (cmd.key, sizeof cmd.key, "%s{bm}:job:%s", self->config.redis_prefix, id->str);
        s_arg_str (&cmd, "HGETALL");
        s_arg_str (&cmd, cmd.key);
        s_query (self, &cmd, s_on_recovered_job, self);
    }
    if (self->recovery_pending == 0)
        s_recovery_finish (self);
}

static void
s_on_store_state (bool up, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    bm_series_set (self->m_redis_up, up ? 1 : 0);
    if (up && !self->recovered && !self->recovering) {
        self->recovering = true;
        s_cmd_t cmd;
        s_cmd_start (self, &cmd, "ZRANGE", "live", NULL);
        s_arg_str (&cmd, "0");
        s_arg_str (&cmd, "-1");
        s_query (self, &cmd, s_on_live_ids, self);
    }
}

//  --------------------------------------------------------------------------
//  Configuration

int
bm_broker_config_load (bm_broker_config_t *c)
{
    memset (c, 0, sizeof *c);
    c->endpoint = bm_env_str ("BROKER_ENDPOINT", "tcp://*:5555");
    static char redis_url [1024];
    int rc = bm_redis_env_load (true, redis_url, sizeof redis_url, &c->redis_prefix) ? 1 : 0;
    c->redis_url = streq (redis_url, "none") ? NULL : redis_url;
    c->metrics_addr = bm_env_str ("BROKER_METRICS_ADDR", "0.0.0.0");
    rc |= bm_env_int ("BROKER_METRICS_PORT", 9555, 0, 65535, &c->metrics_port);
    rc |= bm_env_int ("HEARTBEAT_INTERVAL_MS", 1000, 10, 60000, &c->heartbeat_ms);
    rc |= bm_env_int ("HEARTBEAT_LIVENESS", 3, 1, 100, &c->liveness);
    rc |= bm_env_int ("MAX_BOTS_DEFAULT", 10, 1, 1000000, &c->default_limit);
    rc |= bm_env_int ("MAX_QUEUE", 100000, 1, 100000000, &c->max_queue);
    rc |= bm_env_int ("JOB_TIMEOUT_MS", 300000, 1, 86400000, &c->job_timeout_ms);
    rc |= bm_env_int ("JOB_MAX_ATTEMPTS", 3, 1, 100, &c->job_max_attempts);
    rc |= bm_env_int ("MAX_FRAME_BYTES", BM_MAX_FRAME_BYTES, 1024, 256 * 1024 * 1024, &c->max_frame);
    rc |= bm_env_int ("MAX_PAYLOAD_BYTES", BM_MAX_PAYLOAD_BYTES, 16, 256 * 1024 * 1024, &c->max_payload);
    rc |= bm_env_int ("COMPLETED_JOB_TTL", 86400, 1, 365 * 86400, &c->completed_ttl_s);
    rc |= bm_env_int ("FAILED_JOB_TTL", 7 * 86400, 1, 365 * 86400, &c->failed_ttl_s);
    rc |= bm_env_int ("IDEMPOTENCY_TTL_MS", 86400000, 1, 30LL * 86400000, &c->idempotency_ttl_ms);
    rc |= bm_env_int ("KEEP_FINISHED_JOBS", 10000, 1, 10000000, &c->keep_finished);
    rc |= bm_env_int ("METRICS_SNAPSHOT_INTERVAL", 10, 0, 86400, &c->snapshot_interval_s);
    rc |= bm_env_int ("METRICS_SNAPSHOT_HISTORY", 8640, 1, 1000000, &c->snapshot_history);
    rc |= bm_env_int ("STORE_BUFFER_MAX", 1000000, 1000, 100000000, &c->store_buffer);
    rc |= bm_env_int ("WEBHOOK_JOB_TIMEOUT_MS", 3600000, 1000, 86400000, &c->webhook_timeout_ms);
    rc |= bm_env_int ("WEBHOOK_JOB_MAX_ATTEMPTS", 10, 1, 100, &c->webhook_attempts);
    rc |= bm_env_int ("BROKER_SHUTDOWN_MS", 5000, 0, 600000, &c->shutdown_ms);
    rc |= bm_env_int ("BROKER_PEER_HWM", 10000, 10, 10000000, &c->peer_hwm);
    rc |= bm_env_int ("BROKER_SAVE_RUNNING_MS", 500, 0, 3600000, &c->save_running_ms);
    return rc ? -1 : 0;
}

//  MAX_<TYPE>_BOTS and MAX_QUEUE_<TYPE> for any type, from the environment.
static int
s_load_type_settings (bm_broker_t *self)
{
    int rc = 0;
    //  The seed's three types are always configured.
    const char *seed [] = { "python", "node", "java" };
    const int64_t seed_limits [] = { 5, 10, 3 };
    for (int i = 0; i < 3; i++) {
        service_t *service = s_service_require (self, seed [i]);
        service->limit = seed_limits [i];
        service->configured = true;
        bm_series_set (service->m_limit, (double) service->limit);
    }
    service_t *webhook = s_service_require (self, BM_WEBHOOK_TYPE);
    webhook->limit = 10000;
    webhook->configured = true;
    bm_series_set (webhook->m_limit, (double) webhook->limit);
    for (char **env = environ; *env; env++) {
        const char *entry = *env;
        const char *eq = strchr (entry, '=');
        if (!eq)
            continue;
        size_t name_len = eq - entry;
        bool is_bots = name_len > 9 && strncmp (entry, "MAX_", 4) == 0
                    && strncmp (eq - 5, "_BOTS", 5) == 0 && strncmp (entry, "MAX_BOTS_DEFAULT", 16) != 0;
        bool is_queue = name_len > 10 && strncmp (entry, "MAX_QUEUE_", 10) == 0;
        if (!is_bots && !is_queue)
            continue;
        char name [128];
        if (name_len >= sizeof name)
            continue;
        memcpy (name, entry, name_len);
        name [name_len] = 0;
        const char *type_start = is_bots ? name + 4 : name + 10;
        size_t type_len = is_bots ? name_len - 9 : name_len - 10;
        char type [BM_MAX_BOT_TYPE_LEN + 1];
        if (type_len == 0 || type_len > BM_MAX_BOT_TYPE_LEN) {
            bm_error (NULL, "configuration: %s names a bot type longer than 32 characters", name);
            rc = -1;
            continue;
        }
        for (size_t i = 0; i < type_len; i++)
            type [i] = (char) tolower ((unsigned char) type_start [i]);
        type [type_len] = 0;
        if (!bm_valid_bot_type (type, type_len)) {
            bm_error (NULL, "configuration: %s: '%s' is not a valid bot type "
                      "(a-z, 0-9, _ and -)", name, type);
            rc = -1;
            continue;
        }
        int64_t value;
        if (bm_env_int (name, 0, 1, 100000000, &value)) {
            rc = -1;
            continue;
        }
        service_t *service = s_service_require (self, type);
        if (is_bots) {
            service->limit = value;
            service->configured = true;
            bm_series_set (service->m_limit, (double) value);
        }
        else
            service->max_queue = value;
    }
    return rc;
}

//  --------------------------------------------------------------------------

static void
s_free_job (void **item)
{
    s_job_destroy ((job_t **) item);
}

static void
s_free_service (void **item)
{
    s_service_destroy ((service_t **) item);
}

static void
s_free_worker (void **item)
{
    s_worker_destroy ((worker_t **) item);
}

static void
s_free_str (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_setup_metrics (bm_broker_t *self)
{
    bm_metrics_t *m = self->metrics = bm_metrics_new ();
    self->mf_executions = bm_metrics_counter (m, "bot_executions_total",
        "Bot executions that ended, by bot type and status", "bot_type,status");
    static const double duration_buckets [] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
        2.5, 5, 10, 30, 60, 120, 300, 600 };
    self->mf_duration = bm_metrics_histogram (m, "bot_execution_duration_seconds",
        "Run time of completed bot executions", "bot_type", duration_buckets,
        sizeof duration_buckets / sizeof duration_buckets [0]);
    self->mf_queue = bm_metrics_gauge (m, "queue_size", "Jobs waiting in the queue", "queue_name");
    self->mf_usage = bm_metrics_gauge (m, "semaphore_usage",
        "Permits of the bot type's semaphore in use (jobs running)", "semaphore_name");
    self->mf_waiting = bm_metrics_gauge (m, "semaphore_waiting",
        "Queued jobs that have a worker with credit but wait for a permit", "semaphore_name");
    self->mf_limit = bm_metrics_gauge (m, "semaphore_limit",
        "Size of the bot type's semaphore (MAX_<TYPE>_BOTS)", "semaphore_name");
    self->mf_limit_kills = bm_metrics_counter (m, "bot_limit_kills_total",
        "Bot runs that hit a resource limit of their type (memory, cpu, pids, files)",
        "bot_type,limit");
    self->mf_submitted = bm_metrics_counter (m, "broker_jobs_submitted_total",
        "Jobs accepted for submission", "bot_type");
    self->mf_rejected = bm_metrics_counter (m, "broker_jobs_rejected_total",
        "Submissions rejected, by reason", "reason");
    self->mf_wait = bm_metrics_histogram (m, "job_wait_seconds",
        "Time jobs spent queued before they started", "bot_type", NULL, 0);
    self->mf_frames = bm_metrics_counter (m, "broker_frames_rejected_total",
        "Messages the broker could not accept, by reason", "reason");
    self->mf_redispatched = bm_metrics_counter (m, "broker_jobs_requeued_total",
        "Running jobs put back in the queue, by reason", "reason");
    self->mf_dropped = bm_metrics_counter (m, "broker_messages_dropped_total",
        "Messages not sent because the peer was gone or its queue full", "reason");
    self->m_workers = bm_metric_series (bm_metrics_gauge (m, "broker_workers_connected",
        "Workers connected to the broker", NULL));
    self->m_redis_up = bm_metric_series (bm_metrics_gauge (m, "redis_up",
        "1 when the broker's job store (Redis) is connected and recovered", NULL));
    self->m_store_pending = bm_metric_series (bm_metrics_gauge (m, "broker_store_pending",
        "Redis writes buffered or in flight", NULL));
}

bm_broker_t *
bm_broker_new (const bm_broker_config_t *config)
{
    bm_broker_t *self = (bm_broker_t *) zmalloc (sizeof (bm_broker_t));
    self->config = *config;
    s_setup_metrics (self);
    self->services = zhashx_new ();
    zhashx_set_destructor (self->services, s_free_service);
    self->workers = zhashx_new ();
    zhashx_set_destructor (self->workers, s_free_worker);
    self->jobs = zhashx_new ();
    zhashx_set_destructor (self->jobs, s_free_job);
    self->recent = zlistx_new ();
    self->finished = zlistx_new ();
    self->deadlines = bm_heap_new (s_job_deadline_less, s_job_deadline_index);
    self->idem = zhashx_new ();
    zhashx_set_destructor (self->idem, s_free_str);
    self->idem_order = zlistx_new ();
    zlistx_set_destructor (self->idem_order, s_free_str);
    self->started_mono = bm_mono_ms ();
    self->msg = bm_msg_new ();
    self->identity = zframe_new_empty ();
    snprintf (self->instance, sizeof self->instance, "%04x",
              (unsigned) (((unsigned) getpid () * 2654435761u) ^ (unsigned) bm_now_ms ()) & 0xffff);
    if (s_load_type_settings (self)) {
        bm_broker_destroy (&self);
        return NULL;
    }
    self->router = zsock_new (ZMQ_ROUTER);
    //  Bound queues (STYLE.md 11).  Mandatory routing: a send to a peer
    //  that is gone or whose queue holds BROKER_PEER_HWM messages fails at
    //  once (s_route) instead of blocking the loop or growing without bound.
    zsock_set_router_mandatory (self->router, 1);
    zsock_set_sndhwm (self->router, (int) config->peer_hwm);
    zsock_set_rcvhwm (self->router, 1000000);
    zsock_set_linger (self->router, 1000);
    if (bm_curve_server_apply (self->router, &self->auth)) {
        bm_broker_destroy (&self);
        return NULL;
    }
    if (zsock_bind (self->router, "%s", config->endpoint) == -1) {
        bm_error (NULL, "cannot bind %s: %s", config->endpoint, zmq_strerror (zmq_errno ()));
        bm_broker_destroy (&self);
        return NULL;
    }
    self->loop = zloop_new ();
    zloop_set_nonstop (self->loop, true);
    zloop_reader (self->loop, self->router, s_router_handler, self);
    int tick = (int) (config->heartbeat_ms < 100 ? config->heartbeat_ms : 100);
    zloop_timer (self->loop, tick, 0, s_tick, self);
    if (config->redis_url) {
        self->store = bm_store_new (self->loop, config->redis_url, (size_t) config->store_buffer);
        if (!self->store) {
            bm_error (NULL, "configuration: REDIS_URL is not a valid redis:// URL");
            bm_broker_destroy (&self);
            return NULL;
        }
        bm_store_set_state_fn (self->store, s_on_store_state, self);
        bm_store_set_flush_fn (self->store, s_live_flush, self);
    }
    else
        self->recovered = true;
    if (config->metrics_port > 0) {
        self->metrics_http = bm_metrics_http_new (self->metrics, config->metrics_addr,
                                                  (int) config->metrics_port);
        if (!self->metrics_http)
            bm_warn (NULL, "cannot serve metrics on %s:%" PRId64 " (busy?); metrics stay "
                     "available through the gateway", config->metrics_addr, config->metrics_port);
    }
    bm_info (NULL, "broker listening on %s; redis %s; metrics on port %" PRId64,
             config->endpoint, config->redis_url ? config->redis_url : "off (no durability)",
             config->metrics_port);
    return self;
}

void
bm_broker_destroy (bm_broker_t **self_p)
{
    if (*self_p) {
        bm_broker_t *self = *self_p;
        bm_metrics_http_destroy (&self->metrics_http);
        if (self->live.waiting) {
            //  SUBMITs never confirmed: they are answered store_unavailable.
            s_waiters_t *batch = (s_waiters_t *) zmalloc (sizeof (s_waiters_t));
            batch->waiters = self->live.waiters;
            batch->count = self->live.waiting;
            self->live.waiters = NULL;
            self->live.waiting = 0;
            s_on_live_added (NULL, batch);
        }
        bm_store_destroy (&self->store);
        zloop_destroy (&self->loop);
        zsock_destroy (&self->router);
        zactor_destroy (&self->auth);
        zlistx_destroy (&self->recent);
        zlistx_destroy (&self->finished);
        zhashx_destroy (&self->workers);
        zhashx_destroy (&self->jobs);
        zhashx_destroy (&self->services);
        bm_heap_destroy (&self->deadlines);
        zhashx_destroy (&self->idem);
        zlistx_destroy (&self->idem_order);
        bm_metrics_destroy (&self->metrics);
        bm_msg_destroy (&self->msg);
        zframe_destroy (&self->identity);
        free (self->live.add_ids);
        free (self->live.add_seqs);
        free (self->live.waiters);
        free (self->live.rem_ids);
        free (self);
        *self_p = NULL;
    }
}

int
bm_broker_run (bm_broker_t *self)
{
    //  zloop_start returns when a signal interrupts its poll; the tick
    //  timer notices the stop request and ends the loop once flushed.
    while (!self->done)
        zloop_start (self->loop);
    bm_info (NULL, "broker stopped");
    return 0;
}

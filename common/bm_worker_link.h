/*  bm_worker_link.h - a worker's BMW01 connection to the broker.

    Everything docs/protocol.md section 5 asks of the worker side of the
    wire, once, for every worker in the tree (botmesh-worker, the webhook
    manager, the benchmark workers):

      - one DEALER socket (CURVE client keys applied when configured),
        READY {name, types, credit, pid, running} on every new socket
        (running: the jobs the owner says it runs, so that a broker that
        took over does not run them again), and READY again (without
        running) whenever the owner changes its credit;
      - a HEARTBEAT before an interval passes with nothing sent;
      - liveness: a broker silent for HEARTBEAT_LIVENESS intervals, or a
        DISCONNECT from it, means the connection is gone: the socket is
        replaced by a new one and READY sent again (Majordomo's worker
        recovery).  The owner hears of it (lost, then reconnected) so that
        it can adjust its credit and send again what may have been missed;
      - a DISCONNECT {reason: "replaced"} on a live connection means
        another live process registered under the same name: the link
        waits before it registers again (1 s doubling to 30 s while it
        goes on, jittered) and logs one ERROR a streak naming the name,
        the setting it comes from (config.name_setting) and the process
        that took it (the DISCONNECT's by), so that two
        such processes do not replace each other in a loop; once the
        owner said it is stopping (bm_worker_link_stopping), it closes
        for good instead;
      - several brokers (BROKER_ENDPOINT a list): a NACK not_leader (a
        standby) or a silent broker moves the link to the leader the
        standby names, or the next endpoint, after the list's backoff,
        with READY again on a new socket (docs/protocol.md section 7b);
      - messages from the broker are received without blocking, decoded
        and checked (bm_msg_parse: sizes checked before msgpack unpacks
        anything; bodies by bm_codec); HEARTBEAT and DISCONNECT are
        handled here, NACK is logged (not_owner at debug level: it is
        expected after a cancel or a re-dispatch), JOB and CANCEL go to
        the owner's handlers, other commands are logged and ignored;
      - the bodies a worker sends (READY, PROGRESS, DONE, RELEASE,
        DISCONNECT, HEARTBEAT) are encoded here by bm_codec, into one
        buffer kept for the link's life;
      - sends never block: with a full queue (broker away for long) a
        message is dropped and logged;
      - batches (config.batch): each job of a JOB_MANY goes to the job
        handler as if it came alone, and the DONEs sent while the handlers
        of one JOB_MANY run leave together, as one DONE_MANY, when its
        last job has been handed over (a DONE sent later goes alone,
        unless the caller holds them: bm_worker_link_hold / _flush).

    Two ways to drive it:
      - zloop: pass the loop to bm_worker_link_new; the link registers its
        socket and a timer (a quarter of the heartbeat interval) there.  A
        handler that returns -1 ends zloop_start, as zloop handlers do.
      - poll: pass NULL; poll bm_worker_link_socket for input and call
        bm_worker_link_dispatch when it is readable, and bm_worker_link_tick
        often enough (a quarter of the interval is what the zloop mode
        does).  The socket changes on a reconnect: poll the current one.

    bm_worker_link_connected and bm_worker_link_reconnects may be read
    from any thread; the rest belongs to the thread that drives the link.  */
#ifndef BM_WORKER_LINK_H
#define BM_WORKER_LINK_H

#include "bm_codec.h"
#include "bm_curve.h"

#include <stdbool.h>
#include <stdint.h>

#define BM_WORKER_LINK_MAX_TYPES    BM_MAX_WORKER_TYPES     //  Per READY

typedef struct {
    const char *endpoint;       //  Broker, e.g. "tcp://127.0.0.1:5555", or a
                                //  comma-separated list (bm_endpoints.h)
    const char *name;           //  Worker name (stable across reconnects)
    const char *name_setting;   //  The setting name comes from, for the
                                //  logs (copied, 63 bytes at most; NULL:
                                //  "WORKER_NAME")
    const char *const *types;   //  Bot types served (copied)
    int type_count;             //  1 .. BM_WORKER_LINK_MAX_TYPES
    int64_t credit;             //  Credit announced in the first READY
    int64_t heartbeat_ms;       //  HEARTBEAT_INTERVAL_MS
    int64_t liveness;           //  HEARTBEAT_LIVENESS
    int64_t max_frame;          //  Largest body accepted (0: BM_MAX_FRAME_BYTES)
    bool limit_socket;          //  Also let ZeroMQ drop a connection that
                                //  brings a message past max_frame + 4 KB
    int hwm;                    //  Send and receive high-water marks
                                //  (0: 10000)
    bool batch;                 //  READY says batch: true; the broker may
                                //  send JOB_MANY (protocol.md 5a)
    bool dones_kept;            //  The owner keeps its DONEs and sends them
                                //  again after READY on the next socket
                                //  (bm_done_replay): a DONE with no socket
                                //  to go to is kept, not lost, and logged
                                //  so, at INFO once per outage
    const bm_curve_peer_t *curve;   //  CURVE settings (copied), for a
                                //  process that cleared them from its
                                //  environment; NULL: the environment's,
                                //  read at each connect
} bm_worker_link_config_t;

//  A JOB, decoded and checked by bm_codec_job_decode (borrowed for the
//  call: copy what outlives it).  Returns 0, or -1 to stop: the rest of the
//  messages waiting stay queued and, in zloop mode, zloop_start ends.  A JOB whose
//  body does not decode never reaches the handler: it is logged (with the
//  field at fault) and answered DONE ok:false, error bad_request, when it
//  names a job (the broker then ends the job instead of waiting for its
//  timeout).
typedef int (bm_worker_link_job_fn) (void *arg, const bm_codec_job_t *job);

//  A CANCEL {jobId, reason}, decoded and checked.  Returns 0 or -1 as above.
typedef int (bm_worker_link_cancel_fn) (void *arg, const bm_codec_job_notice_t *cancel);

//  The connection was lost (silence or DISCONNECT); the new socket is not
//  open yet.  bm_worker_link_set_credit here only sets the credit the
//  coming READY announces.
typedef void (bm_worker_link_lost_fn) (void *arg);

//  A new socket is open and has sent READY after a loss: messages sent
//  now go to the broker behind it.
typedef void (bm_worker_link_reconnected_fn) (void *arg);

//  The jobs the owner runs, for the READY of a new socket (READY running,
//  protocol.md section 5): fills ids (borrowed until the call returns)
//  with at most max job ids, returns how many.
typedef int (bm_worker_link_running_fn) (void *arg, const char **ids, int max);

//  The owner's warm bots per type, for every READY (READY bots, protocol.md
//  section 5): fills bots (count 0: none).
typedef void (bm_worker_link_bots_fn) (void *arg, bm_codec_heartbeat_t *bots);

//  The handlers of what the broker sends.  job_decoded is required; the
//  others may be NULL.
typedef struct {
    bm_worker_link_lost_fn *lost;                   //  May be NULL
    bm_worker_link_reconnected_fn *reconnected;     //  May be NULL
    bm_worker_link_job_fn *job_decoded;             //  JOB (and each of a JOB_MANY)
    bm_worker_link_cancel_fn *cancel_decoded;       //  CANCEL; may be NULL
    bm_worker_link_running_fn *running;             //  READY running; may be NULL
    bm_worker_link_bots_fn *bots;                   //  READY bots; may be NULL
} bm_worker_link_handlers_t;

typedef struct _bm_worker_link_t bm_worker_link_t;

//  Open the socket and send READY.  loop: the zloop to register with, or
//  NULL to be polled.  Returns NULL (and logs why) if the socket cannot be
//  opened (bad endpoint, bad CURVE configuration) or the config is wrong.
bm_worker_link_t *bm_worker_link_new (const bm_worker_link_config_t *config, zloop_t *loop,
                                      const bm_worker_link_handlers_t *handlers, void *arg);

//  Close, leaving queued messages up to linger_ms to go.
void bm_worker_link_destroy (bm_worker_link_t **self_p, int linger_ms);

//  Send one message (body: an encoded msgpack map).  job_id names the job
//  in the log line of a failure (may be NULL).  0, or -1 if the message
//  could not be queued (logged).
int bm_worker_link_send (bm_worker_link_t *self, int command, const char *body, size_t size,
                         const char *job_id);

//  Send a body of at most one string entry: {} when key is NULL, else
//  {key: value} (HEARTBEAT, RELEASE {jobId}, DISCONNECT {reason}...).
int bm_worker_link_send_simple (bm_worker_link_t *self, int command, const char *key,
                                const char *value);

//  Batches of DONEs that finish apart from a JOB_MANY (config.batch, and
//  only once the broker has sent a JOB_MANY since the last connect): the
//  DONEs sent between hold and flush (typed or raw) leave at flush as one
//  DONE_MANY (one alone as DONE; at most BM_MAX_BATCH and max_frame
//  bytes each).  Otherwise both do nothing and DONEs go at once.  A
//  caller that handles several outcomes in one turn of its loop (a
//  reaper, an HTTP completion pass) wraps them in hold and flush.
void bm_worker_link_hold (bm_worker_link_t *self);
void bm_worker_link_flush (bm_worker_link_t *self);

//  Send DONE, PROGRESS or RELEASE from a typed body (bm_codec encodes it).
//  0, or -1 if the message could not be queued (logged).
int bm_worker_link_send_done (bm_worker_link_t *self, const bm_codec_done_t *done);
int bm_worker_link_send_progress (bm_worker_link_t *self, const bm_codec_progress_t *progress);
int bm_worker_link_send_release (bm_worker_link_t *self, const char *job_id);
//  RELEASE {jobId, lost: true, signal}: the process that ran the job was
//  killed from outside by signal (0: unknown, not sent); the broker counts
//  the attempt and runs the job again.
int bm_worker_link_send_lost (bm_worker_link_t *self, const char *job_id, int signal);
//  HEARTBEAT {bots}: the worker's warm bots per type (sent besides the
//  link's own heartbeats, when they changed).
int bm_worker_link_send_heartbeat (bm_worker_link_t *self, const bm_codec_heartbeat_t *heartbeat);

//  The owner is shutting down (its grace period): a DISCONNECT replaced
//  from now on closes the connection for good, logged, with no READY
//  again (another process holds the name; registering again would replace
//  it and queue its jobs again).  A plain DISCONNECT or a silent broker
//  still reconnects, so that the outcomes of running jobs get through.
void bm_worker_link_stopping (bm_worker_link_t *self);

//  Announce a new credit: READY now (on the next socket while it is being
//  replaced).
void bm_worker_link_set_credit (bm_worker_link_t *self, int64_t credit);
int64_t bm_worker_link_credit (bm_worker_link_t *self);

//  Poll mode: the current socket (NULL between a failed reconnect and the
//  next tick), what to do when it is readable (handles up to 100 messages;
//  returns -1 when a handler did), and the timer work (liveness and
//  heartbeat; also retries a failed reconnect).
zsock_t *bm_worker_link_socket (bm_worker_link_t *self);
int bm_worker_link_dispatch (bm_worker_link_t *self);
void bm_worker_link_tick (bm_worker_link_t *self);

//  True if the broker spoke within the liveness window.  Any thread.
bool bm_worker_link_connected (bm_worker_link_t *self);

//  Monotonic ms of the broker's last message on the current socket (its
//  opening, before the first).  The thread that drives the link.
int64_t bm_worker_link_heard (bm_worker_link_t *self);

//  Reconnections since start.  Any thread.
uint64_t bm_worker_link_reconnects (bm_worker_link_t *self);

//  Self test (a real ROUTER socket plays the broker).
void bm_worker_link_test (bool verbose);

#endif

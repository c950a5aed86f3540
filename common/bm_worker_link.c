/*  bm_worker_link.c - a worker's BMW01 connection to the broker.  */
#include "bm_worker_link.h"
#include "bm_backoff.h"
#include "bm_codec_batch.h"
#include "bm_config.h"
#include "bm_curve.h"
#include "bm_endpoints.h"
#include "bm_log.h"
#include "bm_sock_watch.h"

#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define BM_LINK_BATCH       100         //  Messages handled per readable event
#define BM_LINK_HWM         10000       //  Default high-water marks
//  Replaced by another connection under our name (DISCONNECT replaced): a
//  live process elsewhere uses it.  Registering again at once, both would
//  take the name from each other thousands of times a second; so the
//  wait doubles from 1 s to 30 s while it goes on, and a streak ends
//  after 90 s unreplaced (more than both processes' longest waits).
#define BM_LINK_REPLACED_FIRST_MS   1000
#define BM_LINK_REPLACED_MAX_MS     30000
#define BM_LINK_REPLACED_QUIET_MS   90000

struct _bm_worker_link_t {
    zloop_t *loop;                      //  Owner's reactor (borrowed), or NULL
    bm_worker_link_handlers_t handlers;
    void *arg;
    bm_endpoints_t *endpoints;          //  BROKER_ENDPOINT's list
    char *endpoint;                     //  The one the socket connects to
    int64_t reopen_at;                  //  Mono ms: open the next socket then
    char *name;
    char name_setting [64];             //  WORKER_NAME, WEBHOOK_NAME...: for the logs
    bool curve_given;                   //  config.curve was set: use curve
    char *curve_server_key;             //  Copies of config.curve's strings
    char *curve_client_cert;
    char *types [BM_WORKER_LINK_MAX_TYPES];
    int type_count;
    int64_t credit;                     //  Announced in READY
    int64_t heartbeat_ms;
    int64_t liveness;
    size_t max_frame;
    bool limit_socket;
    int hwm;
    zsock_t *dealer;                    //  Socket to the broker, or NULL
    zsock_t *old_dealer;                //  The one before the last reconnect:
                                        //  freed at the next one, when no
                                        //  loop pass can refer to it
    bm_sock_watch_t *watch;             //  Hears the broker's connection close
                                        //  (acted on with several endpoints)
                                        //  and a failed CURVE handshake, or NULL
    bool handshake_said;                //  This socket's handshake failure logged
    bool standby_said;                  //  "is a standby" logged since a
                                        //  leader last answered
    bool send_warned;                   //  A send failed since the broker last
                                        //  spoke: the next ones at debug level
    bm_sock_watch_t *old_watch;         //  Stopped, kept as old_dealer is
    int timer;                          //  zloop mode: tick timer id
    bm_msg_t *msg;                      //  Parsed into again and again
    bool batch;                         //  READY says batch: true
    bool dones_kept;                    //  config.dones_kept
    int64_t kept_dones;                 //  DONEs with no socket since the
                                        //  last one opened (dones_kept)
    bm_msg_t *item;                     //  A JOB_MANY's item, parsed into again and again
    bool collecting;                    //  In a JOB_MANY: DONEs wait in done_items
    bool holding;                       //  Between hold and flush: likewise
    bool peer_batches;                  //  The broker has sent a JOB_MANY
    int flush_timer;                    //  zloop: flushes what this turn held
    bm_packer_t done_items;             //  Their encoded bodies, one after the other
    size_t done_count;                  //  How many
    bm_packer_t packer;                 //  Bodies we send, encoded here
    int64_t last_recv;                  //  Monotonic ms of the broker's last message
    int64_t last_send;                  //  Monotonic ms of our last message
    int64_t replaced_count;             //  Replaced in a row (the streak)
    int64_t replaced_at;                //  Mono ms of the last, 0: never
    bool stopping;                      //  The owner is shutting down
    bool retired;                       //  Replaced while stopping: the socket
                                        //  is closed for good, no READY again
    atomic_bool connected;              //  Heard from the broker lately
    atomic_uint_fast64_t reconnects;
};

static int s_on_readable (zloop_t *loop, zsock_t *reader, void *arg);
static int s_on_watch (zloop_t *loop, zsock_t *reader, void *arg);

static int s_send_raw (bm_worker_link_t *self, int command, const char *body, size_t size,
                       const char *job_id);

static void s_send_dones (bm_worker_link_t *self);

//  Before any message other than a DONE: the DONEs held so far leave
//  first.  The broker must read a job's DONE before a DISCONNECT (it would
//  count the job as lost and run it again) or a RELEASE sent after it.
//  Called before the message is packed (s_send_dones uses self->packer).
static void
s_send_held (bm_worker_link_t *self)
{
    if (self->done_count > 0)
        s_send_dones (self);
}

//  Send the body encoded in self->packer; it is emptied for the next one.
static int
s_send_packed (bm_worker_link_t *self, int command, const char *job_id)
{
    int rc;
    if (bm_packer_failed (&self->packer)) {
        bm_error (job_id, "no memory to encode %s: not sent",
                  bm_command_name (BM_PEER_WORKER, command));
        rc = -1;
    }
    else
        rc = s_send_raw (self, command, self->packer.sbuf.data, self->packer.sbuf.size, job_id);
    bm_packer_reset (&self->packer);
    //  A large result leaves a large buffer: let it go.
    if (self->packer.sbuf.alloc > 65536)
        bm_packer_destroy (&self->packer);
    return rc;
}

//  READY {name, types, credit, pid, batch?, running?, bots?}; running (the
//  jobs the owner runs) on a new socket only; bots (its warm bots) always.
static void
s_send_ready (bm_worker_link_t *self, bool running)
{
    if (!running)
        s_send_held (self);         //  On a new socket READY goes first
    bm_codec_ready_t ready = { .type_count = self->type_count, .credit = self->credit,
                               .has_pid = true, .pid = (int64_t) getpid (), .batch = self->batch };
    snprintf (ready.name, sizeof ready.name, "%s", self->name);
    for (int i = 0; i < self->type_count; i++)
        ready.types [i] = self->types [i];
    if (self->handlers.bots)
        self->handlers.bots (self->arg, &ready.bots);
    const char **ids = NULL;
    if (running && self->handlers.running) {
        ids = (const char **) malloc (BM_MAX_READY_RUNNING * sizeof *ids);
        if (ids) {
            int count = self->handlers.running (self->arg, ids, BM_MAX_READY_RUNNING);
            ready.running_ids = ids;
            ready.running_count = count < 0 ? 0 : count > BM_MAX_READY_RUNNING
                                ? BM_MAX_READY_RUNNING : count;
        }
        else
            bm_error (NULL, "no memory to list the running jobs: READY without them");
    }
    bm_codec_ready_encode (&ready, &self->packer);
    s_send_packed (self, BM_READY, NULL);
    free (ids);
    bm_debug (NULL, "READY credit=%lld running=%d", (long long) self->credit, ready.running_count);
}

//  Open a fresh DEALER, watch it, and say READY.  0 or -1.
static int
s_open (bm_worker_link_t *self)
{
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->dealer)
        return -1;
    zsock_set_linger (self->dealer, 0);
    zsock_set_sndhwm (self->dealer, self->hwm);
    zsock_set_rcvhwm (self->dealer, self->hwm);
    //  Never block on a full queue: a message that cannot be queued is
    //  dropped and logged; the broker re-dispatches what it did not hear
    //  about (at least once).
    zsock_set_sndtimeo (self->dealer, 0);
    //  A frame larger than this is a protocol error; ZeroMQ drops the
    //  connection and we reconnect.
    if (self->limit_socket)
        zsock_set_maxmsgsize (self->dealer, (int) self->max_frame + 4096);
    free (self->endpoint);
    self->endpoint = strdup (bm_endpoints_current (self->endpoints));
    bm_curve_peer_t curve = { self->curve_server_key, self->curve_client_cert };
    if (!self->curve_given)
        curve = bm_curve_peer_from_env ();
    if (!self->endpoint || bm_curve_peer_apply (&curve, self->dealer)
    ||  zsock_connect (self->dealer, "%s", self->endpoint)) {
        zsock_destroy (&self->dealer);
        return -1;
    }
    if (self->loop) {
        zloop_reader (self->loop, self->dealer, s_on_readable, self);
        zloop_reader_set_tolerant (self->loop, self->dealer);
    }
    //  With several brokers, a leader that dies (its connection closes)
    //  is left at once for the standby, not after HEARTBEAT_LIVENESS
    //  silent intervals.  With CURVE, the watch also hears a handshake
    //  the broker refused (else only silence would tell).
    self->handshake_said = false;
    if (bm_endpoints_size (self->endpoints) > 1 || (curve.server_key && *curve.server_key)) {
        self->watch = bm_sock_watch_new (self->dealer);
        if (self->watch && self->loop) {
            zloop_reader (self->loop, bm_sock_watch_socket (self->watch), s_on_watch, self);
            zloop_reader_set_tolerant (self->loop, bm_sock_watch_socket (self->watch));
        }
    }
    self->last_recv = bm_mono_ms ();
    s_send_ready (self, true);
    if (self->kept_dones) {
        bm_info (NULL, "%" PRId64 " DONE%s kept while no broker was connected: sent again to %s "
                 "after READY", self->kept_dones, self->kept_dones == 1 ? "" : "s", self->endpoint);
        self->kept_dones = 0;
    }
    return 0;
}

//  The broker is gone: a new socket, READY again, after delay_ms (0: now);
//  retired: the socket closes, and no other opens.
static void
s_reconnect (bm_worker_link_t *self, int64_t delay_ms)
{
    atomic_store (&self->connected, false);
    atomic_fetch_add (&self->reconnects, 1);
    self->peer_batches = false;         //  The next broker says so again
    if (self->watch) {
        bm_sock_watch_stop (self->watch);
        bm_sock_watch_destroy (&self->old_watch);
        if (self->loop) {
            //  Like the dealer: a pass of the loop may still hold it.
            zloop_reader_end (self->loop, bm_sock_watch_socket (self->watch));
            self->old_watch = self->watch;
            self->watch = NULL;
        }
        else
            bm_sock_watch_destroy (&self->watch);
    }
    if (self->dealer) {
        zsock_destroy (&self->old_dealer);
        if (self->loop) {
            //  A pass of the loop under way may still hold the socket:
            //  keep it until the next reconnect, but disconnected now.
            //  Else what it queued while the broker was away (READY,
            //  DONE) reaches the broker when it is back, and the broker
            //  registers a second worker under its identity that nobody
            //  reads (linger is 0: the queued messages go with it).
            zsock_disconnect (self->dealer, "%s", self->endpoint);
            zloop_reader_end (self->loop, self->dealer);
            self->old_dealer = self->dealer;
            self->dealer = NULL;
        }
        else
            zsock_destroy (&self->dealer);     //  Polled: nobody holds it
    }
    if (self->handlers.lost)
        self->handlers.lost (self->arg);
    if (self->retired)
        return;
    if (delay_ms > 0) {
        //  bm_worker_link_tick opens it when the time comes.
        self->reopen_at = bm_mono_ms () + delay_ms;
        return;
    }
    if (s_open (self)) {
        bm_error (NULL, "cannot open a socket to %s; will retry", self->endpoint);
        return;
    }
    if (self->handlers.reconnected)
        self->handlers.reconnected (self->arg);
}

//  Receive one message (the socket is readable).  Returns 1 and the parsed
//  message in self->msg, 0 if nothing was there, -1 if what came was not
//  a valid message (logged).
static int
s_recv (bm_worker_link_t *self)
{
    void *handle = zsock_resolve (self->dealer);
    zmq_msg_t parts [3];
    int count = 0, more = 1;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&part);
            break;
        }
        more = zmq_msg_more (&part);
        if (count < 3)
            parts [count++] = part;
        else {
            zmq_msg_close (&part);
            count = 4;                          //  Too many: never valid
        }
    }
    if (count == 0)
        return 0;
    self->last_recv = bm_mono_ms ();
    atomic_store (&self->connected, true);
    self->send_warned = false;
    int rc = -1;
    const char *code = NULL;
    char reason [128];
    if (count != 3) {
        code = "bad_frame";
        snprintf (reason, sizeof reason, "a message must have exactly 3 frames");
    }
    else
    if (bm_msg_parse (self->msg, zmq_msg_data (&parts [0]), zmq_msg_size (&parts [0]),
                      zmq_msg_data (&parts [1]), zmq_msg_size (&parts [1]),
                      zmq_msg_data (&parts [2]), zmq_msg_size (&parts [2]),
                      self->max_frame, &code, reason, sizeof reason) == 0) {
        if (bm_msg_peer (self->msg) == BM_PEER_WORKER)
            rc = 1;
        else {
            code = "bad_header";
            snprintf (reason, sizeof reason, "a client header from the broker");
        }
    }
    for (int i = 0; i < count && i < 3; i++)
        zmq_msg_close (&parts [i]);
    if (rc < 0)
        bm_warn (NULL, "bad message from the broker (%s): %s: ignored", code, reason);
    return rc;
}

//  JOB: decoded and checked, to the handler.
static int
s_on_job (bm_worker_link_t *self, const bm_msg_t *msg)
{
    bm_codec_job_t job;
    bm_codec_error_t error;
    if (bm_codec_job_decode (msg, &job, &error) == 0)
        return self->handlers.job_decoded (self->arg, &job);
    //  The job's id comes first: when it is there, end the job now.
    bm_warn (job.job_id [0] ? job.job_id : NULL, "JOB with a bad body (%s): %s",
             error.field, error.message);
    if (job.job_id [0]) {
        bm_codec_done_t done = { .ok = false };
        snprintf (done.job_id, sizeof done.job_id, "%s", job.job_id);
        snprintf (done.error.code, sizeof done.error.code, "%s", error.code);
        done.error.message = (bm_codec_str_t) { error.message, strlen (error.message) };
        bm_worker_link_send_done (self, &done);
    }
    return 0;
}

//  The DONEs kept while a JOB_MANY is handed over: one DONE_MANY (one
//  alone as DONE).
static void
s_send_dones (bm_worker_link_t *self)
{
    if (self->done_count == 1) {
        bm_packer_write_raw (&self->packer, self->done_items.sbuf.data, self->done_items.sbuf.size);
        s_send_packed (self, BM_DONE, NULL);
    }
    else
    if (self->done_count > 1) {
        bm_codec_batch_begin (&self->packer, false, 0, self->done_count);
        bm_packer_write_raw (&self->packer, self->done_items.sbuf.data, self->done_items.sbuf.size);
        s_send_packed (self, BM_DONE_MANY, NULL);
    }
    self->done_count = 0;
    bm_packer_reset (&self->done_items);
    if (self->done_items.sbuf.alloc > 1024 * 1024)
        bm_packer_destroy (&self->done_items);
}

//  JOB_MANY: each job as if it came alone; the DONEs sent meanwhile leave
//  as one DONE_MANY at the end (one alone as a DONE).
static int
s_on_job_many (bm_worker_link_t *self)
{
    bm_codec_batch_t items;
    bm_codec_error_t error;
    if (!self->item || bm_codec_batch_decode (self->msg, &items, &error)) {
        bm_warn (NULL, "JOB_MANY with a bad body: %s: ignored", self->item ? error.message : "no memory");
        return 0;
    }
    int rc = 0, got;
    self->peer_batches = true;
    self->collecting = true;
    while ((got = bm_codec_batch_next (&items, self->item, &error)) != 0) {
        if (got < 0)
            bm_warn (NULL, "JOB_MANY item: %s: ignored", error.message);
        else
        if (s_on_job (self, self->item))
            rc = -1;                    //  Stop after this message, the rest handed over
    }
    self->collecting = self->holding;
    if (!self->holding)
        s_send_dones (self);
    return rc;
}

//  CANCEL: decoded and checked, to the handler (if any).
static int
s_on_cancel (bm_worker_link_t *self)
{
    if (!self->handlers.cancel_decoded)
        return 0;
    bm_codec_job_notice_t cancel;
    bm_codec_error_t error;
    if (bm_codec_job_notice_decode (self->msg, &cancel, &error) == 0)
        return self->handlers.cancel_decoded (self->arg, &cancel);
    bm_warn (NULL, "CANCEL with a bad body (%s): %s: ignored", error.field, error.message);
    return 0;
}

//  DISCONNECT {reason: "replaced", by?}: another connection registered
//  under our name while we were live.  A restarted worker takes its dead
//  connection's name at once, and never hears this; a live one does when
//  another live process uses its name.  Logs ERROR once a streak (the
//  cause, the fix), then debug lines; returns how long to wait before
//  registering again: half the doubling wait, plus up to half at random,
//  so that two such processes drift apart.
static int64_t
s_replaced (bm_worker_link_t *self, const bm_codec_disconnect_t *disconnect)
{
    int64_t now = bm_mono_ms ();
    if (!self->replaced_at || now - self->replaced_at > BM_LINK_REPLACED_QUIET_MS)
        self->replaced_count = 0;
    self->replaced_count++;
    self->replaced_at = now;
    bm_backoff_t doubling = { BM_BACKOFF_EXPONENTIAL, BM_LINK_REPLACED_FIRST_MS, false };
    int64_t wait = bm_backoff_delay (&doubling, self->replaced_count, 0);
    if (wait > BM_LINK_REPLACED_MAX_MS)
        wait = BM_LINK_REPLACED_MAX_MS;
    uint64_t random = 0;
    if (getrandom (&random, sizeof random, GRND_NONBLOCK) != sizeof random)
        random = (uint64_t) now ^ ((uint64_t) getpid () << 20);
    wait = wait / 2 + (int64_t) (random % (uint64_t) (wait / 2 + 1));
    int by_len = disconnect->by.ptr ? (int) disconnect->by.len : 0;
    if (self->replaced_count == 1)
        bm_error (NULL, "the broker at %s replaced this worker's connection: another worker "
                  "registered with the same name %s=%s (%.*s%s); give each worker a "
                  "distinct %s. Registering again in %lld ms, waiting longer each "
                  "time while this goes on (up to %d s; logged at debug level)",
                  self->endpoint, self->name_setting, self->name, by_len,
                  by_len ? disconnect->by.ptr : "",
                  by_len ? ", as the broker says" : "the broker does not say which process",
                  self->name_setting, (long long) wait, BM_LINK_REPLACED_MAX_MS / 1000);
    else
        bm_debug (NULL, "replaced again under the name %s by %.*s (%lld times in a row): "
                  "registering again in %lld ms", self->name, by_len,
                  by_len ? disconnect->by.ptr : "", (long long) self->replaced_count,
                  (long long) wait);
    return wait;
}

//  DISCONNECT replaced while the owner shuts down: another process holds
//  the name now.  Registering again would replace it and queue its jobs
//  again, for a process about to exit: the socket closes for good.
static void
s_retire (bm_worker_link_t *self, const bm_codec_disconnect_t *disconnect)
{
    int by_len = disconnect->by.ptr ? (int) disconnect->by.len : 0;
    bm_warn (NULL, "the broker at %s replaced this worker's connection while it shuts down: "
             "another process registered with the same name %s=%s (%.*s%s); not registering "
             "again (the broker queued this worker's running jobs again; their outcomes "
             "cannot be sent)", self->endpoint, self->name_setting, self->name, by_len,
             by_len ? disconnect->by.ptr : "", by_len ? ", as the broker says" : "unknown");
    self->retired = true;
    s_reconnect (self, 0);
}

int
bm_worker_link_dispatch (bm_worker_link_t *self)
{
    zsock_t *sock = self->dealer;
    for (int count = 0; count < BM_LINK_BATCH && sock && self->dealer == sock; count++) {
        int got = s_recv (self);
        if (got == 0)
            break;
        if (got < 0)
            continue;
        int command = bm_msg_command (self->msg);
        const msgpack_object *body = bm_msg_body (self->msg);
        if (command != BM_NACK && bm_endpoints_moves (self->endpoints) > 0) {
            bm_endpoints_served (self->endpoints);
            self->standby_said = false;
            bm_info (NULL, "the broker at %s leads: registered with it", self->endpoint);
        }
        if (command == BM_HEARTBEAT)
            continue;
        if (command == BM_DISCONNECT) {
            bm_codec_disconnect_t disconnect;
            bm_codec_error_t error;
            if (bm_codec_disconnect_decode (self->msg, &disconnect, &error))
                disconnect.reason.ptr = NULL;
            if (disconnect.reason.ptr && disconnect.reason.len == 8
            &&  memcmp (disconnect.reason.ptr, "replaced", 8) == 0) {
                if (self->stopping)
                    s_retire (self, &disconnect);
                else
                    s_reconnect (self, s_replaced (self, &disconnect));
                break;
            }
            if (disconnect.reason.ptr && disconnect.reason.len == 13
            &&  memcmp (disconnect.reason.ptr, "shutting_down", 13) == 0) {
                //  The leader stops (SIGTERM): on to the next broker now,
                //  as from one that went silent (its standby, about to
                //  lead, is asked every 100 ms); alone, after an interval.
                int64_t delay = bm_endpoints_size (self->endpoints) > 1
                              ? bm_endpoints_next (self->endpoints, true) : self->heartbeat_ms;
                bm_info (NULL, "the broker at %s is shutting down: trying %s in %lld ms",
                         self->endpoint, bm_endpoints_current (self->endpoints), (long long) delay);
                s_reconnect (self, delay);
                break;
            }
            bm_info (NULL, "DISCONNECT from the broker%s%.*s: registering again",
                     disconnect.reason.ptr ? ": " : "",
                     disconnect.reason.ptr ? (int) disconnect.reason.len : 0,
                     disconnect.reason.ptr ? disconnect.reason.ptr : "");
            s_reconnect (self, 0);
            break;                              //  sock is not ours anymore
        }
        if (command == BM_NACK) {
            //  not_owner is expected after a cancel or a re-dispatch.
            bm_codec_rejected_t nack;
            bm_codec_error_t error;
            if (bm_codec_rejected_decode (self->msg, &nack, &error)) {
                bm_warn (NULL, "NACK from the broker with a bad body: %s", error.message);
                continue;
            }
            if (streq (nack.code, "not_leader")) {
                //  A standby: on to the leader it names, or the next one.
                //  One naming the leader: on to it after the first
                //  backoff, not the one grown while no broker led; ones
                //  naming themselves or each other: the backoff, growing.
                const msgpack_object *leader = bm_obj_get (body, "leader");
                bool named = leader && leader->type == MSGPACK_OBJECT_STR;
                int64_t delay = bm_endpoints_not_leader (self->endpoints,
                                                         named ? leader->via.str.ptr : NULL,
                                                         named ? leader->via.str.size : 0);
                //  The first move of a search is logged, the next ones
                //  (until a leader answers) are for debug.
                bool first = bm_endpoints_moves (self->endpoints) <= 1 || !self->standby_said;
                self->standby_said = true;
                bm_log (first ? BM_INFO : BM_DEBUG, NULL,
                        "%s is a standby: trying %s in %lld ms", self->endpoint,
                        bm_endpoints_current (self->endpoints), (long long) delay);
                s_reconnect (self, delay);
                break;                          //  sock is not ours anymore
            }
            bm_log (streq (nack.code, "not_owner") ? BM_DEBUG : BM_WARN, NULL,
                    "NACK from the broker: %s: %.*s", nack.code,
                    (int) (nack.message.len > 255 ? 255 : nack.message.len), nack.message.ptr);
            bm_endpoints_served (self->endpoints);
            continue;
        }
        int rc = 0;
        if (command == BM_JOB)
            rc = s_on_job (self, self->msg);
        else
        if (command == BM_JOB_MANY)
            rc = s_on_job_many (self);
        else
        if (command == BM_WCANCEL)
            rc = s_on_cancel (self);
        else {
            bm_warn (NULL, "unexpected %s from the broker: ignored",
                     bm_command_name (BM_PEER_WORKER, command));
            continue;
        }
        if (rc)
            return -1;
    }
    return 0;
}

//  The broker's connection closed (it died or exited): on to the next
//  endpoint, as after a silence, now.
static void
s_broker_closed (bm_worker_link_t *self)
{
    int64_t delay = bm_endpoints_next (self->endpoints, true);
    bm_warn (NULL, "the broker at %s closed the connection: reconnecting to %s in %lld ms",
             self->endpoint, bm_endpoints_current (self->endpoints), (long long) delay);
    s_reconnect (self, delay);
}

//  Read the watch's events: a failed handshake is logged, once for this
//  socket (libzmq retries it every reconnect interval); true if the
//  broker's connection closed and there are other brokers to try.
static bool
s_watch_gone (bm_worker_link_t *self)
{
    bool gone = bm_sock_watch_gone (self->watch);
    int failed = bm_sock_watch_handshake_failed (self->watch);
    if (failed && !self->handshake_said) {
        self->handshake_said = true;
        bm_error (NULL, "%s (broker %s)", bm_sock_watch_handshake_text (failed), self->endpoint);
    }
    return gone && bm_endpoints_size (self->endpoints) > 1;
}

void
bm_worker_link_tick (bm_worker_link_t *self)
{
    int64_t now = bm_mono_ms ();
    if (!self->dealer) {
        if (self->retired || now < self->reopen_at)
            return;
        if (s_open (self) == 0) {
            //  Back after being replaced again: the streak's ERROR said it.
            //  Searching for the leader: the first move said it.
            bool streak = (self->replaced_count > 1
                           && now - self->replaced_at <= BM_LINK_REPLACED_QUIET_MS)
                       || bm_endpoints_moves (self->endpoints) > 1;
            bm_log (streak ? BM_DEBUG : BM_INFO, NULL, "connected to %s", self->endpoint);
            if (self->handlers.reconnected)
                self->handlers.reconnected (self->arg);
        }
        return;
    }
    if (self->watch && s_watch_gone (self)) {
        s_broker_closed (self);
        return;
    }
    if (now - self->last_recv > self->heartbeat_ms * self->liveness) {
        //  One broker: at once, as Majordomo's worker does; several: the
        //  next one, with the list's backoff.
        int64_t delay = bm_endpoints_size (self->endpoints) > 1
                      ? bm_endpoints_next (self->endpoints, true) : 0;
        bm_warn (NULL, "no word from the broker at %s for %lld ms: reconnecting to %s",
                 self->endpoint, (long long) (now - self->last_recv),
                 bm_endpoints_current (self->endpoints));
        s_reconnect (self, delay);
        return;
    }
    //  Ticks come every quarter interval: a HEARTBEAT leaves before a
    //  whole interval passes without a message from us.
    if (now - self->last_send >= self->heartbeat_ms - self->heartbeat_ms / 4)
        bm_worker_link_send_simple (self, BM_HEARTBEAT, NULL, NULL);
}

static int
s_on_readable (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void) loop;
    bm_worker_link_t *self = (bm_worker_link_t *) arg;
    //  A stale pass of the loop may still hold the socket we replaced.
    if (reader != self->dealer)
        return 0;
    return bm_worker_link_dispatch (self);
}

static int
s_on_watch (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void) loop;
    bm_worker_link_t *self = (bm_worker_link_t *) arg;
    if (!self->watch || reader != bm_sock_watch_socket (self->watch))
        return 0;                       //  A stale pass: the old one
    if (s_watch_gone (self))
        s_broker_closed (self);
    return 0;
}

static int
s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop, (void) timer_id;
    bm_worker_link_tick ((bm_worker_link_t *) arg);
    return 0;
}

bm_worker_link_t *
bm_worker_link_new (const bm_worker_link_config_t *config, zloop_t *loop,
                    const bm_worker_link_handlers_t *handlers, void *arg)
{
    if (!config->endpoint || !config->name || !handlers
    ||  !handlers->job_decoded
    ||  config->type_count < 1 || config->type_count > BM_WORKER_LINK_MAX_TYPES
    ||  config->heartbeat_ms < 1 || config->liveness < 1) {
        bm_error (NULL, "bm_worker_link: incomplete configuration");
        return NULL;
    }
    bm_worker_link_t *self = (bm_worker_link_t *) zmalloc (sizeof (bm_worker_link_t));
    self->loop = loop;
    self->handlers = *handlers;
    self->arg = arg;
    self->endpoints = bm_endpoints_new (config->endpoint);
    self->name = strdup (config->name);
    snprintf (self->name_setting, sizeof self->name_setting, "%s",
              config->name_setting ? config->name_setting : "WORKER_NAME");
    if (config->curve) {
        self->curve_given = true;
        if (config->curve->server_key)
            self->curve_server_key = strdup (config->curve->server_key);
        if (config->curve->client_cert)
            self->curve_client_cert = strdup (config->curve->client_cert);
    }
    for (int i = 0; i < config->type_count; i++)
        self->types [i] = strdup (config->types [i]);
    self->type_count = config->type_count;
    self->credit = config->credit;
    self->heartbeat_ms = config->heartbeat_ms;
    self->liveness = config->liveness;
    self->max_frame = config->max_frame > 0 ? (size_t) config->max_frame : BM_MAX_FRAME_BYTES;
    self->limit_socket = config->limit_socket;
    self->hwm = config->hwm > 0 ? config->hwm : BM_LINK_HWM;
    self->msg = bm_msg_new ();
    self->batch = config->batch;
    self->dones_kept = config->dones_kept;
    self->item = bm_msg_new ();
    bm_packer_init (&self->done_items);
    bm_packer_init (&self->packer);
    atomic_init (&self->connected, false);
    atomic_init (&self->reconnects, 0);
    if (!self->endpoints || s_open (self)) {
        bm_error (NULL, "cannot connect to broker endpoint '%s'", config->endpoint);
        bm_worker_link_destroy (&self, 0);
        return NULL;
    }
    if (loop) {
        int64_t tick = config->heartbeat_ms / 4 > 0 ? config->heartbeat_ms / 4 : 1;
        self->timer = zloop_timer (loop, (size_t) tick, 0, s_on_tick, self);
    }
    return self;
}

void
bm_worker_link_destroy (bm_worker_link_t **self_p, int linger_ms)
{
    if (*self_p) {
        bm_worker_link_t *self = *self_p;
        bm_worker_link_flush (self);    //  DONEs held: they go first
        if (self->loop && self->timer > 0)
            zloop_timer_end (self->loop, self->timer);
        if (self->watch && self->loop)
            zloop_reader_end (self->loop, bm_sock_watch_socket (self->watch));
        bm_sock_watch_destroy (&self->watch);
        bm_sock_watch_destroy (&self->old_watch);
        if (self->dealer) {
            if (self->loop)
                zloop_reader_end (self->loop, self->dealer);
            zsock_set_linger (self->dealer, linger_ms);
            zsock_destroy (&self->dealer);
        }
        zsock_destroy (&self->old_dealer);
        bm_msg_destroy (&self->msg);
        bm_msg_destroy (&self->item);
        bm_packer_destroy (&self->done_items);
        bm_packer_destroy (&self->packer);
        for (int i = 0; i < self->type_count; i++)
            free (self->types [i]);
        free (self->endpoint);
        free (self->curve_server_key);
        free (self->curve_client_cert);
        bm_endpoints_destroy (&self->endpoints);
        free (self->name);
        free (self);
        *self_p = NULL;
    }
}

//  Keep a DONE body for the next DONE_MANY.  0, or -1 when it must go
//  alone (no memory: the ones kept stay).
static int
s_keep_done (bm_worker_link_t *self, const char *body, size_t size)
{
    if (self->done_count >= BM_MAX_BATCH)
        s_send_dones (self);
    //  Within the broker's frame size (MAX_FRAME_BYTES on both sides): what
    //  was kept leaves first, this one waits alone.
    if (self->done_count > 0 && self->done_items.sbuf.size + size + 16 > (size_t) self->max_frame)
        s_send_dones (self);
    size_t before = self->done_items.sbuf.size;
    bm_packer_write_raw (&self->done_items, body, size);
    if (!bm_packer_failed (&self->done_items)) {
        self->done_count++;
        return 0;
    }
    self->done_items.sbuf.size = before;
    self->done_items.failed = false;
    return -1;
}

void
bm_worker_link_hold (bm_worker_link_t *self)
{
    if (self->peer_batches) {            //  It sends JOB_MANY only when asked
        self->holding = true;
        self->collecting = true;
    }
}

void
bm_worker_link_flush (bm_worker_link_t *self)
{
    if (self->flush_timer > 0) {
        zloop_timer_end (self->loop, self->flush_timer);
        self->flush_timer = 0;
    }
    if (self->holding) {
        self->holding = false;
        self->collecting = false;
        s_send_dones (self);
    }
}

static int
s_on_flush (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop, (void) timer_id;
    bm_worker_link_t *self = (bm_worker_link_t *) arg;
    self->flush_timer = 0;              //  A one-shot timer: zloop ends it
    bm_worker_link_flush (self);
    return 0;
}

//  zloop mode: the DONEs sent in one turn of the loop leave together at
//  the start of the next (a timer due at once), as one DONE_MANY.
static void
s_auto_hold (bm_worker_link_t *self)
{
    if (!self->loop || self->collecting || !self->peer_batches)
        return;
    self->flush_timer = zloop_timer (self->loop, 0, 1, s_on_flush, self);
    if (self->flush_timer > 0)
        bm_worker_link_hold (self);
    else
        self->flush_timer = 0;
}

int
bm_worker_link_send (bm_worker_link_t *self, int command, const char *body, size_t size,
                     const char *job_id)
{
    if (command == BM_DONE)
        s_auto_hold (self);
    if (command == BM_DONE && self->collecting && s_keep_done (self, body, size) == 0)
        return 0;
    if (command != BM_DONE)
        s_send_held (self);
    return s_send_raw (self, command, body, size, job_id);
}

static int
s_send_raw (bm_worker_link_t *self, int command, const char *body, size_t size,
            const char *job_id)
{
    if (!self->dealer && !self->retired && self->dones_kept
    &&  (command == BM_DONE || command == BM_DONE_MANY)) {
        //  Between two sockets (the broker went, or is shutting down):
        //  the owner sends it again after READY on the next one.
        bm_log (self->kept_dones++ ? BM_DEBUG : BM_INFO, job_id,
                "no broker connection now: the %s is kept and sent again after READY to the "
                "next broker (any more until then are counted, said when it is sent)",
                bm_command_name (BM_PEER_WORKER, command));
        return -1;
    }
    if (!self->dealer
    ||  bm_msg_send (self->dealer, NULL, BM_WORKER_HEADER, command, body, size)) {
        //  A broker away makes every HEARTBEAT fail: one warning for the
        //  outage (until the broker speaks again); a job's message always.
        bm_log (job_id || !self->send_warned ? BM_WARN : BM_DEBUG, job_id,
                "could not send %s to the broker (%s)",
                bm_command_name (BM_PEER_WORKER, command),
                self->dealer ? zmq_strerror (zmq_errno ()) : "no socket");
        if (!job_id)
            self->send_warned = true;
        return -1;
    }
    self->last_send = bm_mono_ms ();
    return 0;
}

int
bm_worker_link_send_simple (bm_worker_link_t *self, int command, const char *key,
                            const char *value)
{
    bm_packer_t *packer = &self->packer;
    s_send_held (self);
    if (key) {
        msgpack_pack_map (&packer->pk, 1);
        bm_pack_kv_str (&packer->pk, key, value);
    }
    else
        msgpack_pack_map (&packer->pk, 0);
    return s_send_packed (self, command, key && streq (key, "jobId") ? value : NULL);
}

int
bm_worker_link_send_done (bm_worker_link_t *self, const bm_codec_done_t *done)
{
    s_auto_hold (self);
    bm_codec_done_encode (done, &self->packer);
    if (self->collecting && !bm_packer_failed (&self->packer)) {
        if (s_keep_done (self, self->packer.sbuf.data, self->packer.sbuf.size) == 0) {
            bm_packer_reset (&self->packer);
            return 0;
        }
        //  The ones kept so far stay; this one goes alone.
        bm_error (done->job_id, "no memory to keep a DONE for DONE_MANY: sent alone");
    }
    return s_send_packed (self, BM_DONE, done->job_id);
}

int
bm_worker_link_send_progress (bm_worker_link_t *self, const bm_codec_progress_t *progress)
{
    s_send_held (self);
    bm_codec_progress_encode (progress, &self->packer);
    return s_send_packed (self, BM_PROGRESS, progress->job_id);
}

static int
s_send_release (bm_worker_link_t *self, const char *job_id, bool lost, int signal)
{
    bm_codec_job_notice_t release = { .reason = { NULL, 0 }, .lost = lost, .signal = signal };
    s_send_held (self);
    snprintf (release.job_id, sizeof release.job_id, "%s", job_id);
    bm_codec_job_notice_encode (&release, &self->packer);
    return s_send_packed (self, BM_RELEASE, job_id);
}

int
bm_worker_link_send_release (bm_worker_link_t *self, const char *job_id)
{
    return s_send_release (self, job_id, false, 0);
}

int
bm_worker_link_send_lost (bm_worker_link_t *self, const char *job_id, int signal)
{
    return s_send_release (self, job_id, true, signal);
}

int
bm_worker_link_send_heartbeat (bm_worker_link_t *self, const bm_codec_heartbeat_t *heartbeat)
{
    s_send_held (self);
    bm_codec_heartbeat_encode (heartbeat, &self->packer);
    return s_send_packed (self, BM_HEARTBEAT, NULL);
}

void
bm_worker_link_stopping (bm_worker_link_t *self)
{
    self->stopping = true;
}

void
bm_worker_link_set_credit (bm_worker_link_t *self, int64_t credit)
{
    self->credit = credit;
    if (self->dealer)
        s_send_ready (self, false);
}

int64_t
bm_worker_link_credit (bm_worker_link_t *self)
{
    return self->credit;
}

zsock_t *
bm_worker_link_socket (bm_worker_link_t *self)
{
    return self->dealer;
}

bool
bm_worker_link_connected (bm_worker_link_t *self)
{
    return atomic_load (&self->connected);
}

int64_t
bm_worker_link_heard (bm_worker_link_t *self)
{
    return self->last_recv;
}

uint64_t
bm_worker_link_reconnects (bm_worker_link_t *self)
{
    return atomic_load (&self->reconnects);
}

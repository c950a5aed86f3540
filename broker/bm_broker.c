/*  bm_broker.c - the broker actor: its socket, its loop, sending, timers.

    One ROUTER socket and one zloop in one thread (a zactor): frames are read
    here and handed to bm_broker_clients.c or bm_broker_workers.c; the tick
    timer drives heartbeats, deadlines, idempotency expiry, snapshots and
    the graceful shutdown.  */
#include "bm_broker_internal.h"
#include "bm_endpoints.h"
#include "bm_lease.h"
#include "bm_main.h"

//  A lost run's key dropped from the bounded lost_keys: that run is then
//  reclaimed by no key (rather than by any key under the worker's name),
//  and its job runs again.  Nothing to do once it was dispatched again.
static void
s_lost_key_dropped (const char *job_id, void *arg)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    bm_job_t *job = (bm_job_t *) bm_jobtab_lookup (self->jobs, job_id);
    if (job && job->state == JOB_QUEUED && job->last_worker) {
        bm_info (job->id, "the key of %s, which ran its lost attempt, is no longer kept (over "
                 "%d lost runs wait): that run's DONE will not be taken, the job runs again",
                 job->last_worker, BM_LOST_KEYS_MAX);
        bm_set_str (&job->last_worker, NULL);
    }
}

//  CURVE_WORKERS_DIR: a folder of the public certificates allowed to act as
//  workers (READY); others are refused (NACK not_a_worker).  It only means
//  something with CURVE on: set without it, a configuration error.
static int
s_workers_dir_load (bm_broker_t *self)
{
    const char *dir = getenv ("CURVE_WORKERS_DIR");
    if (!dir || !*dir)
        return 0;
    if (!self->auth) {
        bm_error (NULL, "configuration: CURVE_WORKERS_DIR is set but CURVE is off "
                  "(no CURVE_SERVER_CERT): workers cannot be told apart without keys");
        return -1;
    }
    if (!zsys_file_exists (dir)) {
        bm_error (NULL, "configuration: CURVE_WORKERS_DIR: no folder '%s'", dir);
        return -1;
    }
    self->worker_certs = zcertstore_new (dir);
    if (!self->worker_certs) {
        bm_error (NULL, "configuration: CURVE_WORKERS_DIR: cannot read '%s'", dir);
        return -1;
    }
    bm_info (NULL, "CURVE_WORKERS_DIR %s: only its keys may register as workers", dir);
    return 0;
}

static void
s_begin_shutdown (bm_broker_t *self);
static void
s_broker_destroy (bm_broker_t **self_p);
static int
s_ready (void *arg, void *answer_p);

char *
bm_memdup (const void *data, size_t size)
{
    char *copy = (char *) malloc (size ? size : 1);
    if (!copy) {
        zsys_error ("broker: out of memory copying %zu bytes", size);
        abort ();               //  As zmalloc does
    }
    if (size)
        memcpy (copy, data, size);
    return copy;
}

void
bm_set_str (char **field, const char *value)
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
    char *copy = sbuf.size ? bm_memdup (sbuf.data, sbuf.size) : bm_memdup ("\xc0", (*size = 1));
    msgpack_sbuffer_destroy (&sbuf);
    return copy;
}

//  A copy of the bytes of a body's value (obj, found under key in msg's
//  body), as the peer encoded them: the body passed bm_msgpack_check, so
//  they are one well-formed object.  Re-encodes only if slicing fails.
char *
bm_keep_value (const bm_msg_t *msg, const char *key, const msgpack_object *obj, size_t *size)
{
    const char *start;
    if (bm_msg_raw_value (msg, key, &start, size))
        return bm_memdup (start, *size);
    return s_pack_object (obj, size);
}

//  A value the codec decoded (payload, result), kept as the peer encoded
//  it; nil (one byte) when absent.
char *
bm_keep_codec_value (const bm_msg_t *msg, const char *key, const bm_codec_value_t *value,
                     size_t *size)
{
    if (value->data) {
        *size = value->size;
        return bm_memdup (value->data, value->size);
    }
    if (value->obj)
        return bm_keep_value (msg, key, value->obj, size);
    *size = 1;
    return bm_memdup ("\xc0", 1);
}

void
bm_body_init (bm_broker_t *self, bm_body_t *body)
{
    body->owner = self;
    if (self->body_pool_size > 0)
        body->sbuf = self->body_pool [--self->body_pool_size];
    else {
        msgpack_sbuffer_init (&body->sbuf);
        body->sbuf.data = (char *) malloc (4096);
        body->sbuf.alloc = body->sbuf.data ? 4096 : 0;
    }
    body->sbuf.size = 0;
    msgpack_packer_init (&body->pk, &body->sbuf, msgpack_sbuffer_write);
}

void
bm_body_free (bm_body_t *body)
{
    //  Keep ordinary buffers and one larger one; let bigger ones (a large
    //  payload) go.
    bm_broker_t *self = body->owner;
    if (self->body_pool_size < BM_BODY_POOL && body->sbuf.alloc <= 65536)
        self->body_pool [self->body_pool_size++] = body->sbuf;
    else
    if (!self->body_big.data && body->sbuf.alloc > 65536 && body->sbuf.alloc <= BM_BODY_BIG_MAX)
        self->body_big = body->sbuf;
    else
        msgpack_sbuffer_destroy (&body->sbuf);
}

void
bm_body_init_big (bm_broker_t *self, bm_body_t *body)
{
    if (!self->body_big.data) {
        bm_body_init (self, body);
        return;
    }
    body->owner = self;
    body->sbuf = self->body_big;
    body->sbuf.size = 0;
    msgpack_sbuffer_init (&self->body_big);
    msgpack_packer_init (&body->pk, &body->sbuf, msgpack_sbuffer_write);
}

void
bm_broker_packer_take (bm_broker_t *self, bm_packer_t *packer)
{
    bm_packer_init (packer);
    if (self->body_big.data) {
        packer->sbuf = self->body_big;
        packer->sbuf.size = 0;
        msgpack_sbuffer_init (&self->body_big);
    }
}

void
bm_broker_packer_give (bm_broker_t *self, bm_packer_t *packer)
{
    if (!self->body_big.data && packer->sbuf.data && packer->sbuf.alloc <= BM_BODY_BIG_MAX) {
        self->body_big = packer->sbuf;
        msgpack_sbuffer_init (&packer->sbuf);
    }
    bm_packer_destroy (packer);
}

//  Pack "req" if the request carried one; returns how many keys (0/1).
int
bm_req_count (const msgpack_object *request)
{
    return request && bm_obj_get (request, "req") ? 1 : 0;
}

void
bm_pack_req (msgpack_packer *pk, const msgpack_object *request)
{
    const msgpack_object *req = request ? bm_obj_get (request, "req") : NULL;
    if (req) {
        bm_pack_str (pk, "req");
        msgpack_pack_object (pk, *req);
    }
}

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
        int error = zmq_errno ();
        bm_series_inc (bm_metric_series (self->mf_dropped,
                                         error == EAGAIN ? "peer_queue_full" : "peer_gone"));
        errno = error;          //  For the caller: EAGAIN or EHOSTUNREACH
        return -1;
    }
    zmq_send (handle, header, BM_HEADER_LEN, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (handle, &byte, 1, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (handle, body, size, ZMQ_DONTWAIT);
    return 0;
}

int
bm_broker_route_client (bm_broker_t *self, zframe_t *identity, int command, const char *body,
                        size_t size)
{
    return s_route (self, identity, BM_CLIENT_HEADER, command, body, size);
}

void
bm_broker_send_client (bm_broker_t *self, zframe_t *identity, int command, bm_body_t *body)
{
    //  A client that does not read its answers loses them (and learns by
    //  its own timeout): the broker never queues without bound for it.
    s_route (self, identity, BM_CLIENT_HEADER, command, body->sbuf.data, body->sbuf.size);
}

//  A peer's routing id in upper-case hex (at most 256 bytes of it: the
//  worker table's key; key holds 2 * 256 + 1 bytes).
void
bm_broker_peer_key (zframe_t *identity, char *key)
{
    static const char hex [] = "0123456789ABCDEF";
    size_t size = zframe_size (identity) > 256 ? 256 : zframe_size (identity);
    const byte *id = zframe_data (identity);
    for (size_t i = 0; i < size; i++) {
        key [2 * i] = hex [id [i] >> 4];
        key [2 * i + 1] = hex [id [i] & 15];
    }
    key [2 * size] = 0;
}

//  The lines of refusals not written in the window that ended, as one line.
static void
s_refusal_log_flush (bm_broker_t *self, int64_t now)
{
    if (now - self->refusal_window < 1000)
        return;
    if (self->refusal_dropped)
        bm_warn (NULL, "%" PRIu64 " more rejected messages not logged in the last second "
                 "(at most %d lines a second)", self->refusal_dropped, BM_REFUSAL_LOG_PER_S);
    self->refusal_window = now;
    self->refusal_lines = 0;
    self->refusal_dropped = 0;
}

//  Whether a refusal may be logged now (at most BM_REFUSAL_LOG_PER_S lines
//  a second): counts the line, or the one dropped.
static bool
s_refusal_allowed (bm_broker_t *self)
{
    s_refusal_log_flush (self, bm_mono_ms ());
    if (self->refusal_lines >= BM_REFUSAL_LOG_PER_S) {
        self->refusal_dropped++;
        return false;
    }
    self->refusal_lines++;
    return true;
}

void
bm_broker_log_refusal (bm_broker_t *self, zframe_t *identity, bm_peer_t peer,
                       const char *worker_name, int command, const char *job_id,
                       const char *code, const char *message)
{
    if (!s_refusal_allowed (self))
        return;
    char key [2 * 256 + 1];
    bm_broker_peer_key (identity, key);
    //  A routing id a peer chose can be long: its first 32 bytes say enough.
    bool cut = strlen (key) > 64;
    key [64] = 0;
    char what [32] = "a frame";
    if (command >= 0) {
        const char *name = bm_command_name (peer, command);
        if (streq (name, "unknown"))
            snprintf (what, sizeof what, "an unknown command 0x%02X", (unsigned) command);
        else
            snprintf (what, sizeof what, "%s", name);
    }
    if (peer == BM_PEER_WORKER && worker_name)
        bm_warn (job_id, "rejected %s from worker %s (routing id %s%s): %s (%s)", what,
                 worker_name, key, cut ? "..." : "", code, message);
    else
        bm_warn (job_id, "rejected %s from %s (routing id %s%s): %s (%s)", what,
                 peer == BM_PEER_WORKER ? "an unregistered worker" : "a client",
                 key, cut ? "..." : "", code, message);
}

//  libzmq's protocol error codes (zmq.h), as words.
static const char *
s_protocol_error_text (uint32_t code)
{
    if (code == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
        return "mechanism mismatch: the peer does not use CURVE (no CURVE_SERVER_KEY)";
    if (code == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
        return "cryptographic error: the peer's CURVE_SERVER_KEY is not this broker's public key";
    if (code >= ZMQ_PROTOCOL_ERROR_ZMTP_UNSPECIFIED && code < ZMQ_PROTOCOL_ERROR_ZAP_UNSPECIFIED)
        return "a malformed handshake";
    return "a protocol error";
}

//  A handshake the router refused (CURVE): one WARN line, within the
//  refusals' rate limit, and the counter by reason.
static int
s_auth_event (zloop_t *loop, zsock_t *events, void *arg)
{
    (void) loop;
    bm_broker_t *self = (bm_broker_t *) arg;
    //  Each event: a frame of 6 bytes (event number, 16 bits; value, 32
    //  bits), then a frame with the address.
    zmsg_t *msg = zmsg_recv (events);
    if (!msg)
        return 0;
    zframe_t *head = zmsg_first (msg);
    char *address = zmsg_size (msg) >= 2 ? zframe_strdup (zmsg_next (msg)) : NULL;
    if (head && zframe_size (head) >= 6) {
        uint16_t event;
        uint32_t value;
        memcpy (&event, zframe_data (head), sizeof event);
        memcpy (&value, zframe_data (head) + 2, sizeof value);
        const char *reason = event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ? "auth"
                           : event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL ? "protocol"
                           : "no_detail";
        if (self->mf_handshakes)
            bm_series_inc (bm_metric_series (self->mf_handshakes, reason));
        if (s_refusal_allowed (self)) {
            if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
                bm_warn (NULL, "refused a CURVE handshake on %s (auth): the peer's public key "
                         "is not in CURVE_CLIENTS_DIR (ZAP status %u)",
                         address ? address : "?", (unsigned) value);
            else
            if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
                bm_warn (NULL, "refused a CURVE handshake on %s (protocol): %s",
                         address ? address : "?", s_protocol_error_text (value));
            else
                bm_warn (NULL, "refused a CURVE handshake on %s (no_detail): the connection "
                         "broke in the handshake (%s): a peer without CURVE?",
                         address ? address : "?", zmq_strerror ((int) value));
        }
    }
    zstr_free (&address);
    zmsg_destroy (&msg);
    return 0;
}

//  Watch the router's handshakes (a socket monitor on an inproc PAIR):
//  a peer refused would otherwise leave no trace in the log.
static void
s_auth_watch (bm_broker_t *self)
{
    char endpoint [96];
    snprintf (endpoint, sizeof endpoint, "inproc://bm-broker-auth-%d-%p", (int) getpid (), (void *) self);
    if (zmq_socket_monitor (zsock_resolve (self->router), endpoint,
                            ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                            | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) != 0) {
        bm_warn (NULL, "CURVE: cannot watch the handshakes (%s): refused peers are not logged",
                 zmq_strerror (zmq_errno ()));
        return;
    }
    self->auth_events = zsock_new (ZMQ_PAIR);
    if (!self->auth_events || zsock_connect (self->auth_events, "%s", endpoint)) {
        zmq_socket_monitor (zsock_resolve (self->router), NULL, 0);
        zsock_destroy (&self->auth_events);
        return;
    }
    zsock_set_linger (self->auth_events, 0);
    zloop_reader (self->loop, self->auth_events, s_auth_event, self);
    zloop_reader_set_tolerant (self->loop, self->auth_events);
}

void
bm_broker_log_refusal_tick (bm_broker_t *self, int64_t now)
{
    s_refusal_log_flush (self, now);
}

//  REJECTED {req?, code, message}, not logged.
static void
s_reject_send (bm_broker_t *self, zframe_t *identity, const msgpack_object *request,
               const char *code, const char *message)
{
    bm_body_t body;
    bm_body_init (self, &body);
    msgpack_pack_map (&body.pk, 2 + bm_req_count (request));
    bm_pack_req (&body.pk, request);
    bm_pack_kv_str (&body.pk, "code", code);
    bm_pack_kv_str (&body.pk, "message", message);
    bm_broker_send_client (self, identity, BM_REJECTED, &body);
    bm_body_free (&body);
}

//  A worker's DISCONNECT {reason: shutting_down}: this broker stops; a
//  worker given several brokers moves to the next now, the jobs it runs
//  stay running (the next leader adopts them from its READY `running`).
static void
s_tell_shutting_down (bm_broker_t *self, bm_worker_entry_t *worker, zframe_t *identity)
{
    bm_body_t body;
    bm_body_init (self, &body);
    msgpack_pack_map (&body.pk, 1);
    bm_pack_kv_str (&body.pk, "reason", "shutting_down");
    if (worker)
        bm_broker_send_worker (self, worker, BM_DISCONNECT, &body);
    else {
        bm_worker_entry_t dummy = { .identity = identity, .name = "stopping" };
        bm_broker_send_worker (self, &dummy, BM_DISCONNECT, &body);
    }
    bm_body_free (&body);
}

//  A leader that gave its lease up on SIGTERM, and still runs until Redis
//  confirmed the release: it is not a standby (it would name itself, or
//  the old lease, as the leader and send its peers back to it) but
//  leaving.  A client's request is answered REJECTED shutting_down (not
//  taken: a gateway sends it to the next leader), a worker's message
//  DISCONNECT shutting_down.
static void
s_refuse_stopping (bm_broker_t *self, zframe_t *identity, bm_msg_t *msg)
{
    if (bm_msg_peer (msg) == BM_PEER_WORKER)
        s_tell_shutting_down (self, NULL, identity);
    else
        s_reject_send (self, identity, bm_msg_body (msg), "shutting_down",
                       "the broker is shutting down");
}

void
bm_broker_reject (bm_broker_t *self, zframe_t *identity, const msgpack_object *request,
                  const char *code, const char *message)
{
    //  A message refused for its form (header, command, frames, a field)
    //  is logged; a request refused for the state of things (not_found,
    //  conflict, queue_full...) is an answer like any other.
    if (strncmp (code, "bad_", 4) == 0)
        bm_broker_log_refusal (self, identity, BM_PEER_CLIENT, NULL, self->command, NULL,
                               code, message);
    //  A body that does not decode is counted with the frames refused
    //  (SUBMITs are counted in broker_jobs_rejected_total instead).
    if (streq (code, "bad_request") && self->command >= 0
    &&  self->command != BM_SUBMIT && self->command != BM_SUBMIT_MANY)
        bm_series_inc (bm_metric_series (self->mf_frames, code));
    s_reject_send (self, identity, request, code, message);
}

//  Returns 0, or -1 when the message could not be queued for the worker:
//  its queue is full (EAGAIN: it does not read fast enough), or its
//  connection is gone (EHOSTUNREACH: the process died or the link
//  closed; ZeroMQ has no peer of that routing id any more).  Either way it
//  is marked congested: no JOB goes to it until it is heard from again
//  (a worker that is gone is declared lost after HEARTBEAT_LIVENESS
//  intervals, and its jobs re-queued).
int
bm_broker_send_worker (bm_broker_t *self, bm_worker_entry_t *worker, int command, bm_body_t *body)
{
    const char *data = body ? body->sbuf.data : "\x80";
    size_t size = body ? body->sbuf.size : 1;
    worker->heartbeat_at = bm_mono_ms () + self->config.heartbeat_ms;
    if (s_route (self, worker->identity, BM_WORKER_HEADER, command, data, size)) {
        if (!worker->congested) {
            if (errno == EAGAIN)
                bm_warn (NULL, "worker %s does not read its messages fast enough (its queue of "
                         "%" PRId64 " messages is full): no jobs for it until it is heard from",
                         worker->name, self->config.peer_hwm);
            else
                bm_warn (NULL, "worker %s is not connected (its connection closed: the process "
                         "ended or the link dropped): no jobs for it until it is heard from; "
                         "lost after %" PRId64 " ms of silence", worker->name,
                         self->config.heartbeat_ms * self->config.liveness);
        }
        worker->congested = true;
        return -1;
    }
    return 0;
}

void
bm_broker_send_worker_simple (bm_broker_t *self, zframe_t *identity, int command,
                              const char *code, const char *message)
{
    bm_body_t body;
    bm_body_init (self, &body);
    if (code) {
        msgpack_pack_map (&body.pk, 2);
        bm_pack_kv_str (&body.pk, "code", code);
        bm_pack_kv_str (&body.pk, "message", message);
    }
    else
        msgpack_pack_map (&body.pk, 0);
    s_route (self, identity, BM_WORKER_HEADER, command, body.sbuf.data, body.sbuf.size);
    bm_body_free (&body);
}

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

//  The name of the registered worker at identity, or NULL.
static const char *
s_worker_name (bm_broker_t *self, zframe_t *identity)
{
    char key [2 * 256 + 1];
    bm_broker_peer_key (identity, key);
    bm_worker_entry_t *entry = (bm_worker_entry_t *) zhashx_lookup (self->workers, key);
    return entry ? entry->name : NULL;
}

//  A body over MAX_FRAME_BYTES is never decoded, but its small fields are
//  read where they stand (bm_msgpack_peek steps over the big values): a
//  client's req, so that its REJECTED names the request; a worker's jobId,
//  so that its NACK names the job, and a DONE's attempt and run times, so
//  that the job it ends fails bad_output at once (protocol.md sections 2,
//  4, 5) rather than at its timeout.  A field over S_PEEK_VALUE_MAX bytes
//  is not taken.
#define S_PEEK_VALUE_MAX 256

static const char *const s_peek_keys [] = { "req", "jobId", "attempt", "startedAt", "finishedAt" };
#define S_PEEK_KEYS (sizeof s_peek_keys / sizeof s_peek_keys [0])

//  The peeked fields of body (with the DONE's outcome when done_error is
//  set) parsed into self->msg as a body of its own.  0, or -1 when nothing
//  reads (self->msg then holds no body).
static int
s_peek_parse (bm_broker_t *self, const char *header, int command, const char *body,
              size_t size, const char *done_error)
{
    const char *starts [S_PEEK_KEYS];
    size_t lens [S_PEEK_KEYS];
    bm_msgpack_peek (body, size, s_peek_keys, S_PEEK_KEYS, starts, lens);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    size_t fields = 0;
    for (size_t k = 0; k < S_PEEK_KEYS; k++)
        if (lens [k] > S_PEEK_VALUE_MAX)
            lens [k] = 0;
        else
        if (lens [k])
            fields++;
    msgpack_pack_map (&pk, fields + (done_error ? 2 : 0));
    for (size_t k = 0; k < S_PEEK_KEYS; k++)
        if (lens [k]) {
            bm_pack_str (&pk, s_peek_keys [k]);
            msgpack_sbuffer_write (&sbuf, starts [k], lens [k]);
        }
    if (done_error) {
        bm_pack_kv_bool (&pk, "ok", false);
        bm_pack_str (&pk, "error");
        msgpack_pack_map (&pk, 2);
        bm_pack_kv_str (&pk, "code", "bad_output");
        bm_pack_kv_str (&pk, "message", done_error);
    }
    unsigned char byte = (unsigned char) command;
    const char *code;
    char reason [160];
    int rc = bm_msg_parse (self->msg, header, BM_HEADER_LEN, &byte, 1, sbuf.data, sbuf.size,
                           sbuf.size, &code, reason, sizeof reason);
    msgpack_sbuffer_destroy (&sbuf);
    return rc;
}

//  A message whose body is over MAX_FRAME_BYTES (its header and command
//  are right): refused bad_frame naming the size and the limit, with its
//  req or jobId.  A worker's DONE with a jobId goes on as a DONE that
//  failed bad_output (returns 0: self->msg holds it); else returns -1.
static int
s_oversize (bm_broker_t *self, zframe_t *identity, const char *header, int command,
            const char *body, size_t size)
{
    bool worker = memcmp (header, BM_WORKER_HEADER, BM_HEADER_LEN) == 0;
    char reason [256];
    int end = snprintf (reason, sizeof reason, "frame 2 is %zu bytes, larger than "
                        "MAX_FRAME_BYTES (%" PRId64 ")", size, self->config.max_frame);
    if (!worker && command == BM_SUBMIT_MANY)
        snprintf (reason + end, sizeof reason - end,
                  ": a SUBMIT_MANY must fit it as a whole; send its jobs in smaller batches");
    char done_error [256];
    snprintf (done_error, sizeof done_error, "the DONE was %zu bytes, larger than "
              "MAX_FRAME_BYTES (%" PRId64 "): its result was not read", size,
              self->config.max_frame);
    bool done = worker && command == BM_DONE;
    const char *job_id = NULL;
    char job_id_buf [BM_MAX_ID_LEN + 1] = "";
    if (s_peek_parse (self, header, command, body, size, done ? done_error : NULL) == 0
    &&  worker && bm_obj_strcpy (bm_msg_body (self->msg), "jobId", job_id_buf, sizeof job_id_buf)
    &&  bm_valid_id (job_id_buf, strlen (job_id_buf)))
        job_id = job_id_buf;
    bm_series_inc (bm_metric_series (self->mf_frames, "bad_frame"));
    const char *name = worker ? s_worker_name (self, identity) : NULL;
    bm_broker_log_refusal (self, identity, worker ? BM_PEER_WORKER : BM_PEER_CLIENT, name,
                           command, job_id, "bad_frame", reason);
    if (!worker) {
        const msgpack_object *request = bm_msg_body (self->msg);
        int64_t req;
        //  Only a req as a request may carry it (section 3)
        s_reject_send (self, identity,
                       request && request->type == MSGPACK_OBJECT_MAP
                       && bm_obj_int (request, "req", &req) ? request : NULL,
                       "bad_frame", reason);
        return -1;
    }
    bm_body_t nack;
    bm_body_init (self, &nack);
    msgpack_pack_map (&nack.pk, job_id ? 3 : 2);
    bm_pack_kv_str (&nack.pk, "code", "bad_frame");
    bm_pack_kv_str (&nack.pk, "message", reason);
    if (job_id)
        bm_pack_kv_str (&nack.pk, "jobId", job_id);
    s_route (self, identity, BM_WORKER_HEADER, BM_NACK, nack.sbuf.data, nack.sbuf.size);
    bm_body_free (&nack);
    return done && job_id ? 0 : -1;
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
    //  A body over the limit (its header and command read first)
    if (rc && count == 4 && streq (code, "bad_frame")
    &&  zmq_msg_size (&frames [3]) > (size_t) self->config.max_frame) {
        if (bm_workers_parting (self, identity, zmq_msg_data (&frames [1]), zmq_msg_size (&frames [1]),
                                zmq_msg_data (&frames [2]), zmq_msg_size (&frames [2])))
            return;
        if (s_oversize (self, identity, (const char *) zmq_msg_data (&frames [1]),
                        *(const unsigned char *) zmq_msg_data (&frames [2]),
                        (const char *) zmq_msg_data (&frames [3]), zmq_msg_size (&frames [3])))
            return;
        rc = 0;                 //  A DONE that failed bad_output, in self->msg
    }
    if (rc) {
        //  A worker's DISCONNECT is acted on whatever its body.
        if (count == 4 && bm_workers_parting (self, identity,
                                              zmq_msg_data (&frames [1]), zmq_msg_size (&frames [1]),
                                              zmq_msg_data (&frames [2]), zmq_msg_size (&frames [2])))
            return;
        bm_series_inc (bm_metric_series (self->mf_frames, code));
        //  Answer in the peer's own language when we can tell it: "BMW"
        //  and any version is a worker's, which gets a NACK.
        bool worker = count > 1 && zmq_msg_size (&frames [1]) >= 3
                   && memcmp (zmq_msg_data (&frames [1]), "BMW", 3) == 0;
        const char *name = worker ? s_worker_name (self, identity) : NULL;
        bm_broker_log_refusal (self, identity, worker ? BM_PEER_WORKER : BM_PEER_CLIENT, name,
                               -1, NULL, code, reason);
        if (worker)
            bm_broker_send_worker_simple (self, identity, BM_NACK, code, reason);
        else
            s_reject_send (self, identity, NULL, code, reason);
        return;
    }
    //  With CURVE, the authenticator names the sender's public key (Z85)
    //  in each message's User-Id: a worker name is bound to it.
    self->peer_key [0] = 0;
    if (self->auth) {
        const char *user_id = zmq_msg_gets (&frames [count - 1], "User-Id");
        if (user_id)
            snprintf (self->peer_key, sizeof self->peer_key, "%s", user_id);
    }
    self->peer_frame = &frames [count - 1];
    //  The command being handled, for the log line of a refusal (-1 in
    //  the answers that come later, from Redis).
    self->command = bm_msg_command (self->msg);
    if (!self->serving && self->stopping)
        s_refuse_stopping (self, identity, self->msg);
    else
    if (!self->serving)
        bm_ha_refuse (self, identity, self->msg);
    else
    if (bm_msg_peer (self->msg) == BM_PEER_WORKER)
        bm_workers_handle (self, identity, self->msg);
    else
        bm_clients_handle (self, identity, self->msg);
    self->command = -1;
    self->peer_frame = NULL;
}

static int
s_router_handler (zloop_t *loop, zsock_t *router, void *arg)
{
    (void) loop;
    bm_broker_t *self = (bm_broker_t *) arg;
    void *handle = zsock_resolve (router);
    //  A leader whose lease ran out (paused, say) stops before it reads.
    bm_ha_check (self, bm_mono_ms ());
    //  Drain up to a batch per loop turn, so the Redis writes of many
    //  SUBMITs leave in one pipeline.
    for (int i = 0; i < 512; i++) {
        zmq_msg_t frames [5];
        int count = s_recv_frames (handle, frames, 5);
        if (count == 0)
            break;
        //  One clock read per message, however many jobs it carries
        bm_clock_hold ();
        s_handle_frames (self, frames, count > 5 ? 5 : count);
        bm_clock_release ();
        for (int j = 0; j < (count > 5 ? 5 : count); j++)
            zmq_msg_close (&frames [j]);
    }
    //  One group commit for everything this turn wrote, on the socket now.
    if (self->store)
        bm_store_push (self->store, 0);
    return 0;
}

void
bm_broker_push_writes (bm_broker_t *self)
{
    if (self->store && bm_store_in_flight (self->store) < BM_PUSH_IN_FLIGHT)
        bm_store_push (self->store, BM_PUSH_WRITES);
}

//  The store's flush hook: this turn's batched writes (the unfinished set's
//  SADD and SREM, the finished sets' ZADDs) join the group being sent.
static void
s_on_store_flush (void *arg)
{
    bm_jobstore_live_flush (arg);
    bm_finished_flush ((bm_broker_t *) arg);
}

//  The last word of a stopping broker on its writes: a WARN only for what
//  may be lost (writes Redis did not confirm by BROKER_SHUTDOWN_MS, a lease
//  release it did not confirm), naming what it means for the jobs.
static void
s_shutdown_report (bm_broker_t *self, bool flushed)
{
    size_t pending = self->store ? bm_store_pending (self->store) : 0;
    if (!flushed || (self->store && !bm_store_up (self->store) && pending))
        bm_warn (NULL, "shutdown: %zu redis writes not confirmed %s: the state changes of the "
                 "last moments (jobs queued, started or ended) may be missing from redis; "
                 "the next broker recovers those jobs from what redis holds: a worker sends "
                 "its recent DONEs again, a job whose end is lost runs again",
                 pending, !bm_store_up (self->store) ? "(redis is not connected)"
                 : "within BROKER_SHUTDOWN_MS");
    else
    if (self->released && self->lease && bm_lease_busy (self->lease))
        bm_warn (NULL, "shutdown: redis did not confirm the lease's release within "
                 "BROKER_SHUTDOWN_MS: every write was confirmed (nothing is lost), but a "
                 "standby leads only once the lease runs out (BROKER_LEASE_MS)");
    if (self->released && bm_store_closed_refused (self->store))
        bm_info (NULL, "shutdown: %zu redis writes after the lease's release not made "
                 "(retries or delays that fell due, reads answered): the next leader "
                 "recovers those jobs as redis holds them", bm_store_closed_refused (self->store));
}

static int
s_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop; (void) timer_id;
    bm_broker_t *self = (bm_broker_t *) arg;
    int64_t now = bm_mono_ms ();
    bm_ha_tick (self, now);
    bm_events_tick (self, now);
    atomic_store (&self->redis_reached, self->store && bm_store_up (self->store));
    if (self->stopping) {
        bool flushed = !self->store || !bm_store_up (self->store)
                    || (bm_store_pending (self->store) == 0 && self->live.adds == 0
                        && self->live.rems == 0);
        //  Once the writes are flushed, the counts up to now (with the jobs
        //  that ended while they flushed) for the next leader, or this
        //  broker's next start, to continue from: a stop loses none of
        //  them.  Flushed in turn before the lease is released.
        if (flushed && !self->stop_snapshot && !self->released) {
            self->stop_snapshot = true;
            if ((!self->lease || self->leading) && self->config.snapshot_interval_s > 0
            &&  self->store && bm_store_up (self->store)) {
                bm_stats_snapshot (self);
                bm_store_flush (self->store);
                flushed = bm_store_pending (self->store) == 0;
            }
        }
        //  A leader then gives its lease up: a standby takes over at once.
        //  From the release on it writes nothing (bm_ha_release), so it
        //  ends as soon as Redis confirmed the release.
        if (((flushed || self->released) && bm_ha_release (self)) || now >= self->stop_deadline) {
            s_shutdown_report (self, flushed);
            self->done = true;
            return -1;      //  Ends zloop_start
        }
    }
    if (!self->serving)
        return 0;           //  A standby holds no jobs and writes nothing
    //  Jobs past their deadline fail with timeout; the worker is told.
    bm_job_t *job;
    while ((job = (bm_job_t *) bm_heap_peek (self->deadlines)) && job->deadline <= now) {
        bm_heap_pop (self->deadlines);
        if (job->state != JOB_RUNNING)
            continue;
        char message [128];
        snprintf (message, sizeof message, "the job ran longer than its timeout of %" PRId64 " ms",
                  job->timeout_ms);
        if (job->worker)
            bm_workers_stop_job (self, job, "timeout");
        bm_job_finish (self, job, JOB_FAILED, "timeout", message);
    }
    bm_jobstore_save_running (self, now);
    bm_jobstore_hold_tick (self, now);
    //  Workers: expire the silent, heartbeat the rest.  A leader that
    //  stops told its workers to move on (s_begin_shutdown): their silence
    //  is no death, and their jobs stay running for the next leader.
    bool moving = self->stopping && self->lease && !self->solo;
    bm_worker_entry_t *worker = (bm_worker_entry_t *) zhashx_first (self->workers);
    zlistx_t *dead = NULL;
    while (worker) {
        if (worker->expiry <= now && !moving) {
            if (!dead)
                dead = zlistx_new ();
            zlistx_add_end (dead, worker);
        }
        else
        if (worker->heartbeat_at <= now)
            bm_broker_send_worker (self, worker, BM_HEARTBEAT, NULL);
        worker = (bm_worker_entry_t *) zhashx_next (self->workers);
    }
    if (dead) {
        while ((worker = (bm_worker_entry_t *) zlistx_detach (dead, NULL)))
            bm_workers_delete (self, worker, "heartbeat expired");
        zlistx_destroy (&dead);
    }
    bm_broker_log_refusal_tick (self, now);
    bm_idem_store_tick (self, bm_now_ms ());
    bm_types_store_tick (self, now);
    bm_job_expire (self, bm_now_ms ());
    bm_deps_tick (self);
    bm_finished_tick (self, now);
    if (self->config.snapshot_interval_s > 0
    &&  now - self->last_snapshot >= self->config.snapshot_interval_s * 1000) {
        self->last_snapshot = now;
        bm_stats_snapshot (self);
    }
    bm_stats_ready_gauges (self);
    if (self->store)
        bm_store_flush (self->store);
    return 0;
}

static void
s_begin_shutdown (bm_broker_t *self)
{
    self->stopping = true;
    self->stop_deadline = bm_mono_ms () + self->config.shutdown_ms;
    size_t running = 0;
    //  A leader of several brokers (BROKER_HA) tells its workers at once,
    //  so that they register with the next leader as soon as it leads,
    //  instead of after HEARTBEAT_LIVENESS silent intervals once this
    //  process ended.  The jobs they run stay theirs: each attempt's
    //  running state goes to Redis with the writes flushed now (not only
    //  those older than BROKER_SAVE_RUNNING_MS), the next leader recovers
    //  them as running, held for their worker, and adopts them from its
    //  READY; nor does this broker count the workers dead meanwhile.
    bool tell = self->lease && !self->solo && self->leading;
    bm_worker_entry_t *worker = (bm_worker_entry_t *) zhashx_first (self->workers);
    while (worker) {
        running += bm_joblist_size (&worker->jobs);
        if (tell) {
            for (bm_job_t *job = bm_joblist_first (&worker->jobs); job;
                 job = bm_joblist_next (&worker->jobs, job))
                if (!job->running_saved && job->state == JOB_RUNNING)
                    bm_jobstore_persist_state (self, job);
            s_tell_shutting_down (self, worker, NULL);
        }
        worker = (bm_worker_entry_t *) zhashx_next (self->workers);
    }
    if (tell && zhashx_size (self->workers))
        bm_info (NULL, "shutting down: %zu workers told to move to the next leader",
                 zhashx_size (self->workers));
    if (self->store)
        bm_info (NULL, "shutting down: %zu jobs running stay recorded in redis and resume "
                 "on restart; flushing %zu redis writes", running, bm_store_pending (self->store));
    else
        bm_info (NULL, "shutting down without redis: %zu running jobs are not kept", running);
}

static void
s_free_job (void *item)
{
    bm_job_t *job = (bm_job_t *) item;
    bm_job_destroy (&job);
}

static void
s_free_service (void **item)
{
    bm_service_destroy ((bm_service_t **) item);
}

static void
s_free_worker (void **item)
{
    bm_worker_entry_destroy ((bm_worker_entry_t **) item);
}

//  Create the broker's state, its socket (not bound yet), its loop and its
//  store.  NULL (logged) on failure: a bad setting (then *bad_config is
//  set true), or a metrics port that cannot be bound.
static bm_broker_t *
s_broker_new (const bm_broker_config_t *config, bool *bad_config)
{
    bm_broker_t *self = (bm_broker_t *) zmalloc (sizeof (bm_broker_t));
    self->config = *config;
    bm_stats_setup_metrics (self);
    self->events = bm_events_new (self, config->max_subscriptions, config->event_history);
    if (!self->events) {
        bm_error (NULL, "out of memory for the event subscriptions");
        abort ();
    }
    self->services = zhashx_new ();
    zhashx_set_destructor (self->services, s_free_service);
    self->workers = zhashx_new ();
    zhashx_set_destructor (self->workers, s_free_worker);
    self->jobs = bm_jobtab_new (offsetof (bm_job_t, id));
    if (!self->jobs) {
        bm_error (NULL, "out of memory for the job table");
        abort ();               //  As czmq's tables do
    }
    bm_joblist_init (&self->recent, BM_JOBLIST_RECENT);
    bm_joblist_init (&self->finished, BM_JOBLIST_FINISHED);
    bm_joblist_init (&self->finished_deliveries, BM_JOBLIST_FINISHED);
    bm_joblist_init (&self->withheld, BM_JOBLIST_WITHHELD);
    for (int i = 0; i < BM_WEBHOOK_STATES; i++)
        bm_joblist_init (&self->webhooks [i], BM_JOBLIST_WEBHOOK);
    self->deadlines = bm_heap_new (bm_job_deadline_less, bm_job_deadline_index);
    self->delayed = bm_heap_new (bm_job_due_less, bm_job_due_index);
    self->due_timer = -1;
    self->schedules = zhashx_new ();
    zhashx_set_destructor (self->schedules, bm_schedule_free);
    self->schedule_heap = bm_heap_new (bm_schedule_less, bm_schedule_index);
    self->schedule_timer = -1;
    self->idem = bm_idem_new ();
    self->started_mono = bm_mono_ms ();
    self->msg = bm_msg_new ();
    //  SUBMIT_MANY and DONE_MANY: each item unpacked once, from the frame's
    //  bytes, not the whole body first
    if (self->msg)
        bm_msg_set_shallow_batches (self->msg, true);
    self->identity = zframe_new_empty ();
    self->command = -1;
    snprintf (self->instance, sizeof self->instance, "%04x",
              (unsigned) (((unsigned) getpid () * 2654435761u) ^ (unsigned) bm_now_ms ()) & 0xffff);
    if (bm_broker_config_load_types (self)) {
        *bad_config = true;
        s_broker_destroy (&self);
        return NULL;
    }
    self->router = zsock_new (ZMQ_ROUTER);
    //  Bound queues: every socket has a high-water mark.  Mandatory routing: a send to a peer
    //  that is gone or whose queue holds BROKER_PEER_HWM messages fails at
    //  once (s_route) instead of blocking the loop or growing without bound.
    zsock_set_router_mandatory (self->router, 1);
    zsock_set_sndhwm (self->router, (int) config->peer_hwm);
    zsock_set_rcvhwm (self->router, 1000000);
    zsock_set_linger (self->router, 1000);
    if (bm_curve_server_apply (self->router, &self->auth)) {
        *bad_config = true;
        s_broker_destroy (&self);
        return NULL;
    }
    if (s_workers_dir_load (self)) {
        *bad_config = true;
        s_broker_destroy (&self);
        return NULL;
    }
    self->lost_keys = bm_lost_keys_new (BM_LOST_KEYS_MAX, s_lost_key_dropped, self);
    self->loop = zloop_new ();
    zloop_set_nonstop (self->loop, true);
    zloop_reader (self->loop, self->router, s_router_handler, self);
    if (self->auth)
        s_auth_watch (self);
    int tick = (int) (config->heartbeat_ms < 100 ? config->heartbeat_ms : 100);
    zloop_timer (self->loop, tick, 0, s_tick, self);
    if (config->redis_url) {
        self->store = bm_store_new (self->loop, config->redis_url, config->redis_sentinels,
                                    config->redis_master_name, (size_t) config->store_buffer);
        if (!self->store) {
            bm_error (NULL, "configuration: REDIS_URL is not a valid redis:// URL");
            *bad_config = true;
            s_broker_destroy (&self);
            return NULL;
        }
        bm_store_set_timeout (self->store, (int) config->redis_timeout_ms);
        bm_store_set_state_fn (self->store, bm_jobstore_on_store_state, self);
        bm_store_set_flush_fn (self->store, s_on_store_flush, self);
    }
    else
        self->recovered = true;
    if (bm_ha_setup (self)) {
        *bad_config = true;
        s_broker_destroy (&self);
        return NULL;
    }
    if (config->metrics_port != 0) {
        //  -1: any free port (the "listening metrics=" line says which).
        self->metrics_http = bm_metrics_http_new_ready (self->metrics, config->metrics_addr,
                                                        config->metrics_port < 0 ? 0
                                                        : (int) config->metrics_port,
                                                        s_ready, self);
        //  Fatal, as a busy port of any service: Prometheus would scrape
        //  whatever holds the port, and nothing would say so.
        if (!self->metrics_http) {
            bm_error (NULL, "configuration: cannot listen for metrics on %s:%" PRId64
                      " (port in use?): set BROKER_METRICS_PORT to a free port, -1 for any, "
                      "0 for none", config->metrics_addr, config->metrics_port);
            s_broker_destroy (&self);
            return NULL;
        }
    }
    return self;
}

//  GET /ready on the metrics port, on an HTTP thread: 200 while this broker
//  serves clients (it leads, or runs alone, and its Redis, if it has one, is
//  writable and its queues recovered), else 503 naming why.  What a load
//  balancer or a Kubernetes readiness probe should ask: of two brokers in
//  HA mode, only the leader is ready.  Reads gauges only (atomic) and the
//  store pointer, fixed before the server starts.
static int
s_ready (void *arg, void *answer_p)
{
    bm_broker_t *self = (bm_broker_t *) arg;
    json_t *answer = (json_t *) answer_p;
    bool leader = bm_series_value (self->m_leader) > 0.5;
    bool redis = !self->store || bm_series_value (self->m_redis_up) > 0.5;
    bool recovering = bm_series_value (self->m_recovering) > 0.5;
    json_object_set_new (answer, "leader", json_boolean (leader));
    json_object_set_new (answer, "redis", self->store ? json_boolean (redis && !recovering)
                                                      : json_null ());
    const char *code = NULL, *message = NULL;
    if (!leader && bm_series_value (self->m_redis_refusing) > 0.5) {
        //  Only the lease's writes (a standby writes nothing else).
        code = "redis_refuses_writes";
        message = "Redis refuses writes (MISCONF: it cannot persist; the broker's log names the "
                  "error): no broker can take or renew the lease, so none leads until Redis "
                  "takes writes again";
    }
    else
    if (!leader && self->solo) {
        //  Without BROKER_HA: another broker's lease is in Redis (one
        //  that ended without releasing it, or that leads: then this
        //  broker exits).  Part of its start, as the recovery that follows.
        code = "recovering";
        message = "another broker's lease is in Redis: this broker waits for it to run out "
                  "before it reads its queues back (it exits if that broker renews it)";
    }
    else
    if (!leader && atomic_load (&self->redis_reached)) {
        code = "standby";
        message = "this broker is a standby: another broker holds the lease";
    }
    else
    if (!leader) {
        //  The lease lives in Redis: without it nothing tells whether
        //  another broker (that reaches Redis) holds it.
        code = "standby";
        message = "this broker does not hold the lease and cannot reach Redis: another "
                  "broker holds it, or none can while Redis is unreachable";
    }
    else
    if (recovering) {
        code = "recovering";
        message = "this broker is reading its queues back from Redis";
    }
    else
    if (!redis && bm_series_value (self->m_redis_refusing) > 0.5) {
        code = "redis_refuses_writes";
        message = "Redis refuses the broker's writes (OOM under maxmemory, MISCONF: the "
                  "broker's log names the error); new jobs are refused until it takes them";
    }
    else
    if (!redis) {
        code = "redis_unavailable";
        message = "Redis is not writable, or the queues are not recovered yet";
    }
    json_object_set_new (answer, "status", json_string (code ? "not_ready" : "ready"));
    if (code)
        json_object_set_new (answer, "error", json_pack ("{s:s,s:s}", "code", code,
                                                         "message", message));
    return code ? 503 : 200;
}

static void
s_broker_destroy (bm_broker_t **self_p)
{
    if (*self_p) {
        bm_broker_t *self = *self_p;
        bm_metrics_http_destroy (&self->metrics_http);
        if (self->live.waiting) {
            //  SUBMITs never confirmed: they are answered store_unavailable.
            bm_waiters_t *batch = (bm_waiters_t *) zmalloc (sizeof (bm_waiters_t));
            batch->broker = self;
            batch->waiters = self->live.waiters;
            batch->count = self->live.waiting;
            self->live.waiters = NULL;
            self->live.waiting = 0;
            bm_jobstore_on_live_added (NULL, batch);
        }
        bm_store_destroy (&self->store);
        bm_ha_destroy (self);
        bm_batch_send_results (self);   //  RESULTs kept for RESULT_MANY
        zloop_destroy (&self->loop);
        if (self->auth_events && self->router)
            zmq_socket_monitor (zsock_resolve (self->router), NULL, 0);
        zsock_destroy (&self->auth_events);
        zsock_destroy (&self->router);
        zactor_destroy (&self->auth);
        zcertstore_destroy (&self->worker_certs);
        bm_lost_keys_destroy (&self->lost_keys);
        zhashx_destroy (&self->workers);
        if (self->jobs)
            bm_jobtab_purge (self->jobs, s_free_job);
        bm_jobtab_destroy (&self->jobs);
        bm_deps_free_index (self);
        zlistx_destroy (&self->deps_recovered);
        zlistx_destroy (&self->deps_forgotten);
        bm_jobstore_hold_free (self);
        bm_workers_early_free (self);
        bm_notify_unref (&self->notify_last);
        zhashx_destroy (&self->batch_clients);
        self->results_last = NULL;
        zhashx_destroy (&self->services);
        zhashx_destroy (&self->earlier_types);
        bm_heap_destroy (&self->deadlines);
        bm_heap_destroy (&self->delayed);
        bm_heap_destroy (&self->schedule_heap);
        bm_events_destroy (&self->events);
        zhashx_destroy (&self->schedules);
        bm_idem_destroy (&self->idem);
        bm_metrics_destroy (&self->metrics);
        bm_msg_destroy (&self->msg);
        zframe_destroy (&self->identity);
        bm_finished_destroy (&self->finished_sets);
        free (self->dispatch_pending);
        free (self->live.add_ids);
        bm_jobstore_recovery_old_free (self);
        bm_jobstore_recovery_again_free (self);
        free (self->live.waiters);
        free (self->live.rem_ids);
        while (self->body_pool_size > 0)
            msgpack_sbuffer_destroy (&self->body_pool [--self->body_pool_size]);
        msgpack_sbuffer_destroy (&self->body_big);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  The actor: commands on its pipe

//  BIND endpoint: "0", "-1" (logged): it cannot be bound now (an address
//  in use or not this host's), or "-2" (logged): it can never be (a
//  malformed endpoint, a host name that is neither an address nor an
//  interface: zmq binds no DNS name).
static void
s_bind (bm_broker_t *self, const char *endpoint)
{
    if (!endpoint || zsock_bind (self->router, "%s", endpoint) == -1) {
        int error = endpoint ? zmq_errno () : EINVAL;
        //  ENODEV for a name that can be an interface's (wg0, br-lan) may
        //  be one not up yet, or without its address yet: not a bad value
        //  (exit 1: a service manager starts it again), unlike a name
        //  that cannot be an interface's (a DNS name, an IPv6 address).
        bool not_up = error == ENODEV && bm_endpoint_interface_name (endpoint);
        bool bad_value = error == EINVAL || (error == ENODEV && !not_up)
                      || error == EPROTONOSUPPORT || error == ENOCOMPATPROTO;
        bm_error (NULL, "%sBROKER_ENDPOINT: cannot bind %s: %s%s", bad_value ? "configuration: " : "",
                  endpoint ? endpoint : "(no endpoint)", zmq_strerror (error),
                  not_up ? " (an interface of this host of that name is not up or has no address "
                           "yet; else a bound host must be an IP address or *)"
                  : error == ENODEV ? " (a bound host must be an IP address, * or an interface "
                                      "name of this host)" : "");
        if (!self->bound) {
            self->bind_failed = true;
            self->bind_bad_value = bad_value;
        }
        zstr_send (self->pipe, bad_value ? "-2" : "-1");
        return;
    }
    self->bound = true;
    bm_ha_bound (self);
    //  The endpoint bound, port 0 or * resolved: tcp://ADDR:PORT.
    char *bound = zsock_last_endpoint (self->router);
    const char *colon = bound ? strrchr (bound, ':') : NULL;
    if (colon && strncmp (bound, "tcp://", 6) == 0) {
        char address [256];
        snprintf (address, sizeof address, "%.*s", (int) (colon - bound - 6), bound + 6);
        bm_main_listening ("zmq", address, atoi (colon + 1));
    }
    //  Without CURVE the port is the whole mesh: say so once, at start,
    //  when it is open to the network (the default binds every interface).
    if (!self->auth && bm_endpoint_network_open (bound ? bound : endpoint))
        bm_warn (NULL, "%s is open to the network without CURVE: anyone who reaches this "
                 "port can act as a client (list jobs with their payloads and webhook URLs, "
                 "submit, cancel, retry; the gateway's API_KEYS do not apply here) or as a "
                 "worker (take jobs and report their results). Close it: turn CURVE on "
                 "(CURVE_SERVER_CERT and CURVE_CLIENTS_DIR, README Security), or bind "
                 "BROKER_ENDPOINT=tcp://127.0.0.1%s when every service runs on this host",
                 bound ? bound : endpoint, colon ? colon : ":PORT");
    char redis_shown [1024];
    bm_info (NULL, "bound %s; redis %s; metrics port %d", bound ? bound : endpoint,
             self->config.redis_url
                 ? bm_redis_url_masked (self->config.redis_url, redis_shown, sizeof redis_shown)
                 : "off (no durability)",
             self->metrics_http ? bm_metrics_http_port (self->metrics_http) : 0);
    zstr_free (&bound);
    zstr_send (self->pipe, "0");
}

//  PORT: the TCP port bound last, as text ("0" if none).
static void
s_port (bm_broker_t *self)
{
    char *endpoint = zsock_last_endpoint (self->router);
    const char *colon = endpoint ? strrchr (endpoint, ':') : NULL;
    zstr_send (self->pipe, colon && isdigit ((unsigned char) colon [1]) ? colon + 1 : "0");
    zstr_free (&endpoint);
}

static int
s_pipe_handler (zloop_t *loop, zsock_t *pipe, void *arg)
{
    (void) loop;
    bm_broker_t *self = (bm_broker_t *) arg;
    zmsg_t *request = zmsg_recv (pipe);
    if (!request)
        return 0;               //  Interrupted
    char *command = zmsg_popstr (request);
    if (self->verbose)
        bm_info (NULL, "broker actor: command %s", command ? command : "(none)");
    if (!command)
        ;
    else
    if (streq (command, "$TERM")) {
        //  The tick ends the loop once Redis has the writes (or in time).
        if (!self->stopping)
            s_begin_shutdown (self);
    }
    else
    if (streq (command, "BIND")) {
        char *endpoint = zmsg_popstr (request);
        s_bind (self, endpoint);
        zstr_free (&endpoint);
    }
    else
    if (streq (command, "PORT"))
        s_port (self);
    else
    if (streq (command, "VERBOSE"))
        self->verbose = true;
    else
        bm_error (NULL, "broker actor: unknown command %s", command);
    zstr_free (&command);
    zmsg_destroy (&request);
    return 0;
}

//  A broker whose set-up failed answers answer ("-1", or "-2" for a bad
//  setting) to every command until $TERM.
static void
s_failed (zsock_t *pipe, const char *answer)
{
    while (true) {
        char *command = zstr_recv (pipe);
        if (!command || streq (command, "$TERM")) {
            zstr_free (&command);
            break;
        }
        zstr_free (&command);
        zstr_send (pipe, answer);
    }
}

void
bm_broker_actor (zsock_t *pipe, void *args)
{
    bool bad_config = false;
    bm_broker_t *self = s_broker_new ((const bm_broker_config_t *) args, &bad_config);
    zsock_signal (pipe, 0);
    if (!self) {
        s_failed (pipe, bad_config ? "-2" : "-1");
        return;
    }
    self->pipe = pipe;
    //  The first command (main's BIND) before the loop runs: a broker that
    //  cannot bind its endpoint never reads or writes Redis (no recovery of
    //  the queues another broker serves, no lease), it only waits for $TERM.
    s_pipe_handler (self->loop, pipe, self);
    if (self->bind_failed) {
        s_failed (pipe, self->bind_bad_value ? "-2" : "-1");
        s_broker_destroy (&self);
        return;
    }
    zloop_reader (self->loop, pipe, s_pipe_handler, self);
    //  zloop_start also returns when a signal interrupts its poll; the tick
    //  timer ends the loop (self->done) once the shutdown has flushed.
    while (!self->done)
        zloop_start (self->loop);
    //  Its Redis writes still pending end (and log) as it is destroyed:
    //  "stopped" is the last line.
    s_broker_destroy (&self);
    bm_info (NULL, "broker stopped");
}

//  --------------------------------------------------------------------------
//  Self-test: the actor in this process, bound to an ephemeral port, driven
//  through two real DEALER sockets (a client and a worker), one message at
//  a time, as a transcript.

//  Send {key: value, ...} built by the caller's packer into sbuf.
static void
s_test_send (zsock_t *sock, const char *header, int command, msgpack_sbuffer *sbuf)
{
    BM_CHECK (bm_msg_send (sock, NULL, header, command, sbuf->data, sbuf->size) == 0);
    msgpack_sbuffer_clear (sbuf);
}

//  The next message other than HEARTBEAT, within 5 s; its command must be
//  the one expected.  Returns the decoded message (caller destroys it).
static bm_msg_t *
s_test_recv (zsock_t *sock, int expected)
{
    zpoller_t *poller = zpoller_new (sock, NULL);
    bm_msg_t *msg = NULL;
    while (!msg) {
        BM_CHECK (zpoller_wait (poller, 5000) == sock);
        zmsg_t *frames = zmsg_recv (sock);
        BM_CHECK (frames && zmsg_size (frames) == 3);
        zframe_t *header = zmsg_first (frames);
        zframe_t *command = zmsg_next (frames);
        zframe_t *body = zmsg_next (frames);
        const char *code = NULL;
        char reason [160];
        msg = bm_msg_decode_raw (zframe_data (header), zframe_size (header),
                                 zframe_data (command), zframe_size (command),
                                 zframe_data (body), zframe_size (body),
                                 BM_MAX_FRAME_BYTES, &code, reason, sizeof reason);
        BM_CHECK (msg);
        zmsg_destroy (&frames);
        if (bm_msg_peer (msg) == BM_PEER_WORKER && bm_msg_command (msg) == BM_HEARTBEAT)
            bm_msg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    if (bm_msg_command (msg) != expected)
        fprintf (stderr, "bm_broker_test: got %s, expected %s\n",
                 bm_command_name (bm_msg_peer (msg), bm_msg_command (msg)),
                 bm_command_name (bm_msg_peer (msg), expected));
    BM_CHECK (bm_msg_command (msg) == expected);
    return msg;
}

static bool
s_test_str_is (const msgpack_object *map, const char *key, const char *value)
{
    const char *str;
    size_t len;
    return bm_obj_str (map, key, &str, &len) && len == strlen (value) && memcmp (str, value, len) == 0;
}

void
bm_broker_test (bool verbose)
{
    if (verbose)
        printf (" * bm_broker: ");
    setenv ("REDIS_URL", "none", 1);
    setenv ("BROKER_METRICS_PORT", "0", 1);
    bm_broker_config_t config;
    BM_CHECK (bm_broker_config_load (&config) == 0);
    zactor_t *broker = zactor_new (bm_broker_actor, &config);
    BM_CHECK (broker);
    if (verbose)
        zstr_send (broker, "VERBOSE");

    //  BIND an ephemeral port; PORT tells which.
    zstr_sendx (broker, "BIND", "tcp://127.0.0.1:*", NULL);
    char *reply = zstr_recv (broker);
    BM_CHECK (reply && streq (reply, "0"));
    zstr_free (&reply);
    zstr_send (broker, "PORT");
    reply = zstr_recv (broker);
    BM_CHECK (reply && atoi (reply) > 0);
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, ">tcp://127.0.0.1:%s", reply);
    zstr_free (&reply);
    zstr_sendx (broker, "BIND", "not-an-endpoint", NULL);
    reply = zstr_recv (broker);
    BM_CHECK (reply && streq (reply, "-2"));
    zstr_free (&reply);
    //  The port bound already: in use, not a bad value.
    zstr_sendx (broker, "BIND", endpoint + 1, NULL);
    reply = zstr_recv (broker);
    BM_CHECK (reply && streq (reply, "-1"));
    zstr_free (&reply);

    zsock_t *client = zsock_new_dealer (endpoint);
    zsock_t *worker = zsock_new_dealer (endpoint);
    BM_CHECK (client && worker);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);

    //  Worker: READY {name, types: [python], credit: 1}
    msgpack_pack_map (&pk, 3);
    bm_pack_kv_str (&pk, "name", "selftest");
    bm_pack_str (&pk, "types");
    msgpack_pack_array (&pk, 1);
    bm_pack_str (&pk, "python");
    bm_pack_kv_int (&pk, "credit", 1);
    s_test_send (worker, BM_WORKER_HEADER, BM_READY, &sbuf);

    //  Client: SUBMIT {req: 1, botType: python, payload: {n: 1}, notify: true}
    //  -> ACCEPTED {req: 1, jobId, duplicate: false, position: 1}
    msgpack_pack_map (&pk, 4);
    bm_pack_kv_int (&pk, "req", 1);
    bm_pack_kv_str (&pk, "botType", "python");
    bm_pack_str (&pk, "payload");
    msgpack_pack_map (&pk, 1);
    bm_pack_kv_int (&pk, "n", 1);
    bm_pack_kv_bool (&pk, "notify", true);
    s_test_send (client, BM_CLIENT_HEADER, BM_SUBMIT, &sbuf);
    bm_msg_t *msg = s_test_recv (client, BM_ACCEPTED);
    const msgpack_object *body = bm_msg_body (msg);
    int64_t value = 0;
    bool flag = true;
    char job_id [BM_MAX_ID_LEN + 16];
    BM_CHECK (bm_obj_int (body, "req", &value) && value == 1);
    BM_CHECK (bm_obj_strcpy (body, "jobId", job_id, sizeof job_id));
    BM_CHECK (bm_obj_bool (body, "duplicate", &flag) && !flag);
    BM_CHECK (bm_obj_int (body, "position", &value) && value == 1);
    bm_msg_destroy (&msg);

    //  Worker <- JOB {jobId, botType: python, payload: {n: 1}, attempt: 1, ...}
    msg = s_test_recv (worker, BM_JOB);
    body = bm_msg_body (msg);
    BM_CHECK (s_test_str_is (body, "jobId", job_id));
    BM_CHECK (s_test_str_is (body, "botType", "python"));
    BM_CHECK (bm_obj_int (body, "attempt", &value) && value == 1);
    BM_CHECK (bm_obj_int (bm_obj_get (body, "payload"), "n", &value) && value == 1);
    bm_msg_destroy (&msg);

    //  Worker: DONE {jobId, ok: true, result: {answer: 42}}
    msgpack_pack_map (&pk, 3);
    bm_pack_kv_str (&pk, "jobId", job_id);
    bm_pack_kv_bool (&pk, "ok", true);
    bm_pack_str (&pk, "result");
    msgpack_pack_map (&pk, 1);
    bm_pack_kv_int (&pk, "answer", 42);
    s_test_send (worker, BM_WORKER_HEADER, BM_DONE, &sbuf);

    //  Client <- RESULT {jobId, job: {state: completed, result: {answer: 42}}}
    msg = s_test_recv (client, BM_RESULT);
    body = bm_msg_body (msg);
    BM_CHECK (s_test_str_is (body, "jobId", job_id));
    const msgpack_object *job = bm_obj_get (body, "job");
    BM_CHECK (job && s_test_str_is (job, "state", "completed"));
    BM_CHECK (bm_obj_int (bm_obj_get (job, "result"), "answer", &value) && value == 42);
    BM_CHECK (bm_obj_int (job, "attempts", &value) && value == 1);
    bm_msg_destroy (&msg);

    //  Client: STATS {req: 2} -> REPLY {req: 2, types: {python: {completed: 1,
    //  usage: 0, workers: 1}}, workers: [{name: selftest}]}
    msgpack_pack_map (&pk, 1);
    bm_pack_kv_int (&pk, "req", 2);
    s_test_send (client, BM_CLIENT_HEADER, BM_STATS, &sbuf);
    msg = s_test_recv (client, BM_REPLY);
    body = bm_msg_body (msg);
    BM_CHECK (bm_obj_int (body, "req", &value) && value == 2);
    const msgpack_object *python = bm_obj_get (bm_obj_get (body, "types"), "python");
    BM_CHECK (python);
    BM_CHECK (bm_obj_int (python, "completed", &value) && value == 1);
    BM_CHECK (bm_obj_int (python, "usage", &value) && value == 0);
    BM_CHECK (bm_obj_int (python, "workers", &value) && value == 1);
    const msgpack_object *workers = bm_obj_get (body, "workers");
    BM_CHECK (workers && workers->type == MSGPACK_OBJECT_ARRAY && workers->via.array.size == 1);
    BM_CHECK (s_test_str_is (&workers->via.array.ptr [0], "name", "selftest"));
    bm_msg_destroy (&msg);

    //  $TERM: the actor shuts down and ends; zactor_destroy waits for it.
    msgpack_sbuffer_destroy (&sbuf);
    zsock_destroy (&client);
    zsock_destroy (&worker);
    zactor_destroy (&broker);
    BM_CHECK (broker == NULL);
    if (verbose)
        printf ("OK\n");
}

/*  bm_worker_link.c - a worker's BMW01 connection to the broker.  */
#include "bm_worker_link.h"
#include "bm_config.h"
#include "bm_curve.h"
#include "bm_log.h"

#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#define BM_LINK_BATCH       100         //  Messages handled per readable event
#define BM_LINK_HWM         10000       //  Default high-water marks

struct _bm_worker_link_t {
    zloop_t *loop;                      //  Owner's reactor (borrowed), or NULL
    bm_worker_link_handlers_t handlers;
    void *arg;
    char *endpoint;
    char *name;
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
    int timer;                          //  zloop mode: tick timer id
    bm_msg_t *msg;                      //  Parsed into again and again
    int64_t last_recv;                  //  Monotonic ms of the broker's last message
    int64_t last_send;                  //  Monotonic ms of our last message
    atomic_bool connected;              //  Heard from the broker lately
    atomic_uint_fast64_t reconnects;
};

static int s_on_readable (zloop_t *loop, zsock_t *reader, void *arg);

//  READY {name, types, credit, pid}
static void
s_send_ready (bm_worker_link_t *self)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    bm_pack_kv_str (&pk, "name", self->name);
    bm_pack_str (&pk, "types");
    msgpack_pack_array (&pk, (size_t) self->type_count);
    for (int i = 0; i < self->type_count; i++)
        bm_pack_str (&pk, self->types [i]);
    bm_pack_kv_int (&pk, "credit", self->credit);
    bm_pack_kv_int (&pk, "pid", (int64_t) getpid ());
    bm_worker_link_send (self, BM_READY, sbuf.data, sbuf.size, NULL);
    bm_debug (NULL, "READY credit=%lld", (long long) self->credit);
    msgpack_sbuffer_destroy (&sbuf);
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
    if (bm_curve_client_apply (self->dealer)
    ||  zsock_connect (self->dealer, "%s", self->endpoint)) {
        zsock_destroy (&self->dealer);
        return -1;
    }
    if (self->loop) {
        zloop_reader (self->loop, self->dealer, s_on_readable, self);
        zloop_reader_set_tolerant (self->loop, self->dealer);
    }
    self->last_recv = bm_mono_ms ();
    s_send_ready (self);
    return 0;
}

//  The broker is gone: a new socket, READY again.
static void
s_reconnect (bm_worker_link_t *self)
{
    atomic_store (&self->connected, false);
    atomic_fetch_add (&self->reconnects, 1);
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
        if (command == BM_HEARTBEAT)
            continue;
        if (command == BM_DISCONNECT) {
            char why [128] = "";
            bm_obj_strcpy (body, "reason", why, sizeof why);
            bm_info (NULL, "DISCONNECT from the broker%s%s: registering again",
                     *why ? ": " : "", why);
            s_reconnect (self);
            break;                              //  sock is not ours anymore
        }
        if (command == BM_NACK) {
            //  not_owner is expected after a cancel or a re-dispatch.
            char code [64] = "?", message [256] = "";
            bm_obj_strcpy (body, "code", code, sizeof code);
            bm_obj_strcpy (body, "message", message, sizeof message);
            bm_log (streq (code, "not_owner") ? BM_DEBUG : BM_WARN, NULL,
                    "NACK from the broker: %s: %s", code, message);
            continue;
        }
        bm_worker_link_message_fn *handler;
        if (command == BM_JOB)
            handler = self->handlers.job;
        else
        if (command == BM_WCANCEL)
            handler = self->handlers.cancel;
        else {
            bm_warn (NULL, "unexpected %s from the broker: ignored",
                     bm_command_name (BM_PEER_WORKER, command));
            continue;
        }
        if (handler && handler (self->arg, body))
            return -1;
    }
    return 0;
}

void
bm_worker_link_tick (bm_worker_link_t *self)
{
    int64_t now = bm_mono_ms ();
    if (!self->dealer) {
        if (s_open (self) == 0) {
            bm_info (NULL, "connected to %s", self->endpoint);
            if (self->handlers.reconnected)
                self->handlers.reconnected (self->arg);
        }
        return;
    }
    if (now - self->last_recv > self->heartbeat_ms * self->liveness) {
        bm_warn (NULL, "no word from the broker for %lld ms: reconnecting to %s",
                 (long long) (now - self->last_recv), self->endpoint);
        s_reconnect (self);
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
    if (!config->endpoint || !config->name || !handlers || !handlers->job
    ||  config->type_count < 1 || config->type_count > BM_WORKER_LINK_MAX_TYPES
    ||  config->heartbeat_ms < 1 || config->liveness < 1) {
        bm_error (NULL, "bm_worker_link: incomplete configuration");
        return NULL;
    }
    bm_worker_link_t *self = (bm_worker_link_t *) zmalloc (sizeof (bm_worker_link_t));
    self->loop = loop;
    self->handlers = *handlers;
    self->arg = arg;
    self->endpoint = strdup (config->endpoint);
    self->name = strdup (config->name);
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
    atomic_init (&self->connected, false);
    atomic_init (&self->reconnects, 0);
    if (s_open (self)) {
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
        if (self->loop && self->timer > 0)
            zloop_timer_end (self->loop, self->timer);
        if (self->dealer) {
            if (self->loop)
                zloop_reader_end (self->loop, self->dealer);
            zsock_set_linger (self->dealer, linger_ms);
            zsock_destroy (&self->dealer);
        }
        zsock_destroy (&self->old_dealer);
        bm_msg_destroy (&self->msg);
        for (int i = 0; i < self->type_count; i++)
            free (self->types [i]);
        free (self->endpoint);
        free (self->name);
        free (self);
        *self_p = NULL;
    }
}

int
bm_worker_link_send (bm_worker_link_t *self, int command, const char *body, size_t size,
                     const char *job_id)
{
    if (!self->dealer
    ||  bm_msg_send (self->dealer, NULL, BM_WORKER_HEADER, command, body, size)) {
        bm_warn (job_id, "could not send %s to the broker (%s)",
                 bm_command_name (BM_PEER_WORKER, command),
                 self->dealer ? zmq_strerror (zmq_errno ()) : "no socket");
        return -1;
    }
    self->last_send = bm_mono_ms ();
    return 0;
}

int
bm_worker_link_send_simple (bm_worker_link_t *self, int command, const char *key,
                            const char *value)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    if (key) {
        msgpack_pack_map (&pk, 1);
        bm_pack_kv_str (&pk, key, value);
    }
    else
        msgpack_pack_map (&pk, 0);
    int rc = bm_worker_link_send (self, command, sbuf.data, sbuf.size,
                                  key && streq (key, "jobId") ? value : NULL);
    msgpack_sbuffer_destroy (&sbuf);
    return rc;
}

void
bm_worker_link_set_credit (bm_worker_link_t *self, int64_t credit)
{
    self->credit = credit;
    if (self->dealer)
        s_send_ready (self);
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

uint64_t
bm_worker_link_reconnects (bm_worker_link_t *self)
{
    return atomic_load (&self->reconnects);
}

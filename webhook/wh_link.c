/*  wh_link.c - the webhook manager's BMW01 connection to the broker.  */
#include "wh_link.h"
#include "bm_curve.h"
#include "bm_config.h"
#include "bm_log.h"

#include <stdatomic.h>
#include <unistd.h>

struct _wh_link_t {
    zloop_t *loop;              //  Owner's reactor (borrowed)
    char *endpoint;             //  Broker endpoint
    char *name;                 //  Worker name (stable across reconnects)
    int64_t credit;             //  Credit announced in READY
    int64_t heartbeat_ms;       //  HEARTBEAT_INTERVAL_MS
    int64_t liveness;           //  HEARTBEAT_LIVENESS
    wh_link_fn *handler;        //  Owner's handler
    void *arg;
    zsock_t *dealer;            //  Our socket to the broker
    int timer;                  //  Heartbeat timer id
    int64_t last_heard;         //  Monotonic ms of the broker's last message
    int64_t last_sent;          //  Monotonic ms of our last message
    atomic_bool connected;      //  Heard from the broker lately
    atomic_uint_fast64_t reconnects;
};

static int s_recv (zloop_t *loop, zsock_t *reader, void *arg);

//  Frame 2 of READY: {name, types: ["webhook"], credit, pid}
static void
s_send_ready (wh_link_t *self)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 4);
    bm_pack_kv_str (&pk, "name", self->name);
    bm_pack_str (&pk, "types");
    msgpack_pack_array (&pk, 1);
    bm_pack_str (&pk, BM_WEBHOOK_TYPE);
    bm_pack_kv_int (&pk, "credit", self->credit);
    bm_pack_kv_int (&pk, "pid", (int64_t) getpid ());
    wh_link_send (self, BM_READY, sbuf.data, sbuf.size);
    msgpack_sbuffer_destroy (&sbuf);
}

//  Open a fresh DEALER, watch it, and say READY.
static int
s_connect (wh_link_t *self)
{
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->dealer)
        return -1;
    zsock_set_linger (self->dealer, 0);
    //  Enough room for every report of a full credit, and then some.
    zsock_set_sndhwm (self->dealer, 200000);
    zsock_set_rcvhwm (self->dealer, 200000);
    //  Never block the loop on a full queue: a report that cannot be
    //  queued is dropped and logged; the broker redelivers what it did not
    //  hear about (at least once).
    zsock_set_sndtimeo (self->dealer, 0);
    if (bm_curve_client_apply (self->dealer)
    ||  zsock_connect (self->dealer, "%s", self->endpoint)) {
        zsock_destroy (&self->dealer);
        return -1;
    }
    zloop_reader (self->loop, self->dealer, s_recv, self);
    zloop_reader_set_tolerant (self->loop, self->dealer);
    self->last_heard = bm_mono_ms ();
    s_send_ready (self);
    return 0;
}

static void
s_reconnect (wh_link_t *self, const char *why)
{
    bm_warn (NULL, "broker at %s %s: reconnecting", self->endpoint, why);
    atomic_store (&self->connected, false);
    atomic_fetch_add (&self->reconnects, 1);
    zloop_reader_end (self->loop, self->dealer);
    zsock_destroy (&self->dealer);
    if (s_connect (self))
        bm_error (NULL, "cannot open a socket to %s; will retry", self->endpoint);
}

static int
s_recv (zloop_t *loop, zsock_t *reader, void *arg)
{
    (void) loop;
    wh_link_t *self = (wh_link_t *) arg;
    //  Drain what is there, but yield to the loop now and then.
    for (int count = 0; count < 1000 && self->dealer == reader; count++) {
        if (!(zsock_events (reader) & ZMQ_POLLIN))
            break;
        zmsg_t *frames = zmsg_recv (reader);
        if (!frames)
            break;
        self->last_heard = bm_mono_ms ();
        atomic_store (&self->connected, true);
        const char *code = NULL;
        char reason [128];
        bm_msg_t *msg = bm_msg_decode (frames, BM_MAX_FRAME_BYTES, &code, reason, sizeof reason);
        zmsg_destroy (&frames);
        if (!msg) {
            bm_warn (NULL, "dropped a bad message from the broker: %s (%s)", code, reason);
            continue;
        }
        if (bm_msg_peer (msg) != BM_PEER_WORKER) {
            bm_warn (NULL, "dropped a message with the client header from the broker");
            bm_msg_destroy (&msg);
            continue;
        }
        int command = bm_msg_command (msg);
        if (command == BM_HEARTBEAT)
            ;
        else
        if (command == BM_DISCONNECT) {
            bm_msg_destroy (&msg);
            s_reconnect (self, "sent DISCONNECT");
            return 0;           //  reader is gone
        }
        else
            self->handler (self->arg, command, bm_msg_body (msg));
        bm_msg_destroy (&msg);
    }
    return 0;
}

static int
s_tick (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    wh_link_t *self = (wh_link_t *) arg;
    int64_t now = bm_mono_ms ();
    if (!self->dealer) {
        if (s_connect (self) == 0)
            bm_info (NULL, "connected to %s", self->endpoint);
        return 0;
    }
    if (now - self->last_heard > self->heartbeat_ms * self->liveness) {
        s_reconnect (self, "is silent");
        return 0;
    }
    if (now - self->last_sent >= self->heartbeat_ms)
        wh_link_send (self, BM_HEARTBEAT, "\x80", 1);
    return 0;
}

wh_link_t *
wh_link_new (zloop_t *loop, const char *endpoint, const char *name,
             int64_t credit, int64_t heartbeat_ms, int64_t liveness,
             wh_link_fn *handler, void *arg)
{
    wh_link_t *self = (wh_link_t *) zmalloc (sizeof (wh_link_t));
    self->loop = loop;
    self->endpoint = strdup (endpoint);
    self->name = strdup (name);
    self->credit = credit;
    self->heartbeat_ms = heartbeat_ms;
    self->liveness = liveness;
    self->handler = handler;
    self->arg = arg;
    if (s_connect (self)) {
        bm_error (NULL, "cannot connect to broker endpoint '%s'", endpoint);
        wh_link_destroy (&self, 0);
        return NULL;
    }
    //  Tick at a fraction of the interval so heartbeats leave on time.
    int64_t tick = heartbeat_ms / 4 > 0? heartbeat_ms / 4: 1;
    self->timer = zloop_timer (loop, (size_t) tick, 0, s_tick, self);
    return self;
}

void
wh_link_destroy (wh_link_t **self_p, int linger_ms)
{
    if (*self_p) {
        wh_link_t *self = *self_p;
        if (self->timer > 0)
            zloop_timer_end (self->loop, self->timer);
        if (self->dealer) {
            zloop_reader_end (self->loop, self->dealer);
            zsock_set_linger (self->dealer, linger_ms);
            zsock_destroy (&self->dealer);
        }
        free (self->endpoint);
        free (self->name);
        free (self);
        *self_p = NULL;
    }
}

int
wh_link_send (wh_link_t *self, int command, const char *body, size_t size)
{
    if (!self->dealer)
        return -1;
    //  Frame 0: "BMW01" | Frame 1: command | Frame 2: msgpack map
    if (bm_msg_send (self->dealer, NULL, BM_WORKER_HEADER, command, body, size)) {
        bm_warn (NULL, "could not queue a %s for the broker", bm_command_name (BM_PEER_WORKER, command));
        return -1;
    }
    self->last_sent = bm_mono_ms ();
    return 0;
}

void
wh_link_set_credit (wh_link_t *self, int64_t credit)
{
    self->credit = credit;
    s_send_ready (self);
}

bool
wh_link_connected (wh_link_t *self)
{
    return atomic_load (&self->connected);
}

uint64_t
wh_link_reconnects (wh_link_t *self)
{
    return atomic_load (&self->reconnects);
}

/*  bm_client.c - a synchronous BMC01 client over one DEALER socket.  */
#include "bm_client.h"
#include "bm_config.h"
#include "bm_curve.h"
#include "bm_endpoints.h"
#include "bm_log.h"
#include "bm_sock_watch.h"

#include <errno.h>

struct _bm_client_t {
    bm_endpoints_t *endpoints;  //  The brokers, one of which leads
    zsock_t *dealer;            //  Our socket to the current one
    int64_t req;                //  Number of the last request sent
    zlist_t *results;           //  RESULT pushes not yet handed out (bm_msg_t)
    bm_sock_watch_t *watch;     //  With CURVE: hears a refused handshake, or NULL
    int handshake_failed;       //  The last failure heard (monitor event), or 0
};

//  A new socket to the current endpoint, and with CURVE a watch on it
//  (*watch_p, NULL else).  NULL on error.
static zsock_t *
s_connect (bm_client_t *self, bm_sock_watch_t **watch_p)
{
    *watch_p = NULL;
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    if (!dealer)
        return NULL;
    zsock_set_linger (dealer, 0);
    zsock_set_sndhwm (dealer, 100000);
    zsock_set_rcvhwm (dealer, 100000);
    if (bm_curve_client_apply (dealer)) {
        zsock_destroy (&dealer);
        return NULL;
    }
    const char *curve = getenv ("CURVE_SERVER_KEY");
    if (curve && *curve)
        *watch_p = bm_sock_watch_new (dealer);
    if (zsock_connect (dealer, "%s", bm_endpoints_current (self->endpoints))) {
        bm_sock_watch_destroy (watch_p);
        zsock_destroy (&dealer);
        return NULL;
    }
    return dealer;
}

bm_client_t *
bm_client_new (const char *endpoint)
{
    bm_client_t *self = (bm_client_t *) zmalloc (sizeof (bm_client_t));
    self->endpoints = bm_endpoints_new (endpoint);
    self->dealer = self->endpoints ? s_connect (self, &self->watch) : NULL;
    if (!self->dealer) {
        bm_client_destroy (&self);
        return NULL;
    }
    self->results = zlist_new ();
    return self;
}

//  Take in what the watch heard (the failure stays until a reply comes).
static void
s_read_watch (bm_client_t *self)
{
    if (!self->watch)
        return;
    bm_sock_watch_gone (self->watch);
    int failed = bm_sock_watch_handshake_failed (self->watch);
    if (failed)
        self->handshake_failed = failed;
}

const char *
bm_client_handshake_problem (bm_client_t *self)
{
    s_read_watch (self);
    return bm_sock_watch_handshake_text (self->handshake_failed);
}

//  On to the next broker (or the leader a standby named): a fresh socket,
//  so that nothing queued for the old one arrives later by surprise.
//  Returns the backoff to wait, in ms, or -1 if no socket could be opened.
static int64_t
s_switch (bm_client_t *self, const bm_msg_t *not_leader)
{
    int64_t delay = bm_endpoints_next (self->endpoints, not_leader == NULL);
    const msgpack_object *leader = not_leader ? bm_obj_get (bm_msg_body (not_leader), "leader") : NULL;
    if (leader && leader->type == MSGPACK_OBJECT_STR)
        bm_endpoints_prefer (self->endpoints, leader->via.str.ptr, leader->via.str.size);
    s_read_watch (self);
    bm_sock_watch_t *watch;
    zsock_t *dealer = s_connect (self, &watch);
    if (!dealer)
        return -1;
    bm_sock_watch_destroy (&self->watch);      //  Before its socket closes
    zsock_destroy (&self->dealer);
    self->dealer = dealer;
    self->watch = watch;
    bm_debug (NULL, "client: trying broker %s", bm_endpoints_current (self->endpoints));
    return delay;
}

//  A REJECTED not_leader (a standby's answer).
static bool
s_not_leader (const bm_msg_t *msg)
{
    bm_codec_rejected_t rejected;
    bm_codec_error_t error;
    return bm_msg_command (msg) == BM_REJECTED
        && bm_codec_rejected_decode (msg, &rejected, &error) == 0
        && streq (rejected.code, "not_leader");
}

void
bm_client_destroy (bm_client_t **self_p)
{
    if (*self_p) {
        bm_client_t *self = *self_p;
        bm_msg_t *msg;
        while (self->results && (msg = (bm_msg_t *) zlist_pop (self->results)))
            bm_msg_destroy (&msg);
        zlist_destroy (&self->results);
        bm_sock_watch_destroy (&self->watch);   //  Before its socket closes
        zsock_destroy (&self->dealer);
        bm_endpoints_destroy (&self->endpoints);
        free (self);
        *self_p = NULL;
    }
}

int64_t
bm_client_next_req (bm_client_t *self)
{
    return self->req + 1;
}

zsock_t *
bm_client_sock (bm_client_t *self)
{
    return self->dealer;
}

//  Receive one message, waiting until deadline (monotonic ms).
static bm_msg_t *
s_recv (bm_client_t *self, int64_t deadline)
{
    while (true) {
        int64_t wait = deadline - bm_mono_ms ();
        if (wait < 0)
            wait = 0;
        zmq_pollitem_t item = { zsock_resolve (self->dealer), 0, ZMQ_POLLIN, 0 };
        int rc = zmq_poll (&item, 1, wait);
        if (rc < 0) {
            if (errno == EINTR)
                return NULL;
            continue;
        }
        if (rc == 0) {
            errno = ETIMEDOUT;
            return NULL;
        }
        zmsg_t *frames = zmsg_recv (self->dealer);
        if (!frames)
            return NULL;
        const char *code;
        bm_msg_t *msg = bm_msg_decode (frames, SIZE_MAX, &code, NULL, 0);
        zmsg_destroy (&frames);
        if (msg)
            return msg;
        //  A broken reply from the broker is dropped; the wait goes on.
    }
}

bm_msg_t *
bm_client_request (bm_client_t *self, int command,
                   const char *body, size_t size, int timeout_ms)
{
    int64_t req = ++self->req;
    if (bm_msg_send (self->dealer, NULL, BM_CLIENT_HEADER, command, body, size))
        return NULL;
    int64_t now = bm_mono_ms (), deadline = now + timeout_ms;
    //  With several brokers each gets a share of the time: a silent one
    //  (dead, or cut off) must leave time to ask the next.
    size_t brokers = bm_endpoints_size (self->endpoints);
    int64_t share = brokers > 1 ? timeout_ms / (int64_t) brokers : timeout_ms;
    if (share < 500)
        share = 500;
    int64_t attempt_deadline = now + share < deadline ? now + share : deadline;
    while (true) {
        bm_msg_t *msg = s_recv (self, attempt_deadline);
        if (!msg && errno == ETIMEDOUT && brokers > 1) {
            //  Lazy Pirate: a new socket to the next broker, the request
            //  again (a SUBMIT the silent broker took after all makes a
            //  second job: an idempotencyKey prevents that).
            int64_t delay = s_switch (self, NULL);
            now = bm_mono_ms ();
            if (delay >= 0 && now + delay < deadline) {
                zclock_sleep ((int) delay);
                if (bm_msg_send (self->dealer, NULL, BM_CLIENT_HEADER, command, body, size))
                    return NULL;
                now = bm_mono_ms ();
                attempt_deadline = now + share < deadline ? now + share : deadline;
                continue;
            }
            errno = ETIMEDOUT;
        }
        if (!msg)
            return NULL;
        if (bm_msg_command (msg) == BM_RESULT) {
            zlist_append (self->results, msg);
            continue;
        }
        bm_codec_request_t reply;
        bm_codec_error_t error;
        if (bm_codec_request_decode (msg, &reply, &error) == 0 && reply.has_req
        &&  reply.req == req) {
            if (!s_not_leader (msg)) {
                bm_endpoints_served (self->endpoints);
                self->handshake_failed = 0;
                return msg;
            }
            //  A standby did nothing with it: the same request, to the
            //  leader it names or the next broker, after the backoff.
            int64_t delay = s_switch (self, msg);
            int64_t left = deadline - bm_mono_ms ();
            if (delay < 0 || left <= delay)
                return msg;
            bm_msg_destroy (&msg);
            zclock_sleep ((int) delay);
            if (bm_msg_send (self->dealer, NULL, BM_CLIENT_HEADER, command, body, size))
                return NULL;
            continue;
        }
        bm_msg_destroy (&msg);      //  Answer to an older request
    }
}

bm_msg_t *
bm_client_ask (bm_client_t *self, int command, int timeout_ms)
{
    bm_codec_request_t request = { .has_req = true, .req = bm_client_next_req (self) };
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_request_encode (&request, &packer);
    bm_msg_t *reply = NULL;
    if (!bm_packer_failed (&packer))
        reply = bm_client_request (self, command, packer.sbuf.data, packer.sbuf.size, timeout_ms);
    bm_packer_destroy (&packer);
    return reply;
}

bm_msg_t *
bm_client_recv_result (bm_client_t *self, int timeout_ms)
{
    bm_msg_t *msg = (bm_msg_t *) zlist_pop (self->results);
    if (msg)
        return msg;
    int64_t deadline = bm_mono_ms () + timeout_ms;
    while (true) {
        msg = s_recv (self, deadline);
        if (!msg || bm_msg_command (msg) == BM_RESULT)
            return msg;
        bm_msg_destroy (&msg);
    }
}

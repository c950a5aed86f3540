/*  bm_client.c - a synchronous BMC01 client over one DEALER socket.  */
#include "bm_client.h"
#include "bm_config.h"
#include "bm_curve.h"

#include <errno.h>

struct _bm_client_t {
    zsock_t *dealer;            //  Our socket to the broker
    int64_t req;                //  Number of the last request sent
    zlist_t *results;           //  RESULT pushes not yet handed out (bm_msg_t)
};

bm_client_t *
bm_client_new (const char *endpoint)
{
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
    if (zsock_connect (dealer, "%s", endpoint)) {
        zsock_destroy (&dealer);
        return NULL;
    }
    bm_client_t *self = (bm_client_t *) zmalloc (sizeof (bm_client_t));
    self->dealer = dealer;
    self->results = zlist_new ();
    return self;
}

void
bm_client_destroy (bm_client_t **self_p)
{
    if (*self_p) {
        bm_client_t *self = *self_p;
        bm_msg_t *msg;
        while ((msg = (bm_msg_t *) zlist_pop (self->results)))
            bm_msg_destroy (&msg);
        zlist_destroy (&self->results);
        zsock_destroy (&self->dealer);
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
    int64_t deadline = bm_mono_ms () + timeout_ms;
    while (true) {
        bm_msg_t *msg = s_recv (self, deadline);
        if (!msg)
            return NULL;
        if (bm_msg_command (msg) == BM_RESULT) {
            zlist_append (self->results, msg);
            continue;
        }
        bm_codec_request_t reply;
        bm_codec_error_t error;
        if (bm_codec_request_decode (msg, &reply, &error) == 0 && reply.has_req
        &&  reply.req == req)
            return msg;
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

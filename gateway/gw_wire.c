/*  gw_wire.c - the frames on the gateway's broker link.

    Frames are read and written with zmq_msg_* on the raw socket, not
    zmsg_t: under load the link moves thousands of messages a second, and
    the body's bytes go from the handler's malloc to libzmq without a
    copy.  */
#include "gw_wire.h"
#include "bm_selftest.h"

#include "bm_codec.h"
#include "bm_curve.h"
#include "bm_log.h"

#include <errno.h>

zsock_t *
gw_wire_dealer_new (const void *name, zsock_t **monitor)
{
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    *monitor = zsock_new (ZMQ_PAIR);
    if (!dealer || !*monitor) {
        bm_error (NULL, "cannot make the broker link's sockets");
        goto fail;
    }
    void *handle = zsock_resolve (dealer);
    int linger = 0, hwm = GW_WIRE_HWM, one = 1;
    int heartbeat = GW_WIRE_HEARTBEAT_MS, dead = GW_WIRE_DEAD_MS;
    zmq_setsockopt (handle, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (handle, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (handle, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (handle, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt (handle, ZMQ_HEARTBEAT_IVL, &heartbeat, sizeof heartbeat);
    zmq_setsockopt (handle, ZMQ_HEARTBEAT_TIMEOUT, &dead, sizeof dead);
    if (bm_curve_client_apply (dealer))
        goto fail;
    //  The monitor first, so that the first connection is reported too.
    char monitor_ep [64];
    snprintf (monitor_ep, sizeof monitor_ep, "inproc://gw-link-%p", name);
    if (zmq_socket_monitor (handle, monitor_ep,
                            ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED
                            | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                            | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL)
    ||  zsock_connect (*monitor, "%s", monitor_ep)) {
        bm_error (NULL, "cannot monitor the broker link: %s", zmq_strerror (errno));
        goto fail;
    }
    return dealer;
fail:
    gw_wire_dealer_destroy (&dealer, monitor);
    return NULL;
}

void
gw_wire_dealer_destroy (zsock_t **dealer_p, zsock_t **monitor_p)
{
    if (*dealer_p)
        zmq_socket_monitor (zsock_resolve (*dealer_p), NULL, 0);
    zsock_destroy (monitor_p);
    zsock_destroy (dealer_p);
}

int
gw_wire_send (void *dealer, int command, zmq_msg_t *body)
{
    //  Frame 1: BM_CLIENT_HEADER; frame 2: the command byte; frame 3: body.
    if (zmq_send (dealer, BM_CLIENT_HEADER, 5, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
        zmq_msg_close (body);
        return -1;
    }
    //  Once the first frame is in, libzmq takes the rest.
    uint8_t byte = (uint8_t) command;
    zmq_send (dealer, &byte, 1, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (zmq_msg_send (body, dealer, ZMQ_DONTWAIT) == -1)
        zmq_msg_close (body);
    return 0;
}

bool
gw_wire_recv (void *dealer, bm_msg_t **reply, int64_t *req)
{
    *reply = NULL;
    zmq_msg_t frames [3];
    int parts = 0;
    bool more = true;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, dealer, ZMQ_DONTWAIT) == -1) {
            zmq_msg_close (&part);
            break;
        }
        more = zmq_msg_more (&part);
        if (parts < 3) {
            zmq_msg_init (&frames [parts]);
            zmq_msg_move (&frames [parts], &part);
        }
        zmq_msg_close (&part);
        parts++;
    }
    if (parts == 0)
        return false;                   //  Nothing to read
    bm_msg_t *msg = NULL;
    if (parts == 3) {
        const char *code;
        msg = bm_msg_decode_raw (zmq_msg_data (&frames [0]), zmq_msg_size (&frames [0]),
                                 zmq_msg_data (&frames [1]), zmq_msg_size (&frames [1]),
                                 zmq_msg_data (&frames [2]), zmq_msg_size (&frames [2]),
                                 SIZE_MAX, &code, NULL, 0);
    }
    for (int i = 0; i < parts && i < 3; i++)
        zmq_msg_close (&frames [i]);
    bm_codec_request_t answer;
    bm_codec_error_t error;
    if (msg && bm_msg_command (msg) == BM_EVENT) {
        *reply = msg;
        *req = GW_WIRE_PUSH;
    }
    else
    if (msg && bm_msg_command (msg) != BM_RESULT
    &&  bm_codec_request_decode (msg, &answer, &error) == 0 && answer.has_req) {
        *reply = msg;
        *req = answer.req;
    }
    else {
        if (!msg)
            bm_debug (NULL, "dropped a broken message from the broker");
        bm_msg_destroy (&msg);          //  RESULT push, or no req
    }
    return true;
}

int
gw_wire_event (void *monitor)
{
    uint16_t event = 0;
    zmq_msg_t part;
    bool first = true, more = true;
    while (more) {
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, monitor, ZMQ_DONTWAIT) == -1) {
            zmq_msg_close (&part);
            return 0;
        }
        if (first && zmq_msg_size (&part) >= 2)
            memcpy (&event, zmq_msg_data (&part), 2);
        first = false;
        more = zmq_msg_more (&part);
        zmq_msg_close (&part);
    }
    return event;
}

char *
gw_wire_req_body (int64_t req, size_t *size)
{
    bm_codec_request_t request = { .has_req = true, .req = req };
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_request_encode (&request, &packer);
    return bm_packer_detach (&packer, size);
}

//  --------------------------------------------------------------------------
//  Self test: a ROUTER on an ephemeral port plays the broker.

#define CHECK(cond) BM_CHECK (cond)

//  Wait (bounded) until the socket has input.
static void
s_await_input (void *socket)
{
    zmq_pollitem_t item = { socket, 0, ZMQ_POLLIN, 0 };
    CHECK (zmq_poll (&item, 1, 10000) == 1);
}

void
gw_wire_test (bool verbose)
{
    if (verbose)
        printf (" * gw_wire: ");
    zsys_handler_set (NULL);
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    CHECK (router);
    zsock_set_linger (router, 0);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    CHECK (port > 0);
    zsock_t *monitor;
    zsock_t *dealer = gw_wire_dealer_new (router, &monitor);
    CHECK (dealer && monitor);
    void *handle = zsock_resolve (dealer);
    CHECK (zsock_connect (dealer, "tcp://127.0.0.1:%d", port) == 0);

    //  The monitor reports the handshake.
    s_await_input (zsock_resolve (monitor));
    CHECK (gw_wire_event (zsock_resolve (monitor)) == ZMQ_EVENT_HANDSHAKE_SUCCEEDED);
    CHECK (gw_wire_event (zsock_resolve (monitor)) == 0);

    //  A request arrives as header, command, body.
    size_t size;
    char *body = gw_wire_req_body (41, &size);
    CHECK (body);
    zmq_msg_t msg;
    CHECK (zmq_msg_init_size (&msg, size) == 0);
    memcpy (zmq_msg_data (&msg), body, size);
    free (body);
    CHECK (gw_wire_send (handle, BM_PING, &msg) == 0);
    s_await_input (zsock_resolve (router));
    zmsg_t *frames = zmsg_recv (router);
    CHECK (frames && zmsg_size (frames) == 4);
    zframe_t *identity = zmsg_pop (frames);
    const char *code;
    bm_msg_t *request = bm_msg_decode (frames, SIZE_MAX, &code, NULL, 0);
    CHECK (request && bm_msg_command (request) == BM_PING);
    bm_codec_request_t ping;
    bm_codec_error_t error;
    CHECK (bm_codec_request_decode (request, &ping, &error) == 0 && ping.req == 41);
    bm_msg_destroy (&request);
    zmsg_destroy (&frames);

    //  In: a RESULT push and a broken message are read and dropped, the
    //  REPLY is handed over with its req; then there is nothing.
    body = gw_wire_req_body (41, &size);
    CHECK (body);
    CHECK (bm_msg_send (router, identity, BM_CLIENT_HEADER, BM_RESULT, body, size) == 0);
    CHECK (zsock_send (router, "fs", identity, "junk") == 0);
    CHECK (bm_msg_send (router, identity, BM_CLIENT_HEADER, BM_REPLY, body, size) == 0);
    free (body);
    bm_msg_t *reply = NULL;
    int64_t req = 0;
    int dropped = 0;
    while (!reply) {
        s_await_input (handle);
        while (!reply && gw_wire_recv (handle, &reply, &req))
            dropped += reply == NULL;
    }
    CHECK (dropped == 2 && bm_msg_command (reply) == BM_REPLY && req == 41);
    bm_msg_destroy (&reply);
    CHECK (!gw_wire_recv (handle, &reply, &req) && reply == NULL);

    //  The broker goes: DISCONNECTED.
    zsock_destroy (&router);
    s_await_input (zsock_resolve (monitor));
    CHECK (gw_wire_event (zsock_resolve (monitor)) == ZMQ_EVENT_DISCONNECTED);

    zframe_destroy (&identity);
    gw_wire_dealer_destroy (&dealer, &monitor);
    CHECK (dealer == NULL && monitor == NULL);
    if (verbose)
        printf ("OK\n");
}

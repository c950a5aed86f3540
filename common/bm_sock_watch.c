/*  bm_sock_watch.c - hear at once that the peer of a connected socket went
    away (ZeroMQ's socket monitor).  */
#include "bm_sock_watch.h"
#include "bm_log.h"
#include "bm_selftest.h"

#include <stdatomic.h>

struct _bm_sock_watch_t {
    void *watched;                      //  The socket's handle, NULL once stopped
    zsock_t *events;                    //  PAIR the monitor writes to
    int handshake_failed;               //  Last failure event not yet read, or 0
};

//  The events read: disconnects, and the handshake's outcome (CURVE).
#define BM_SOCK_WATCH_EVENTS (ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL \
                              | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)

bm_sock_watch_t *
bm_sock_watch_new (zsock_t *sock)
{
    static atomic_uint serial;
    char endpoint [96];
    snprintf (endpoint, sizeof endpoint, "inproc://bm-sock-watch-%d-%u", (int) getpid (),
              atomic_fetch_add (&serial, 1));
    void *handle = zsock_resolve (sock);
    if (zmq_socket_monitor (handle, endpoint, BM_SOCK_WATCH_EVENTS) != 0) {
        bm_debug (NULL, "socket monitor not started (%s): heartbeats only", zmq_strerror (zmq_errno ()));
        return NULL;
    }
    bm_sock_watch_t *self = (bm_sock_watch_t *) zmalloc (sizeof (bm_sock_watch_t));
    self->watched = handle;
    self->events = zsock_new (ZMQ_PAIR);
    if (!self->events || zsock_connect (self->events, "%s", endpoint)) {
        bm_debug (NULL, "socket monitor not read (%s): heartbeats only", zmq_strerror (zmq_errno ()));
        bm_sock_watch_destroy (&self);
        return NULL;
    }
    zsock_set_linger (self->events, 0);
    return self;
}

void
bm_sock_watch_stop (bm_sock_watch_t *self)
{
    if (self->watched) {
        zmq_socket_monitor (self->watched, NULL, 0);
        self->watched = NULL;
    }
}

void
bm_sock_watch_destroy (bm_sock_watch_t **self_p)
{
    if (*self_p) {
        bm_sock_watch_t *self = *self_p;
        bm_sock_watch_stop (self);
        zsock_destroy (&self->events);
        free (self);
        *self_p = NULL;
    }
}

int
bm_sock_watch_handshake_failed (bm_sock_watch_t *self)
{
    int event = self->handshake_failed;
    self->handshake_failed = 0;
    return event;
}

const char *
bm_sock_watch_handshake_text (int event)
{
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        return "the broker refused this peer's CURVE key (its public key is not in the "
               "broker's CURVE_CLIENTS_DIR)";
    if (event)
        return "CURVE handshake with the broker failed: check CURVE_SERVER_KEY "
               "(the broker's public key)";
    return NULL;
}

zsock_t *
bm_sock_watch_socket (bm_sock_watch_t *self)
{
    return self->events;
}

bool
bm_sock_watch_gone (bm_sock_watch_t *self)
{
    bool gone = false;
    void *handle = zsock_resolve (self->events);
    //  Each event: a frame of 6 bytes (event number, 16 bits; value, 32
    //  bits), then a frame with the endpoint.
    while (true) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        if (zmq_msg_recv (&frame, handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (&frame);
            break;
        }
        if (zmq_msg_size (&frame) >= 2) {
            uint16_t event;
            memcpy (&event, zmq_msg_data (&frame), sizeof event);
            if (event == ZMQ_EVENT_DISCONNECTED)
                gone = true;
            else
            if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
            ||  (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                 && self->handshake_failed != ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            ||  (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL && !self->handshake_failed))
                self->handshake_failed = event;
        }
        bool more = zmq_msg_more (&frame);
        zmq_msg_close (&frame);
        while (more) {
            zmq_msg_init (&frame);
            if (zmq_msg_recv (&frame, handle, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close (&frame);
                break;
            }
            more = zmq_msg_more (&frame);
            zmq_msg_close (&frame);
        }
    }
    return gone;
}

void
bm_sock_watch_test (bool verbose)
{
    if (verbose)
        printf (" * bm_sock_watch: ");
    zsock_t *router = zsock_new_router ("@tcp://127.0.0.1:*");
    BM_CHECK (router);
    char *endpoint = strdup (zsock_endpoint (router));
    zsock_t *dealer = zsock_new (ZMQ_DEALER);
    BM_CHECK (dealer);
    bm_sock_watch_t *watch = bm_sock_watch_new (dealer);
    BM_CHECK (watch && bm_sock_watch_socket (watch));
    BM_CHECK (zsock_connect (dealer, "%s", endpoint) == 0);
    //  Connected: a message goes through, and nothing says gone.
    zstr_send (dealer, "hello");
    zpoller_t *poller = zpoller_new (router, NULL);
    BM_CHECK (zpoller_wait (poller, 5000) == router);
    zmsg_t *msg = zmsg_recv (router);
    BM_CHECK (msg && zmsg_size (msg) == 2);
    zmsg_destroy (&msg);
    zpoller_destroy (&poller);
    BM_CHECK (!bm_sock_watch_gone (watch));
    //  The peer goes away: the event comes within 5 s (at once, really).
    zsock_destroy (&router);
    poller = zpoller_new (bm_sock_watch_socket (watch), NULL);
    bool gone = false;
    for (int i = 0; i < 50 && !gone; i++) {
        zpoller_wait (poller, 100);
        gone = bm_sock_watch_gone (watch);
    }
    BM_CHECK (gone);
    zpoller_destroy (&poller);
    bm_sock_watch_stop (watch);
    bm_sock_watch_stop (watch);
    zsock_destroy (&dealer);
    bm_sock_watch_destroy (&watch);
    BM_CHECK (watch == NULL);
    free (endpoint);
    if (verbose)
        printf ("OK\n");
}

/*  gw_link.h - the gateway's one pipelined link to the broker.

    Many threads (civetweb's handler threads) send BMC01 requests over one
    DEALER socket that a single link thread owns; each caller blocks until
    its own reply (matched by "req") arrives, its time runs out, or the
    broker is known to be unreachable.  The design is explained at the top
    of gw_link.c.  Thread-safe: every function but gw_link_new and
    gw_link_destroy may be called from any thread at any time.

    Why one link: the gateway used to give every civetweb handler thread
    its own DEALER and let it block in zmq_poll for one synchronous round
    trip.  Under load (wrk, 64 keep-alive connections) that is 64 sockets
    with one request each in flight: every request wakes its handler
    thread, the ZeroMQ I/O thread and the broker separately, libzmq has
    nothing to batch, and the gateway spent most of its CPU in context
    switches (bench/findings.md, "HTTP").

    Files: gw_calls.c holds the calls (queue, pending table, futex word),
    gw_wire.c the frames (socket set-up, one request out, one message in,
    one monitor event), gw_link.c the link's state, its thread and this
    API.  */
#ifndef GW_LINK_H
#define GW_LINK_H

#include "bm_proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _gw_link_t gw_link_t;

//  Connect to the broker (in the background) and start the link thread.
//  connect_timeout_ms (BROKER_CONNECT_TIMEOUT_MS) is how long a request
//  waits for a connection before it fails with ENOTCONN; once the broker
//  has been unreachable that long, requests fail at once.  NULL on error
//  (logged).
gw_link_t *gw_link_new (const char *endpoint, int64_t connect_timeout_ms);

//  Stop the link thread and close the socket.  No request may be running.
void gw_link_destroy (gw_link_t **self_p);

//  A fresh "req" number for the body of the next request (unique per link).
int64_t gw_link_next_req (gw_link_t *self);

//  Send a request whose body (a msgpack map holding "req" = req, made by
//  malloc) is in body/size, and wait for its answer.  Takes the body, in
//  every case.  Returns the reply (caller destroys), or NULL with errno:
//    ENOTCONN   not sent: no connection to the broker within
//               connect_timeout_ms, or the connection was lost before the
//               answer came (the broker died);
//    ETIMEDOUT  sent, but no answer within timeout_ms of the send;
//    ESHUTDOWN  the link is stopping.
bm_msg_t *gw_link_request (gw_link_t *self, int64_t req, int command,
                           char *body, size_t size, int64_t timeout_ms);

//  Is the broker connected right now (as the socket monitor last said)?
bool gw_link_connected (gw_link_t *self);

//  How many times the link has connected (a handshake succeeded) so far:
//  a change says the broker, or the connection, is another one.
int64_t gw_link_connects (gw_link_t *self);

//  EVENT pushes (live job events, which the gateway subscribes to) go to
//  fn, on the link thread: fn must not block, and does not take msg.
//  Without one they are dropped.  Once this returns, the receiver set
//  before gets no more pushes (it may be freed after setting NULL).
typedef void (gw_link_push_fn) (const bm_msg_t *msg, void *arg);
void gw_link_set_push (gw_link_t *self, gw_link_push_fn *fn, void *arg);

//  Did the last broker to answer answer not_leader (a standby), with no
//  answer from a leader since?  Then "no broker leads", not "the broker is
//  not reachable", is why requests fail.
bool gw_link_standbys_only (gw_link_t *self);

//  Self test (an in-process ROUTER plays the broker).
void gw_link_test (bool verbose);

#endif

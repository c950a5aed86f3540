/*  gw_wire.h - the frames on the gateway's broker link.

    What gw_link's thread reads from and writes to its DEALER and the
    DEALER's socket monitor, apart from the link's state: how the socket is
    set up, one request out (three frames: header, command, body), one
    message in (decoded, with its "req"), one monitor event.  No lock, no
    thread: the caller owns the sockets.  */
#ifndef GW_WIRE_H
#define GW_WIRE_H

#include "bm_proto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_WIRE_HWM             100000  //  Messages queued in libzmq each way
#define GW_WIRE_HEARTBEAT_MS    1000    //  ZMTP PING when the line is quiet
#define GW_WIRE_DEAD_MS         3000    //  No traffic for this long: dead

//  Make the link's DEALER: no linger, GW_WIRE_HWM each way, ZMQ_IMMEDIATE
//  (nothing queued for a broker we are not connected to), ZMTP heartbeats,
//  CURVE when configured; and a PAIR (returned in *monitor) that gets its
//  HANDSHAKE_SUCCEEDED and DISCONNECTED events, the first connection
//  included.  `name` makes the monitor's inproc endpoint unique.  Does not
//  connect.  NULL on error (logged), *monitor then NULL too.
zsock_t *gw_wire_dealer_new (const void *name, zsock_t **monitor);

//  Stop monitoring, destroy both sockets (either may be NULL).
void gw_wire_dealer_destroy (zsock_t **dealer_p, zsock_t **monitor_p);

//  Send one request, without waiting: the body's bytes go as they are (the
//  message is closed in every case).  0, or -1 when the socket takes
//  nothing right now (no connection: ZMQ_IMMEDIATE, or the HWM).
int gw_wire_send (void *dealer, int command, zmq_msg_t *body);

//  Read one message if there is one, without waiting.  Returns false when
//  there was none.  Otherwise true, and *reply is an answer (caller
//  destroys) with its "req" in *req, or NULL: broken (logged at debug), a
//  RESULT push (the gateway never asks for them), or no "req".  An EVENT
//  push (live job events) comes as *reply with *req GW_WIRE_PUSH.
#define GW_WIRE_PUSH INT64_MIN
bool gw_wire_recv (void *dealer, bm_msg_t **reply, int64_t *req);

//  Read one monitor event without waiting: its ZMQ_EVENT_* number, or 0.
int gw_wire_event (void *monitor);

//  The body {req} (made by malloc; NULL on out of memory): a PING, or the
//  answer to one.
char *gw_wire_req_body (int64_t req, size_t *size);

//  Self test (a ROUTER in this process plays the broker).
void gw_wire_test (bool verbose);

#endif

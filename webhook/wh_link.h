/*  wh_link.h - the webhook manager's BMW01 connection to the broker.

    One DEALER socket on the owner's zloop.  Announces the worker with
    READY {name, types: ["webhook"], credit, pid}, sends HEARTBEAT when it
    has sent nothing for an interval, and treats a broker silent for
    HEARTBEAT_LIVENESS intervals -- or a DISCONNECT from it -- as gone: it
    closes the socket, opens a new one and sends READY again (Majordomo's
    worker recovery).  Deliveries in progress are not touched; their
    reports go out on the new socket, and the broker accepts them from a
    worker of the same name.

    Every other message is handed to the owner's handler, already decoded
    and checked (bm_msg_decode).  wh_link_connected and
    wh_link_reconnects may be read from other threads.  */
#ifndef WH_LINK_H
#define WH_LINK_H

#include "bm_proto.h"
#include <stdbool.h>
#include <stdint.h>

//  A message from the broker: command and body (borrowed for the call).
typedef void (wh_link_fn) (void *arg, int command, const msgpack_object *body);

typedef struct _wh_link_t wh_link_t;

//  Connect and send READY.  NULL if the endpoint is invalid.
wh_link_t *wh_link_new (zloop_t *loop, const char *endpoint, const char *name,
                        int64_t credit, int64_t heartbeat_ms, int64_t liveness,
                        wh_link_fn *handler, void *arg);

//  Close, waiting up to linger_ms for queued messages to leave.
void wh_link_destroy (wh_link_t **self_p, int linger_ms);

//  Send one message (body: an encoded msgpack map).  0, or -1 if the socket
//  would not take it.
int wh_link_send (wh_link_t *self, int command, const char *body, size_t size);

//  Announce a new credit with READY (0 when shutting down).
void wh_link_set_credit (wh_link_t *self, int64_t credit);

//  True if the broker spoke within the liveness window.  Any thread.
bool wh_link_connected (wh_link_t *self);

//  Reconnections since start.  Any thread.
uint64_t wh_link_reconnects (wh_link_t *self);

#endif

/*  bm_sock_watch.h - hear at once that the peer of a connected socket went
    away.

    A broker killed with SIGKILL (or that exits) has its TCP connections
    closed by the kernel: ZeroMQ's socket monitor reports the DISCONNECTED
    event right away, where heartbeats would take HEARTBEAT_LIVENESS
    intervals to notice.  A host that vanishes closes nothing: heartbeats
    remain the net under this.

    It also hears a failed handshake (a CURVE key the broker refused, or
    a wrong server key), which would otherwise only look like silence.

    The watch starts ZeroMQ's monitor on the socket (disconnect and
    handshake-failure events) and reads the events from an inproc PAIR socket.  Stop it before
    the watched socket is closed.  One thread: the one that owns the
    watched socket.  */
#ifndef BM_SOCK_WATCH_H
#define BM_SOCK_WATCH_H

#include <czmq.h>
#include <stdbool.h>

typedef struct _bm_sock_watch_t bm_sock_watch_t;

//  Watch sock (a connected socket); NULL (logged at debug level) when the
//  monitor cannot start: the caller then relies on heartbeats alone.
bm_sock_watch_t *bm_sock_watch_new (zsock_t *sock);

//  Stop the monitor (the watched socket must still be open); the event
//  socket stays until destroy.  Safe to call twice.
void bm_sock_watch_stop (bm_sock_watch_t *self);

//  Stop if not stopped, close the event socket, free; *self_p becomes NULL.
void bm_sock_watch_destroy (bm_sock_watch_t **self_p);

//  The socket the events arrive on (to poll, or to give to a zloop).
zsock_t *bm_sock_watch_socket (bm_sock_watch_t *self);

//  Read the events waiting, without blocking: true if one said the peer
//  disconnected.
bool bm_sock_watch_gone (bm_sock_watch_t *self);

//  The handshake failure heard by bm_sock_watch_gone since the last call
//  (ZMQ_EVENT_HANDSHAKE_FAILED_AUTH: the broker refused our CURVE key;
//  _PROTOCOL or _NO_DETAIL: the handshake broke, e.g. a wrong server key),
//  or 0; reading clears it.
int bm_sock_watch_handshake_failed (bm_sock_watch_t *self);

//  What an operator should read for such an event (NULL for 0).
const char *bm_sock_watch_handshake_text (int event);

//  Self test: a ROUTER plays the peer and goes away.
void bm_sock_watch_test (bool verbose);

#endif

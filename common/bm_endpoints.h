/*  bm_endpoints.h - a peer's list of broker endpoints, and where it is in it.

    BROKER_ENDPOINT may name several brokers, comma-separated
    ("tcp://b1:5555,tcp://b2:5555"): one leads, the others are standbys
    that answer not_leader (docs/protocol.md section 7b).  A peer connects
    to the current endpoint; when it gets not_leader or loses the broker it
    moves to the next one, round robin, waiting a backoff that starts at
    100 ms and doubles up to 2 s while no endpoint serves it; any answer
    from a leader resets the backoff.  The first leader a standby names
    since then is tried after 100 ms; further ones (standbys naming
    themselves or each other while none leads) wait the backoff.  A standby that answers not_leader
    right after the leader went silent is about to take over: it is asked
    again every 100 ms, 40 times (4 s, more than the default 2 s lease);
    if it still names the silent one then, that one kept its lease (the
    silence passed) and the peer may go back to it.  A list of one endpoint stays on it.

    Pure: no I/O, no clock; the caller sleeps or sets its timer.  */
#ifndef BM_ENDPOINTS_H
#define BM_ENDPOINTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BM_ENDPOINTS_MAX        16      //  Endpoints in one list
#define BM_ENDPOINTS_BACKOFF_MS 100     //  First backoff
#define BM_ENDPOINTS_BACKOFF_MAX_MS 2000
#define BM_ENDPOINTS_QUICK_TRIES 40     //  Asks of the standby about to lead,
                                        //  every BM_ENDPOINTS_BACKOFF_MS

typedef struct _bm_endpoints_t bm_endpoints_t;

//  Parse a comma-separated list (spaces around items ignored).  NULL when
//  it names no endpoint, more than BM_ENDPOINTS_MAX, or an empty item.
bm_endpoints_t *bm_endpoints_new (const char *list);
void bm_endpoints_destroy (bm_endpoints_t **self_p);

//  True when list is such a list and each endpoint is tcp://HOST:PORT
//  (PORT a number up to 65535, or * to bind any) or ipc://PATH (what
//  BROKER_ENDPOINT may hold, as BM_ENDPOINTS_RULE says).
bool bm_endpoints_valid (const char *list);
#define BM_ENDPOINTS_RULE "tcp://host:port (port a number from 0 to 65535, or * to bind any) " \
                          "or ipc://path, or a comma-separated list of them"

//  True when a bound endpoint is reachable from the network: tcp:// on
//  any address but loopback (127.x.x.x, localhost, ::1, the lo
//  interface); "*" and 0.0.0.0 are every interface.  ipc:// and
//  inproc:// are not.
bool bm_endpoint_network_open (const char *endpoint);

//  True when a tcp:// endpoint's host can be a network interface's name
//  (wg0, eth0.100): at most 15 characters, none of them : [ ].  zmq
//  fails such a bind with ENODEV while the interface is not up or has no
//  address yet, which is no bad value.
bool bm_endpoint_interface_name (const char *endpoint);

size_t bm_endpoints_size (bm_endpoints_t *self);

//  The endpoint to connect to now (borrowed, valid until destroy).
const char *bm_endpoints_current (bm_endpoints_t *self);

//  Move on after not_leader (silent = false) or a broker that went silent
//  (silent = true): the next endpoint becomes current.  Returns how long to
//  wait before connecting to it, in ms: the backoff, which doubles at each
//  call until bm_endpoints_served.  A not_leader right after a silence
//  keeps the current endpoint when the next one is the silent one: that
//  standby is about to take over, and is asked again after 100 ms (up to
//  BM_ENDPOINTS_QUICK_TRIES times since the silence, then the backoff).
int64_t bm_endpoints_next (bm_endpoints_t *self, bool silent);

//  Move to the endpoint named (a standby's "leader"), if it is in the list
//  and is not the one that went silent last (a standby names the old
//  leader until its lease runs out); returns true if it moved.  The
//  backoff is not reset.
bool bm_endpoints_prefer (bm_endpoints_t *self, const char *endpoint, size_t len);

//  The current endpoint answered not_leader naming leader (NULL or len 0:
//  none): on to the leader named, else to the next endpoint.  Returns the
//  wait in ms: the backoff, except for the first leader named since a
//  leader served (or since a silence), tried after the first backoff.  A
//  standby naming itself names none.  So standbys that name themselves
//  or each other while no broker leads (Redis away) are asked ever more
//  slowly, up to BM_ENDPOINTS_BACKOFF_MAX_MS, not every 100 ms.
int64_t bm_endpoints_not_leader (bm_endpoints_t *self, const char *leader, size_t len);

//  Moves since a leader last served (0: the current one serves): a caller
//  logs the first move of a search and keeps the others for debug.
int bm_endpoints_moves (bm_endpoints_t *self);

//  A leader answered: the backoff starts over.
void bm_endpoints_served (bm_endpoints_t *self);

void bm_endpoints_test (bool verbose);

#endif

/*  bm_resolve_zloop.h - a host name resolved off a zloop, the answer told
    on it.

    hiredis resolves a host name itself, in the caller's thread, for as
    long as the resolver waits (with a DNS server that does not answer,
    glibc's timeout times its attempts, for each address family hiredis
    asks in turn).  A service on an event loop resolves the name first
    with this, and gives hiredis the address: bm_resolve on a thread of
    its own, a poller on its descriptor, a deadline (a zloop timer), and
    one callback with the address or the reason.  One resolution at a
    time; a numeric address needs none (bm_resolve_numeric: the owner
    connects to it at once).

    Which thread may call what: every method from the loop's thread only;
    the callback runs there too, from a poller or a timer of ours (never
    inside a method).  Giving up (cancel, start again, destroy) never
    blocks: a resolution still running finishes on its own thread.  */
#ifndef BM_RESOLVE_ZLOOP_H
#define BM_RESOLVE_ZLOOP_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

//  How long the services give a name before a try is given up on.  Under
//  glibc's default timeout of 5 s, a DNS server that is only slow still
//  answers a later try from its cache; one that is down costs a try this
//  much (the loop serves on meanwhile).
#define BM_RESOLVE_WAIT_MS  3000

typedef struct _bm_resolve_zloop_t bm_resolve_zloop_t;

//  The end of a resolution, on the loop: rc 0 with addr (numeric text),
//  or -1 with why (one line: the resolver's reason, such as "Name or
//  service not known", or "name not resolved after N ms").  fn may start
//  the next resolution, or destroy the object.
typedef void (bm_resolve_zloop_fn) (int rc, const char *addr, const char *why, void *arg);

//  Resolutions on loop, each given up on after timeout_ms; each told to fn.
bm_resolve_zloop_t *bm_resolve_zloop_new (zloop_t *loop, int timeout_ms,
                                          bm_resolve_zloop_fn *fn, void *arg);

//  Drops a resolution in flight (its fn is not called).  Nulls *self_p.
//  Not from a zloop timer handler while a resolution is in flight: zloop
//  ends a timer only at the end of the pass, so a deadline due in the same
//  pass would still fire on the freed object (from fn, a poller, or after
//  the loop has ended, it is safe).
void bm_resolve_zloop_destroy (bm_resolve_zloop_t **self_p);

//  Start resolving host; one in flight is dropped first (its fn is not
//  called).  0: fn will be called once for it, from the loop.  -1 with
//  the reason in why: it cannot start (bm_resolve_new's reasons, or no
//  poller), and fn will never be called for it.
int bm_resolve_zloop_start (bm_resolve_zloop_t *self, const char *host, char *why,
                            size_t why_size);

//  Drops the resolution in flight, if any (its fn is not called).
void bm_resolve_zloop_cancel (bm_resolve_zloop_t *self);

//  True while a resolution is in flight.
bool bm_resolve_zloop_busy (bm_resolve_zloop_t *self);

void bm_resolve_zloop_test (bool verbose);

#endif

/*  bm_redis_zloop.h - drive a hiredis async connection from a czmq zloop.

    hiredis asks for read and write interest on its socket (ac->ev); the
    adapter keeps one zloop poller with that interest and hands readiness
    back to hiredis.  The owner embeds the adapter, points it at its own
    `redisAsyncContext *` field (which the owner sets to NULL when hiredis
    frees the context: a read may free it, so the write is skipped then),
    and may ask for a call after each round of I/O (to send what reply
    callbacks queued).  */
#ifndef BM_REDIS_ZLOOP_H
#define BM_REDIS_ZLOOP_H

#include <czmq.h>
#include <hiredis/async.h>
#include <stdbool.h>

typedef void (bm_redis_zloop_fn) (void *arg);

typedef struct {
    zloop_t *loop;
    redisAsyncContext **ac;     //  The owner's field: the live context, or NULL
    bm_redis_zloop_fn *after_io;//  Called after each round of I/O, or NULL
    void *arg;
    zmq_pollitem_t item;        //  Our poller on the context's fd
    bool polling;               //  Poller registered
    bool want_read;             //  hiredis wants read events
    bool want_write;            //  hiredis wants write events
    int64_t last_io;            //  zclock_mono () when the socket was last
                                //  readable (Redis sent something) or
                                //  writable while hiredis had bytes to send
                                //  (Redis read some), or 0
} bm_redis_zloop_t;

//  Set up an adapter for the contexts that *ac will hold.
void bm_redis_zloop_init (bm_redis_zloop_t *self, zloop_t *loop, redisAsyncContext **ac,
                          bm_redis_zloop_fn *after_io, void *arg);

//  Hook a new, connecting context to the loop (its ev callbacks), and wait
//  for writability (hiredis completes a connect on it).  Set *ac first.
void bm_redis_zloop_attach (bm_redis_zloop_t *self, redisAsyncContext *ac);

#endif

/*  bm_store.h - the broker's Redis connection, asynchronous, on its zloop.

    hiredis's async API driven by the broker's own zloop (hiredis 0.14 has
    no adapter for it: the small one here adds and removes a zloop poller
    on the connection's fd).  Commands issued during one loop turn leave in
    one write, so they are pipelined for free.

    Two kinds of command:
    - durable (retry = true): state changes.  While Redis is away they wait
      in a bounded buffer (STORE_BUFFER_MAX) and are sent again, in order,
      when the connection comes back; a command in flight when the
      connection broke is sent again too (every write the broker makes is
      idempotent).
    - fail-fast (retry = false): SUBMIT's write and reads.  While Redis is
      away the callback is called at once with reply NULL.

    If bm_store_command returns -1, the callback will never be called.
    The store reconnects with backoff (100 ms doubling to 5 s) and logs
    once per outage.  */
#ifndef BM_STORE_H
#define BM_STORE_H

#include <czmq.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>

typedef struct _bm_store_t bm_store_t;

//  Called with Redis's reply, or NULL when the command failed; the reply
//  is freed after the callback returns.
typedef void (bm_store_fn) (redisReply *reply, void *arg);
//  Called on each connection change (up = true when connected).
typedef void (bm_store_state_fn) (bool up, void *arg);

//  Parse a redis:// URL ("redis://[:password@]host[:port][/db]") and start
//  connecting on loop.  NULL if the URL is malformed.
bm_store_t *bm_store_new (zloop_t *loop, const char *url, size_t buffer_max);
void bm_store_destroy (bm_store_t **self_p);

void bm_store_set_state_fn (bm_store_t *self, bm_store_state_fn *fn, void *arg);
bool bm_store_up (bm_store_t *self);

//  Issue a command given as argv (binary-safe).
int bm_store_command (bm_store_t *self, bool retry, bm_store_fn *fn, void *arg,
                      int argc, const char **argv, const size_t *argvlen);

//  Commands waiting (buffered or in flight), for shutdown and metrics.
size_t bm_store_pending (bm_store_t *self);

#endif

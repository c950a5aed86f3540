/*  bm_store.h - the broker's Redis connection, asynchronous, on its zloop.

    hiredis's async API driven by the broker's own zloop (hiredis 0.14 has
    no adapter for it: the small one here adds and removes a zloop poller
    on the connection's fd).

    Writes are committed in groups, one group per loop turn: every write
    issued until bm_store_flush goes out in one buffer, each write with
    its own answer; the group counts as written (its callbacks get "OK")
    once every answer came and none was an error.
    The broker calls bm_store_flush at the end of each of its handlers
    (bm_store_push at the end of a turn of its ROUTER, which also writes
    the group to the socket at once, and between the items of a large
    batch, so that Redis works on the batch's first writes while the
    broker reads the rest); the store flushes after handling Redis's
    replies too.

    Two kinds of write:
    - durable (retry = true): state changes.  While Redis is away they wait
      in a bounded buffer (STORE_BUFFER_MAX) and are sent again, in order,
      when the connection comes back; a write in flight when the connection
      broke is sent again too (every write the broker makes is idempotent).
    - fail-fast (retry = false): while Redis is away the write is refused
      (-1) at once; lost in flight, its callback gets NULL.
    A durable write may also name a "kept" callback (bm_store_write_kept):
    it is told at once whenever its group was not surely applied (refused,
    lost with the connection, or never sent because the connection went),
    while the write itself stays kept and is sent again.  A SUBMIT uses it
    to answer store_unavailable at once instead of waiting for Redis.

    Queries (reads) are sent on their own, after the open group, and their
    callback gets Redis's reply.

    If a call returns -1, its callback will never be called.  The store
    reconnects with backoff (100 ms doubling to 5 s) and logs once per
    outage.  A Redis that keeps the connection open and stops answering
    counts as an outage too, once its silence passes a bound
    (bm_store_set_timeout); the next connection kills that one (CLIENT
    KILL ADDR) before it writes, so that what the old one had sent never
    runs after the writes sent again.  A host name is resolved off the loop (bm_resolve_zloop.h), each try
    given up on after BM_RESOLVE_WAIT_MS: the loop never waits for DNS.  A connection whose AUTH or SELECT Redis refuses (a database
    it does not have) is never used: it counts as an outage, logged as an
    ERROR naming the variable to fix (bm_redis_setup.h).  A write Redis refuses (an OOM error under maxmemory,
    MISCONF, READONLY) refuses its group: the store logs one ERROR for the
    episode, keeps the group's writes and every later group's, and sends
    them again, in order, on a new connection with backoff until a group
    is confirmed; meanwhile it is not writable, and the SUBMITs of those
    groups are told (their kept callbacks) as for a lost connection.  An
    error that sending again cannot cure (WRONGTYPE) fails that write
    alone: its callback gets the error reply, it is not sent again, and
    the store logs it (at most once a minute).  */
#ifndef BM_STORE_H
#define BM_STORE_H

#include <czmq.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>

typedef struct _bm_store_t bm_store_t;

//  Called with Redis's reply (for a write: the group's "OK"), or NULL when
//  the command failed; the reply is freed after the callback returns.
typedef void (bm_store_fn) (redisReply *reply, void *arg);
//  Called on each connection change (up = true when connected).
typedef void (bm_store_state_fn) (bool up, void *arg);

//  Parse a redis:// URL ("redis://[:password@]host[:port][/db]") and start
//  connecting on loop.  NULL if the URL is malformed.
//  sentinels (a host:port list, or NULL) and master_name: ask Redis
//  Sentinel where the master is at each connect (bm_sentinel.h); the URL
//  then gives only the password and db.  Groups then go as one script each
//  (as with fencing), so that a write the old master refuses (READONLY)
//  is seen: the group is kept and sent again to the new master.
bm_store_t *bm_store_new (zloop_t *loop, const char *url, const char *sentinels,
                          const char *master_name, size_t buffer_max);
void bm_store_destroy (bm_store_t **self_p);

void bm_store_set_state_fn (bm_store_t *self, bm_store_state_fn *fn, void *arg);
//  Bound on Redis's silence (REDIS_TIMEOUT_MS): once the oldest command
//  unanswered (a group, a read, the connect, AUTH, SELECT, PING) has
//  waited timeout_ms with nothing read from Redis, the store logs an ERROR
//  once per outage, goes down and drops the connection as a lost one
//  (writes kept and sent again after the reconnect).  0: no bound (the
//  default).
void bm_store_set_timeout (bm_store_t *self, int timeout_ms);
//  Connected (PING answered PONG).
bool bm_store_up (bm_store_t *self);
//  Connected, not fenced, and no sign that writes would wait: false from
//  a lost connection or a refused group (READONLY from a demoted master,
//  NOREPLICAS, a WAIT no replica confirmed: a Sentinel switch) until a
//  group is confirmed again (or, reconnected, there is nothing to resend).
//  A new SUBMIT is refused store_unavailable while it is false.
bool bm_store_writable (bm_store_t *self);

//  Add a write (argv, binary-safe) to the open group.  fn may be NULL.
int bm_store_write (bm_store_t *self, bool retry, bm_store_fn *fn, void *arg,
                    int argc, const char **argv, const size_t *argvlen);

//  Called (with the write's arg) each time a durable write is kept to be
//  sent again: its group was refused or lost, or not sent as the
//  connection went.  It may issue writes; they go after the kept one.
typedef void (bm_store_kept_fn) (void *arg);

//  A durable write (as bm_store_write with retry true) that also calls
//  kept (may be NULL) each time it is kept to be sent again; fn is still
//  called once, when it lands or is finally dropped.
int bm_store_write_kept (bm_store_t *self, bm_store_fn *fn, bm_store_kept_fn *kept, void *arg,
                         int argc, const char **argv, const size_t *argvlen);

//  Send a read now (after the open group); fail-fast.
int bm_store_query (bm_store_t *self, bm_store_fn *fn, void *arg,
                    int argc, const char **argv, const size_t *argvlen);

//  The same, but sent also while writes Redis refused wait for their
//  backoff (bm_store_query fails then): for a command that reads or
//  writes none of the groups' keys (the lease), so a full Redis does not
//  keep it from Redis.
int bm_store_query_ahead (bm_store_t *self, bm_store_fn *fn, void *arg,
                          int argc, const char **argv, const size_t *argvlen);

//  Send the open group, if any.  Calls the flush hook first.
void bm_store_flush (bm_store_t *self);

//  Send the open group (bm_store_flush) once it holds at least `writes`
//  writes (0: any), and write what the connection has queued to its socket
//  at once instead of at the loop's next poll, so that Redis runs a group
//  while the broker goes on with the rest of a message or a turn.  Not
//  from within a reply callback (it only flushes there).  A failed write
//  is left to the loop, which sees the socket's error and reconnects.
void bm_store_push (bm_store_t *self, size_t writes);

//  A hook run at the start of every flush, so the owner can add the writes
//  it batches over a loop turn (the broker's live-set ZADD/ZREM).
typedef void (bm_store_flush_fn) (void *arg);
void bm_store_set_flush_fn (bm_store_t *self, bm_store_flush_fn *fn, void *arg);

//  Fencing (brokers in HA mode): from now on each group is sent as one
//  EVAL of a script that runs the group's writes only while the string at
//  key equals epoch (the lease's epoch counter, bm_lease.h), else runs
//  none and answers FENCED.  A fenced store refuses every later write
//  (-1), fails the writes it holds (their callbacks get NULL) and calls
//  fn once.  The price: one script call per group instead of plain
//  pipelined commands (bench: ./botmesh bench, "fencing").
typedef void (bm_store_fenced_fn) (void *arg);
void bm_store_set_fence (bm_store_t *self, const char *key, const char *epoch,
                         bm_store_fenced_fn *fn, void *arg);
bool bm_store_fenced (bm_store_t *self);

//  The owner gave its lease up (a leader leaving on SIGTERM): from now on
//  every write is refused (-1) and counted, as after a fence; what was
//  written before still goes and is answered, and reads still go.  No
//  write made after the lease left could be confirmed: the next leader's
//  fence refuses it, or it would land beside that leader's own.
void bm_store_close_writes (bm_store_t *self);
//  Writes refused since bm_store_close_writes.
size_t bm_store_closed_refused (bm_store_t *self);

//  While Redis refuses the broker's writes (a group answered with an error,
//  none confirmed since, or a PING answered MISCONF: it cannot persist):
//  Redis's error, such as "OOM command not allowed when used memory >
//  'maxmemory'."; else NULL.
const char *bm_store_refusal (bm_store_t *self);
//  Error replies to writes since the start: one per write refused (a
//  fenced or Sentinel-mode group, refused as a whole, counts one).
uint64_t bm_store_write_errors (bm_store_t *self);
//  Durable writes that will never land, since the start: dropped because
//  the buffer was full, or refused by Redis for good.  A caller that wrote
//  something only once (not with every later write of its key) writes it
//  again when this count has grown since.
uint64_t bm_store_drops (bm_store_t *self);

//  Writes waiting (buffered, grouped or in flight), for shutdown and
//  metrics.
size_t bm_store_pending (bm_store_t *self);
//  Writes sent to Redis and not yet answered.
size_t bm_store_in_flight (bm_store_t *self);

#endif

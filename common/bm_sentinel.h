/*  bm_sentinel.h - where the Redis master is, according to Redis Sentinel.

    REDIS_SENTINELS names the sentinels ("host:port,host:port") and
    REDIS_MASTER_NAME the master they watch (default "mymaster").  A
    service asks them in turn, SENTINEL get-master-addr-by-name, each with
    a short timeout; the first that answers says where the master is.  It
    asks again whenever its connection to Redis is lost or refused (a
    failover: the old master is gone, or is a replica now and answers
    READONLY), so it follows +switch-master within one reconnect.  */
#ifndef BM_SENTINEL_H
#define BM_SENTINEL_H

#include <stdbool.h>
#include <stddef.h>
#include <czmq.h>

#define BM_SENTINEL_DEFAULT_MASTER  "mymaster"

//  Split "host:port" into host (at most host_size - 1 bytes) and *port.
//  0, or -1 if it is not such a pair.
int bm_sentinel_parse_addr (const char *addr, size_t len, char *host, size_t host_size, int *port);

//  True when sentinels is a valid list of host:port pairs.
bool bm_sentinel_list_valid (const char *sentinels);

//  Ask the sentinels (in order) where the master called name is: 0 with
//  host and *port set, or -1 when none answered with an address (why goes
//  to why, one line).  Blocks for up to timeout_ms per sentinel to
//  connect, and as long again for its answer: for start-up checks and
//  threads of their own; an event loop asks with bm_sentinel_lookup.
int bm_sentinel_master (const char *sentinels, const char *name, int timeout_ms,
                        char *host, size_t host_size, int *port, char *why, size_t why_size);

//  Read sentinel's (host:port, for why) answer to SENTINEL
//  get-master-addr-by-name name: 0 with host and *port set, or -1 with why
//  (one line).  reply may be NULL (no answer).  No I/O.
struct redisReply;
int bm_sentinel_parse_master (const struct redisReply *reply, const char *sentinel,
                              const char *name, char *host, size_t host_size, int *port,
                              char *why, size_t why_size);

//  The end of a lookup, on its loop: rc 0 with the master's host and port,
//  or -1 with why (one line: the last sentinel's reason, as
//  bm_sentinel_master says it) when no sentinel named one.
typedef void (bm_sentinel_found_fn) (int rc, const char *host, int port, const char *why,
                                     void *arg);

typedef struct _bm_sentinel_lookup_t bm_sentinel_lookup_t;

//  bm_sentinel_master's question, asked on loop without ever blocking it:
//  the sentinels (a valid list, copied) in order, each given timeout_ms to
//  connect and answer (a host name is resolved first, on a thread of its
//  own, within 3 s); the first that names a master ends the lookup.
//  Each lookup calls fn once.  NULL when sentinels is not such a list.
bm_sentinel_lookup_t *bm_sentinel_lookup_new (zloop_t *loop, const char *sentinels,
                                              const char *name, int timeout_ms,
                                              bm_sentinel_found_fn *fn, void *arg);
//  Drops a lookup in progress (its fn is not called).
void bm_sentinel_lookup_destroy (bm_sentinel_lookup_t **self_p);

//  Start a lookup from the first sentinel; one in progress is dropped (its
//  fn is not called) and the question asked again.  fn never runs before
//  this returns (it runs from a timer of the lookup's, even when every
//  sentinel refused the connect at once); it may start the next lookup or
//  destroy this one.
void bm_sentinel_lookup_start (bm_sentinel_lookup_t *self);

//  True while a lookup is in progress.
bool bm_sentinel_lookup_busy (bm_sentinel_lookup_t *self);

//  Self test (run by bm_sentinel_test).
void bm_sentinel_lookup_test (bool verbose);

//  A +switch-master message: "<name> <old-ip> <old-port> <new-ip> <new-port>".
typedef struct {
    char name [256];
    char old_host [256];
    int old_port;
    char new_host [256];
    int new_port;
} bm_sentinel_switch_t;

//  Parse such a message (len bytes): 0, or -1 if it is not one.
int bm_sentinel_parse_switch (const char *msg, size_t len, bm_sentinel_switch_t *out);

//  Called on the watch's loop for each well-formed +switch-master message
//  for the master watched (others are logged at DEBUG and dropped).
typedef void (bm_sentinel_switch_fn) (const bm_sentinel_switch_t *sw, void *arg);

typedef struct _bm_sentinel_watch_t bm_sentinel_watch_t;

//  Subscribe to +switch-master on the sentinels (a valid list, copied), on
//  loop; fn is told of each switch of the master called name.
//  Never blocks: connects asynchronously (a host name is resolved first,
//  on a thread of its own, within 3 s), and moves to the next sentinel
//  with backoff (100 ms doubling to 5 s) when one is lost or does not
//  answer within a second.
bm_sentinel_watch_t *bm_sentinel_watch_new (zloop_t *loop, const char *sentinels, const char *name,
                                            bm_sentinel_switch_fn *fn, void *arg);
void bm_sentinel_watch_destroy (bm_sentinel_watch_t **self_p);

//  True while subscribed on some sentinel.
bool bm_sentinel_watch_subscribed (bm_sentinel_watch_t *self);

//  Self test (parsing, lookups of sentinels that refuse or never answer;
//  a real sentinel is tested in tests/chaos and tests/broker).
void bm_sentinel_test (bool verbose);

#endif

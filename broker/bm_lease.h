/*  bm_lease.h - broker leadership: a lease in Redis with an increasing epoch.

    Brokers that share one Redis (BROKER_HA=redis) compete for one key,
    <prefix>{bm}:leader, whose value is "<epoch> <owner> <endpoint>" and
    whose TTL is the lease (BROKER_LEASE_MS).  Whoever sets it leads; the
    others are standbys.  Each acquisition takes a new epoch from the
    counter <prefix>{bm}:epoch (INCR, never reset), so that an epoch names
    one reign: the broker's durable writes are conditional on the counter
    still holding its epoch (fencing, bm_store_set_fence).

    Three Lua scripts, each one atomic step:
      acquire/renew  no lease: take it (a new epoch; or the epoch we held,
                     if the lease lapsed and nobody took it meanwhile);
                     ours: extend its TTL; another's: report its epoch and
                     endpoint;
      release        delete the lease if it is still ours (graceful
                     shutdown: a standby takes over at once).

    The lease is driven by the owner's loop (bm_lease_tick every 100 ms or
    so) over the owner's bm_store connection (queries, one in flight).  A
    leader renews every quarter lease and counts its lease valid until
    the time it SENT the last confirmed renewal plus 90 % of the lease: the
    key in Redis lives at least until then, so once a leader's own clock
    says "lost", no standby can have taken over earlier.  */
#ifndef BM_LEASE_H
#define BM_LEASE_H

#include "bm_store.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct _bm_lease_t bm_lease_t;

//  Called when the lease is won (held = true) or lost (held = false: a
//  renewal found another owner or was not confirmed in time).
typedef void (bm_lease_change_fn) (bool held, void *arg);

//  A lease on store (borrowed; destroy the store first, then the lease),
//  keys under prefix, for owner (unique per process) which serves at
//  endpoint (shown to standbys' peers).  lease_ms >= 100.
bm_lease_t *bm_lease_new (bm_store_t *store, const char *prefix, const char *owner,
                          const char *endpoint, int64_t lease_ms);
void bm_lease_destroy (bm_lease_t **self_p);

void bm_lease_set_change_fn (bm_lease_t *self, bm_lease_change_fn *fn, void *arg);

//  Send the acquire or renew that is due, and notice a lease that ran out
//  on this process's clock.  now: monotonic ms.
void bm_lease_tick (bm_lease_t *self, int64_t now);

//  True while this process leads (and its lease has not run out locally).
bool bm_lease_held (bm_lease_t *self, int64_t now);

//  The epoch of our reign, 0 when not leading; as text for Redis.
int64_t bm_lease_epoch (bm_lease_t *self);
const char *bm_lease_epoch_text (bm_lease_t *self);

//  The counter's key (<prefix>{bm}:epoch), for fencing.
const char *bm_lease_epoch_key (bm_lease_t *self);

//  Redis under Sentinel: an acquisition or renewal counts only once a
//  replica has it (WAIT 1, at most a quarter lease), so that a failover of
//  Redis to that replica neither loses the epoch counter's increment (a
//  second reign with the same epoch) nor the lease (a second leader).
void bm_lease_set_replicated (bm_lease_t *self, bool replicated);

//  Change the endpoint this process announces (once its port is bound).
void bm_lease_set_endpoint (bm_lease_t *self, const char *endpoint);

//  The leader's endpoint as last seen ("" when unknown).
const char *bm_lease_leader (bm_lease_t *self);

//  Give the lease up if held (graceful shutdown).  Stops renewing; the
//  lease no longer counts as held.  bm_lease_busy says when Redis answered.
void bm_lease_release (bm_lease_t *self);

//  A request is in flight.
bool bm_lease_busy (bm_lease_t *self);

//  Self-test against a real redis-server (started on an ephemeral port).
void bm_lease_test (bool verbose);

#endif

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

//  Called, while not holding the lease, with another's lease value each
//  time Redis answers with one (it may call bm_lease_take_stale and
//  bm_lease_ask_now).
typedef void (bm_lease_rival_fn) (const char *value, void *arg);
void bm_lease_set_rival_fn (bm_lease_t *self, bm_lease_rival_fn *fn, void *arg);

//  Send the acquire or renew that is due, and notice a lease that ran out
//  on this process's clock.  now: monotonic ms.
void bm_lease_tick (bm_lease_t *self, int64_t now);

//  The same, asking Redis at once if no request is in flight (the store
//  just connected: no need to wait for the next turn).
void bm_lease_ask_now (bm_lease_t *self, int64_t now);

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

//  A broker without BROKER_HA: it takes the lease so that no other broker
//  leads beside it, but a lapse of its lease on its own clock (Redis away
//  longer than a lease) does not end its reign: the next renewal takes the
//  same epoch again if nobody took the lease meanwhile; if Redis lost the
//  counter (below our epoch, no lease), a new epoch.  The reign ends
//  (change_fn, held = false) only when a renewal finds the lease or the
//  counter taken by another broker.
void bm_lease_set_solo (bm_lease_t *self, bool solo);

//  Not holding the lease: true once another broker's lease was seen
//  renewed: its PTTL in Redis reached past the time it was to run out when
//  first seen (whatever lease length its owner uses), or it has no TTL (it
//  never runs out).  A lease left by a broker that died runs out instead,
//  and is then taken.  bm_lease_leader names the other broker,
//  bm_lease_rival_epoch its epoch ("" when none was seen),
//  bm_lease_rival_ttl its PTTL as last seen (ms, -1: no TTL).
bool bm_lease_rival_alive (bm_lease_t *self);
const char *bm_lease_rival_epoch (bm_lease_t *self);
int64_t bm_lease_rival_ttl (bm_lease_t *self);

//  Redis's error (its first sentence) while it refuses the acquire or
//  renewal (MISCONF: it cannot persist, READONLY), "" otherwise.
const char *bm_lease_refused (bm_lease_t *self);

//  Not holding the lease: another broker's lease value as last seen
//  ("<epoch> <owner> <endpoint>"), "" when none.
const char *bm_lease_rival_value (bm_lease_t *self);

//  The owner of the lease value (as bm_lease_rival_value gave it) is known
//  to be gone: the next acquire deletes the lease if it still holds
//  exactly that value, and takes it (a new epoch), without waiting for its
//  TTL.  Only for an owner that cannot be alive (bm_broker_ha.c: a process
//  of this host and pid namespace that no longer exists).
void bm_lease_take_stale (bm_lease_t *self, const char *value);

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

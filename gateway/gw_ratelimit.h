/*  gw_ratelimit.h - token buckets per client key, safe from many threads.

    Each key (an API key's index, or a client address when keys are off)
    has a bucket of `burst` tokens refilled at `rate` tokens a second; a
    request takes one token or is refused with the seconds to wait.  The
    table is split into shards with a mutex each, so handler threads rarely
    wait on each other, and holds at most max_keys buckets: when a shard is
    full, buckets that have refilled completely are dropped first (losing
    them changes nothing), then the least recently used one.  The clock is a
    parameter, so tests need no sleeping.  */
#ifndef GW_RATELIMIT_H
#define GW_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _gw_ratelimit_t gw_ratelimit_t;

//  rate > 0 tokens a second, burst >= 1.  NULL on bad arguments.
gw_ratelimit_t *gw_ratelimit_new (double rate, double burst, size_t max_keys);
void gw_ratelimit_destroy (gw_ratelimit_t **self_p);

//  Take a token from key's bucket at time now_ms (monotonic).  Returns
//  true if allowed; otherwise false and *retry_after_s (>= 1) is how many
//  whole seconds until a token is back (for Retry-After).
bool gw_ratelimit_take (gw_ratelimit_t *self, const char *key, int64_t now_ms,
                        int *retry_after_s);

//  Number of buckets held (tests).
size_t gw_ratelimit_size (gw_ratelimit_t *self);

void gw_ratelimit_test (bool verbose);

#endif

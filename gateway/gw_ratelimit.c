/*  gw_ratelimit.c - token buckets per client key, safe from many threads.  */
#include "gw_ratelimit.h"
#include "bm_selftest.h"

#include <czmq.h>
#include <math.h>
#include <pthread.h>

//  64 shards: with 128 handler threads on 2 cores, two requests meet on one
//  mutex rarely, and each shard stays small enough to scan when full.
#define GW_RATELIMIT_SHARDS 64

typedef struct {
    double tokens;              //  Tokens left (fractional while refilling)
    int64_t last_ms;            //  When tokens was last brought up to date
} s_bucket_t;

typedef struct {
    pthread_mutex_t lock;       //  Guards buckets
    zhash_t *buckets;           //  key -> s_bucket_t (owned through freefn)
} s_shard_t;

struct _gw_ratelimit_t {
    double rate;                //  Tokens added per second
    double burst;               //  Bucket size
    size_t shard_cap;           //  Most buckets one shard holds
    s_shard_t shards [GW_RATELIMIT_SHARDS];
};

gw_ratelimit_t *
gw_ratelimit_new (double rate, double burst, size_t max_keys)
{
    if (!(rate > 0) || !(burst >= 1) || max_keys == 0)
        return NULL;
    gw_ratelimit_t *self = (gw_ratelimit_t *) zmalloc (sizeof (gw_ratelimit_t));
    self->rate = rate;
    self->burst = burst;
    self->shard_cap = (max_keys + GW_RATELIMIT_SHARDS - 1) / GW_RATELIMIT_SHARDS;
    for (int i = 0; i < GW_RATELIMIT_SHARDS; i++) {
        pthread_mutex_init (&self->shards [i].lock, NULL);
        self->shards [i].buckets = zhash_new ();
    }
    return self;
}

void
gw_ratelimit_destroy (gw_ratelimit_t **self_p)
{
    if (*self_p) {
        gw_ratelimit_t *self = *self_p;
        for (int i = 0; i < GW_RATELIMIT_SHARDS; i++) {
            zhash_destroy (&self->shards [i].buckets);
            pthread_mutex_destroy (&self->shards [i].lock);
        }
        free (self);
        *self_p = NULL;
    }
}

//  Bring a bucket's tokens up to now.
static void
s_refill (gw_ratelimit_t *self, s_bucket_t *bucket, int64_t now_ms)
{
    if (now_ms > bucket->last_ms) {
        bucket->tokens += (double) (now_ms - bucket->last_ms) * self->rate / 1000.0;
        if (bucket->tokens > self->burst)
            bucket->tokens = self->burst;
        bucket->last_ms = now_ms;
    }
}

//  Make room in a full shard: drop every bucket that is full again (a new
//  bucket would be the same), or else the one used least recently.
static void
s_evict (gw_ratelimit_t *self, s_shard_t *shard, int64_t now_ms)
{
    zlist_t *keys = zhash_keys (shard->buckets);
    const char *oldest_key = NULL;
    int64_t oldest_ms = INT64_MAX;
    size_t dropped = 0;
    for (const char *key = (const char *) zlist_first (keys); key;
         key = (const char *) zlist_next (keys)) {
        s_bucket_t *bucket = (s_bucket_t *) zhash_lookup (shard->buckets, key);
        s_refill (self, bucket, now_ms);
        if (bucket->tokens >= self->burst) {
            zhash_delete (shard->buckets, key);
            dropped++;
        }
        else
        if (bucket->last_ms < oldest_ms) {
            oldest_ms = bucket->last_ms;
            oldest_key = key;
        }
    }
    if (dropped == 0 && oldest_key)
        zhash_delete (shard->buckets, oldest_key);
    zlist_destroy (&keys);
}

bool
gw_ratelimit_take (gw_ratelimit_t *self, const char *key, int64_t now_ms, int *retry_after_s)
{
    //  FNV-1a picks the shard; zhash has its own hash inside the shard.
    uint32_t hash = 2166136261u;
    for (const unsigned char *p = (const unsigned char *) key; *p; p++)
        hash = (hash ^ *p) * 16777619u;
    s_shard_t *shard = &self->shards [hash % GW_RATELIMIT_SHARDS];

    pthread_mutex_lock (&shard->lock);
    s_bucket_t *bucket = (s_bucket_t *) zhash_lookup (shard->buckets, key);
    if (!bucket) {
        if (zhash_size (shard->buckets) >= self->shard_cap)
            s_evict (self, shard, now_ms);
        bucket = (s_bucket_t *) zmalloc (sizeof (s_bucket_t));
        bucket->tokens = self->burst;
        bucket->last_ms = now_ms;
        zhash_insert (shard->buckets, key, bucket);
        zhash_freefn (shard->buckets, key, free);
    }
    s_refill (self, bucket, now_ms);
    bool allowed = bucket->tokens >= 1.0;
    if (allowed)
        bucket->tokens -= 1.0;
    else {
        double wait = ceil ((1.0 - bucket->tokens) / self->rate);
        *retry_after_s = wait < 1 ? 1 : wait > 86400 ? 86400 : (int) wait;
    }
    pthread_mutex_unlock (&shard->lock);
    return allowed;
}

size_t
gw_ratelimit_size (gw_ratelimit_t *self)
{
    size_t size = 0;
    for (int i = 0; i < GW_RATELIMIT_SHARDS; i++) {
        pthread_mutex_lock (&self->shards [i].lock);
        size += zhash_size (self->shards [i].buckets);
        pthread_mutex_unlock (&self->shards [i].lock);
    }
    return size;
}

//  --------------------------------------------------------------------------
//  Self test

#define CHECK(cond) BM_CHECK (cond)

void
gw_ratelimit_test (bool verbose)
{
    if (verbose)
        printf (" * gw_ratelimit: ");
    CHECK (gw_ratelimit_new (0, 1, 10) == NULL);
    CHECK (gw_ratelimit_new (1, 0.5, 10) == NULL);

    //  2 per second, burst 3.
    gw_ratelimit_t *limit = gw_ratelimit_new (2, 3, 1000);
    CHECK (limit);
    int retry = 0;
    int64_t now = 1000000;
    CHECK (gw_ratelimit_take (limit, "a", now, &retry));
    CHECK (gw_ratelimit_take (limit, "a", now, &retry));
    CHECK (gw_ratelimit_take (limit, "a", now, &retry));
    CHECK (!gw_ratelimit_take (limit, "a", now, &retry) && retry == 1);
    CHECK (gw_ratelimit_take (limit, "b", now, &retry));        //  Other key, own bucket
    CHECK (!gw_ratelimit_take (limit, "a", now + 499, &retry));
    CHECK (gw_ratelimit_take (limit, "a", now + 500, &retry));  //  One token back
    CHECK (!gw_ratelimit_take (limit, "a", now + 500, &retry));
    CHECK (gw_ratelimit_take (limit, "a", now + 100000, &retry));   //  Refilled, capped at burst
    CHECK (gw_ratelimit_take (limit, "a", now + 100000, &retry));
    CHECK (gw_ratelimit_take (limit, "a", now + 100000, &retry));
    CHECK (!gw_ratelimit_take (limit, "a", now + 100000, &retry));
    gw_ratelimit_destroy (&limit);
    CHECK (limit == NULL);

    //  Slow rate: Retry-After in whole seconds.
    limit = gw_ratelimit_new (0.1, 1, 1000);
    CHECK (gw_ratelimit_take (limit, "k", 0, &retry));
    CHECK (!gw_ratelimit_take (limit, "k", 0, &retry) && retry == 10);
    gw_ratelimit_destroy (&limit);

    //  The table stays bounded whatever keys arrive.
    limit = gw_ratelimit_new (1, 1, 64);
    char key [32];
    for (int i = 0; i < 10000; i++) {
        snprintf (key, sizeof key, "10.0.%d.%d", i / 256, i % 256);
        gw_ratelimit_take (limit, key, i, &retry);
    }
    CHECK (gw_ratelimit_size (limit) <= 64);
    gw_ratelimit_destroy (&limit);

    if (verbose)
        printf ("OK\n");
}

/*  wh_backoff.c - how long to wait before the next delivery attempt.  */
#include "wh_backoff.h"
#include "bm_selftest.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/random.h>

struct _wh_backoff_t {
    int64_t base_ms;            //  Ceiling of the first retry
    int64_t cap_ms;             //  Largest delay ever waited
    wh_jitter_t jitter;         //  How the delay is drawn below the ceiling
    uint64_t state;             //  xorshift64* state, never 0
};

wh_backoff_t *
wh_backoff_new (int64_t base_ms, int64_t cap_ms, wh_jitter_t jitter)
{
    wh_backoff_t *self = (wh_backoff_t *) calloc (1, sizeof (wh_backoff_t));
    if (!self)
        return NULL;
    self->base_ms = base_ms < 0? 0: base_ms;
    self->cap_ms = cap_ms < 0? 0: cap_ms;
    self->jitter = jitter;
    //  Jitter needs no cryptographic strength, only different seeds in
    //  different processes so that two managers do not retry in step.
    if (getrandom (&self->state, sizeof self->state, GRND_NONBLOCK) != sizeof self->state)
        self->state = (uint64_t) time (NULL) ^ ((uint64_t) getpid () << 32);
    if (self->state == 0)
        self->state = 0x9E3779B97F4A7C15ULL;
    return self;
}

void
wh_backoff_destroy (wh_backoff_t **self_p)
{
    if (*self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

//  xorshift64* (Vigna): fast, good enough for jitter.
static uint64_t
s_random (wh_backoff_t *self)
{
    uint64_t x = self->state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    self->state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

int64_t
wh_backoff_ceiling (int64_t base_ms, int64_t cap_ms, int attempt)
{
    if (attempt < 1 || base_ms <= 0 || cap_ms <= 0)
        return 0;
    int64_t ceiling = base_ms;
    for (int i = 1; i < attempt && ceiling < cap_ms; i++)
        ceiling = ceiling > cap_ms / 2? cap_ms: ceiling * 2;    //  No overflow
    return ceiling < cap_ms? ceiling: cap_ms;
}

int64_t
wh_backoff_compute (int64_t base_ms, int64_t cap_ms, wh_jitter_t jitter,
                    int attempt, int64_t retry_after_ms, uint64_t random)
{
    if (retry_after_ms >= 0)
        return retry_after_ms < cap_ms? retry_after_ms: (cap_ms < 0? 0: cap_ms);
    int64_t ceiling = wh_backoff_ceiling (base_ms, cap_ms, attempt);
    switch (jitter) {
        case WH_JITTER_NONE:
            return ceiling;
        case WH_JITTER_EQUAL:
            return ceiling / 2 + (int64_t) (random % (uint64_t) (ceiling / 2 + 1));
        case WH_JITTER_FULL:
        default:
            return (int64_t) (random % (uint64_t) (ceiling + 1));
    }
}

int64_t
wh_backoff_delay (wh_backoff_t *self, int attempt, int64_t retry_after_ms)
{
    return wh_backoff_compute (self->base_ms, self->cap_ms, self->jitter,
                               attempt, retry_after_ms, s_random (self));
}

int
wh_jitter_parse (const char *text, wh_jitter_t *jitter)
{
    if (!text || !*text || !strcasecmp (text, "full"))
        *jitter = WH_JITTER_FULL;
    else
    if (!strcasecmp (text, "equal"))
        *jitter = WH_JITTER_EQUAL;
    else
    if (!strcasecmp (text, "none"))
        *jitter = WH_JITTER_NONE;
    else
        return -1;
    return 0;
}

const char *
wh_jitter_name (wh_jitter_t jitter)
{
    return jitter == WH_JITTER_NONE? "none": jitter == WH_JITTER_EQUAL? "equal": "full";
}

//  --------------------------------------------------------------------------
//  Self test

void
wh_backoff_test (bool verbose)
{
    printf (" * wh_backoff: ");
    //  Ceilings double from base and stop at cap.
    BM_CHECK (wh_backoff_ceiling (1000, 60000, 0) == 0);
    BM_CHECK (wh_backoff_ceiling (1000, 60000, 1) == 1000);
    BM_CHECK (wh_backoff_ceiling (1000, 60000, 2) == 2000);
    BM_CHECK (wh_backoff_ceiling (1000, 60000, 5) == 16000);
    BM_CHECK (wh_backoff_ceiling (1000, 60000, 7) == 60000);
    BM_CHECK (wh_backoff_ceiling (1000, 60000, 1000000) == 60000);
    BM_CHECK (wh_backoff_ceiling (INT64_MAX / 2, INT64_MAX, 64) == INT64_MAX);
    BM_CHECK (wh_backoff_ceiling (1000, 500, 1) == 500);

    //  No jitter: the ceiling.
    BM_CHECK (wh_backoff_compute (100, 60000, WH_JITTER_NONE, 3, -1, 12345) == 400);
    //  Full jitter covers [0, ceiling], both ends included.
    BM_CHECK (wh_backoff_compute (1000, 60000, WH_JITTER_FULL, 1, -1, 0) == 0);
    BM_CHECK (wh_backoff_compute (1000, 60000, WH_JITTER_FULL, 1, -1, 1000) == 1000);
    BM_CHECK (wh_backoff_compute (1000, 60000, WH_JITTER_FULL, 1, -1, 1001) == 0);
    //  Equal jitter stays in [ceiling/2, ceiling].
    BM_CHECK (wh_backoff_compute (1000, 60000, WH_JITTER_EQUAL, 2, -1, 0) == 1000);
    BM_CHECK (wh_backoff_compute (1000, 60000, WH_JITTER_EQUAL, 2, -1, 1000) == 2000);
    //  Retry-After overrides, up to the cap, whatever the jitter.
    BM_CHECK (wh_backoff_compute (1000, 60000, WH_JITTER_FULL, 1, 2000, 0) == 2000);
    BM_CHECK (wh_backoff_compute (1000, 60000, WH_JITTER_NONE, 9, 0, 0) == 0);
    BM_CHECK (wh_backoff_compute (1000, 60000, WH_JITTER_FULL, 1, 3600000, 7) == 60000);
    //  Zero base: retry at once.
    BM_CHECK (wh_backoff_compute (0, 60000, WH_JITTER_FULL, 3, -1, 99) == 0);

    //  The generator: every draw within the ceiling, and spread over it
    //  (10,000 draws in [0, 1000]: the mean is near 500, both halves hit).
    wh_backoff_t *backoff = wh_backoff_new (1000, 60000, WH_JITTER_FULL);
    BM_CHECK (backoff);
    int64_t sum = 0, low = 0, high = 0;
    for (int i = 0; i < 10000; i++) {
        int64_t delay = wh_backoff_delay (backoff, 1, -1);
        BM_CHECK (delay >= 0 && delay <= 1000);
        sum += delay;
        low += delay < 100;
        high += delay > 900;
    }
    if (verbose)
        printf ("mean %lld, <100: %lld, >900: %lld ", (long long) (sum / 10000),
                (long long) low, (long long) high);
    BM_CHECK (sum / 10000 > 450 && sum / 10000 < 550);
    BM_CHECK (low > 500 && high > 500);
    for (int attempt = 1; attempt < 40; attempt++) {
        int64_t delay = wh_backoff_delay (backoff, attempt, -1);
        BM_CHECK (delay >= 0 && delay <= wh_backoff_ceiling (1000, 60000, attempt));
    }
    wh_backoff_destroy (&backoff);
    wh_backoff_destroy (&backoff);
    BM_CHECK (backoff == NULL);

    wh_jitter_t jitter;
    BM_CHECK (wh_jitter_parse ("none", &jitter) == 0 && jitter == WH_JITTER_NONE);
    BM_CHECK (wh_jitter_parse ("FULL", &jitter) == 0 && jitter == WH_JITTER_FULL);
    BM_CHECK (wh_jitter_parse ("bogus", &jitter) == -1);
    printf ("OK\n");
}

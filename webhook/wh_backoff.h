/*  wh_backoff.h - how long to wait before the next delivery attempt.

    Exponential backoff with jitter (AWS Architecture Blog, "Exponential
    Backoff And Jitter", 2015).  After attempt n (1-based) failed:

        ceiling = min (cap, base * 2^(n-1))
        full    : delay = random (0, ceiling)              (the default)
        equal   : delay = ceiling / 2 + random (0, ceiling / 2)
        none    : delay = ceiling

    A Retry-After from the receiver replaces the computed delay, up to cap.
    Full jitter spreads the retries of many deliveries that failed at the
    same moment (a receiver that came back up) instead of hitting it in
    waves; "none" exists for deterministic tests and debugging.  */
#ifndef WH_BACKOFF_H
#define WH_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    WH_JITTER_FULL = 0,
    WH_JITTER_EQUAL = 1,
    WH_JITTER_NONE = 2
} wh_jitter_t;

typedef struct _wh_backoff_t wh_backoff_t;

//  A policy with its own random generator (seeded from the kernel).
wh_backoff_t *wh_backoff_new (int64_t base_ms, int64_t cap_ms, wh_jitter_t jitter);
void wh_backoff_destroy (wh_backoff_t **self_p);

//  The delay in ms after attempt number attempt (>= 1) failed.
//  retry_after_ms is the receiver's Retry-After, or -1 when it sent none.
int64_t wh_backoff_delay (wh_backoff_t *self, int attempt, int64_t retry_after_ms);

//  The same as a pure function of its inputs (random is any 64-bit value).
int64_t wh_backoff_compute (int64_t base_ms, int64_t cap_ms, wh_jitter_t jitter,
                            int attempt, int64_t retry_after_ms, uint64_t random);

//  min (cap, base * 2^(attempt-1)) without overflow; 0 if attempt < 1.
int64_t wh_backoff_ceiling (int64_t base_ms, int64_t cap_ms, int attempt);

//  Parse "full", "equal" or "none"; 0 or -1.
int wh_jitter_parse (const char *text, wh_jitter_t *jitter);
const char *wh_jitter_name (wh_jitter_t jitter);

void wh_backoff_test (bool verbose);

#endif

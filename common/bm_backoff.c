/*  bm_backoff.c - the wait between two runs of a job whose bot failed.  */
#include "bm_backoff.h"
#include "bm_selftest.h"

#include <stdio.h>
#include <string.h>

int
bm_backoff_set (bm_backoff_t *self, const char *type, size_t type_len, int64_t delay_ms,
                bool jitter, char *error, size_t error_size)
{
    if (!type || type_len == 0 || (type_len == 11 && memcmp (type, "exponential", 11) == 0))
        self->type = BM_BACKOFF_EXPONENTIAL;
    else
    if (type_len == 5 && memcmp (type, "fixed", 5) == 0)
        self->type = BM_BACKOFF_FIXED;
    else {
        snprintf (error, error_size, "backoff.type must be \"exponential\" or \"fixed\"");
        return -1;
    }
    if (delay_ms < 0 || delay_ms > BM_BACKOFF_MAX_MS) {
        snprintf (error, error_size, "backoff.delayMs must be an integer from 0 to %lld",
                  (long long) BM_BACKOFF_MAX_MS);
        return -1;
    }
    self->delay_ms = delay_ms;
    self->jitter = jitter;
    return 0;
}

const char *
bm_backoff_type_name (bm_backoff_type_t type)
{
    return type == BM_BACKOFF_FIXED ? "fixed" : "exponential";
}

int64_t
bm_backoff_delay (const bm_backoff_t *self, int64_t failed_runs, uint64_t random)
{
    int64_t delay = self->delay_ms;
    if (self->type == BM_BACKOFF_EXPONENTIAL)
        //  Doubling stops at the cap: no overflow for any run count.
        for (int64_t n = 1; n < failed_runs && delay < BM_BACKOFF_MAX_MS; n++)
            delay *= 2;
    if (delay > BM_BACKOFF_MAX_MS)
        delay = BM_BACKOFF_MAX_MS;
    if (self->jitter && delay > 0)
        delay = (int64_t) (random % (uint64_t) (delay + 1));
    return delay;
}

void
bm_backoff_test (bool verbose)
{
    (void) verbose;
    char error [128];
    bm_backoff_t b;
    //  The original system's policy: 2 s, then 4 s, then 8 s.
    BM_CHECK (bm_backoff_set (&b, NULL, 0, BM_BACKOFF_DEFAULT_MS, false, error, sizeof error) == 0);
    BM_CHECK (b.type == BM_BACKOFF_EXPONENTIAL);
    BM_CHECK (bm_backoff_delay (&b, 1, 0) == 2000);
    BM_CHECK (bm_backoff_delay (&b, 2, 0) == 4000);
    BM_CHECK (bm_backoff_delay (&b, 3, 0) == 8000);
    //  Capped at a day, whatever the run count.
    BM_CHECK (bm_backoff_delay (&b, 40, 0) == BM_BACKOFF_MAX_MS);
    BM_CHECK (bm_backoff_delay (&b, INT64_MAX, 0) == BM_BACKOFF_MAX_MS);
    BM_CHECK (bm_backoff_set (&b, "fixed", 5, 500, false, error, sizeof error) == 0);
    BM_CHECK (bm_backoff_delay (&b, 1, 0) == 500 && bm_backoff_delay (&b, 9, 0) == 500);
    BM_CHECK (strcmp (bm_backoff_type_name (b.type), "fixed") == 0);
    //  Zero delay: retry at once.
    BM_CHECK (bm_backoff_set (&b, "exponential", 11, 0, true, error, sizeof error) == 0);
    BM_CHECK (bm_backoff_delay (&b, 5, 12345) == 0);
    //  Full jitter: uniform in [0, delay], both ends reachable.
    BM_CHECK (bm_backoff_set (&b, "exponential", 11, 1000, true, error, sizeof error) == 0);
    BM_CHECK (bm_backoff_delay (&b, 2, 0) == 0);
    BM_CHECK (bm_backoff_delay (&b, 2, 2000) == 2000);
    BM_CHECK (bm_backoff_delay (&b, 2, 2001) == 0);
    for (uint64_t r = 0; r < 100000; r += 7919)
        BM_CHECK (bm_backoff_delay (&b, 3, r * 2654435761u) <= 4000);
    //  Wrong shapes name the field.
    BM_CHECK (bm_backoff_set (&b, "linear", 6, 10, false, error, sizeof error) == -1);
    BM_CHECK (strstr (error, "backoff.type"));
    BM_CHECK (bm_backoff_set (&b, "fixedx", 5, 10, false, error, sizeof error) == 0);
    BM_CHECK (bm_backoff_set (&b, "fixed", 5, -1, false, error, sizeof error) == -1);
    BM_CHECK (strstr (error, "backoff.delayMs"));
    BM_CHECK (bm_backoff_set (&b, "fixed", 5, BM_BACKOFF_MAX_MS + 1, false, error, sizeof error) == -1);
}

/*  bm_backoff.c - the wait between two runs of a job whose bot failed.  */
#include "bm_backoff.h"
#include "bm_selftest.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int
bm_backoff_set (bm_backoff_t *self, const char *type, size_t type_len, int64_t delay_ms,
                int jitter_pm, char *error, size_t error_size)
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
    if (jitter_pm < 0 || jitter_pm > BM_BACKOFF_FULL_JITTER) {
        snprintf (error, error_size, "backoff.jitter must be a boolean or a number from 0 to 1");
        return -1;
    }
    self->delay_ms = delay_ms;
    self->jitter_pm = jitter_pm;
    return 0;
}

int
bm_backoff_jitter_pm (bool is_bool, bool flag, double number)
{
    if (is_bool)
        return flag ? BM_BACKOFF_FULL_JITTER : 0;
    //  Written so that NaN fails too.
    if (!(number >= 0 && number <= 1))
        return -1;
    return (int) lround (number * BM_BACKOFF_FULL_JITTER);
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
    if (self->jitter_pm > 0 && delay > 0) {
        //  delay <= a day, so delay * 1000 fits in 64 bits.
        int64_t span = delay * self->jitter_pm / BM_BACKOFF_FULL_JITTER;
        delay = delay - span + (int64_t) (random % (uint64_t) (span + 1));
    }
    return delay;
}

void
bm_backoff_test (bool verbose)
{
    (void) verbose;
    char error [128];
    bm_backoff_t b;
    //  The original system's policy: 2 s, then 4 s, then 8 s.
    BM_CHECK (bm_backoff_set (&b, NULL, 0, BM_BACKOFF_DEFAULT_MS, 0, error, sizeof error) == 0);
    BM_CHECK (b.type == BM_BACKOFF_EXPONENTIAL);
    BM_CHECK (bm_backoff_delay (&b, 1, 0) == 2000);
    BM_CHECK (bm_backoff_delay (&b, 2, 0) == 4000);
    BM_CHECK (bm_backoff_delay (&b, 3, 0) == 8000);
    //  Capped at a day, whatever the run count.
    BM_CHECK (bm_backoff_delay (&b, 40, 0) == BM_BACKOFF_MAX_MS);
    BM_CHECK (bm_backoff_delay (&b, INT64_MAX, 0) == BM_BACKOFF_MAX_MS);
    BM_CHECK (bm_backoff_set (&b, "fixed", 5, 500, 0, error, sizeof error) == 0);
    BM_CHECK (bm_backoff_delay (&b, 1, 0) == 500 && bm_backoff_delay (&b, 9, 0) == 500);
    BM_CHECK (strcmp (bm_backoff_type_name (b.type), "fixed") == 0);
    //  Zero delay: retry at once.
    BM_CHECK (bm_backoff_set (&b, "exponential", 11, 0, BM_BACKOFF_FULL_JITTER, error, sizeof error) == 0);
    BM_CHECK (bm_backoff_delay (&b, 5, 12345) == 0);
    //  Full jitter: uniform in [0, delay], both ends reachable.
    BM_CHECK (bm_backoff_set (&b, "exponential", 11, 1000, BM_BACKOFF_FULL_JITTER, error, sizeof error) == 0);
    BM_CHECK (bm_backoff_delay (&b, 2, 0) == 0);
    BM_CHECK (bm_backoff_delay (&b, 2, 2000) == 2000);
    BM_CHECK (bm_backoff_delay (&b, 2, 2001) == 0);
    for (uint64_t r = 0; r < 100000; r += 7919)
        BM_CHECK (bm_backoff_delay (&b, 3, r * 2654435761u) <= 4000);
    //  Wrong shapes name the field.
    BM_CHECK (bm_backoff_set (&b, "linear", 6, 10, 0, error, sizeof error) == -1);
    BM_CHECK (strstr (error, "backoff.type"));
    BM_CHECK (bm_backoff_set (&b, "fixedx", 5, 10, 0, error, sizeof error) == 0);
    BM_CHECK (bm_backoff_set (&b, "fixed", 5, -1, 0, error, sizeof error) == -1);
    BM_CHECK (strstr (error, "backoff.delayMs"));
    BM_CHECK (bm_backoff_set (&b, "fixed", 5, BM_BACKOFF_MAX_MS + 1, 0, error, sizeof error) == -1);
    BM_CHECK (bm_backoff_set (&b, "fixed", 5, 10, 1001, error, sizeof error) == -1);
    BM_CHECK (strstr (error, "backoff.jitter"));
    //  BullMQ's fraction: jitter 0.2 of 1000 ms waits 800..1000 ms.
    BM_CHECK (bm_backoff_set (&b, "fixed", 5, 1000, 200, error, sizeof error) == 0);
    BM_CHECK (bm_backoff_delay (&b, 1, 0) == 800);
    BM_CHECK (bm_backoff_delay (&b, 1, 200) == 1000);
    BM_CHECK (bm_backoff_delay (&b, 1, 201) == 800);
    BM_CHECK (bm_backoff_set (&b, "exponential", 11, 1000, 200, error, sizeof error) == 0);
    for (uint64_t r = 0; r < 100000; r += 7919) {
        int64_t wait = bm_backoff_delay (&b, 3, r * 2654435761u);
        BM_CHECK (wait >= 3200 && wait <= 4000);
    }
    BM_CHECK (bm_backoff_jitter_pm (true, true, 0) == BM_BACKOFF_FULL_JITTER);
    BM_CHECK (bm_backoff_jitter_pm (true, false, 0.5) == 0);
    BM_CHECK (bm_backoff_jitter_pm (false, false, 0.2) == 200);
    BM_CHECK (bm_backoff_jitter_pm (false, false, 1) == BM_BACKOFF_FULL_JITTER);
    BM_CHECK (bm_backoff_jitter_pm (false, false, 1.5) == -1);
    BM_CHECK (bm_backoff_jitter_pm (false, false, -0.1) == -1);
    BM_CHECK (bm_backoff_jitter_pm (false, false, NAN) == -1);
}

/*  bm_backoff.h - the wait between two runs of a job whose bot failed.

    A job's "backoff" option ({"type": "exponential" | "fixed", "delayMs":
    N, "jitter": bool or 0..1}) and the per-type default (RETRY_<TYPE>_BACKOFF_MS,
    exponential) are one bm_backoff_t.  After the n-th failed run (n from
    1) the job waits

        fixed         delayMs
        exponential   delayMs * 2^(n-1)

    capped at BM_BACKOFF_MAX_MS.  With jitter a fraction f of it is random,
    as in BullMQ: a uniform random time in [that * (1 - f), that]; f = 1
    (jitter true) is "full jitter", [0, that].  The original system retried 3 times,
    exponential from 2000 ms: 2 s, then 4 s.

    Pure: the caller passes the random number, so that a test can pin it.  */
#ifndef BM_BACKOFF_H
#define BM_BACKOFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    BM_BACKOFF_EXPONENTIAL,     //  delayMs, doubled each failed run
    BM_BACKOFF_FIXED            //  delayMs each time
} bm_backoff_type_t;

typedef struct bm_backoff_t {
    bm_backoff_type_t type;
    int64_t delay_ms;           //  0..BM_BACKOFF_MAX_MS
    int jitter_pm;              //  The random fraction in 1/1000: 0 none,
                                //  1000 full jitter (uniform in [0, delay])
} bm_backoff_t;

//  jitter_pm for "jitter": true.
#define BM_BACKOFF_FULL_JITTER      1000

//  The original system's retries: 3 runs, exponential from 2 s.
#define BM_BACKOFF_DEFAULT_ATTEMPTS 3
#define BM_BACKOFF_DEFAULT_MS       2000
//  The longest wait between two runs: a day (a job waits at most as long
//  as it may run).
#define BM_BACKOFF_MAX_MS           86400000LL

//  Fill self from a type name (NULL or "" reads as exponential), a delay
//  and jitter in 1/1000 (0..BM_BACKOFF_FULL_JITTER).  Returns 0, or -1 with a message naming the "backoff" field
//  at fault in error.
int bm_backoff_set (bm_backoff_t *self, const char *type, size_t type_len, int64_t delay_ms,
                    int jitter_pm, char *error, size_t error_size);

//  A "jitter" value read from JSON or msgpack into 1/1000: false 0, true
//  BM_BACKOFF_FULL_JITTER, a number from 0 to 1 rounded to 1/1000.  Returns
//  the value, or -1 for anything else (NaN, out of range).
int bm_backoff_jitter_pm (bool is_bool, bool flag, double number);

//  The type's name: "exponential" or "fixed".
const char *bm_backoff_type_name (bm_backoff_type_t type);

//  The wait in ms after the failed_runs-th failed run (1 = the first);
//  random is any 64-bit random number (used only with jitter).
int64_t bm_backoff_delay (const bm_backoff_t *self, int64_t failed_runs, uint64_t random);

void bm_backoff_test (bool verbose);

#endif

/*  bm_cron.h - a cron expression (5 fields, a time zone) and its next due time.

    Fields: minute (0-59), hour (0-23), day of month (1-31), month (1-12 or
    JAN-DEC), day of week (0-7 or SUN-SAT; 0 and 7 are Sunday).  Each field
    is a list of items separated by ',': '*', a value, a range 'a-b', each
    with an optional step '/n' ('*' + step, 'a-b/n', 'a/n' = a to the end).
    When both day fields are restricted a day matches either (Vixie cron);
    when one is '*', only the other counts.

    Times are wall-clock times of the schedule's zone (bm_tz.h):
      - a wall time that happens twice (clocks go back) runs once, at its
        first instant, unless the hour field is '*' (then a run per real
        minute: both instants);
      - a wall time that does not happen (clocks go forward) runs at the
        instant the clocks jump (several such times make one run).

        char error [160];
        bm_cron_t *cron = bm_cron_new ("30 2 * * MON-FRI", "Europe/Berlin",
                                       error, sizeof error);
        int64_t due = bm_cron_next (cron, now_ms);   //  -1: never again
        bm_cron_destroy (&cron);

    A parsed expression is plain data: it may be read from any thread.  */
#ifndef BM_CRON_H
#define BM_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _bm_cron_t bm_cron_t;

//  Longest expression accepted.
#define BM_CRON_MAX_TEXT 256

//  Parse an expression in a zone (NULL or "" = UTC).  NULL with the reason
//  in error ("minute field: 61 is out of range 0-59", "unknown time zone
//  'X'").
bm_cron_t *bm_cron_new (const char *expression, const char *zone, char *error, size_t error_size);
void bm_cron_destroy (bm_cron_t **self_p);

//  The first due time strictly after the instant (epoch ms), as epoch ms on
//  a whole minute; -1 when none in the next 28 years (e.g. "0 0 30 2 *").
int64_t bm_cron_next (const bm_cron_t *self, int64_t after_ms);

void bm_cron_test (bool verbose);

#endif

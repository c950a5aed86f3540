/*  wh_retry_after.h - parse an HTTP Retry-After header value.

    A pure function of bytes (no locale, no time zone, no allocation), so it
    can be unit-tested and fuzzed.  RFC 9110 section 10.2.3:

        Retry-After = HTTP-date / delay-seconds

    HTTP-date is any of the three forms of RFC 9110 section 5.6.7:

        Sun, 06 Nov 1994 08:49:37 GMT    ; IMF-fixdate
        Sunday, 06-Nov-94 08:49:37 GMT   ; obsolete RFC 850 format
        Sun Nov  6 08:49:37 1994         ; ANSI C's asctime() format  */
#ifndef WH_RETRY_AFTER_H
#define WH_RETRY_AFTER_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

//  Longest delay the parser reports (about 31 years); larger values are
//  clamped, the caller caps further at WEBHOOK_MAX_DELAY anyway.
#define WH_RETRY_AFTER_MAX_MS   (1000000000LL * 1000)

//  Parse value (len bytes, not necessarily terminated; leading and
//  trailing spaces and tabs are ignored).  now_ms is the current time in ms
//  since the Unix epoch, used for HTTP-dates.  Returns 0 and sets *delay_ms
//  (0 for a date in the past), or -1 if the value is neither form.
int wh_retry_after_parse (const char *value, size_t len, int64_t now_ms, int64_t *delay_ms);

//  Parse an HTTP-date alone (no surrounding whitespace): returns 0 and sets
//  *epoch_s, or -1.  now_s (seconds since the epoch) only decides the
//  century of an RFC 850 two-digit year.
int wh_http_date_parse (const char *value, size_t len, int64_t now_s, int64_t *epoch_s);

void wh_retry_after_test (bool verbose);

#endif

/*  wh_retry_after.c - parse an HTTP Retry-After header value.  */
#include "wh_retry_after.h"

#include <stdio.h>
#include <string.h>
#include "bm_selftest.h"

//  A cursor over the bytes being parsed.
typedef struct {
    const char *p;              //  Next byte
    const char *end;            //  One past the last byte
} s_cursor_t;

static const char *s_months [] = {
    "Jan", "Feb", "Mar", "Apr", "May", "Jun",
    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};
static const char *s_days_short [] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
static const char *s_days_long [] = {
    "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"
};

static int
s_lower (int c)
{
    return (c >= 'A' && c <= 'Z')? c + 32: c;
}

//  Match a literal (ASCII case-insensitive) and advance past it.
static bool
s_literal (s_cursor_t *cur, const char *lit)
{
    size_t len = strlen (lit);
    if ((size_t) (cur->end - cur->p) < len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s_lower ((unsigned char) cur->p [i]) != s_lower ((unsigned char) lit [i]))
            return false;
    cur->p += len;
    return true;
}

//  Exactly count decimal digits.
static bool
s_digits (s_cursor_t *cur, int count, int *out)
{
    if (cur->end - cur->p < count)
        return false;
    int value = 0;
    for (int i = 0; i < count; i++) {
        char c = cur->p [i];
        if (c < '0' || c > '9')
            return false;
        value = value * 10 + (c - '0');
    }
    cur->p += count;
    *out = value;
    return true;
}

//  One of a list of names; returns its index or -1.
static int
s_name (s_cursor_t *cur, const char **names, int count)
{
    //  Longest names first is not needed: no name is a prefix of another
    //  in either list.
    for (int i = 0; i < count; i++)
        if (s_literal (cur, names [i]))
            return i;
    return -1;
}

//  time-of-day = hour ":" minute ":" second
static bool
s_time (s_cursor_t *cur, int *hour, int *minute, int *second)
{
    return s_digits (cur, 2, hour) && s_literal (cur, ":")
        && s_digits (cur, 2, minute) && s_literal (cur, ":")
        && s_digits (cur, 2, second)
        && *hour <= 23 && *minute <= 59 && *second <= 60;   //  60: leap second
}

static bool
s_gmt (s_cursor_t *cur)
{
    //  "GMT" is the grammar; "UTC" is a common mistake we tolerate.
    return s_literal (cur, "GMT") || s_literal (cur, "UTC");
}

static bool
s_leap (int year)
{
    return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

//  Days since 1970-01-01 of a proleptic Gregorian date (month 1..12).
//  Howard Hinnant's days_from_civil.
static int64_t
s_days_from_civil (int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0? y: y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2? m - 3: m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool
s_valid_date (int year, int month, int day)
{
    static const int lengths [] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (month < 1 || month > 12 || day < 1)
        return false;
    int length = lengths [month - 1] + (month == 2 && s_leap (year));
    return day <= length;
}

//  The year a two-digit RFC 850 year stands for: RFC 9110 says a date
//  that appears more than 50 years in the future is in the past century.
static int
s_rfc850_year (int yy, int64_t now_s)
{
    int64_t now_year = 1970 + now_s / 31556952;     //  Close enough
    int year = (int) (now_year / 100) * 100 + yy;
    if (year > now_year + 50)
        year -= 100;
    return year;
}

int
wh_http_date_parse (const char *value, size_t len, int64_t now_s, int64_t *epoch_s)
{
    s_cursor_t cur = { value, value + len };
    int year, month, day, hour, minute, second;

    //  IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
    s_cursor_t try = cur;
    if (s_name (&try, s_days_short, 7) >= 0 && s_literal (&try, ", ")
    &&  s_digits (&try, 2, &day) && s_literal (&try, " ")
    &&  (month = s_name (&try, s_months, 12) + 1) > 0 && s_literal (&try, " ")
    &&  s_digits (&try, 4, &year) && s_literal (&try, " ")
    &&  s_time (&try, &hour, &minute, &second) && s_literal (&try, " ")
    &&  s_gmt (&try) && try.p == try.end)
        goto done;

    //  RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
    try = cur;
    int yy;
    if (s_name (&try, s_days_long, 7) >= 0 && s_literal (&try, ", ")
    &&  s_digits (&try, 2, &day) && s_literal (&try, "-")
    &&  (month = s_name (&try, s_months, 12) + 1) > 0 && s_literal (&try, "-")
    &&  s_digits (&try, 2, &yy) && s_literal (&try, " ")
    &&  s_time (&try, &hour, &minute, &second) && s_literal (&try, " ")
    &&  s_gmt (&try) && try.p == try.end) {
        year = s_rfc850_year (yy, now_s);
        goto done;
    }

    //  asctime: Sun Nov  6 08:49:37 1994
    try = cur;
    if (s_name (&try, s_days_short, 7) >= 0 && s_literal (&try, " ")
    &&  (month = s_name (&try, s_months, 12) + 1) > 0 && s_literal (&try, " ")
    &&  ((s_literal (&try, " ") && s_digits (&try, 1, &day)) || s_digits (&try, 2, &day))
    &&  s_literal (&try, " ")
    &&  s_time (&try, &hour, &minute, &second) && s_literal (&try, " ")
    &&  s_digits (&try, 4, &year) && try.p == try.end)
        goto done;

    return -1;

done:
    if (!s_valid_date (year, month, day))
        return -1;
    *epoch_s = s_days_from_civil (year, month, day) * 86400
             + hour * 3600 + minute * 60 + second;
    return 0;
}

int
wh_retry_after_parse (const char *value, size_t len, int64_t now_ms, int64_t *delay_ms)
{
    if (!value)
        return -1;
    //  Trim optional whitespace around the field value.
    while (len && (*value == ' ' || *value == '\t')) {
        value++;
        len--;
    }
    while (len && (value [len - 1] == ' ' || value [len - 1] == '\t'))
        len--;
    if (len == 0)
        return -1;

    //  delay-seconds = 1*DIGIT
    size_t i = 0;
    int64_t seconds = 0;
    while (i < len && value [i] >= '0' && value [i] <= '9') {
        if (seconds < WH_RETRY_AFTER_MAX_MS / 1000)
            seconds = seconds * 10 + (value [i] - '0');
        i++;
    }
    if (i == len) {
        if (seconds > WH_RETRY_AFTER_MAX_MS / 1000)
            seconds = WH_RETRY_AFTER_MAX_MS / 1000;
        *delay_ms = seconds * 1000;
        return 0;
    }
    int64_t epoch_s;
    int64_t now_s = now_ms / 1000;
    if (wh_http_date_parse (value, len, now_s, &epoch_s))
        return -1;
    int64_t delay = epoch_s * 1000 - now_ms;
    if (delay < 0)
        delay = 0;
    if (delay > WH_RETRY_AFTER_MAX_MS)
        delay = WH_RETRY_AFTER_MAX_MS;
    *delay_ms = delay;
    return 0;
}

//  --------------------------------------------------------------------------
//  Self test

static int64_t
s_parse (const char *text, int64_t now_ms)
{
    int64_t delay;
    if (wh_retry_after_parse (text, strlen (text), now_ms, &delay))
        return -1;
    return delay;
}

void
wh_retry_after_test (bool verbose)
{
    printf (" * wh_retry_after: ");
    //  784111777 is Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example).
    int64_t epoch;
    const char *forms [] = {
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "sun, 06 nov 1994 08:49:37 gmt",
    };
    for (size_t i = 0; i < sizeof forms / sizeof forms [0]; i++) {
        int rc = wh_retry_after_parse (forms [i], strlen (forms [i]), 784111777000LL - 5000, &epoch);
        if (verbose)
            printf ("\n   '%s' -> rc=%d delay=%lld", forms [i], rc, (long long) epoch);
        BM_CHECK (rc == 0);
        BM_CHECK (epoch == 5000);
    }
    //  Delta seconds, whitespace, big values.
    BM_CHECK (s_parse ("2", 0) == 2000);
    BM_CHECK (s_parse (" 120\t", 0) == 120000);
    BM_CHECK (s_parse ("0", 0) == 0);
    BM_CHECK (s_parse ("007", 0) == 7000);
    BM_CHECK (s_parse ("99999999999999999999999999", 0) == WH_RETRY_AFTER_MAX_MS);
    //  A date in the past means "now".
    BM_CHECK (s_parse ("Sun, 06 Nov 1994 08:49:37 GMT", 1700000000000LL) == 0);
    //  A date far ahead.
    BM_CHECK (s_parse ("Fri, 31 Dec 9999 23:59:59 GMT", 0) == WH_RETRY_AFTER_MAX_MS);
    //  Leap day, and 2000 was a leap year.
    BM_CHECK (wh_http_date_parse ("Tue, 29 Feb 2000 00:00:00 GMT", 29, 0, &epoch) == 0);
    BM_CHECK (epoch == 951782400);
    BM_CHECK (wh_http_date_parse ("Mon, 01 Jan 1970 00:00:00 GMT", 29, 0, &epoch) == 0);
    BM_CHECK (epoch == 0);
    //  RFC 850 two-digit years are at most 50 years ahead.
    int64_t now_2024 = 1718000000000LL;
    BM_CHECK (s_parse ("Monday, 01-Jan-74 00:00:00 GMT", now_2024) > 0);        //  2074
    BM_CHECK (s_parse ("Monday, 01-Jan-80 00:00:00 GMT", now_2024) == 0);       //  1980
    BM_CHECK (s_parse ("Friday, 01-Jan-99 00:00:00 GMT", now_2024) == 0);       //  1999
    BM_CHECK (s_parse ("Friday, 01-Jan-24 00:00:00 GMT", now_2024) == 0);       //  2024, past
    //  Invalid values.
    const char *bad [] = {
        "", " ", "-1", "1.5", "1e3", "2 s", "+2", "0x10",
        "Sun, 06 Nov 1994 08:49:37",            //  no zone
        "Sun, 06 Nov 1994 08:49:37 CET",
        "Sun, 6 Nov 1994 08:49:37 GMT",         //  one-digit day
        "Sun, 31 Nov 1994 08:49:37 GMT",        //  no such day
        "Sun, 29 Feb 1900 08:49:37 GMT",        //  1900 was not a leap year
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sunday, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 GMT x",
        "Sun Nov 6 08:49:37 1994",              //  asctime pads with a space
        "Sun Nov  6 08:49:37 94",
        "Sun, 06 Nov 1994 08:49:3",
        "Sun,",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        if (verbose)
            printf ("\n   bad '%s' -> %lld", bad [i], (long long) s_parse (bad [i], 0));
        BM_CHECK (s_parse (bad [i], 0) == -1);
    }
    //  Not terminated: the parser reads only len bytes.
    char buf [4] = { '1', '2', '3', '4' };
    int64_t delay;
    BM_CHECK (wh_retry_after_parse (buf, 2, 0, &delay) == 0 && delay == 12000);
    BM_CHECK (wh_retry_after_parse (NULL, 0, 0, &delay) == -1);
    printf ("OK\n");
}

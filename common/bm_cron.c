/*  bm_cron.c - a cron expression (5 fields, a time zone) and its next due time.

    The search walks calendar days of the zone's wall clock (civil-date
    arithmetic, no libc time functions), tests month, day of month and day
    of week, and only on a matching day turns each matching wall time into
    UTC instants through the zone's offsets.  */
#include "bm_cron.h"
#include "bm_tz.h"
#include "bm_selftest.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The longest gap between two due times of a valid expression: Feb 29 on
//  a given weekday repeats every 28 years.
#define BM_CRON_SEARCH_DAYS (366 * 29)

typedef enum { F_MINUTE, F_HOUR, F_DOM, F_MONTH, F_DOW, F_COUNT } s_field_t;

static const struct {
    const char *name;
    int min, max;
} s_fields [F_COUNT] = {
    { "minute", 0, 59 }, { "hour", 0, 23 }, { "day of month", 1, 31 },
    { "month", 1, 12 }, { "day of week", 0, 7 }
};

static const char *s_months [] = {
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"
};
static const char *s_days [] = { "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT" };

struct _bm_cron_t {
    uint64_t bits [F_COUNT];    //  Bit v set: value v matches the field
    bool dom_star;              //  Day of month was '*'
    bool dow_star;              //  Day of week was '*'
    bool hour_star;             //  Hour was '*' (repeated wall times run twice)
    bm_tz_t *tz;                //  The zone (owned)
};

//  --------------------------------------------------------------------------
//  Read one value (a number or, for month and day of week, a name) at *p.

static int
s_value (s_field_t field, const char **p, int *value, char *error, size_t error_size)
{
    const char *s = *p;
    if (isdigit ((unsigned char) *s)) {
        long v = 0;
        while (isdigit ((unsigned char) *s) && v < 1000)
            v = v * 10 + (*s++ - '0');
        if (v < s_fields [field].min || v > s_fields [field].max) {
            snprintf (error, error_size, "%s field: %ld is out of range %d-%d",
                      s_fields [field].name, v, s_fields [field].min, s_fields [field].max);
            return -1;
        }
        *value = (int) v;
        *p = s;
        return 0;
    }
    if ((field == F_MONTH || field == F_DOW) && isalpha ((unsigned char) s [0])
        && isalpha ((unsigned char) s [1]) && isalpha ((unsigned char) s [2])
        && !isalpha ((unsigned char) s [3])) {
        const char **names = field == F_MONTH ? s_months : s_days;
        int count = field == F_MONTH ? 12 : 7;
        for (int i = 0; i < count; i++)
            if (strncasecmp (s, names [i], 3) == 0) {
                *value = field == F_MONTH ? i + 1 : i;
                *p = s + 3;
                return 0;
            }
    }
    snprintf (error, error_size, "%s field: expected a number%s at '%.16s'", s_fields [field].name,
              field == F_MONTH ? " or JAN-DEC" : field == F_DOW ? " or SUN-SAT" : "", s);
    return -1;
}

//  Parse one field's text (no spaces) into its bits.

static int
s_field (bm_cron_t *self, s_field_t field, const char *text, char *error, size_t error_size)
{
    const char *p = text;
    int min = s_fields [field].min, max = s_fields [field].max;
    while (true) {
        int lo, hi, step = 1;
        bool star = false;
        if (*p == '*') {
            star = true;
            lo = min;
            hi = max;
            p++;
        }
        else {
            if (s_value (field, &p, &lo, error, error_size))
                return -1;
            hi = lo;
            if (*p == '-') {
                p++;
                if (s_value (field, &p, &hi, error, error_size))
                    return -1;
                if (hi < lo) {
                    snprintf (error, error_size, "%s field: range %d-%d runs backwards",
                              s_fields [field].name, lo, hi);
                    return -1;
                }
            }
        }
        if (*p == '/') {
            p++;
            long v = 0;
            if (!isdigit ((unsigned char) *p)) {
                snprintf (error, error_size, "%s field: a step needs a number", s_fields [field].name);
                return -1;
            }
            while (isdigit ((unsigned char) *p) && v < 1000)
                v = v * 10 + (*p++ - '0');
            if (v < 1 || v > max) {
                snprintf (error, error_size, "%s field: step %ld is out of range 1-%d",
                          s_fields [field].name, v, max);
                return -1;
            }
            step = (int) v;
            if (!star && hi == lo)
                hi = max;       //  'a/n': from a to the end
        }
        else if (star) {
            if (field == F_DOM)
                self->dom_star = true;
            else if (field == F_DOW)
                self->dow_star = true;
            else if (field == F_HOUR)
                self->hour_star = true;
        }
        for (int v = lo; v <= hi; v += step)
            self->bits [field] |= 1ULL << v;
        if (*p == 0)
            break;
        if (*p != ',' || p [1] == 0) {
            snprintf (error, error_size, "%s field: unexpected '%c'", s_fields [field].name, *p);
            return -1;
        }
        p++;
    }
    if (field == F_DOW && (self->bits [F_DOW] & (1ULL << 7)))
        self->bits [F_DOW] = (self->bits [F_DOW] | 1ULL) & ~(1ULL << 7);
    return 0;
}

bm_cron_t *
bm_cron_new (const char *expression, const char *zone, char *error, size_t error_size)
{
    if (!expression || strlen (expression) > BM_CRON_MAX_TEXT) {
        snprintf (error, error_size, "expected at most %d characters", BM_CRON_MAX_TEXT);
        return NULL;
    }
    bm_cron_t *self = (bm_cron_t *) calloc (1, sizeof (bm_cron_t));
    if (!self) {
        snprintf (error, error_size, "out of memory");
        return NULL;
    }
    char copy [BM_CRON_MAX_TEXT + 1];
    snprintf (copy, sizeof copy, "%s", expression);
    char *save = NULL;
    int count = 0;
    for (char *word = strtok_r (copy, " \t", &save); word; word = strtok_r (NULL, " \t", &save))
        count++;
    if (count == F_COUNT + 1) {
        //  A seconds field first (Quartz, BullMQ's cron-parser, Spring):
        //  say what to use instead.
        snprintf (error, error_size, "expected 5 fields (minute hour day-of-month month "
                  "day-of-week), got 6: seconds are not supported; for sub-minute schedules use everyMs");
        bm_cron_destroy (&self);
        return NULL;
    }
    snprintf (copy, sizeof copy, "%s", expression);
    save = NULL;
    count = 0;
    for (char *word = strtok_r (copy, " \t", &save); word; word = strtok_r (NULL, " \t", &save)) {
        if (count == F_COUNT) {
            count++;
            break;
        }
        if (s_field (self, (s_field_t) count, word, error, error_size)) {
            bm_cron_destroy (&self);
            return NULL;
        }
        count++;
    }
    if (count != F_COUNT) {
        snprintf (error, error_size, "expected 5 fields (minute hour day-of-month month "
                  "day-of-week), got %s", count > F_COUNT ? "more" : "fewer");
        bm_cron_destroy (&self);
        return NULL;
    }
    self->tz = bm_tz_new (zone && *zone ? zone : "UTC", error, error_size);
    if (!self->tz) {
        bm_cron_destroy (&self);
        return NULL;
    }
    return self;
}

void
bm_cron_destroy (bm_cron_t **self_p)
{
    if (*self_p) {
        bm_tz_destroy (&(*self_p)->tz);
        free (*self_p);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Civil dates (proleptic Gregorian) to and from days since 1970-01-01.

static int64_t
s_days_from_civil (int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void
s_civil_from_days (int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int) (doy - (153 * mp + 2) / 5 + 1);
    *m = (int) (mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static bool
s_day_matches (const bm_cron_t *self, int64_t days)
{
    int64_t y;
    int m, d;
    s_civil_from_days (days, &y, &m, &d);
    if (!(self->bits [F_MONTH] & (1ULL << m)))
        return false;
    int weekday = (int) (((days % 7) + 11) % 7);    //  1970-01-01 was a Thursday
    bool dom = (self->bits [F_DOM] >> d) & 1;
    bool dow = (self->bits [F_DOW] >> weekday) & 1;
    if (self->dom_star || self->dow_star)
        return dom && dow;
    return dom || dow;
}

//  The earliest instant (epoch s) after `after` at which the wall clock
//  shows `wall` (seconds since 1970 of the wall clock), by the rules of the
//  header; INT64_MAX when none.

static int64_t
s_wall_to_utc (const bm_cron_t *self, int64_t wall, int64_t after)
{
    //  At most one transition within a day of a wall time: the offsets a
    //  day before and a day after are the only candidates.
    int32_t before = bm_tz_offset (self->tz, wall - 86400 * 2, NULL);
    int32_t later = bm_tz_offset (self->tz, wall + 86400 * 2, NULL);
    int64_t first = INT64_MAX, second = INT64_MAX;
    int32_t offsets [2] = { before, later };
    for (int i = 0; i < 2; i++) {
        int64_t u = wall - offsets [i];
        if (u + bm_tz_offset (self->tz, u, NULL) != wall)
            continue;
        if (u < first) {
            second = first;
            first = u;
        }
        else if (u > first && u < second)
            second = u;
    }
    if (first == INT64_MAX) {
        //  A gap: the clocks jumped over this wall time; run at the jump.
        int64_t jump;
        bm_tz_offset (self->tz, wall - later, &jump);
        return jump > after ? jump : INT64_MAX;
    }
    if (first > after)
        return first;
    if (self->hour_star && second != INT64_MAX && second > after)
        return second;
    return INT64_MAX;
}

int64_t
bm_cron_next (const bm_cron_t *self, int64_t after_ms)
{
    int64_t after = after_ms >= 0 ? after_ms / 1000 : -((-after_ms + 999) / 1000);
    //  Start a day early: the wall clock may be behind UTC's date.
    int64_t wall_now = after + bm_tz_offset (self->tz, after, NULL);
    int64_t day0 = (wall_now >= 0 ? wall_now : wall_now - 86399) / 86400 - 1;
    int64_t best = INT64_MAX;
    int64_t found_day = -1;
    for (int64_t day = day0; day < day0 + BM_CRON_SEARCH_DAYS; day++) {
        if (found_day >= 0 && day > found_day + 1)
            break;      //  The day after a hit may still hold an earlier instant
        if (!s_day_matches (self, day))
            continue;
        for (int h = 0; h < 24; h++) {
            if (!((self->bits [F_HOUR] >> h) & 1))
                continue;
            for (int mi = 0; mi < 60; mi++) {
                if (!((self->bits [F_MINUTE] >> mi) & 1))
                    continue;
                int64_t u = s_wall_to_utc (self, day * 86400 + h * 3600 + mi * 60, after);
                if (u < best)
                    best = u;
            }
        }
        if (best != INT64_MAX && found_day < 0)
            found_day = day;
    }
    return best == INT64_MAX ? -1 : best * 1000;
}

//  --------------------------------------------------------------------------
//  Self-test

static int64_t
s_utc (int64_t y, int m, int d, int h, int mi)
{
    return (s_days_from_civil (y, m, d) * 86400 + h * 3600 + mi * 60) * 1000;
}

static int64_t
s_next (const char *expression, const char *zone, int64_t after)
{
    char error [160];
    bm_cron_t *cron = bm_cron_new (expression, zone, error, sizeof error);
    BM_CHECK (cron);
    int64_t next = bm_cron_next (cron, after);
    bm_cron_destroy (&cron);
    return next;
}

static void
s_bad (const char *expression, const char *zone, const char *expected)
{
    char error [160] = "";
    bm_cron_t *cron = bm_cron_new (expression, zone, error, sizeof error);
    if (cron || !strstr (error, expected))
        fprintf (stderr, "'%s': got '%s', expected '%s'\n", expression, error, expected);
    BM_CHECK (cron == NULL);
    BM_CHECK (strstr (error, expected));
}

void
bm_cron_test (bool verbose)
{
    (void) verbose;
    //  Civil arithmetic round trips over four centuries.
    for (int64_t z = -800000; z < 800000; z += 997) {
        int64_t y;
        int m, d;
        s_civil_from_days (z, &y, &m, &d);
        BM_CHECK (s_days_from_civil (y, m, d) == z);
    }
    BM_CHECK (s_days_from_civil (2024, 2, 29) + 1 == s_days_from_civil (2024, 3, 1));

    int64_t t = s_utc (2024, 1, 15, 10, 7);     //  A Monday
    //  Every minute: the next whole minute, strictly after.
    BM_CHECK (s_next ("* * * * *", NULL, t) == t + 60000);
    BM_CHECK (s_next ("* * * * *", NULL, t + 1) == t + 60000);
    BM_CHECK (s_next ("*/15 * * * *", NULL, t) == s_utc (2024, 1, 15, 10, 15));
    BM_CHECK (s_next ("5,10-12 * * * *", NULL, t) == s_utc (2024, 1, 15, 10, 10));
    BM_CHECK (s_next ("50/5 * * * *", NULL, t) == s_utc (2024, 1, 15, 10, 50));
    BM_CHECK (s_next ("0 0 * * *", "", t) == s_utc (2024, 1, 16, 0, 0));
    BM_CHECK (s_next ("0 9-17/4 * * *", NULL, t) == s_utc (2024, 1, 15, 13, 0));
    //  Names, either case, and 7 = Sunday.
    BM_CHECK (s_next ("0 12 * * sat", NULL, t) == s_utc (2024, 1, 20, 12, 0));
    BM_CHECK (s_next ("0 12 * * 7", NULL, t) == s_utc (2024, 1, 21, 12, 0));
    BM_CHECK (s_next ("0 12 * * 0", NULL, t) == s_utc (2024, 1, 21, 12, 0));
    BM_CHECK (s_next ("0 12 * * MON-FRI", NULL, t) == s_utc (2024, 1, 15, 12, 0));
    BM_CHECK (s_next ("0 0 1 MAR *", NULL, t) == s_utc (2024, 3, 1, 0, 0));
    //  Month ends: the 31st skips months without one; the 30th skips February.
    BM_CHECK (s_next ("0 0 31 * *", NULL, s_utc (2024, 4, 1, 0, 0)) == s_utc (2024, 5, 31, 0, 0));
    BM_CHECK (s_next ("0 0 30 * *", NULL, s_utc (2024, 1, 31, 0, 0)) == s_utc (2024, 3, 30, 0, 0));
    //  Feb 29: only in leap years, and 2100 is not one.
    BM_CHECK (s_next ("0 0 29 2 *", NULL, s_utc (2024, 3, 1, 0, 0)) == s_utc (2028, 2, 29, 0, 0));
    BM_CHECK (s_next ("0 0 29 2 *", NULL, s_utc (2096, 3, 1, 0, 0)) == s_utc (2104, 2, 29, 0, 0));
    //  Never: no February 30th.
    BM_CHECK (s_next ("0 0 30 2 *", NULL, t) == -1);
    //  Both day fields restricted: either matches (the 1st, or a Friday).
    BM_CHECK (s_next ("0 0 1 * FRI", NULL, t) == s_utc (2024, 1, 19, 0, 0));
    BM_CHECK (s_next ("0 0 1 * FRI", NULL, s_utc (2024, 1, 27, 0, 0)) == s_utc (2024, 2, 1, 0, 0));
    //  One restricted, the other '*': only it counts.
    BM_CHECK (s_next ("0 0 * * FRI", NULL, t) == s_utc (2024, 1, 19, 0, 0));
    //  Year end.
    BM_CHECK (s_next ("59 23 31 12 *", NULL, t) == s_utc (2024, 12, 31, 23, 59));
    BM_CHECK (s_next ("0 0 1 1 *", NULL, s_utc (2024, 12, 31, 23, 59)) == s_utc (2025, 1, 1, 0, 0));

    //  A zone: 09:00 in New York is 14:00 UTC in winter, 13:00 in summer
    //  (10:07 UTC is 05:07 there: the same day).
    BM_CHECK (s_next ("0 9 * * *", "America/New_York", t) == s_utc (2024, 1, 15, 14, 0));
    BM_CHECK (s_next ("0 9 * * *", "America/New_York", s_utc (2024, 7, 1, 0, 0))
              == s_utc (2024, 7, 1, 13, 0));
    //  Local midnight is on the previous UTC day east of Greenwich.
    BM_CHECK (s_next ("0 0 * * *", "Asia/Tokyo", t) == s_utc (2024, 1, 15, 15, 0));

    //  DST forward, Berlin 2024-03-31: 02:00 -> 03:00 at 01:00 UTC.
    //  02:30 does not exist: it runs at the jump, once.
    int64_t spring = s_utc (2024, 3, 31, 0, 0);
    BM_CHECK (s_next ("30 2 * * *", "Europe/Berlin", spring) == s_utc (2024, 3, 31, 1, 0));
    BM_CHECK (s_next ("30 2 * * *", "Europe/Berlin", s_utc (2024, 3, 31, 1, 0))
              == s_utc (2024, 4, 1, 0, 30));
    //  Every 15 minutes across the jump: 01:45 local (00:45 UTC), then the
    //  jump at 01:00 UTC (all of 02:xx), then 03:15 local (01:15 UTC).
    BM_CHECK (s_next ("*/15 * * * *", "Europe/Berlin", s_utc (2024, 3, 31, 0, 30))
              == s_utc (2024, 3, 31, 0, 45));
    BM_CHECK (s_next ("*/15 * * * *", "Europe/Berlin", s_utc (2024, 3, 31, 0, 45))
              == s_utc (2024, 3, 31, 1, 0));
    BM_CHECK (s_next ("*/15 * * * *", "Europe/Berlin", s_utc (2024, 3, 31, 1, 0))
              == s_utc (2024, 3, 31, 1, 15));

    //  DST back, Berlin 2024-10-27: 03:00 -> 02:00 at 01:00 UTC; 02:30
    //  happens at 00:30 and at 01:30 UTC.  A fixed hour runs once...
    int64_t autumn = s_utc (2024, 10, 27, 0, 0);
    BM_CHECK (s_next ("30 2 * * *", "Europe/Berlin", autumn) == s_utc (2024, 10, 27, 0, 30));
    BM_CHECK (s_next ("30 2 * * *", "Europe/Berlin", s_utc (2024, 10, 27, 0, 30))
              == s_utc (2024, 10, 28, 1, 30));
    //  ...a '*' hour runs at both instants, in UTC order.
    BM_CHECK (s_next ("30,45 * * * *", "Europe/Berlin", s_utc (2024, 10, 27, 0, 30))
              == s_utc (2024, 10, 27, 0, 45));
    BM_CHECK (s_next ("30,45 * * * *", "Europe/Berlin", s_utc (2024, 10, 27, 0, 45))
              == s_utc (2024, 10, 27, 1, 30));
    BM_CHECK (s_next ("30,45 * * * *", "Europe/Berlin", s_utc (2024, 10, 27, 1, 30))
              == s_utc (2024, 10, 27, 1, 45));
    BM_CHECK (s_next ("30,45 * * * *", "Europe/Berlin", s_utc (2024, 10, 27, 1, 45))
              == s_utc (2024, 10, 27, 2, 30));

    //  Bad expressions name the field and the problem.
    s_bad ("* * * *", NULL, "expected 5 fields");
    s_bad ("* * * * * *", NULL, "expected 5 fields");
    s_bad ("*/10 * * * * *", NULL, "got 6: seconds are not supported; for sub-minute schedules use everyMs");
    s_bad ("0 0 12 * * MON-FRI", NULL, "use everyMs");
    s_bad ("0 0 12 * * ? 2030", NULL, "got more");
    s_bad ("", NULL, "expected 5 fields");
    s_bad ("60 * * * *", NULL, "minute field: 60 is out of range 0-59");
    s_bad ("* 24 * * *", NULL, "hour field: 24 is out of range 0-23");
    s_bad ("* * 0 * *", NULL, "day of month field: 0 is out of range 1-31");
    s_bad ("* * * 13 *", NULL, "month field: 13 is out of range 1-12");
    s_bad ("* * * * 8", NULL, "day of week field: 8 is out of range 0-7");
    s_bad ("* * * FOO *", NULL, "month field: expected a number or JAN-DEC");
    s_bad ("* * * * MONDAY", NULL, "day of week field: expected a number or SUN-SAT");
    s_bad ("MON * * * *", NULL, "minute field: expected a number at 'MON");
    s_bad ("5-1 * * * *", NULL, "minute field: range 5-1 runs backwards");
    s_bad ("*/0 * * * *", NULL, "minute field: step 0 is out of range 1-59");
    s_bad ("*/ * * * *", NULL, "minute field: a step needs a number");
    s_bad ("1, * * * *", NULL, "minute field: unexpected ','");
    s_bad ("1;2 * * * *", NULL, "minute field: unexpected ';'");
    s_bad ("99999999999 * * * *", NULL, "minute field");
    s_bad ("* * * * *", "Nowhere/City", "unknown time zone 'Nowhere/City'");
    char long_text [BM_CRON_MAX_TEXT + 2];
    memset (long_text, '1', sizeof long_text - 1);
    long_text [sizeof long_text - 1] = 0;
    s_bad (long_text, NULL, "at most");
}

/*  bm_tz.c - a time zone from the TZ database: UTC offset at an instant.  */
#include "bm_tz.h"
#include "bm_selftest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  TZif files are small (the largest zones are under 4 KiB fat); anything
//  larger is not a zone file.
#define BM_TZ_MAX_FILE 262144

struct _bm_tz_t {
    char name [BM_TZ_MAX_NAME + 1];     //  As given
    int64_t *at;                        //  Transition instants, ascending
    int32_t *offset;                    //  Offset from each transition on
    size_t count;                       //  Transitions
    int32_t initial;                    //  Offset before the first one
};

static int64_t
s_be (const unsigned char *p, int bytes)
{
    uint64_t value = 0;
    for (int i = 0; i < bytes; i++)
        value = (value << 8) | p [i];
    if (bytes == 4)
        return (int32_t) (uint32_t) value;
    return (int64_t) value;
}

static bool
s_valid_name (const char *name)
{
    size_t len = strlen (name);
    if (len == 0 || len > BM_TZ_MAX_NAME || name [0] == '/' || strstr (name, ".."))
        return false;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')
              || *c == '/' || *c == '_' || *c == '-' || *c == '+'))
            return false;
    return true;
}

//  --------------------------------------------------------------------------
//  Parse a TZif image (RFC 8536): the version 2+ body with 64-bit times when
//  there is one, else the version 1 body.  Returns 0 or -1 (malformed).

static int
s_parse (bm_tz_t *self, const unsigned char *data, size_t size)
{
    const unsigned char *p = data;
    const unsigned char *end = data + size;
    int time_bytes = 4;
    for (int pass = 0; pass < 2; pass++) {
        if (end - p < 44 || memcmp (p, "TZif", 4) != 0)
            return -1;
        char version = (char) p [4];
        int64_t isutcnt = s_be (p + 20, 4), isstdcnt = s_be (p + 24, 4), leapcnt = s_be (p + 28, 4);
        int64_t timecnt = s_be (p + 32, 4), typecnt = s_be (p + 36, 4), charcnt = s_be (p + 40, 4);
        if (isutcnt < 0 || isstdcnt < 0 || leapcnt < 0 || timecnt < 0 || typecnt < 1
            || typecnt > 256 || charcnt < 0 || timecnt > 100000)
            return -1;
        p += 44;
        int64_t body = timecnt * time_bytes + timecnt + typecnt * 6 + charcnt
                     + leapcnt * (time_bytes + 4) + isstdcnt + isutcnt;
        if (end - p < body)
            return -1;
        if (pass == 0 && version >= '2') {
            //  Skip the version 1 body: the 64-bit one follows.
            p += body;
            time_bytes = 8;
            continue;
        }
        const unsigned char *times = p;
        const unsigned char *indices = times + timecnt * time_bytes;
        const unsigned char *types = indices + timecnt;
        self->count = (size_t) timecnt;
        self->at = (int64_t *) calloc (self->count ? self->count : 1, sizeof (int64_t));
        self->offset = (int32_t *) calloc (self->count ? self->count : 1, sizeof (int32_t));
        if (!self->at || !self->offset)
            return -1;
        for (int64_t i = 0; i < timecnt; i++) {
            unsigned index = indices [i];
            if (index >= typecnt)
                return -1;
            self->at [i] = s_be (times + i * time_bytes, time_bytes);
            self->offset [i] = (int32_t) s_be (types + index * 6, 4);
            if (i > 0 && self->at [i] <= self->at [i - 1])
                return -1;
        }
        //  Before the first transition: the first standard-time type (RFC
        //  8536 3.2), which is type 0 in every file zic writes.
        self->initial = (int32_t) s_be (types, 4);
        return 0;
    }
    return -1;
}

bm_tz_t *
bm_tz_new (const char *name, char *error, size_t error_size)
{
    if (!name || !s_valid_name (name) ) {
        if (name && *name == 0)
            name = "UTC";
        else {
            snprintf (error, error_size, "'%s' is not a time zone name", name ? name : "");
            return NULL;
        }
    }
    bm_tz_t *self = (bm_tz_t *) calloc (1, sizeof (bm_tz_t));
    if (!self) {
        snprintf (error, error_size, "out of memory");
        return NULL;
    }
    snprintf (self->name, sizeof self->name, "%s", name);
    if (strcmp (name, "UTC") == 0 || strcmp (name, "Etc/UTC") == 0 || strcmp (name, "GMT") == 0)
        return self;

    const char *dir = getenv ("TZDIR");
    char path [512];
    snprintf (path, sizeof path, "%s/%s", dir && *dir ? dir : "/usr/share/zoneinfo", name);
    FILE *file = fopen (path, "rb");
    if (!file) {
        snprintf (error, error_size, "unknown time zone '%s'", name);
        bm_tz_destroy (&self);
        return NULL;
    }
    unsigned char *data = (unsigned char *) malloc (BM_TZ_MAX_FILE);
    size_t size = data ? fread (data, 1, BM_TZ_MAX_FILE, file) : 0;
    fclose (file);
    if (!data || size == BM_TZ_MAX_FILE || s_parse (self, data, size)) {
        snprintf (error, error_size, "'%s' is not a readable time zone", name);
        free (data);
        bm_tz_destroy (&self);
        return NULL;
    }
    free (data);
    return self;
}

void
bm_tz_destroy (bm_tz_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->at);
        free ((*self_p)->offset);
        free (*self_p);
        *self_p = NULL;
    }
}

const char *
bm_tz_name (const bm_tz_t *self)
{
    return self->name;
}

//  --------------------------------------------------------------------------
//  Binary search for the last transition at or before the instant.

int32_t
bm_tz_offset (const bm_tz_t *self, int64_t instant, int64_t *next)
{
    size_t lo = 0, hi = self->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (self->at [mid] <= instant)
            lo = mid + 1;
        else
            hi = mid;
    }
    //  lo transitions are at or before the instant.
    if (next)
        *next = lo < self->count ? self->at [lo] : INT64_MAX;
    return lo == 0 ? self->initial : self->offset [lo - 1];
}

void
bm_tz_test (bool verbose)
{
    (void) verbose;
    char error [128];
    bm_tz_t *utc = bm_tz_new ("UTC", error, sizeof error);
    BM_CHECK (utc);
    int64_t next = 0;
    BM_CHECK (bm_tz_offset (utc, 1700000000, &next) == 0 && next == INT64_MAX);
    bm_tz_destroy (&utc);
    BM_CHECK (utc == NULL);
    bm_tz_destroy (&utc);

    //  Berlin: CET (+1 h) in winter, CEST (+2 h) from the last Sunday of
    //  March 01:00 UTC to the last Sunday of October 01:00 UTC.
    bm_tz_t *berlin = bm_tz_new ("Europe/Berlin", error, sizeof error);
    BM_CHECK (berlin);
    BM_CHECK (strcmp (bm_tz_name (berlin), "Europe/Berlin") == 0);
    BM_CHECK (bm_tz_offset (berlin, 1704067200, NULL) == 3600);        //  2024-01-01
    BM_CHECK (bm_tz_offset (berlin, 1719792000, NULL) == 7200);        //  2024-07-01
    //  2024-03-31 01:00:00 UTC is the switch.
    BM_CHECK (bm_tz_offset (berlin, 1711846799, &next) == 3600 && next == 1711846800);
    BM_CHECK (bm_tz_offset (berlin, 1711846800, NULL) == 7200);
    //  2036 is still covered by the file's transitions (fat files).
    BM_CHECK (bm_tz_offset (berlin, 2097705600, NULL) == 7200);        //  2036-06-22
    bm_tz_destroy (&berlin);

    bm_tz_t *ny = bm_tz_new ("America/New_York", error, sizeof error);
    BM_CHECK (ny);
    BM_CHECK (bm_tz_offset (ny, 1704067200, NULL) == -5 * 3600);
    BM_CHECK (bm_tz_offset (ny, 1719792000, NULL) == -4 * 3600);
    bm_tz_destroy (&ny);

    //  Bad names name the problem and never leave the zone directory.
    BM_CHECK (bm_tz_new ("Mars/Olympus", error, sizeof error) == NULL);
    BM_CHECK (strstr (error, "unknown time zone 'Mars/Olympus'"));
    BM_CHECK (bm_tz_new ("../../etc/passwd", error, sizeof error) == NULL);
    BM_CHECK (strstr (error, "not a time zone name"));
    BM_CHECK (bm_tz_new ("/etc/passwd", error, sizeof error) == NULL);
    //  A file that is not TZif: the zone directory holds some (zone.tab).
    BM_CHECK (bm_tz_new ("zone.tab", error, sizeof error) == NULL);
    BM_CHECK (strstr (error, "not a") || strstr (error, "unknown"));
}

/*  bm_tz.h - a time zone from the TZ database: UTC offset at an instant.

    A zone is read once from its TZif file (TZDIR, else /usr/share/zoneinfo)
    into a table of transitions; after that it is plain data, safe to read
    from any thread, and no call touches the process's TZ variable or libc's
    time zone state (the broker computes schedules in its own thread while
    other threads log).

        char error [128];
        bm_tz_t *tz = bm_tz_new ("Europe/Berlin", error, sizeof error);
        int32_t offset = bm_tz_offset (tz, epoch_seconds, NULL);
        bm_tz_destroy (&tz);

    "UTC" (and "" or "Etc/UTC") needs no file.  After the file's last
    transition the offset of that transition holds: Debian's TZif files are
    "fat" and list transitions to 2037.  */
#ifndef BM_TZ_H
#define BM_TZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _bm_tz_t bm_tz_t;

//  Longest zone name accepted ("America/Argentina/ComodRivadavia" is 32).
#define BM_TZ_MAX_NAME 64

//  Load a zone by its TZ database name.  NULL with the reason in error for
//  a name that is not a zone (also "../" tricks: a name is letters, digits,
//  '/', '_', '-' and '+' only).
bm_tz_t *bm_tz_new (const char *name, char *error, size_t error_size);
void bm_tz_destroy (bm_tz_t **self_p);

//  The zone's name as given.
const char *bm_tz_name (const bm_tz_t *self);

//  Seconds east of UTC in force at the instant (epoch seconds).  When
//  next is not NULL, *next is the instant of the next transition after it,
//  or INT64_MAX when none.
int32_t bm_tz_offset (const bm_tz_t *self, int64_t instant, int64_t *next);

void bm_tz_test (bool verbose);

#endif

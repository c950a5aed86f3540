/*  bm_text.h - text built piece by piece, for writers on hot paths (a
    JSON document, a pooled job's frame) that would rather not build
    objects first.  It grows as needed and stays NUL-ended; an allocation
    that fails marks it failed for good (a writer may set failed too, for
    input it refuses), so the caller checks once, at the end.  */
#ifndef BM_TEXT_H
#define BM_TEXT_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *data;                 //  The text so far (owned, free()), NUL-ended
    size_t size;                //  Bytes in data, the NUL aside
    size_t cap;                 //  Bytes allocated
    bool failed;                //  No memory (or refused by the writer): the text is lost
} bm_text_t;

#define BM_TEXT_INIT { NULL, 0, 0, false }

//  Appends len bytes (which may hold NULs).
void bm_text_put (bm_text_t *self, const char *bytes, size_t len);
//  Appends a C string.
void bm_text_puts (bm_text_t *self, const char *str);

#endif

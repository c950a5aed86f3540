/*  bm_capture.h - a bounded byte sink for a bot's output.

    Two modes.  Head mode keeps the first `limit` bytes and remembers that
    more was offered (stdout: a result larger than the cap is an error, not
    something to truncate).  Tail mode keeps the last `limit` bytes (stderr:
    the end of the story is what explains a failure).  Memory is bounded by
    twice the limit in both modes, whatever the bot writes.  */
#ifndef BM_CAPTURE_H
#define BM_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct _bm_capture_t bm_capture_t;

//  A new capture of at most limit bytes (limit >= 1).  keep_tail selects
//  tail mode.
bm_capture_t *bm_capture_new (size_t limit, bool keep_tail);
void bm_capture_destroy (bm_capture_t **self_p);

//  Offer bytes.  Returns 0, or -1 in head mode once more than limit bytes
//  have been offered in total (the first limit bytes stay).
int bm_capture_append (bm_capture_t *self, const void *data, size_t size);

//  The bytes kept, contiguous and followed by a NUL (borrowed; valid until
//  the next append).
const char *bm_capture_data (bm_capture_t *self);
size_t bm_capture_size (bm_capture_t *self);

//  How many bytes were offered in total, and whether that passed the limit.
size_t bm_capture_total (bm_capture_t *self);
bool bm_capture_overflowed (bm_capture_t *self);

//  The bytes kept as printable UTF-8 text (caller frees): invalid UTF-8
//  sequences (including a sequence cut by the tail) become '?', control
//  characters other than newline and tab become \xHH (ESC: \x1b, as in
//  the logs), and surrounding
//  whitespace is trimmed.
char *bm_capture_text (bm_capture_t *self);

//  Same, for any bytes (caller frees).
char *bm_text_sanitize (const char *data, size_t size);

//  Self-test; built only into bm_worker_selftest (BM_SELFTEST).
void bm_capture_test (bool verbose);

#endif

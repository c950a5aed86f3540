/*  bm_progress.h - the progress channel of a bot: lines on fd 3.

    A bot reports progress by writing lines to fd 3:

        PROGRESS 40\n

    "PROGRESS", one or more spaces or tabs, an integer from 0 to 100,
    optional trailing spaces and an optional \r.  Anything else (other
    text, values out of range, lines longer than BM_PROGRESS_MAX_LINE
    bytes) is ignored: the channel is advisory and never fails a job.
    This class splits the byte stream into lines and parses them; it does
    no I/O.  */
#ifndef BM_PROGRESS_H
#define BM_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>

#define BM_PROGRESS_MAX_LINE  64    //  Longer lines are skipped whole

typedef struct _bm_progress_t bm_progress_t;

bm_progress_t *bm_progress_new (void);
void bm_progress_destroy (bm_progress_t **self_p);

//  Feed bytes as read from the pipe.  Returns the value of the last valid
//  line completed by these bytes, or -1 if none.
int bm_progress_feed (bm_progress_t *self, const char *data, size_t size);

//  Parse one line (without its \n).  Returns 0..100, or -1.
int bm_progress_parse (const char *line, size_t size);

//  Self-test; built only into bm_worker_selftest (BM_SELFTEST).
void bm_progress_test (bool verbose);

#endif

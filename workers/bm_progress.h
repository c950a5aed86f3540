/*  bm_progress.h - the progress channel of a bot: lines on fd 3.

    A bot reports progress by writing lines to fd 3:

        PROGRESS 40\n

    "PROGRESS", one or more spaces or tabs, an integer from 0 to 100,
    optional trailing spaces and an optional \r.  Anything else (other
    text, values out of range, lines longer than BM_PROGRESS_MAX_LINE
    bytes) is ignored: the channel is advisory and never fails a job.
    The first such line is kept (until bm_progress_rearm) so that the
    caller can log it once per job.  This class splits the byte stream
    into lines and parses them; it does no I/O.  */
#ifndef BM_PROGRESS_H
#define BM_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>

#define BM_PROGRESS_MIN_GAP_MS  100     //  Progress of one job: at most ten
                                        //  messages a second

#define BM_PROGRESS_MAX_LINE  64    //  Longer lines are skipped whole

typedef struct _bm_progress_t bm_progress_t;

bm_progress_t *bm_progress_new (void);
void bm_progress_destroy (bm_progress_t **self_p);

//  Feed bytes as read from the pipe.  Returns the value of the last valid
//  line completed by these bytes, or -1 if none.
int bm_progress_feed (bm_progress_t *self, const char *data, size_t size);

//  Parse one line (without its \n).  Returns 0..100, or -1.
int bm_progress_parse (const char *line, size_t size);

//  The caller's progress callbacks get this value for "a line that is not
//  PROGRESS 0-100 came" (bm_progress_news tells them).
#define BM_PROGRESS_BAD  (-1)

//  True once after the first line that is not empty and not valid was
//  fed since the start (or bm_progress_rearm): time to log it.
bool bm_progress_news (bm_progress_t *self);

//  That first bad line (printable, cut at BM_PROGRESS_MAX_LINE bytes), or
//  "" if none came.
const char *bm_progress_bad_line (bm_progress_t *self);

//  Forget the bad line: the next job's first one is news again.
void bm_progress_rearm (bm_progress_t *self);

//  Self-test; built only into bm_worker_selftest (BM_SELFTEST).
void bm_progress_test (bool verbose);

#endif

/*  bm_log.h - one line per event, with time, level, component and job id.

    Every botmesh process logs to stderr, one line per event:

        2026-11-28T20:40:01.123Z INFO  broker job=0192b0c4e1a2-7f3a-00000001 dispatched to w-1

    The component is set once per process with bm_log_init; LOG_LEVEL
    (debug, info, warn, error; default info) filters.  Safe from any thread. */
#ifndef BM_LOG_H
#define BM_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum { BM_DEBUG = 0, BM_INFO = 1, BM_WARN = 2, BM_ERROR = 3 } bm_level_t;

//  Set this process's component name (borrowed; pass a string literal) and
//  read LOG_LEVEL.  Returns -1 if LOG_LEVEL holds an unknown value.
int bm_log_init (const char *component);

//  True when messages of this level are printed.
int bm_log_enabled (bm_level_t level);

//  Log one line.  job_id may be NULL.
void bm_log (bm_level_t level, const char *job_id, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));
void bm_vlog (bm_level_t level, const char *job_id, const char *fmt, va_list args);

//  Log one line whatever LOG_LEVEL says (a fact scripts read, as the port
//  a service listens on).
void bm_log_always (bm_level_t level, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));

#define bm_debug(job, ...) do { if (bm_log_enabled (BM_DEBUG)) bm_log (BM_DEBUG, job, __VA_ARGS__); } while (0)
#define bm_info(job, ...)  bm_log (BM_INFO,  job, __VA_ARGS__)
#define bm_warn(job, ...)  bm_log (BM_WARN,  job, __VA_ARGS__)
#define bm_error(job, ...) bm_log (BM_ERROR, job, __VA_ARGS__)

//  realloc for a buffer whose owner has no sane way on without it (a
//  queue, a write batch): out of memory is one ERROR line naming what
//  grew and by how much, then abort, as czmq's zmalloc does.  Never NULL.
//  Copy len bytes of in to out (size bytes, always terminated) as a log
//  line may show them: CR and LF become spaces (one event, one line), other
//  C0 controls and DEL become \xHH (ESC cannot drive a terminal), and the
//  bidi controls U+202A..U+202E and U+2066..U+2069, U+2028, U+2029 and
//  U+0085 become \uXXXX (they would reorder or break what a reader sees).
//  Stops before an escape that does not fit.  Returns the length written.
size_t bm_log_escape (const char *in, size_t len, char *out, size_t size);

//  Self test.
void bm_log_test (bool verbose);

void *bm_realloc_or_abort (void *ptr, size_t size, const char *what);
//  The same for a new zeroed object.
void *bm_calloc_or_abort (size_t size, const char *what);

#endif

/*  bm_log.c - one line per event, with time, level, component and job id.  */
#include "bm_log.h"

#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <sys/time.h>

static const char *s_component = "botmesh";
static bm_level_t s_level = BM_INFO;
static const char *s_names [] = { "DEBUG", "INFO ", "WARN ", "ERROR" };

int
bm_log_init (const char *component)
{
    s_component = component;
    const char *level = getenv ("LOG_LEVEL");
    if (!level || !*level)
        return 0;
    if (strcasecmp (level, "debug") == 0) s_level = BM_DEBUG;
    else if (strcasecmp (level, "info") == 0) s_level = BM_INFO;
    else if (strcasecmp (level, "warn") == 0) s_level = BM_WARN;
    else if (strcasecmp (level, "error") == 0) s_level = BM_ERROR;
    else {
        fprintf (stderr, "%s: LOG_LEVEL must be debug, info, warn or error (got '%s')\n",
                 component, level);
        return -1;
    }
    return 0;
}

int
bm_log_enabled (bm_level_t level)
{
    return level >= s_level;
}

//  Write one line, whatever the level.
static void
s_write_line (bm_level_t level, const char *job_id, const char *fmt, va_list args)
{
    //  Build the whole line first and write it once, so that lines from
    //  several threads never interleave.
    char line [2048];
    struct timeval tv;
    gettimeofday (&tv, NULL);
    struct tm tm;
    gmtime_r (&tv.tv_sec, &tm);
    int n = snprintf (line, sizeof line,
                      "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s %s ",
                      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                      tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (tv.tv_usec / 1000),
                      s_names [level], s_component);
    if (job_id && n < (int) sizeof line)
        n += snprintf (line + n, sizeof line - n, "job=%s ", job_id);
    if (n < (int) sizeof line)
        n += vsnprintf (line + n, sizeof line - n, fmt, args);
    if (n >= (int) sizeof line - 1)
        n = sizeof line - 2;
    //  One event, one line: fold any newline a message carried.
    for (int i = 0; i < n; i++)
        if (line [i] == '\n' || line [i] == '\r')
            line [i] = ' ';
    line [n++] = '\n';
    fwrite (line, 1, n, stderr);
}

void
bm_vlog (bm_level_t level, const char *job_id, const char *fmt, va_list args)
{
    if (level >= s_level)
        s_write_line (level, job_id, fmt, args);
}

void
bm_log_always (bm_level_t level, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    s_write_line (level, NULL, fmt, args);
    va_end (args);
}

void
bm_log (bm_level_t level, const char *job_id, const char *fmt, ...)
{
    va_list args;
    va_start (args, fmt);
    bm_vlog (level, job_id, fmt, args);
    va_end (args);
}

void *
bm_realloc_or_abort (void *ptr, size_t size, const char *what)
{
    void *grown = realloc (ptr, size ? size : 1);
    if (!grown) {
        bm_error (NULL, "out of memory growing %s to %zu bytes", what, size);
        abort ();
    }
    return grown;
}

void *
bm_calloc_or_abort (size_t size, const char *what)
{
    void *block = calloc (1, size ? size : 1);
    if (!block) {
        bm_error (NULL, "out of memory allocating %s (%zu bytes)", what, size);
        abort ();
    }
    return block;
}

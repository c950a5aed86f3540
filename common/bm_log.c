/*  bm_log.c - one line per event, with time, level, component and job id.  */
#include "bm_log.h"
#include "bm_selftest.h"

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

size_t
bm_log_escape (const char *in, size_t len, char *out, size_t size)
{
    const unsigned char *p = (const unsigned char *) in;
    size_t n = 0;
    if (!size)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char esc [8] = "";
        size_t skip = 0;            //  Further input bytes the escape covers
        unsigned char c = p [i];
        if (c == '\n' || c == '\r')
            snprintf (esc, sizeof esc, " ");
        else
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            snprintf (esc, sizeof esc, "\\x%02x", c);
        else
        if (c == 0xc2 && i + 1 < len && p [i + 1] == 0x85) {
            snprintf (esc, sizeof esc, "\\u0085");
            skip = 1;
        }
        else
        if (c == 0xe2 && i + 2 < len) {
            //  U+2028..U+202E: E2 80 A8..AE; U+2066..U+2069: E2 81 A6..A9.
            unsigned int cp = 0x2000 + ((unsigned) (p [i + 1] & 0x3f) << 6) + (p [i + 2] & 0x3f);
            if ((p [i + 1] == 0x80 && p [i + 2] >= 0xa8 && p [i + 2] <= 0xae)
            ||  (p [i + 1] == 0x81 && p [i + 2] >= 0xa6 && p [i + 2] <= 0xa9)) {
                snprintf (esc, sizeof esc, "\\u%04X", cp);
                skip = 2;
            }
        }
        size_t esc_len = strlen (esc);
        if (esc_len) {
            if (n + esc_len >= size)
                break;
            memcpy (out + n, esc, esc_len);
            n += esc_len;
            i += skip;
        }
        else {
            if (n + 1 >= size)
                break;
            out [n++] = (char) c;
        }
    }
    out [n] = 0;
    return n;
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
    if (n < 0)
        n = 0;
    //  One event, one line, and nothing that moves a terminal's cursor or
    //  reorders what a reader sees (see bm_log_escape).
    char safe [sizeof line * 2 + 2];
    size_t len = bm_log_escape (line, (size_t) n, safe, sizeof safe - 1);
    safe [len++] = '\n';
    fwrite (safe, 1, len, stderr);
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

//  --------------------------------------------------------------------------
//  Self test

void
bm_log_test (bool verbose)
{
    if (verbose)
        printf (" * bm_log: ");
    char out [256];
    const char *in = "a\nb\rc\x1b[31md\te";
    BM_CHECK (bm_log_escape (in, strlen (in), out, sizeof out) == strlen ("a b c\\x1b[31md\te"));
    BM_CHECK (!strcmp (out, "a b c\\x1b[31md\te"));
    //  Bidi controls, line and paragraph separators, NEL: escaped.
    in = "x\xe2\x80\xaey \xe2\x80\xaa\xe2\x81\xa6\xe2\x81\xa9 \xe2\x80\xa8\xe2\x80\xa9 \xc2\x85z";
    bm_log_escape (in, strlen (in), out, sizeof out);
    BM_CHECK (!strcmp (out, "x\\u202Ey \\u202A\\u2066\\u2069 \\u2028\\u2029 \\u0085z"));
    //  Other UTF-8 is kept: e acute, the euro sign, U+2027, U+202F, U+2065.
    in = "\xc3\xa9 \xe2\x82\xac \xe2\x80\xa7\xe2\x80\xaf\xe2\x81\xa5";
    bm_log_escape (in, strlen (in), out, sizeof out);
    BM_CHECK (!strcmp (out, in));
    //  A cut sequence at the end is kept as bytes; the output is bounded.
    in = "ab\xe2\x80";
    BM_CHECK (bm_log_escape (in, strlen (in), out, sizeof out) == 4);
    char small [6];
    in = "\x01\x02\x03";
    BM_CHECK (bm_log_escape (in, strlen (in), small, sizeof small) == 4 && !strcmp (small, "\\x01"));
    if (verbose)
        printf ("OK\n");
}

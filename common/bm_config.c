/*  bm_config.c - reading configuration from the environment, strictly.  */
#include "bm_config.h"
#include "bm_log.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int
bm_parse_int (const char *text, int64_t min, int64_t max, int64_t *out)
{
    if (!text || !*text)
        return -1;
    char *end;
    errno = 0;
    long long value = strtoll (text, &end, 10);
    if (errno || *end || end == text || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

int
bm_env_int (const char *name, int64_t def, int64_t min, int64_t max, int64_t *out)
{
    const char *text = getenv (name);
    if (!text || !*text) {
        *out = def;
        return 0;
    }
    if (bm_parse_int (text, min, max, out)) {
        bm_error (NULL, "configuration: %s must be an integer from %lld to %lld (got '%s')",
                  name, (long long) min, (long long) max, text);
        return -1;
    }
    return 0;
}

int
bm_env_double (const char *name, double def, double min, double max, double *out)
{
    const char *text = getenv (name);
    if (!text || !*text) {
        *out = def;
        return 0;
    }
    char *end;
    errno = 0;
    double value = strtod (text, &end);
    if (errno || *end || end == text || isnan (value) || value < min || value > max) {
        bm_error (NULL, "configuration: %s must be a number from %g to %g (got '%s')",
                  name, min, max, text);
        return -1;
    }
    *out = value;
    return 0;
}

int
bm_parse_bool (const char *text, bool *out)
{
    if (!text)
        return -1;
    if (!strcasecmp (text, "1") || !strcasecmp (text, "true")
    ||  !strcasecmp (text, "yes") || !strcasecmp (text, "on"))
        *out = true;
    else
    if (!strcasecmp (text, "0") || !strcasecmp (text, "false")
    ||  !strcasecmp (text, "no") || !strcasecmp (text, "off"))
        *out = false;
    else
        return -1;
    return 0;
}

int
bm_env_bool (const char *name, bool def, bool *out)
{
    const char *text = getenv (name);
    if (!text || !*text) {
        *out = def;
        return 0;
    }
    if (bm_parse_bool (text, out)) {
        bm_error (NULL, "configuration: %s must be true or false (got '%s')", name, text);
        return -1;
    }
    return 0;
}

const char *
bm_env_str (const char *name, const char *def)
{
    const char *text = getenv (name);
    return text && *text ? text : def;
}

//  This thread's clock hold: depth, and each clock's value once read (-1:
//  not read yet under this hold).
static __thread int s_clock_holds;
static __thread int64_t s_held_now = -1, s_held_mono = -1;

static int64_t
s_clock_ms (clockid_t clock)
{
    struct timespec ts;
    clock_gettime (clock, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
bm_now_ms (void)
{
    if (s_clock_holds == 0)
        return s_clock_ms (CLOCK_REALTIME);
    if (s_held_now < 0)
        s_held_now = s_clock_ms (CLOCK_REALTIME);
    return s_held_now;
}

int64_t
bm_mono_ms (void)
{
    if (s_clock_holds == 0)
        return s_clock_ms (CLOCK_MONOTONIC);
    if (s_held_mono < 0)
        s_held_mono = s_clock_ms (CLOCK_MONOTONIC);
    return s_held_mono;
}

int64_t
bm_mono_ms_unheld (void)
{
    return s_clock_ms (CLOCK_MONOTONIC);
}

void
bm_clock_hold (void)
{
    if (s_clock_holds++ == 0)
        s_held_now = s_held_mono = -1;
}

void
bm_clock_release (void)
{
    if (s_clock_holds > 0 && --s_clock_holds == 0)
        s_held_now = s_held_mono = -1;
}

/*  bm_config.h - reading configuration from the environment, strictly.

    A bad value stops the service at start with a message naming the
    variable; it is never silently replaced by a default.  Each reader
    returns 0 and stores the value (or the default when the variable is
    unset or empty), or logs the problem and returns -1.  */
#ifndef BM_CONFIG_H
#define BM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

//  An integer in [min, max].
int bm_env_int (const char *name, int64_t def, int64_t min, int64_t max, int64_t *out);

//  A number in [min, max] (e.g. a rate).
int bm_env_double (const char *name, double def, double min, double max, double *out);

//  A boolean: 1/0, true/false, yes/no, on/off.
int bm_env_bool (const char *name, bool def, bool *out);

//  A string (borrowed from the environment, or def).
const char *bm_env_str (const char *name, const char *def);

//  Parse an integer in [min, max] from text; 0 or -1 (no logging).
int bm_parse_int (const char *text, int64_t min, int64_t max, int64_t *out);

//  Parse a boolean from text (1/0, true/false, yes/no, on/off, any case);
//  0 or -1 (no logging).
int bm_parse_bool (const char *text, bool *out);

//  Milliseconds since the Unix epoch, and a monotonic clock in ms.
int64_t bm_now_ms (void);
int64_t bm_mono_ms (void);

//  Hold this thread's clocks for the handling of one message: while held,
//  bm_now_ms and bm_mono_ms each read the clock once (at their first call)
//  and then give that value again, so the jobs of a batch take one clock
//  read per message instead of several per job.  Holds nest; only code
//  that never waits on the clock runs while held.
void bm_clock_hold (void);
//  The monotonic clock read now, hold or not (a rate limit's window must
//  not see a start earlier than it happened).
int64_t bm_mono_ms_unheld (void);
void bm_clock_release (void);

#endif

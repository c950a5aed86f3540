/*  wh_check.h - a check for self-tests that stays on in release builds.

    assert() vanishes under -DNDEBUG (CMake's Release and RelWithDebInfo),
    which would turn every self-test into a no-op.  WH_CHECK always runs and
    aborts with the file, line and condition.  Use it in x_test () only;
    production code validates peer input and never aborts on it.  */
#ifndef WH_CHECK_H
#define WH_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#define WH_CHECK(cond) do { if (!(cond)) { \
    fprintf (stderr, "\nCHECK FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    abort (); } } while (0)

#endif

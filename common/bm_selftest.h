/*  bm_selftest.h - the check macro and the runner of every self-test.

    BM_CHECK stays on in release builds: assert () vanishes under -DNDEBUG
    (CMake's Release and RelWithDebInfo), which would turn every self-test
    into a no-op.  It aborts with the file, line and condition, so that the
    failing check is the last line of the test's output.  Use it in x_test ()
    only: production code validates peer input and never aborts on it.

    Each component has one self-test program built on bm_selftest_main:

        static const bm_selftest_t s_tests [] = {
            { "gw_invoke", gw_invoke_test },
            { "gw_record", gw_record_test },
            { NULL, NULL }
        };
        int main (int argc, char *argv []) {
            return bm_selftest_main ("gw_selftest", s_tests, argc, argv);
        }

    and CTest runs one entry per class: `gw_selftest --test gw_invoke`.  */
#ifndef BM_SELFTEST_H
#define BM_SELFTEST_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#define BM_CHECK(cond) do { if (!(cond)) { \
    fprintf (stderr, "\nCHECK FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond); \
    abort (); } } while (0)

typedef struct {
    const char *name;               //  What --test selects; NULL ends the table
    void (*test) (bool verbose);    //  The class's x_test
} bm_selftest_t;

//  Run the tests of the table: all of them, or the one --test NAME names
//  (-v: verbose).  Returns the process's exit code: 0 when every test ran
//  (a failing check aborts), 2 for bad arguments or an unknown name.
int bm_selftest_main (const char *program, const bm_selftest_t *tests, int argc, char *argv []);

#endif

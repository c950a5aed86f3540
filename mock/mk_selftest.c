/*  mk_selftest.c - runs the self-tests of the mock's classes.

        mk_selftest [--test NAME] [-v]

    CTest runs one entry per class.  */
#include "mk_mode.h"
#include "mk_store.h"
#include "bm_selftest.h"

static const bm_selftest_t s_tests [] = {
    { "mode",  mk_mode_test },
    { "store", mk_store_test },
    { NULL, NULL }
};

int
main (int argc, char *argv [])
{
    return bm_selftest_main ("mk_selftest", s_tests, argc, argv);
}

/*  mk_selftest.c - runs the self-tests of the mock's classes.  */
#include "mk_mode.h"
#include "mk_store.h"

#include <stdio.h>
#include <string.h>

int
main (int argc, char *argv [])
{
    setvbuf (stdout, NULL, _IONBF, 0);
    const char *only = argc > 2 && strcmp (argv [1], "--test") == 0? argv [2]: NULL;
    bool verbose = argc > 1 && strcmp (argv [argc - 1], "-v") == 0;
    int ran = 0;
    if (!only || strcmp (only, "mode") == 0) {
        mk_mode_test (verbose);
        ran++;
    }
    if (!only || strcmp (only, "store") == 0) {
        mk_store_test (verbose);
        ran++;
    }
    if (!ran) {
        fprintf (stderr, "usage: mk_selftest [--test mode|store] [-v]\n");
        return 2;
    }
    return 0;
}

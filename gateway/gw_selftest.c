/*  gw_selftest.c - runs the gateway classes' self tests.

        gw_selftest [--test NAME] [-v]

    With no --test, runs them all.  CTest runs one entry per class.  */
#include "gw_auth.h"
#include "gw_history.h"
#include "gw_invoke.h"
#include "gw_link.h"
#include "gw_ratelimit.h"
#include "gw_record.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    void (*test) (bool verbose);
} s_test_t;

static const s_test_t s_tests [] = {
    { "gw_invoke", gw_invoke_test },
    { "gw_record", gw_record_test },
    { "gw_ratelimit", gw_ratelimit_test },
    { "gw_auth", gw_auth_test },
    { "gw_history", gw_history_test },
    { "gw_link", gw_link_test },
};

int
main (int argc, char *argv [])
{
    const char *only = NULL;
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "--test") == 0 && i + 1 < argc)
            only = argv [++i];
        else
        if (strcmp (argv [i], "-v") == 0)
            verbose = true;
        else {
            fprintf (stderr, "usage: gw_selftest [--test NAME] [-v]\n");
            return 2;
        }
    }
    int ran = 0;
    for (size_t i = 0; i < sizeof s_tests / sizeof s_tests [0]; i++)
        if (!only || strcmp (only, s_tests [i].name) == 0) {
            s_tests [i].test (verbose);
            ran++;
        }
    if (ran == 0) {
        fprintf (stderr, "gw_selftest: no test named %s\n", only);
        return 2;
    }
    printf ("gw_selftest: %d passed\n", ran);
    return 0;
}

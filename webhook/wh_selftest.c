/*  wh_selftest.c - runs the self-tests of the webhook classes.

    wh_selftest [--test NAME] [-v]: one CTest entry per class (czmq's
    selftest runner).  Without --test, every test runs.  */
#include "wh_retry_after.h"
#include "wh_backoff.h"
#include "wh_signature.h"
#include "wh_ssrf.h"
#include "wh_heap.h"
#include "wh_outcome.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    void (*test) (bool verbose);
} s_test_t;

static s_test_t s_tests [] = {
    { "retry_after", wh_retry_after_test },
    { "backoff",     wh_backoff_test },
    { "signature",   wh_signature_test },
    { "ssrf",        wh_ssrf_test },
    { "heap",        wh_heap_test },
    { "outcome",     wh_outcome_test },
};

int
main (int argc, char *argv [])
{
    setvbuf (stdout, NULL, _IONBF, 0);
    const char *only = NULL;
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        if ((strcmp (argv [i], "--test") == 0) && i + 1 < argc)
            only = argv [++i];
        else
        if ((strcmp (argv [i], "-v") == 0) || (strcmp (argv [i], "--verbose") == 0))
            verbose = true;
        else {
            printf ("usage: wh_selftest [--test NAME] [-v]\ntests:");
            for (size_t t = 0; t < sizeof s_tests / sizeof s_tests [0]; t++)
                printf (" %s", s_tests [t].name);
            printf ("\n");
            return (strcmp (argv [i], "--help") == 0)? 0: 2;
        }
    }
    int ran = 0;
    for (size_t t = 0; t < sizeof s_tests / sizeof s_tests [0]; t++)
        if (!only || strcmp (only, s_tests [t].name) == 0) {
            s_tests [t].test (verbose);
            ran++;
        }
    if (!ran) {
        fprintf (stderr, "wh_selftest: no test named '%s'\n", only);
        return 2;
    }
    return 0;
}

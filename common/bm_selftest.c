/*  bm_selftest.c - the runner of every self-test program.  */
#include "bm_selftest.h"

#include <string.h>

static void
s_usage (FILE *out, const char *program, const bm_selftest_t *tests)
{
    fprintf (out, "usage: %s [--test NAME] [-v]\ntests:", program);
    for (const bm_selftest_t *t = tests; t->name; t++)
        fprintf (out, " %s", t->name);
    fprintf (out, "\n");
}

int
bm_selftest_main (const char *program, const bm_selftest_t *tests, int argc, char *argv [])
{
    setvbuf (stdout, NULL, _IONBF, 0);
    const char *only = NULL;
    bool verbose = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp (argv [i], "--test") == 0 && i + 1 < argc)
            only = argv [++i];
        else
        if (strcmp (argv [i], "-v") == 0 || strcmp (argv [i], "--verbose") == 0)
            verbose = true;
        else {
            bool help = strcmp (argv [i], "--help") == 0;
            s_usage (help ? stdout : stderr, program, tests);
            return help ? 0 : 2;
        }
    }
    int ran = 0;
    for (const bm_selftest_t *t = tests; t->name; t++)
        if (!only || strcmp (only, t->name) == 0) {
            t->test (verbose);
            ran++;
        }
    if (ran == 0) {
        fprintf (stderr, "%s: no test named '%s'\n", program, only ? only : "");
        s_usage (stderr, program, tests);
        return 2;
    }
    printf ("%s: %d passed, 0 failed\n", program, ran);
    return 0;
}

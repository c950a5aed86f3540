/*  bm_broker_test.c - self-tests of the broker's classes.  */
#include "bm_heap.h"
#include "bm_rank.h"

#include <stdio.h>
#include <string.h>

int
main (int argc, char *argv [])
{
    const char *name = argc > 1 ? argv [1] : "all";
    if (!strcmp (name, "heap") || !strcmp (name, "all"))
        bm_heap_test (true);
    if (!strcmp (name, "rank") || !strcmp (name, "all"))
        bm_rank_test (true);
    return 0;
}

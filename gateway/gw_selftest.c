/*  gw_selftest.c - runs the gateway classes' self tests.

        gw_selftest [--test NAME] [-v]

    With no --test, runs them all.  CTest runs one entry per class.  */
#include "gw_arena.h"
#include "gw_calls.h"
#include "gw_events.h"
#include "gw_group.h"
#include "gw_history.h"
#include "gw_invoke.h"
#include "gw_invoke_batch.h"
#include "gw_link.h"
#include "gw_ratelimit.h"
#include "gw_record.h"
#include "gw_wire.h"
#include "bm_selftest.h"

static const bm_selftest_t s_tests [] = {
    { "gw_arena", gw_arena_test },
    { "gw_invoke", gw_invoke_test },
    { "gw_invoke_batch", gw_invoke_batch_test },
    { "gw_record", gw_record_test },
    { "gw_ratelimit", gw_ratelimit_test },
    { "gw_history", gw_history_test },
    { "gw_calls", gw_calls_test },
    { "gw_group", gw_group_test },
    { "gw_wire", gw_wire_test },
    { "gw_link", gw_link_test },
    { "gw_events", gw_events_test },
    { NULL, NULL }
};

int
main (int argc, char *argv [])
{
    return bm_selftest_main ("gw_selftest", s_tests, argc, argv);
}

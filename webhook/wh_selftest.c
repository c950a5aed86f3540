/*  wh_selftest.c - runs the self-tests of the webhook classes.

    wh_selftest [--test NAME] [-v]: one CTest entry per class (czmq's
    selftest runner).  Without --test, every test runs.  */
#include "wh_retry_after.h"
#include "wh_backoff.h"
#include "wh_signature.h"
#include "bm_ssrf.h"
#include "wh_heap.h"
#include "wh_outcome.h"
#include "wh_url.h"
#include "bm_selftest.h"

static const bm_selftest_t s_tests [] = {
    { "retry_after", wh_retry_after_test },
    { "backoff", wh_backoff_test },
    { "signature", wh_signature_test },
    { "ssrf", bm_ssrf_test },
    { "heap", wh_heap_test },
    { "outcome", wh_outcome_test },
    { "url", wh_url_test },
    { NULL, NULL }
};

int
main (int argc, char *argv [])
{
    return bm_selftest_main ("wh_selftest", s_tests, argc, argv);
}

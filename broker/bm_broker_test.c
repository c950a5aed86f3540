/*  bm_broker_test.c - bm_broker_test: the self-tests of the broker's classes.

    `bm_broker_test --test NAME` runs one (CTest runs one entry per class),
    no argument runs them all.  */
#include "bm_broker.h"
#include "bm_heap.h"
#include "bm_store_group.h"
#include "bm_record.h"
#include "bm_idem.h"
#include "bm_lost_keys.h"
#include "bm_lease.h"
#include "bm_job.h"
#include "bm_jobtab.h"
#include "bm_rank.h"
#include "bm_service.h"
#include "bm_worker_entry.h"
#include "bm_selftest.h"

static const bm_selftest_t s_tests [] = {
    { "heap", bm_heap_test },
    { "store_group", bm_store_group_test },
    { "record", bm_record_test },
    { "rank", bm_rank_test },
    { "idem", bm_idem_test },
    { "lost_keys", bm_lost_keys_test },
    { "job", bm_job_test },
    { "jobtab", bm_jobtab_test },
    { "service", bm_service_test },
    { "worker_entry", bm_worker_entry_test },
    { "broker", bm_broker_test },
    { "lease", bm_lease_test },
    { NULL, NULL }
};

int
main (int argc, char *argv [])
{
    return bm_selftest_main ("bm_broker_test", s_tests, argc, argv);
}

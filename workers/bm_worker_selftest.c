/*  bm_worker_selftest.c - runs the self-tests of the worker's classes.

    bm_worker_selftest [--test CLASS] [-v]   (default: every class)  */
#include "bm_capture.h"
#include "bm_progress.h"
#include "bm_limits.h"
#include "bm_seccomp.h"
#include "bm_sandbox.h"
#include "bm_launch.h"
#include "bm_bot.h"
#include "bm_pool.h"
#include "bm_job_report.h"
#include "bm_job_env.h"

#include "bm_selftest.h"

static const bm_selftest_t s_tests [] = {
    { "capture", bm_capture_test },
    { "progress", bm_progress_test },
    { "limits", bm_limits_test },
    { "seccomp", bm_seccomp_test },
    { "sandbox", bm_sandbox_test },
    { "launch", bm_launch_test },
    { "bot", bm_bot_test },
    { "pool", bm_pool_test },
    { "job_report", bm_job_report_test },
    { "job_env", bm_job_env_test },
    { NULL, NULL }
};

int
main (int argc, char *argv [])
{
    return bm_selftest_main ("bm_worker_selftest", s_tests, argc, argv);
}

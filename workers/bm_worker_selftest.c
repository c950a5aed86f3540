/*  bm_worker_selftest.c - runs the self-tests of the worker's classes.

    bm_worker_selftest [CLASS...]   (capture, progress, limits, sandbox, bot, pool, job_report,
                                    done_replay, job_env; default all)  */
#include "bm_capture.h"
#include "bm_progress.h"
#include "bm_limits.h"
#include "bm_sandbox.h"
#include "bm_bot.h"
#include "bm_pool.h"
#include "bm_job_report.h"
#include "bm_done_replay.h"
#include "bm_job_env.h"

#include <stdio.h>
#include <string.h>

static struct {
    const char *name;
    void (*test) (bool verbose);
} s_tests [] = {
    { "capture", bm_capture_test },
    { "progress", bm_progress_test },
    { "limits", bm_limits_test },
    { "sandbox", bm_sandbox_test },
    { "bot", bm_bot_test },
    { "pool", bm_pool_test },
    { "job_report", bm_job_report_test },
    { "done_replay", bm_done_replay_test },
    { "job_env", bm_job_env_test },
};

int
main (int argc, char *argv [])
{
    size_t count = sizeof s_tests / sizeof s_tests [0];
    int ran = 0;
    for (size_t i = 0; i < count; i++) {
        bool wanted = argc < 2;
        for (int a = 1; a < argc; a++)
            if (strcmp (argv [a], s_tests [i].name) == 0)
                wanted = true;
        if (wanted) {
            s_tests [i].test (true);
            ran++;
        }
    }
    if (ran == 0) {
        fprintf (stderr, "bm_worker_selftest: no such test\n");
        return 2;
    }
    printf ("%d test(s) passed\n", ran);
    return 0;
}

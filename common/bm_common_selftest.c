/*  bm_common_selftest.c - runs the self-tests of the common classes.

        bm_common_selftest [--test NAME] [-v]

    CTest runs one entry per class.  */
#include "bm_auth.h"
#include "bm_backoff.h"
#include "bm_codec.h"
#include "bm_codec_batch.h"
#include "bm_endpoints.h"
#include "bm_env_check.h"
#include "bm_json_text.h"
#include "bm_sock_watch.h"
#include "bm_main.h"
#include "bm_sentinel.h"
#include "bm_codec_control.h"
#include "bm_done_replay.h"
#include "bm_cron.h"
#include "bm_log.h"
#include "bm_redis_url.h"
#include "bm_redis_setup.h"
#include "bm_resolve.h"
#include "bm_resolve_zloop.h"
#include "bm_selftest.h"
#include "bm_settings.h"
#include "bm_tz.h"
#include "bm_url.h"
#include "bm_worker_link.h"

static const bm_selftest_t s_tests [] = {
    { "json_text", bm_json_text_test },
    { "url",       bm_url_test },
    { "auth",      bm_auth_test },
    { "settings",  bm_settings_test },
    { "env_check", bm_env_check_test },
    { "redis_url", bm_redis_url_test },
    { "redis_setup", bm_redis_setup_test },
    { "log",       bm_log_test },
    { "codec",     bm_codec_test },
    { "codec_batch", bm_codec_batch_test },
    { "worker_link", bm_worker_link_test },
    { "done_replay", bm_done_replay_test },
    { "endpoints", bm_endpoints_test },
    { "sock_watch", bm_sock_watch_test },
    { "main",      bm_main_test },
    { "sentinel", bm_sentinel_test },
    { "tz",        bm_tz_test },
    { "cron",      bm_cron_test },
    { "backoff",   bm_backoff_test },
    { "codec_control", bm_codec_control_test },
    { "resolve",   bm_resolve_test },
    { "resolve_zloop", bm_resolve_zloop_test },
    { NULL, NULL }
};

int
main (int argc, char *argv [])
{
    return bm_selftest_main ("bm_common_selftest", s_tests, argc, argv);
}

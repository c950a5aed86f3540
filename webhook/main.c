/*  botmesh-webhook - delivers job results to webhook URLs: a worker of the
    broker's built-in "webhook" bot type (docs/protocol.md section 6).  */
#include "bm_main.h"
#include "wh_config.h"
#include "wh_manager.h"
#include "bm_config.h"
#include "bm_http.h"
#include "bm_log.h"

#include <czmq.h>
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

static void
s_usage (FILE *out)
{
    fprintf (out,
"usage: botmesh-webhook [--port N] [--help]\n"
"\n"
"Delivers the result of every job that has a webhookUrl: POSTs the JSON\n"
"{jobId, botType, status, success, result and data | error and errorCode,\n"
"attempts, durationMs, createdAt, finishedAt, timestamp} to it, with Standard\n"
"Webhooks headers (webhook-id, the same on every attempt; webhook-timestamp;\n"
"webhook-signature only when WEBHOOK_SECRET is set), X-Bot-Job-Id (the job id) and\n"
"X-Delivery-Attempt (1 on the first attempt).\n"
"It is a worker of the broker's \"webhook\" bot type: deliveries survive its\n"
"crashes (the broker re-dispatches them, and attempts keep counting).\n"
"\n"
"Attempts: at most 1 + WEBHOOK_MAX_RETRIES (default 5 retries = 6 attempts).\n"
"After attempt n fails with a retryable error, the next waits a random time\n"
"in [0, min(WEBHOOK_MAX_DELAY, WEBHOOK_RETRY_DELAY * 2^(n-1))] (full jitter),\n"
"or the receiver's Retry-After (seconds or HTTP-date), capped at WEBHOOK_MAX_DELAY.\n"
"Retryable: no answer (connection, DNS, TLS errors, timeouts), 408, 425, 429, 5xx,\n"
"and protocol garbage on a reused connection (retried on a fresh one).\n"
"Permanent (no retry): other 4xx, every 3xx (redirects are never followed),\n"
"and targets the SSRF guard refuses (loopback, private, link-local, unique-local,\n"
"shared, multicast, reserved addresses) unless WEBHOOK_ALLOW_PRIVATE=1 or the host\n"
"(or host:port) is in WEBHOOK_ALLOWED_HOSTS.\n"
"\n"
"HTTP API: GET /health, GET /ready (503 while the broker does not answer), GET /stats, GET /metrics, POST /deliveries/{jobId}/retry\n"
"(redelivers a finished job's webhook; 404 unknown job, 409 no webhook or not ended).\n"
"\n"
"SIGTERM/SIGINT: stop taking deliveries, give back those waiting for a retry,\n"
"let requests in flight finish for WEBHOOK_SHUTDOWN_GRACE_MS, then exit.\n"
"\n"
"Flags:\n"
"  --port N        overrides WEBHOOK_MANAGER_PORT (0: any free port; the line\n"
"                  \"listening http=ADDR:PORT\" on stderr says which)\n"
"  --print-env     the variables with their defaults, as env.example lines\n"
"  --check-config  check the variables and exit: 0 all valid, 2 (each bad one\n"
"                  named)\n"
"  --help          this text\n"
"\n");
    wh_config_help (out);
}

int
main (int argc, char *argv [])
{
    int info_rc = bm_settings_info_flag (argc, argv, wh_settings);
    if (info_rc >= 0)
        return info_rc;
    const char *port_flag;
    int rc = bm_http_args (argc, argv, "webhook", s_usage, &port_flag);
    if (rc >= 0)
        return rc;
    bm_main_hide_secrets ();
    wh_config_t config;
    if (wh_config_load (&config) || bm_http_port_flag (port_flag, &config.port)
    ||  bm_http_listen_check ("WEBHOOK_LISTEN_ADDR", config.listen_addr)) {
        wh_config_free (&config);
        return BM_EXIT_CONFIG;
    }

    //  Signals: czmq's handler off; SIGTERM/SIGINT blocked before any
    //  thread starts (ZeroMQ's, civetweb's, libcurl's resolver), so that
    //  only the loop's signalfd sees them.
    sigset_t signals;
    bm_main_block_signals (&signals);

    //  Every connection is a file descriptor: take all we may.
    struct rlimit limit;
    if (getrlimit (RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit (RLIMIT_NOFILE, &limit);
    }
    if (curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        bm_error (NULL, "libcurl failed to initialise");
        wh_config_free (&config);
        return 1;
    }
    int code = wh_manager_run (&config);
    wh_config_free (&config);
    curl_global_cleanup ();
    return code;
}

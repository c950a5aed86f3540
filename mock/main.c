/*  botmesh-mock - a webhook receiver for tests and demos (the seed's
    "Mock Webhook (Port 5000)"), scriptable to fail, hang or drop.  */
#include "bm_main.h"
#include "mk_server.h"
#include "wh_signature.h"
#include "bm_config.h"
#include "bm_http.h"
#include "bm_log.h"
#include "bm_settings.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  The server's settings (the failure mode's MOCK_* variables are read by
//  mk_mode_from_env: POST /mode changes them at run time).
typedef struct {
    int64_t port, threads, keep_alive_ms, max_records, max_stored, max_body;
    int64_t tolerance_s, timeout_delay_ms;
    const char *listen_addr, *secret, *webhook_secret;
} s_settings_t;

#define ROW_INT(n, f, d, lo, hi, h) BM_SETTING_INT (n, s_settings_t, f, d, lo, hi, h)
static const bm_setting_t s_settings [] = {
    ROW_INT ("MOCK_WEBHOOK_PORT", port, 5000, 0, 65535, "port (0: any free port, logged as \"listening http=ADDR:PORT\")"),
    BM_SETTING_STR ("MOCK_LISTEN_ADDR", s_settings_t, listen_addr, "0.0.0.0", 64, "IPv4 address to bind"),
    ROW_INT ("MOCK_THREADS", threads, 64, 1, 4096, "HTTP threads = connections served at once"),
    ROW_INT ("MOCK_KEEPALIVE_MS", keep_alive_ms, 500, 0, 3600000, "idle keep-alive timeout, 0 = no keep-alive"),
    ROW_INT ("MOCK_MAX_RECORDS", max_records, 100000, 1, 100000000, "deliveries kept in memory"),
    ROW_INT ("MOCK_MAX_BODY_STORED", max_stored, 16384, 0, 67108864, "body bytes kept per delivery"),
    ROW_INT ("MOCK_MAX_BODY", max_body, 8388608, 1, 1073741824, "largest request body accepted, else 413"),
    BM_SETTING_STR ("MOCK_WEBHOOK_SECRET", s_settings_t, secret, NULL, 0,
                    "secret to check signatures with (empty: WEBHOOK_SECRET; neither: unchecked)"),
    BM_SETTING_STR ("WEBHOOK_SECRET", s_settings_t, webhook_secret, NULL, 0,
                    "the webhook manager's signing secret, used when MOCK_WEBHOOK_SECRET is empty"),
    ROW_INT ("MOCK_SIGNATURE_TOLERANCE_S", tolerance_s, 300, 0, 100000000,
             "accepted webhook-timestamp skew in seconds"),
    ROW_INT ("MOCK_TIMEOUT_DELAY_MS", timeout_delay_ms, 30000, 0, 3600000, "how long POST /test/timeout waits"),
    BM_SETTINGS_END
};

static void
s_usage (FILE *out)
{
    fprintf (out,
"usage: botmesh-mock [--port N] [--help]\n"
"\n"
"A webhook receiver: records every POST (path, headers, body, webhook-id,\n"
"time), checks Standard Webhooks signatures, and answers as its mode says.\n"
"\n"
"  POST <any path>          a delivery, answered per the mode\n"
"  POST /test/success       200;  /test/error  500;  /test/timeout  200 after MOCK_TIMEOUT_DELAY_MS\n"
"  POST /test/not-found     404;  any other /test/<x>  400\n"
"  GET  /stats              {received, byStatus, duplicates, repeats, uniqueIds, dropped,\n"
"                            signatures: {valid, invalid, unchecked}, records, evicted, total,\n"
"                            successful, failed, botTypeStats, lastHour, lastDay, mode}\n"
"  GET  /webhooks?limit=N&offset=M   {webhooks: [{id, timestamp, headers, body...}], total},\n"
"                           newest first;  GET /webhooks/{id}  one of them\n"
"  DELETE /stats, DELETE /webhooks   forget every record and counter\n"
"  GET  /deliveries?jobId=ID[&limit=N]   what arrived for a job, oldest first\n"
"  GET  /mode, POST /mode   the failure mode, e.g. {\"failRate\": 0.3, \"status\": 503,\n"
"                           \"delayMs\": 2000, \"failFirst\": 2, \"retryAfter\": 1, \"dropRate\": 0}\n"
"  GET  /metrics, GET /health, GET /ready (always 200)\n"
"\n"
"Flags:\n"
"  --port N                 overrides MOCK_WEBHOOK_PORT (0: any free port; the line\n"
"                           \"listening http=ADDR:PORT\" on stderr says which)\n"
"  --help                   this text\n"
"  --print-env              the variables with their defaults, as env.example lines\n"
"  --check-config           check the variables and exit: 0 all valid, 2 (each\n"
"                           bad one named)\n"
"\n"
"Environment (defaults in brackets):\n");
    bm_settings_help (s_settings, out);
    fprintf (out,
"  MOCK_FAIL_RATE             0..1, fraction answered with MOCK_FAIL_STATUS [0]\n"
"  MOCK_FAIL_STATUS           failure status [503]\n"
"  MOCK_SUCCESS_STATUS        success status [200]\n"
"  MOCK_DELAY_MS              wait before answering every delivery [0]\n"
"  MOCK_FAIL_FIRST            the first N arrivals of each delivery (by webhook-id, else\n"
"                             jobId; neither: one global count) fail [0]\n"
"  MOCK_RETRY_AFTER           Retry-After value sent with failures (seconds or HTTP-date) []\n"
"  MOCK_DROP_RATE             0..1, fraction closed without an answer [0]\n"
"  CORS_ORIGINS               origins browsers may call from: * (any) or a comma\n"
"                             list (https://app.example.com,...) [*]\n"
"  LOG_LEVEL                  debug, info, warn, error [info]\n");
}

int
main (int argc, char *argv [])
{
    int info_rc = bm_settings_info_flag (argc, argv, s_settings);
    if (info_rc >= 0)
        return info_rc;
    const char *port_flag;
    int rc = bm_http_args (argc, argv, "mock", s_usage, &port_flag);
    if (rc >= 0)
        return rc;
    bm_main_hide_secrets ();
    s_settings_t settings;
    if (bm_settings_load (s_settings, &settings)
    ||  bm_http_port_flag (port_flag, &settings.port)
    ||  bm_http_listen_check ("MOCK_LISTEN_ADDR", settings.listen_addr))
        return BM_EXIT_CONFIG;
    mk_config_t config;
    memset (&config, 0, sizeof config);
    mk_mode_defaults (&config.mode);
    if (mk_mode_from_env (&config.mode))
        return BM_EXIT_CONFIG;
    config.listen_addr = settings.listen_addr;
    config.port = (int) settings.port;
    config.threads = (int) settings.threads;
    config.keep_alive_ms = (int) settings.keep_alive_ms;
    config.max_records = (size_t) settings.max_records;
    config.max_body_stored = (size_t) settings.max_stored;
    config.max_request = (size_t) settings.max_body;
    config.tolerance_s = settings.tolerance_s;
    config.timeout_delay_ms = settings.timeout_delay_ms;
    config.secret = settings.secret ? settings.secret : settings.webhook_secret;
    if (wh_signer_check (settings.secret ? "MOCK_WEBHOOK_SECRET" : "WEBHOOK_SECRET", config.secret))
        return BM_EXIT_CONFIG;

    //  Block the signals before any thread starts, so that every civetweb
    //  thread inherits the mask and only sigwait below receives them.
    sigset_t signals;
    bm_main_block_signals (&signals);

    char error [256];
    mk_server_t *server = mk_server_new (&config, error, sizeof error);
    if (!server) {
        bm_http_start_failed (error, "MOCK_WEBHOOK_PORT");
        return 1;
    }
    bm_main_listening ("http", config.listen_addr, mk_server_port (server));
    bm_info (NULL, "threads %d, keep-alive %d ms, signatures %s, max records %zu",
             config.threads, config.keep_alive_ms,
             config.secret && *config.secret? "checked": "unchecked", config.max_records);
    int sig = 0;
    sigwait (&signals, &sig);
    bm_info (NULL, "%s received, stopping", sig == SIGTERM? "SIGTERM": "SIGINT");
    mk_server_destroy (&server);
    bm_info (NULL, "stopped");
    return 0;
}

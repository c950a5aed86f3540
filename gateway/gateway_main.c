/*  gateway_main.c - botmesh-gateway: the HTTP API in front of the broker.

    Parses flags and the environment, starts the server (gw_server), waits
    for SIGTERM or SIGINT, then stops gracefully: the listening socket
    closes, requests in flight finish, the process exits 0.  */
#include "bm_env_check.h"
#include "bm_main.h"
#include "gw_server.h"
#include "gw_history.h"
#include "gw_arena.h"

#include "bm_config.h"
#include "bm_endpoints.h"
#include "bm_sentinel.h"
#include "bm_redis_setup.h"
#include "bm_http.h"
#include "bm_settings.h"
#include "bm_log.h"
#include "bm_proto.h"

#include <civetweb.h>
#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

//  Every variable the gateway reads (but REDIS_URL, CORS_ORIGINS and the
//  CURVE keys, read by shared code): name, type, default, range, help.
#define ROW_INT(n, f, d, lo, hi, h)  BM_SETTING_INT (n, gw_config_t, f, d, lo, hi, h)
static const bm_setting_t s_settings [] = {
    ROW_INT ("API_GATEWAY_PORT", port, 3000, 0, 65535, "port to listen on (0: any free port)"),
    BM_SETTING_STR ("GATEWAY_LISTEN", gw_config_t, listen_addr, "0.0.0.0", 64, "IPv4 address to bind"),
    BM_SETTING_STR ("BROKER_ENDPOINT", gw_config_t, broker_endpoint, "tcp://127.0.0.1:5555", 512,
                    "broker to connect to (tcp://host:port or ipc://path; tcp://*:PORT means this host)"),
    ROW_INT ("GATEWAY_THREADS", threads, 128, 1, 4096,
             "HTTP worker threads; civetweb holds one per open (keep-alive) connection: size it "
             "to the clients served at once"),
    ROW_INT ("GATEWAY_KEEPALIVE_MS", keepalive_ms, 5000, 0, 3600000,
             "idle keep-alive connections close after this"),
    ROW_INT ("GATEWAY_REQUEST_TIMEOUT_MS", request_timeout_ms, 10000, 100, 3600000,
             "time a client has to send its request"),
    ROW_INT ("GATEWAY_MAX_HEADER_BYTES", max_header_bytes, 16384, 1024, 1048576, "largest request head"),
    ROW_INT ("MAX_BODY_BYTES", max_body, 1048576, 1, 1073741824, "largest request body: 413 beyond"),
    BM_SETTING_MAX_PAYLOAD_BYTES (gw_config_t, max_payload),
    ROW_INT ("MAX_BATCH", max_batch, 1000, 1, BM_MAX_BATCH,
             "most jobs in one POST /invoke/batch: 413 too_many_jobs beyond"),
    BM_SETTING_DOUBLE ("RATE_LIMIT_RPS", gw_config_t, rate_rps, 0, 0, 1e9,
                       "requests per second per API key or client address (0: off)"),
    BM_SETTING_DOUBLE ("RATE_LIMIT_BURST", gw_config_t, rate_burst, 0, 0, 1e9,
                       "bucket size (0: RATE_LIMIT_RPS, at least 1)"),
    ROW_INT ("RATE_LIMIT_MAX_KEYS", rate_max_keys, 100000, 64, 100000000, "most buckets kept"),
    BM_SETTING_STR ("API_KEYS", gw_config_t, api_keys, NULL, 0,
                    "comma-separated keys; when set, data endpoints need 'Authorization: Bearer KEY' "
                    "or 'X-API-Key: KEY' (empty: no keys)"),
    BM_SETTING_STR ("ADMIN_API_KEYS", gw_config_t, admin_api_keys, NULL, 0,
                    "comma-separated keys, each one of API_KEYS; when set, only these may pause, "
                    "resume, drain and clean queues and create or delete schedules (others: 403)"),
    BM_SETTING_BOOL ("METRICS_REQUIRE_KEY", gw_config_t, metrics_require_key, false,
                     "1: /metrics needs a key too"),
    ROW_INT ("BROKER_TIMEOUT_MS", broker_timeout_ms, 5000, 1, 3600000,
             "wait for the broker's answer, then 504"),
    ROW_INT ("BROKER_CONNECT_TIMEOUT_MS", connect_timeout_ms, 1000, 1, 3600000,
             "wait for a broker connection, then 503"),
    BM_SETTING_REDIS_PREFIX (gw_config_t, redis_prefix),
    BM_SETTING_REDIS_SENTINELS (gw_config_t, redis_sentinels),
    BM_SETTING_REDIS_MASTER_NAME (gw_config_t, redis_master_name),
    ROW_INT ("REDIS_TIMEOUT_MS", redis_timeout_ms, 1000, 1, 600000, "Redis connect and command timeout"),
    ROW_INT ("GATEWAY_MAX_WAITERS", max_waiters, 0, 0, 4095,
             "most requests waiting at once for a job to finish (?wait=MS), each holding an "
             "HTTP thread; more get 503 too_many_waiters (0: GATEWAY_THREADS / 4)"),
    ROW_INT ("GATEWAY_MAX_EVENT_STREAMS", max_event_streams, 0, 0, 4095,
             "most GET /events streams open at once, each holding an HTTP thread while open; "
             "more get 503 too_many_streams (0: GATEWAY_THREADS / 8, at least 1)"),
    ROW_INT ("GATEWAY_SHUTDOWN_MS", shutdown_ms, 10000, 0, 3600000,
             "at SIGTERM, how long requests in flight may take to finish; new ones get 503 "
             "shutting_down meanwhile"),
    //  The webhook manager's rule for private targets: a webhookUrl it would
    //  refuse before any lookup (an IP address, localhost) is refused at
    //  submit, not failed at delivery.
    BM_SETTING_WEBHOOK_ALLOW_PRIVATE (gw_config_t, webhook_allow_private),
    BM_SETTING_WEBHOOK_ALLOWED_HOSTS (gw_config_t, webhook_allowed_hosts),
    BM_SETTINGS_END
};

static void
s_usage (FILE *out)
{
    fprintf (out,
"usage: botmesh-gateway [--port N] [--listen ADDR] [--broker ENDPOINT] [--threads N]\n"
"\n"
"The seed's API Gateway (POST /invoke, GET /job/{id}, GET /stats, /health,\n"
"/ready, /metrics, /admin/queues ...) over HTTP, in front of botmesh-broker.\n"
"\n"
"Flags (each overrides its variable):\n"
"  --port N            API_GATEWAY_PORT       port to listen on (default 3000; 0 = any free\n"
"                                             port: the line \"listening http=ADDR:PORT\"\n"
"                                             on stderr says which)\n"
"  --listen ADDR       GATEWAY_LISTEN         IPv4 address to bind (default 0.0.0.0)\n"
"  --broker ENDPOINT   BROKER_ENDPOINT        broker to connect to (default tcp://127.0.0.1:5555)\n"
"  --threads N         GATEWAY_THREADS        HTTP worker threads (default 128)\n"
"  -h, --help          this text\n"
"  --print-env         the variables with their defaults, as env.example lines\n"
"  --check-config      check the variables and exit: 0 all valid, 2 (each bad\n"
"                      one named)\n"
"\n"
"Environment (defaults in brackets):\n");
    bm_settings_help (s_settings, out);
    fprintf (out,
"  REDIS_URL                  Redis for GET /api/history ('none' = no history); when unset,\n"
"                             REDIS_HOST, REDIS_PORT, REDIS_PASSWORD and REDIS_DB build it\n"
"                             [redis://127.0.0.1:6379/0]\n"
"  CORS_ORIGINS               origins browsers may call from: * (any) or a comma list\n"
"                             (https://app.example.com,...) [*]\n"
"  CURVE_SERVER_KEY           the broker's public CURVE key, when the mesh uses CURVE []\n"
"  CURVE_CLIENT_CERT          this gateway's secret CURVE certificate file []\n"
"  LOG_LEVEL                  debug, info, warn, error [info]\n");
}

int
main (int argc, char *argv [])
{
    //  Before anything uses jansson, and before any thread starts
    gw_arena_install ();
    if (bm_log_init ("gateway"))
        return BM_EXIT_CONFIG;
    bm_main_hide_secrets ();
    bm_settings_warn_foreign ();
    bm_env_check_warn ("gateway", environ);
    int info_rc = bm_settings_info_flag (argc, argv, s_settings);
    if (info_rc >= 0)
        return info_rc;
    gw_config_t config = { 0 };
    int bad = bm_settings_load (s_settings, &config);
    const char *port_flag = NULL;
    const char *threads_flag = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv [i];
        const char *value = i + 1 < argc ? argv [i + 1] : NULL;
        if (streq (arg, "-h") || streq (arg, "--help")) {
            s_usage (stdout);
            return 0;
        }
        if (!value) {
            fprintf (stderr, "botmesh-gateway: unknown flag or missing value: %s\n", arg);
            s_usage (stderr);
            return 2;
        }
        if (streq (arg, "--port"))
            port_flag = value;
        else
        if (streq (arg, "--listen"))
            config.listen_addr = value;
        else
        if (streq (arg, "--broker"))
            config.broker_endpoint = value;
        else
        if (streq (arg, "--threads"))
            threads_flag = value;
        else {
            fprintf (stderr, "botmesh-gateway: unknown flag %s\n", arg);
            s_usage (stderr);
            return 2;
        }
        i++;
    }
    //  A flag overrides its variable, with the variable's range.
    const struct { const char *flag; const char *value; const char *name; } flags [] = {
        { "--port", port_flag, "API_GATEWAY_PORT" },
        { "--threads", threads_flag, "GATEWAY_THREADS" },
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags [0]; i++) {
        char error [256];
        if (flags [i].value
        &&  bm_setting_parse (bm_settings_find (s_settings, flags [i].name), flags [i].value,
                              &config, error, sizeof error)) {
            bm_error (NULL, "configuration: %s (%s)", error, flags [i].flag);
            bad = -1;
        }
    }
    static char redis_url [1024];
    const char *prefix;
    bad |= bm_redis_env_load (true, redis_url, sizeof redis_url, &prefix);
    config.redis_url = redis_url;
    bad |= bm_http_cors_from_env ();
    if (config.rate_burst > 0 && config.rate_burst < 1) {
        bm_error (NULL, "configuration: RATE_LIMIT_BURST must be 0 (default) or at least 1");
        bad = -1;
    }
    bad |= bm_http_listen_check ("GATEWAY_LISTEN", config.listen_addr);
    //  One endpoint, or a comma-separated list of brokers (one leading).
    if (!bm_endpoints_valid (config.broker_endpoint)) {
        bm_error (NULL, "configuration: BROKER_ENDPOINT must be " BM_ENDPOINTS_RULE " (got '%s')",
                  config.broker_endpoint ? config.broker_endpoint : "");
        bad = -1;
    }
    if (config.redis_sentinels && !*config.redis_sentinels)
        config.redis_sentinels = NULL;
    if (config.redis_sentinels && !bm_sentinel_list_valid (config.redis_sentinels)) {
        bm_error (NULL, "configuration: REDIS_SENTINELS must be host:port[,host:port...]");
        bad = -1;
    }
    if (bad)
        return BM_EXIT_CONFIG;
    //  A database Redis does not have, a password it refuses: a bad value,
    //  found now rather than at the first GET /api/history.
    if (*redis_url && !streq (redis_url, "none")
    &&  bm_redis_setup_check (redis_url, config.redis_sentinels, config.redis_master_name))
        return BM_EXIT_CONFIG;
    //  The broker's own default, tcp://*:5555, is a bind address: when the
    //  gateway shares its environment, "*" means this host.
    char endpoint [512];
    if (strncmp (config.broker_endpoint, "tcp://*:", 8) == 0) {
        snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%s", config.broker_endpoint + 8);
        config.broker_endpoint = endpoint;
    }

    //  Signals: czmq's handler off; SIGTERM/SIGINT blocked in every thread
    //  (civetweb's threads inherit the mask) and taken by sigwait below.
    sigset_t stop;
    bm_main_block_signals (&stop);
    //  The broker link's DEALER and its monitor; room to spare as before.
    zsys_set_max_sockets ((size_t) config.threads + 64);
    zsys_set_linger (0);
    mg_init_library (0);

    bool bad_config = false;
    gw_server_t *server = gw_server_new (&config, &bad_config);
    if (!server)
        return bad_config ? BM_EXIT_CONFIG : BM_EXIT_FAILED;
    //  Before the listening line, which tests and scripts wait for.
    bm_http_warn_open (config.listen_addr, gw_server_port (server), config.api_keys, "GATEWAY_LISTEN",
                       "submit, read (payloads, results, webhook URLs), cancel, retry and delete "
                       "any job, and pause, drain and clean queues");
    bm_main_listening ("http", config.listen_addr, gw_server_port (server));
    bm_info (NULL, "broker %s, %d threads, keys %s, rate limit %s", config.broker_endpoint,
             (int) config.threads, config.api_keys && *config.api_keys ? "on" : "off",
             config.rate_rps > 0 ? "on" : "off");

    int sig = 0;
    sigwait (&stop, &sig);
    bm_info (NULL, "%s: stopping (finishing requests in flight)", sig == SIGINT ? "SIGINT" : "SIGTERM");
    gw_server_drain (server, config.shutdown_ms);
    gw_server_destroy (&server);
    mg_exit_library ();
    bm_info (NULL, "stopped");
    return 0;
}

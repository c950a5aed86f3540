/*  gateway_main.c - botmesh-gateway: the HTTP API in front of the broker.

    Parses flags and the environment, starts the server (gw_server), waits
    for SIGTERM or SIGINT, then stops gracefully: the listening socket
    closes, requests in flight finish, the process exits 0.  */
#include "gw_server.h"
#include "gw_history.h"

#include "bm_config.h"
#include "bm_http.h"
#include "bm_settings.h"
#include "bm_log.h"
#include "bm_proto.h"

#include <civetweb.h>
#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

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
"  --port N            API_GATEWAY_PORT       port to listen on (default 3000; 0 = any)\n"
"  --listen ADDR       GATEWAY_LISTEN         IPv4 address to bind (default 0.0.0.0)\n"
"  --broker ENDPOINT   BROKER_ENDPOINT        broker to connect to (default tcp://127.0.0.1:5555)\n"
"  --threads N         GATEWAY_THREADS        HTTP worker threads (default 128)\n"
"  -h, --help          this text\n"
"\n"
"Environment:\n"
"  GATEWAY_THREADS             1..4096, default 128. civetweb holds one thread per open\n"
"                              (keep-alive) connection: size it to the clients served at once\n"
"  GATEWAY_KEEPALIVE_MS        idle keep-alive connections close after this (default 5000)\n"
"  GATEWAY_REQUEST_TIMEOUT_MS  time a client has to send its request (default 10000)\n"
"  GATEWAY_MAX_HEADER_BYTES    largest request head (default 16384)\n"
"  MAX_BODY_BYTES              largest request body (default 1048576): 413 beyond\n"
"  MAX_PAYLOAD_BYTES           largest encoded payload (default 1048576), as the broker's\n"
"  RATE_LIMIT_RPS              requests per second per API key or client address (default 0 = off)\n"
"  RATE_LIMIT_BURST            bucket size (default: RATE_LIMIT_RPS, at least 1)\n"
"  RATE_LIMIT_MAX_KEYS         most buckets kept (default 100000)\n"
"  API_KEYS                    comma-separated keys; when set, data endpoints need\n"
"                              'Authorization: Bearer KEY' or 'X-API-Key: KEY' (default: none)\n"
"  METRICS_REQUIRE_KEY         1: /metrics needs a key too (default 0: open)\n"
"  BROKER_TIMEOUT_MS           wait for the broker's answer, then 504 (default 5000)\n"
"  BROKER_CONNECT_TIMEOUT_MS   wait for a broker connection, then 503 (default 1000)\n"
"  REDIS_URL                   Redis for GET /api/history (default redis://127.0.0.1:6379/0;\n"
"                              'none' = no history); when unset, REDIS_HOST, REDIS_PORT,\n"
"                              REDIS_PASSWORD and REDIS_DB build it\n"
"  REDIS_PREFIX                key prefix, as the broker's (default botmesh:, at most 64 bytes)\n"
"  REDIS_TIMEOUT_MS            Redis connect and command timeout (default 1000)\n"
"  GATEWAY_SHUTDOWN_MS         at SIGTERM, how long requests in flight may take to finish\n"
"                              (default 10000); new ones get 503 shutting_down meanwhile\n"
"  CURVE_SERVER_KEY            the broker's public CURVE key, when the mesh uses CURVE\n"
"  CURVE_CLIENT_CERT           this gateway's secret CURVE certificate file\n"
"  CORS_ORIGINS                origins browsers may call from: * (default, any) or a\n"
"                              comma list (https://app.example.com,...)\n"
"  LOG_LEVEL                   debug, info, warn, error (default info)\n");
}

int
main (int argc, char *argv [])
{
    if (bm_log_init ("gateway"))
        return 1;
    bm_settings_warn_foreign ();
    gw_config_t config = { 0 };
    const char *port_flag = NULL;
    const char *threads_flag = NULL;
    config.listen_addr = bm_env_str ("GATEWAY_LISTEN", "0.0.0.0");
    config.broker_endpoint = bm_env_str ("BROKER_ENDPOINT", "tcp://127.0.0.1:5555");
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

    int bad = 0;
    bad |= bm_env_int ("API_GATEWAY_PORT", 3000, 0, 65535, &config.port);
    if (port_flag && bm_parse_int (port_flag, 0, 65535, &config.port)) {
        bm_error (NULL, "configuration: --port must be an integer from 0 to 65535 (got '%s')",
                  port_flag);
        bad = -1;
    }
    bad |= bm_env_int ("GATEWAY_THREADS", 128, 1, 4096, &config.threads);
    if (threads_flag && bm_parse_int (threads_flag, 1, 4096, &config.threads)) {
        bm_error (NULL, "configuration: --threads must be an integer from 1 to 4096 (got '%s')",
                  threads_flag);
        bad = -1;
    }
    bad |= bm_env_int ("GATEWAY_KEEPALIVE_MS", 5000, 0, 3600000, &config.keepalive_ms);
    bad |= bm_env_int ("GATEWAY_REQUEST_TIMEOUT_MS", 10000, 100, 3600000, &config.request_timeout_ms);
    bad |= bm_env_int ("GATEWAY_MAX_HEADER_BYTES", 16384, 1024, 1048576, &config.max_header_bytes);
    bad |= bm_env_int ("MAX_BODY_BYTES", 1048576, 1, 1073741824, &config.max_body);
    bad |= bm_env_int ("MAX_PAYLOAD_BYTES", BM_MAX_PAYLOAD_BYTES, 1, 1073741824, &config.max_payload);
    bad |= bm_env_double ("RATE_LIMIT_RPS", 0, 0, 1e9, &config.rate_rps);
    bad |= bm_env_double ("RATE_LIMIT_BURST", 0, 0, 1e9, &config.rate_burst);
    bad |= bm_env_int ("RATE_LIMIT_MAX_KEYS", 100000, 64, 100000000, &config.rate_max_keys);
    bad |= bm_env_bool ("METRICS_REQUIRE_KEY", false, &config.metrics_require_key);
    bad |= bm_env_int ("BROKER_TIMEOUT_MS", 5000, 1, 3600000, &config.broker_timeout_ms);
    bad |= bm_env_int ("BROKER_CONNECT_TIMEOUT_MS", 1000, 1, 3600000, &config.connect_timeout_ms);
    bad |= bm_env_int ("REDIS_TIMEOUT_MS", 1000, 1, 600000, &config.redis_timeout_ms);
    bad |= bm_env_int ("GATEWAY_SHUTDOWN_MS", 10000, 0, 3600000, &config.shutdown_ms);
    config.api_keys = bm_env_str ("API_KEYS", NULL);
    static char redis_url [1024];
    bad |= bm_redis_env_load (true, redis_url, sizeof redis_url, &config.redis_prefix);
    config.redis_url = redis_url;
    bad |= bm_http_cors_from_env ();
    if (config.rate_burst > 0 && config.rate_burst < 1) {
        bm_error (NULL, "configuration: RATE_LIMIT_BURST must be 0 (default) or at least 1");
        bad = -1;
    }
    if (strncmp (config.broker_endpoint, "tcp://", 6) != 0
    &&  strncmp (config.broker_endpoint, "ipc://", 6) != 0) {
        bm_error (NULL, "configuration: BROKER_ENDPOINT must be tcp://host:port or ipc://path");
        bad = -1;
    }
    if (bad)
        return 1;
    //  The broker's own default, tcp://*:5555, is a bind address: when the
    //  gateway shares its environment, "*" means this host.
    char endpoint [512];
    if (strncmp (config.broker_endpoint, "tcp://*:", 8) == 0) {
        snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%s", config.broker_endpoint + 8);
        config.broker_endpoint = endpoint;
    }

    //  Signals: czmq's handler off; SIGTERM/SIGINT blocked in every thread
    //  (civetweb's threads inherit the mask) and taken by sigwait below.
    zsys_handler_set (NULL);
    signal (SIGPIPE, SIG_IGN);
    sigset_t stop;
    sigemptyset (&stop);
    sigaddset (&stop, SIGTERM);
    sigaddset (&stop, SIGINT);
    pthread_sigmask (SIG_BLOCK, &stop, NULL);
    //  The broker link's DEALER and its monitor; room to spare as before.
    zsys_set_max_sockets ((size_t) config.threads + 64);
    zsys_set_linger (0);
    mg_init_library (0);

    gw_server_t *server = gw_server_new (&config);
    if (!server)
        return 1;
    bm_info (NULL, "listening on %s:%d, broker %s, %d threads, keys %s, rate limit %s",
             config.listen_addr, gw_server_port (server), config.broker_endpoint,
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

/*  botmesh-mock - a webhook receiver for tests and demos (the seed's
    "Mock Webhook (Port 5000)"), scriptable to fail, hang or drop.  */
#include "mk_server.h"
#include "bm_config.h"
#include "bm_http_util.h"
#include "bm_log.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
"  GET  /stats              {received, byStatus, duplicates, repeats, uniqueIds, dropped,\n"
"                            signatures: {valid, invalid, unchecked}, records, evicted, mode}\n"
"  DELETE /stats            forget every record and counter\n"
"  GET  /deliveries?jobId=ID[&limit=N]   what arrived for a job, oldest first\n"
"  GET  /mode, POST /mode   the failure mode, e.g. {\"failRate\": 0.3, \"status\": 503,\n"
"                           \"delayMs\": 2000, \"failFirst\": 2, \"retryAfter\": 1, \"dropRate\": 0}\n"
"  GET  /metrics, GET /health\n"
"\n"
"Flags:\n"
"  --port N                 overrides MOCK_WEBHOOK_PORT\n"
"  --help                   this text\n"
"\n"
"Environment:\n"
"  MOCK_WEBHOOK_PORT        port (default 5000; 0 picks a free one, printed at start)\n"
"  MOCK_LISTEN_ADDR         IPv4 address to bind (default 0.0.0.0)\n"
"  MOCK_THREADS             HTTP threads = connections served at once (default 64)\n"
"  MOCK_KEEPALIVE_MS        idle keep-alive timeout, 0 = no keep-alive (default 500)\n"
"  MOCK_MAX_RECORDS         deliveries kept in memory (default 100000)\n"
"  MOCK_MAX_BODY_STORED     body bytes kept per delivery (default 16384)\n"
"  MOCK_MAX_BODY            largest request body accepted, else 413 (default 8388608)\n"
"  MOCK_WEBHOOK_SECRET      secret to check signatures with (else WEBHOOK_SECRET; none: unchecked)\n"
"  MOCK_SIGNATURE_TOLERANCE_S  accepted webhook-timestamp skew in seconds (default 300)\n"
"  MOCK_TIMEOUT_DELAY_MS    how long POST /test/timeout waits (default 30000)\n"
"  MOCK_FAIL_RATE           0..1, fraction answered with MOCK_FAIL_STATUS (default 0)\n"
"  MOCK_FAIL_STATUS         failure status (default 503)\n"
"  MOCK_SUCCESS_STATUS      success status (default 200)\n"
"  MOCK_DELAY_MS            wait before answering every delivery (default 0)\n"
"  MOCK_FAIL_FIRST          the first N arrivals of each delivery (by webhook-id, else\n"
"                           jobId; neither: one global count) fail (default 0)\n"
"  MOCK_RETRY_AFTER         Retry-After value sent with failures (seconds or HTTP-date)\n"
"  MOCK_DROP_RATE           0..1, fraction closed without an answer (default 0)\n"
"  LOG_LEVEL                debug, info, warn, error (default info)\n");
}

int
main (int argc, char *argv [])
{
    const char *port_flag;
    int rc = bm_http_args (argc, argv, "mock", s_usage, &port_flag);
    if (rc >= 0)
        return rc;
    mk_config_t config;
    memset (&config, 0, sizeof config);
    int64_t port, threads, keep_alive, max_records, max_stored, max_body, tolerance, timeout_delay;
    if (bm_env_int ("MOCK_WEBHOOK_PORT", 5000, 0, 65535, &port)
    ||  bm_env_int ("MOCK_THREADS", 64, 1, 4096, &threads)
    ||  bm_env_int ("MOCK_KEEPALIVE_MS", 500, 0, 3600000, &keep_alive)
    ||  bm_env_int ("MOCK_MAX_RECORDS", 100000, 1, 100000000, &max_records)
    ||  bm_env_int ("MOCK_MAX_BODY_STORED", 16384, 0, 64 * 1024 * 1024, &max_stored)
    ||  bm_env_int ("MOCK_MAX_BODY", 8 * 1024 * 1024, 1, 1024 * 1024 * 1024, &max_body)
    ||  bm_env_int ("MOCK_SIGNATURE_TOLERANCE_S", 300, 0, 100000000, &tolerance)
    ||  bm_env_int ("MOCK_TIMEOUT_DELAY_MS", 30000, 0, 3600000, &timeout_delay))
        return 1;
    if (bm_http_port_flag (port_flag, &port))
        return 1;
    mk_mode_defaults (&config.mode);
    if (mk_mode_from_env (&config.mode))
        return 1;
    config.listen_addr = bm_env_str ("MOCK_LISTEN_ADDR", "0.0.0.0");
    config.port = (int) port;
    config.threads = (int) threads;
    config.keep_alive_ms = (int) keep_alive;
    config.max_records = (size_t) max_records;
    config.max_body_stored = (size_t) max_stored;
    config.max_request = (size_t) max_body;
    config.tolerance_s = tolerance;
    config.timeout_delay_ms = timeout_delay;
    config.secret = bm_env_str ("MOCK_WEBHOOK_SECRET", NULL);
    if (!config.secret || !*config.secret)
        config.secret = bm_env_str ("WEBHOOK_SECRET", NULL);

    //  Block the signals before any thread starts, so that every civetweb
    //  thread inherits the mask and only sigwait below receives them.
    sigset_t signals;
    sigemptyset (&signals);
    sigaddset (&signals, SIGTERM);
    sigaddset (&signals, SIGINT);
    pthread_sigmask (SIG_BLOCK, &signals, NULL);
    signal (SIGPIPE, SIG_IGN);

    char error [256];
    mk_server_t *server = mk_server_new (&config, error, sizeof error);
    if (!server) {
        bm_error (NULL, "cannot start: %s", error);
        return 1;
    }
    bm_info (NULL, "listening on %s:%d (threads %d, keep-alive %d ms, signatures %s, max records %zu)",
             config.listen_addr, mk_server_port (server), config.threads, config.keep_alive_ms,
             config.secret && *config.secret? "checked": "unchecked", config.max_records);
    int sig = 0;
    sigwait (&signals, &sig);
    bm_info (NULL, "%s received, stopping", sig == SIGTERM? "SIGTERM": "SIGINT");
    mk_server_destroy (&server);
    bm_info (NULL, "stopped");
    return 0;
}

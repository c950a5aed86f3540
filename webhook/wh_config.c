/*  wh_config.c - botmesh-webhook's configuration from the environment.  */
#include "wh_config.h"
#include "wh_signature.h"
#include "bm_ssrf.h"
#include "bm_auth.h"
#include "bm_config.h"
#include "bm_endpoints.h"
#include "bm_log.h"
#include "bm_settings.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

//  Every variable the manager reads: name, type, default, range, help.
//  The --help text and --print-env are written from this table.
#define ROW_INT(n, f, d, lo, hi, h)  BM_SETTING_INT (n, wh_config_t, f, d, lo, hi, h)
#define ROW_STR(n, f, d, h)          BM_SETTING_STR (n, wh_config_t, f, d, 0, h)
const bm_setting_t wh_settings [] = {
    BM_SETTING_STR ("BROKER_ENDPOINT", wh_config_t, broker_endpoint, "tcp://127.0.0.1:5555", 512,
                    "broker to take deliveries from"),
    BM_SETTING_STR ("WEBHOOK_NAME", wh_config_t, name_text, NULL, 127,
                    "worker name (empty: webhook-<hostname>-<pid>)"),
    ROW_INT ("WEBHOOK_CONCURRENCY", credit, 10000, 1, 1000000,
             "deliveries held at once (the worker credit), including those waiting for a retry"),
    ROW_INT ("WEBHOOK_MAX_HELD_BYTES", max_held_bytes, 268435456, 1, INT64_C (1) << 40,
             "bytes the deliveries held at once hold (record, body, URL, ids); past it the "
             "manager takes no more deliveries (credit 0) until some are released (one larger "
             "alone is taken when nothing else is held)"),
    ROW_INT ("WEBHOOK_MAX_INFLIGHT", max_inflight, 64, 1, 10000,
             "HTTP requests in flight at once; more due deliveries queue"),
    ROW_INT ("WEBHOOK_MAX_RESOLVING", max_resolving, 32, 1, 10000,
             "host name lookups that may wait for a DNS server that does not answer (those of "
             "ended attempts count until the resolver gives up); past it, while one such lookup "
             "was abandoned, an attempt to a host name is not made (retryable)"),
    ROW_INT ("WEBHOOK_MAX_RESOLVING_PER_HOST", max_resolving_per_host, 4, 1, 10000,
             "host name lookups of one name pending at once (at most WEBHOOK_MAX_RESOLVING): "
             "more attempts to it wait for one of them to end; once one of its lookups was "
             "abandoned, an attempt past it is not made (retryable), so that one name whose "
             "DNS does not answer leaves room for the others"),
    ROW_INT ("WEBHOOK_MAX_RETRIES", max_retries, 5, 0, 100,
             "retries after the first attempt: a delivery makes at most 1 + WEBHOOK_MAX_RETRIES attempts"),
    ROW_INT ("WEBHOOK_RETRY_DELAY", retry_delay_ms, 1000, 0, 86400000,
             "backoff base in ms: the wait after attempt n is drawn from "
             "[0, min(WEBHOOK_MAX_DELAY, WEBHOOK_RETRY_DELAY * 2^(n-1))]"),
    ROW_INT ("WEBHOOK_MAX_DELAY", max_delay_ms, 60000, 0, 86400000,
             "cap of every wait in ms, Retry-After included (at least 1)"),
    ROW_STR ("WEBHOOK_JITTER", jitter_name, "full",
             "full (random in [0, ceiling]), equal ([ceiling/2, ceiling]) or none (the ceiling)"),
    ROW_INT ("WEBHOOK_TIMEOUT_MS", timeout_ms, 10000, 1, 3600000,
             "limit of one attempt (connect + request + answer), in ms"),
    ROW_INT ("WEBHOOK_CONNECT_TIMEOUT_MS", connect_timeout_ms, 5000, 1, 3600000,
             "limit of the connection phase in ms (at most WEBHOOK_TIMEOUT_MS)"),
    ROW_STR ("WEBHOOK_SECRET", secret, NULL,
             "sign deliveries (Standard Webhooks; \"whsec_<base64>\" or a raw key; empty: unsigned)"),
    BM_SETTING_WEBHOOK_ALLOW_PRIVATE (wh_config_t, allow_private),
    BM_SETTING_WEBHOOK_ALLOWED_HOSTS (wh_config_t, allowed_hosts),
    ROW_STR ("WEBHOOK_CA_FILE", ca_file, NULL, "CA bundle for https targets (empty: the system's)"),
    ROW_STR ("WEBHOOK_CONNECT_TO", connect_to_text, "",
             "comma list of HOST:PORT:TO-HOST:TO-PORT: connect there instead (curl's --connect-to), "
             "e.g. mock-webhook:5000:127.0.0.1:5000; an IPv6 address in brackets, [::1]"),
    ROW_STR ("WEBHOOK_USER_AGENT", user_agent, "botmesh-webhook/0.1", "User-Agent header"),
    ROW_INT ("WEBHOOK_SHUTDOWN_GRACE_MS", grace_ms, 15000, 0, 3600000,
             "on SIGTERM, how long in-flight requests may finish, in ms"),
    ROW_INT ("WEBHOOK_MANAGER_PORT", port, 4000, 0, 65535,
             "HTTP port of /stats, /metrics, /health, /deliveries (0: any free port)"),
    ROW_STR ("WEBHOOK_LISTEN_ADDR", listen_addr, "0.0.0.0", "IPv4 address the HTTP server binds"),
    ROW_INT ("WEBHOOK_HTTP_THREADS", http_threads, 8, 1, 1024, "HTTP server threads"),
    ROW_STR ("API_KEYS", api_keys, NULL,
             "comma-separated keys, as the gateway's; when set, POST /deliveries/{jobId}/retry and "
             "GET /stats need 'Authorization: Bearer KEY' or 'X-API-Key: KEY' (empty: no keys)"),
    ROW_STR ("ADMIN_API_KEYS", admin_api_keys, NULL,
             "comma-separated keys, each one of API_KEYS; when set, only these may ask for a "
             "redelivery (others: 403)"),
    BM_SETTING_BOOL ("METRICS_REQUIRE_KEY", wh_config_t, metrics_require_key, false,
                     "1: /metrics needs a key too"),
    BM_SETTING_HEARTBEAT_INTERVAL_MS (wh_config_t, heartbeat_ms),
    BM_SETTING_HEARTBEAT_LIVENESS (wh_config_t, liveness),
    BM_SETTINGS_END
};

//  Variables read elsewhere (by libraries shared with other services),
//  listed in --help after the table.
static const char *s_more_help =
"  CURVE_SERVER_KEY           the broker's public CURVE key, when the mesh uses CURVE []\n"
"  CURVE_CLIENT_CERT          this manager's secret CURVE certificate file []\n"
"  CORS_ORIGINS               origins browsers may call from: * (any) or a comma\n"
"                             list (https://app.example.com,...) [*]\n"
"  LOG_LEVEL                  debug, info, warn, error [info]\n";

//  A WEBHOOK_CONNECT_TO entry reads HOST:PORT:TO-HOST:TO-PORT, as curl's
//  CURLOPT_CONNECT_TO does: four fields split at the colons outside
//  brackets (an IPv6 address is written [::1]), HOST not empty.
static bool
s_connect_to_valid (const char *entry)
{
    int fields = 1;
    bool bracket = false;
    for (const char *p = entry; *p; p++) {
        if (*p == '[' && !bracket)
            bracket = true;
        else
        if (*p == ']' && bracket)
            bracket = false;
        else
        if (*p == ':' && !bracket)
            fields++;
    }
    return fields == 4 && !bracket && entry [0] != ':';
}

void
wh_config_help (FILE *out)
{
    fprintf (out, "Environment (defaults in brackets):\n");
    bm_settings_help (wh_settings, out);
    fputs (s_more_help, out);
}

int
wh_config_load (wh_config_t *c)
{
    memset (c, 0, sizeof *c);
    int rc = bm_settings_load (wh_settings, c);
    if (c->name_text && *c->name_text)
        snprintf (c->name, sizeof c->name, "%s", c->name_text);
    else {
        char host [64] = "host";
        gethostname (host, sizeof host);
        host [sizeof host - 1] = 0;
        snprintf (c->name, sizeof c->name, "webhook-%s-%d", host, (int) getpid ());
    }
    //  0 would cap every wait at nothing: no backoff, Retry-After ignored.
    if (c->max_delay_ms == 0) {
        bm_error (NULL, "configuration: WEBHOOK_MAX_DELAY must be at least 1 ms (0 would make "
                  "every retry immediate and ignore Retry-After; lower WEBHOOK_RETRY_DELAY "
                  "for quick retries)");
        rc = -1;
    }
    if (wh_jitter_parse (c->jitter_name, &c->jitter)) {
        bm_error (NULL, "configuration: WEBHOOK_JITTER must be full, equal or none (got '%s')",
                  c->jitter_name);
        rc = -1;
    }
    if (!bm_endpoints_valid (c->broker_endpoint)) {
        bm_error (NULL, "configuration: BROKER_ENDPOINT must be " BM_ENDPOINTS_RULE " (got '%s')",
                  c->broker_endpoint);
        rc = -1;
    }
    if (c->secret && !*c->secret)
        c->secret = NULL;
    if (wh_signer_check ("WEBHOOK_SECRET", c->secret))
        rc = -1;
    if (c->ca_file && !*c->ca_file)
        c->ca_file = NULL;
    if (c->ca_file && access (c->ca_file, R_OK)) {
        bm_error (NULL, "configuration: WEBHOOK_CA_FILE '%s' cannot be read", c->ca_file);
        rc = -1;
    }
    //  The keys are parsed again by the HTTP server: checked here, so that
    //  a bad list stops the manager as a configuration error.
    char key_error [200];
    bm_auth_t *keys = bm_auth_new (c->api_keys, key_error, sizeof key_error), *admin = NULL;
    if (!keys || bm_auth_admin_new (keys, c->admin_api_keys, &admin, key_error, sizeof key_error)) {
        bm_error (NULL, "configuration: %s", key_error);
        rc = -1;
    }
    bm_auth_destroy (&keys);
    bm_auth_destroy (&admin);
    char list_error [300];
    if (bm_ssrf_list_check (c->allowed_hosts, list_error, sizeof list_error)) {
        bm_error (NULL, "configuration: WEBHOOK_ALLOWED_HOSTS: %s", list_error);
        rc = -1;
    }
    //  WEBHOOK_CONNECT_TO: the local stack maps the seed's mock-webhook:5000
    //  to the mock on this machine, so the seed's examples work unchanged.
    char *copy = strdup (c->connect_to_text);
    if (!copy)
        return -1;
    for (char *save = NULL, *entry = strtok_r (copy, ",", &save); entry;
         entry = strtok_r (NULL, ",", &save)) {
        if (!s_connect_to_valid (entry)) {
            bm_error (NULL, "configuration: WEBHOOK_CONNECT_TO entries must be "
                      "HOST:PORT:TO-HOST:TO-PORT (got '%s')", entry);
            rc = -1;
            continue;
        }
        c->connect_to = curl_slist_append (c->connect_to, entry);
    }
    free (copy);
    if (c->max_resolving_per_host > c->max_resolving)
        c->max_resolving_per_host = c->max_resolving;
    if (c->connect_timeout_ms > c->timeout_ms)
        c->connect_timeout_ms = c->timeout_ms;
    return rc? -1: 0;
}

void
wh_config_free (wh_config_t *c)
{
    curl_slist_free_all (c->connect_to);
    c->connect_to = NULL;
}

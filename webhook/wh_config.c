/*  wh_config.c - botmesh-webhook's configuration from the environment.  */
#include "wh_config.h"
#include "bm_config.h"
#include "bm_log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *wh_config_help =
"Environment (defaults in brackets):\n"
"  BROKER_ENDPOINT            broker to take deliveries from [tcp://127.0.0.1:5555]\n"
"  WEBHOOK_NAME               worker name [webhook-<hostname>-<pid>]\n"
"  WEBHOOK_CONCURRENCY        deliveries held at once (the worker credit), including those\n"
"                             waiting for a retry [10000]\n"
"  WEBHOOK_MAX_INFLIGHT       HTTP requests in flight at once; more due deliveries queue [64]\n"
"  WEBHOOK_MAX_RETRIES        retries after the first attempt: a delivery makes at most\n"
"                             1 + WEBHOOK_MAX_RETRIES attempts (default 5: 6 attempts) [5]\n"
"  WEBHOOK_RETRY_DELAY        backoff base in ms: the wait after attempt n is drawn from\n"
"                             [0, min(WEBHOOK_MAX_DELAY, WEBHOOK_RETRY_DELAY * 2^(n-1))] [1000]\n"
"  WEBHOOK_MAX_DELAY          cap of every wait in ms, Retry-After included [60000]\n"
"  WEBHOOK_JITTER             full (random in [0, ceiling]), equal ([ceiling/2, ceiling]) or\n"
"                             none (exactly the ceiling) [full]\n"
"  WEBHOOK_TIMEOUT_MS         limit of one attempt (connect + request + answer) [10000]\n"
"  WEBHOOK_CONNECT_TIMEOUT_MS limit of the connection phase [min(5000, WEBHOOK_TIMEOUT_MS)]\n"
"  WEBHOOK_SECRET             sign deliveries (Standard Webhooks; \"whsec_<base64>\" or raw) []\n"
"  WEBHOOK_ALLOW_PRIVATE      1: allow loopback, private, link-local targets [0]\n"
"  WEBHOOK_ALLOWED_HOSTS      comma list of host names allowed whatever they resolve to []\n"
"  WEBHOOK_CA_FILE            CA bundle for https targets [the system's]\n"
"  WEBHOOK_CONNECT_TO         comma list of HOST:PORT:TO-HOST:TO-PORT: connect there instead\n"
"                             (curl's --connect-to), e.g. mock-webhook:5000:127.0.0.1:5000 []\n"
"  WEBHOOK_USER_AGENT         User-Agent header [botmesh-webhook/0.1]\n"
"  WEBHOOK_SHUTDOWN_GRACE_MS  on SIGTERM, how long in-flight requests may finish [15000]\n"
"  WEBHOOK_MANAGER_PORT       HTTP port of /stats, /metrics, /health, /deliveries [4000]\n"
"  WEBHOOK_LISTEN_ADDR        IPv4 address the HTTP server binds [0.0.0.0]\n"
"  WEBHOOK_HTTP_THREADS       HTTP server threads [8]\n"
"  HEARTBEAT_INTERVAL_MS      heartbeat to the broker [1000]\n"
"  HEARTBEAT_LIVENESS         missed heartbeats before reconnecting [3]\n"
"  CURVE_SERVER_KEY           the broker's public CURVE key, when the mesh uses CURVE []\n"
"  CURVE_CLIENT_CERT          this manager's secret CURVE certificate file []\n"
"  LOG_LEVEL                  debug, info, warn, error [info]\n";

int
wh_config_load (wh_config_t *c)
{
    memset (c, 0, sizeof *c);
    int rc = 0;
    c->broker_endpoint = bm_env_str ("BROKER_ENDPOINT", "tcp://127.0.0.1:5555");
    const char *name = bm_env_str ("WEBHOOK_NAME", NULL);
    if (name && *name) {
        if (strlen (name) >= sizeof c->name) {
            bm_error (NULL, "configuration: WEBHOOK_NAME must be shorter than %zu bytes", sizeof c->name);
            rc = -1;
        }
        snprintf (c->name, sizeof c->name, "%s", name);
    }
    else {
        char host [64] = "host";
        gethostname (host, sizeof host);
        host [sizeof host - 1] = 0;
        snprintf (c->name, sizeof c->name, "webhook-%s-%d", host, (int) getpid ());
    }
    rc |= bm_env_int ("WEBHOOK_CONCURRENCY", 10000, 1, 1000000, &c->credit);
    rc |= bm_env_int ("HEARTBEAT_INTERVAL_MS", 1000, 10, 3600000, &c->heartbeat_ms);
    rc |= bm_env_int ("HEARTBEAT_LIVENESS", 3, 1, 100, &c->liveness);
    rc |= bm_env_int ("WEBHOOK_MAX_INFLIGHT", 64, 1, 10000, &c->max_inflight);
    rc |= bm_env_int ("WEBHOOK_MAX_RETRIES", 5, 0, 100, &c->max_retries);
    rc |= bm_env_int ("WEBHOOK_RETRY_DELAY", 1000, 0, 86400000, &c->retry_delay_ms);
    rc |= bm_env_int ("WEBHOOK_MAX_DELAY", 60000, 0, 86400000, &c->max_delay_ms);
    rc |= bm_env_int ("WEBHOOK_TIMEOUT_MS", 10000, 1, 3600000, &c->timeout_ms);
    rc |= bm_env_int ("WEBHOOK_CONNECT_TIMEOUT_MS",
                      c->timeout_ms < 5000? c->timeout_ms: 5000, 1, 3600000, &c->connect_timeout_ms);
    rc |= bm_env_int ("WEBHOOK_SHUTDOWN_GRACE_MS", 15000, 0, 3600000, &c->grace_ms);
    rc |= bm_env_int ("WEBHOOK_MANAGER_PORT", 4000, 0, 65535, &c->port);
    rc |= bm_env_int ("WEBHOOK_HTTP_THREADS", 8, 1, 1024, &c->http_threads);
    rc |= bm_env_bool ("WEBHOOK_ALLOW_PRIVATE", false, &c->allow_private);
    const char *jitter = bm_env_str ("WEBHOOK_JITTER", "full");
    if (wh_jitter_parse (jitter, &c->jitter)) {
        bm_error (NULL, "configuration: WEBHOOK_JITTER must be full, equal or none (got '%s')", jitter);
        rc = -1;
    }
    c->secret = bm_env_str ("WEBHOOK_SECRET", NULL);
    if (c->secret && !*c->secret)
        c->secret = NULL;
    c->allowed_hosts = bm_env_str ("WEBHOOK_ALLOWED_HOSTS", "");
    c->ca_file = bm_env_str ("WEBHOOK_CA_FILE", NULL);
    if (c->ca_file && !*c->ca_file)
        c->ca_file = NULL;
    if (c->ca_file && access (c->ca_file, R_OK)) {
        bm_error (NULL, "configuration: WEBHOOK_CA_FILE '%s' cannot be read", c->ca_file);
        rc = -1;
    }
    //  WEBHOOK_CONNECT_TO: the local stack maps the seed's mock-webhook:5000
    //  to the mock on this machine, so the seed's examples work unchanged.
    const char *connect_to = bm_env_str ("WEBHOOK_CONNECT_TO", "");
    char *copy = strdup (connect_to);
    for (char *save = NULL, *entry = strtok_r (copy, ",", &save); entry;
         entry = strtok_r (NULL, ",", &save)) {
        int colons = 0;
        for (const char *p = entry; *p; p++)
            colons += *p == ':';
        if (colons != 3 || entry [0] == ':') {
            bm_error (NULL, "configuration: WEBHOOK_CONNECT_TO entries must be "
                      "HOST:PORT:TO-HOST:TO-PORT (got '%s')", entry);
            rc = -1;
            continue;
        }
        c->connect_to = curl_slist_append (c->connect_to, entry);
    }
    free (copy);
    c->user_agent = bm_env_str ("WEBHOOK_USER_AGENT", "botmesh-webhook/0.1");
    c->listen_addr = bm_env_str ("WEBHOOK_LISTEN_ADDR", "0.0.0.0");
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

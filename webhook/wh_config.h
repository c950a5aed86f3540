/*  wh_config.h - botmesh-webhook's configuration, read from the
    environment strictly (a bad value stops the manager at start, naming
    the variable).  A plain struct: it is data, filled once, read-only
    afterwards, shared by the loop and the HTTP threads.  */
#ifndef WH_CONFIG_H
#define WH_CONFIG_H

#include "bm_settings.h"
#include "wh_backoff.h"
#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    //  Broker
    const char *broker_endpoint;    //  BROKER_ENDPOINT
    const char *name_text;          //  WEBHOOK_NAME as set, or NULL
    char name [128];                //  WEBHOOK_NAME, default webhook-<host>-<pid>
    int64_t credit;                 //  WEBHOOK_CONCURRENCY: deliveries held at once
    int64_t max_held_bytes;         //  WEBHOOK_MAX_HELD_BYTES: the bytes they hold
    int64_t heartbeat_ms;           //  HEARTBEAT_INTERVAL_MS
    int64_t liveness;               //  HEARTBEAT_LIVENESS
    //  Delivery
    int64_t max_inflight;           //  WEBHOOK_MAX_INFLIGHT: HTTP requests at once
    int64_t max_resolving;          //  WEBHOOK_MAX_RESOLVING: DNS lookups pending at once
    int64_t max_resolving_per_host; //  WEBHOOK_MAX_RESOLVING_PER_HOST: ... of one name
    int64_t max_retries;            //  WEBHOOK_MAX_RETRIES: attempts = 1 + retries
    int64_t retry_delay_ms;         //  WEBHOOK_RETRY_DELAY: backoff base
    int64_t max_delay_ms;           //  WEBHOOK_MAX_DELAY: backoff and Retry-After cap
    const char *jitter_name;        //  WEBHOOK_JITTER as set
    wh_jitter_t jitter;             //  WEBHOOK_JITTER
    int64_t timeout_ms;             //  WEBHOOK_TIMEOUT_MS: one attempt, all included
    int64_t connect_timeout_ms;     //  WEBHOOK_CONNECT_TIMEOUT_MS
    const char *secret;             //  WEBHOOK_SECRET, NULL: unsigned
    bool allow_private;             //  WEBHOOK_ALLOW_PRIVATE
    const char *allowed_hosts;      //  WEBHOOK_ALLOWED_HOSTS
    const char *ca_file;            //  WEBHOOK_CA_FILE, NULL: the system's CAs
    const char *connect_to_text;    //  WEBHOOK_CONNECT_TO as set
    struct curl_slist *connect_to;  //  WEBHOOK_CONNECT_TO, as curl's CONNECT_TO
                                    //  list, NULL: none (lives as long as
                                    //  the process)
    const char *user_agent;         //  WEBHOOK_USER_AGENT
    int64_t grace_ms;               //  WEBHOOK_SHUTDOWN_GRACE_MS
    //  HTTP API
    const char *listen_addr;        //  WEBHOOK_LISTEN_ADDR
    int64_t port;                   //  WEBHOOK_MANAGER_PORT
    int64_t http_threads;           //  WEBHOOK_HTTP_THREADS
    const char *api_keys;           //  API_KEYS (NULL or "": none)
    const char *admin_api_keys;     //  ADMIN_API_KEYS (NULL or "": none)
    bool metrics_require_key;       //  METRICS_REQUIRE_KEY
} wh_config_t;

//  Fill config from the environment.  Returns 0, or -1 after logging which
//  variable is wrong.
int wh_config_load (wh_config_t *config);

//  Free what load allocated (the CONNECT_TO list).
void wh_config_free (wh_config_t *config);

//  The manager's settings table (bm_settings.h), and the --help text's
//  list of variables written from it.
extern const bm_setting_t wh_settings [];
void wh_config_help (FILE *out);

#endif

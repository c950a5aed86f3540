/*  gw_server.h - botmesh-gateway's HTTP server (civetweb) and its routes.

    The seed's API Gateway on port 3000: POST /invoke, GET /job/{id},
    POST /job/{id}/cancel|retry|redeliver, GET /jobs, GET /stats,
    GET /health, GET /ready, GET /metrics, the dashboard under
    /admin/queues and GET /api/history.  Each request is validated, checked
    against the API keys and the rate limiter, and turned into one BMC01
    request to the broker over the server's one shared, pipelined link (gw_link).
    See gateway/README.md for the contract (status codes, error codes,
    the authentication rule).  */
#ifndef GW_SERVER_H
#define GW_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Settings (main.c reads them from flags and the environment).
typedef struct {
    const char *listen_addr;        //  GATEWAY_LISTEN, IPv4 address
    int64_t port;                   //  API_GATEWAY_PORT / --port; 0 = ephemeral
    const char *broker_endpoint;    //  BROKER_ENDPOINT
    int64_t threads;                //  GATEWAY_THREADS (civetweb num_threads)
    int64_t keepalive_ms;           //  GATEWAY_KEEPALIVE_MS
    int64_t request_timeout_ms;     //  GATEWAY_REQUEST_TIMEOUT_MS
    int64_t max_header_bytes;       //  GATEWAY_MAX_HEADER_BYTES
    int64_t max_body;               //  MAX_BODY_BYTES
    int64_t max_payload;            //  MAX_PAYLOAD_BYTES
    int64_t max_batch;              //  MAX_BATCH: jobs in one POST /invoke/batch
    double rate_rps;                //  RATE_LIMIT_RPS (0 = off)
    double rate_burst;              //  RATE_LIMIT_BURST
    int64_t rate_max_keys;          //  RATE_LIMIT_MAX_KEYS
    const char *api_keys;           //  API_KEYS
    const char *admin_api_keys;     //  ADMIN_API_KEYS (NULL: every key is admin)
    bool metrics_require_key;       //  METRICS_REQUIRE_KEY
    int64_t broker_timeout_ms;      //  BROKER_TIMEOUT_MS
    int64_t connect_timeout_ms;     //  BROKER_CONNECT_TIMEOUT_MS
    const char *redis_url;          //  REDIS_URL ("none" = no history)
    const char *redis_prefix;       //  REDIS_PREFIX
    const char *redis_sentinels;    //  REDIS_SENTINELS, or NULL
    const char *redis_master_name;  //  REDIS_MASTER_NAME
    int64_t redis_timeout_ms;       //  REDIS_TIMEOUT_MS
    int64_t shutdown_ms;            //  GATEWAY_SHUTDOWN_MS
    int64_t max_waiters;            //  GATEWAY_MAX_WAITERS (0: GATEWAY_THREADS / 4)
    int64_t max_event_streams;      //  GATEWAY_MAX_EVENT_STREAMS (0: GATEWAY_THREADS / 8, at least 1)
    bool webhook_allow_private;     //  WEBHOOK_ALLOW_PRIVATE (the webhook manager's)
    const char *webhook_allowed_hosts;  //  WEBHOOK_ALLOWED_HOSTS (the webhook manager's)
} gw_config_t;

typedef struct _gw_server_t gw_server_t;

//  Start serving.  Returns NULL (logged) if the configuration is invalid
//  (then *bad_config is set true) or the server cannot start (the port
//  cannot be bound).
gw_server_t *gw_server_new (const gw_config_t *config, bool *bad_config);

//  The port we listen on (useful with port 0).
int gw_server_port (gw_server_t *self);

//  Begin a graceful stop: from now on every request but GET /health is
//  answered 503 shutting_down (Retry-After, Connection: close), and this
//  waits until the requests already being served have been answered, at
//  most timeout_ms.  GET /events streams are told to end at once; those
//  still writing 200 ms later (their clients stopped reading) get their
//  connections shut.  Returns 0, or -1 if some were still in flight.
int gw_server_drain (gw_server_t *self, int64_t timeout_ms);

//  Stop the server (closing its socket and connections) and free
//  everything.  Takes about 2 s (civetweb's mg_stop).
void gw_server_destroy (gw_server_t **self_p);

#endif

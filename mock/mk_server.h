/*  mk_server.h - botmesh-mock's HTTP server (civetweb): records deliveries
    and answers them as its mode says.

        POST <any other path>       a delivery: recorded, answered per the mode
        POST /test/success          200 at once (the seed's endpoints)
        POST /test/error            500 at once
        POST /test/timeout          answers 200 only after MOCK_TIMEOUT_DELAY_MS
        GET  /stats                 counters (see mk_store.h) and the mode
        DELETE /stats               forget everything
        GET  /deliveries?jobId=ID&limit=N   what arrived for a job, oldest first
        GET  /mode, POST /mode      read / change the failure mode (mk_mode.h)
        GET  /metrics               Prometheus text
        GET  /health                {"status": "ok"}

    Each civetweb thread serves one connection; the store and the mode sit
    behind one mutex, held only to decide and record (never while waiting
    out a delay).  */
#ifndef MK_SERVER_H
#define MK_SERVER_H

#include "mk_mode.h"
#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *listen_addr;    //  IPv4 address to bind ("0.0.0.0")
    int port;                   //  0: an ephemeral port
    int threads;                //  civetweb worker threads
    int keep_alive_ms;          //  Idle keep-alive timeout; 0 disables keep-alive
    size_t max_records;         //  Deliveries kept
    size_t max_body_stored;     //  Body bytes kept per delivery
    size_t max_request;         //  Largest request body accepted
    const char *secret;         //  Standard Webhooks secret, or NULL
    int64_t tolerance_s;        //  Accepted webhook-timestamp skew
    int64_t timeout_delay_ms;   //  How long /test/timeout waits
    mk_mode_t mode;             //  Initial mode
} mk_config_t;

typedef struct _mk_server_t mk_server_t;

//  Start serving.  NULL, with a reason in error, if the secret is invalid
//  or the port cannot be bound.
mk_server_t *mk_server_new (const mk_config_t *config, char *error, size_t error_size);

//  Stop: wakes every delayed answer, waits for the threads (~2 s).
void mk_server_destroy (mk_server_t **self_p);

int mk_server_port (mk_server_t *self);

#endif

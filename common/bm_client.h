/*  bm_client.h - a synchronous BMC01 client over one DEALER socket.

    For the command-line client, the gateway (one per handler thread), the
    webhook manager and tests.  Not thread-safe: one client per thread.
    Requests carry a "req" number; replies to older requests (that timed out)
    are dropped.  RESULT pushes that arrive while waiting for a reply are
    kept and handed out by bm_client_recv_result.  */
#ifndef BM_CLIENT_H
#define BM_CLIENT_H

#include "bm_codec.h"

typedef struct _bm_client_t bm_client_t;

//  Connect to a broker endpoint ("tcp://127.0.0.1:5555"), or to the first
//  of a comma-separated list of brokers of which one leads (bm_endpoints.h):
//  a request answered REJECTED not_leader is sent again to the leader the
//  standby names, or the next broker; a broker that does not answer within
//  its share of the timeout (timeout / brokers, at least 500 ms) is left
//  for the next one, and the request sent again there (Lazy Pirate: a
//  SUBMIT the silent broker took after all then makes a second job, which
//  an idempotencyKey prevents).  NULL on error.
bm_client_t *bm_client_new (const char *endpoint);
void bm_client_destroy (bm_client_t **self_p);

//  The number the next request must carry as "req".
int64_t bm_client_next_req (bm_client_t *self);

//  Send a request whose body (a msgpack map holding "req" =
//  bm_client_next_req ()) is in body/size, and wait up to timeout_ms for
//  its answer.  Returns the reply (caller destroys), or NULL on timeout
//  (errno = ETIMEDOUT) or send failure.  An interrupted wait returns NULL
//  with errno = EINTR.
bm_msg_t *bm_client_request (bm_client_t *self, int command,
                             const char *body, size_t size, int timeout_ms);

//  Send a request whose body is {req} alone (STATS, PING, METRICS) and
//  wait for its answer, as bm_client_request.
bm_msg_t *bm_client_ask (bm_client_t *self, int command, int timeout_ms);

//  Wait up to timeout_ms for a RESULT push.  NULL on timeout.
bm_msg_t *bm_client_recv_result (bm_client_t *self, int timeout_ms);

//  With CURVE, after a request got no answer: what went wrong with the
//  handshake (the broker refused this peer's key, or the server key is
//  wrong), as a sentence for the operator; NULL if nothing was heard.
const char *bm_client_handshake_problem (bm_client_t *self);

//  The underlying socket (for polling), borrowed.
zsock_t *bm_client_sock (bm_client_t *self);

#endif

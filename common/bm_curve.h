/*  bm_curve.h - optional CURVE security for the mesh (libzmq CurveZMQ).

    Off unless configured.  The broker, with CURVE_SERVER_CERT (its secret
    certificate file) and CURVE_CLIENTS_DIR (a folder of the public
    certificates it accepts), encrypts every connection and refuses peers
    whose key it does not know.  A peer (worker, gateway, webhook manager,
    client) sets CURVE_SERVER_KEY (the broker's public key, Z85) and
    CURVE_CLIENT_CERT (its own secret certificate file).  Certificates are
    czmq zcert files: `botmesh-client keygen DIR NAME` writes a pair.  */
#ifndef BM_CURVE_H
#define BM_CURVE_H

#include <czmq.h>

//  A peer's CURVE settings: the broker's public key (CURVE_SERVER_KEY)
//  and this peer's secret certificate file (CURVE_CLIENT_CERT); CURVE is
//  off when server_key is NULL or empty.
typedef struct {
    const char *server_key;
    const char *client_cert;
} bm_curve_peer_t;

//  The settings in the environment (borrowed from it).
bm_curve_peer_t bm_curve_peer_from_env (void);

//  Configure a peer's socket before it connects, with the settings given.
//  Returns 0 (also when CURVE is off) or -1, logged, naming the variable
//  at fault.
int bm_curve_peer_apply (const bm_curve_peer_t *peer, zsock_t *sock);

//  The same with the environment's settings.
int bm_curve_client_apply (zsock_t *sock);

//  Broker side: start the authenticator and make sock a CURVE server.
//  *auth_p receives the zauth actor (caller destroys it after the socket).
//  Returns 0 (also when not configured, *auth_p = NULL) or -1, logged.
int bm_curve_server_apply (zsock_t *sock, zactor_t **auth_p);

//  Write DIR/NAME.key (public) and DIR/NAME.key_secret (secret) and print
//  the public key.  Returns 0 or -1.
int bm_curve_keygen (const char *dir, const char *name);

#endif

/*  bm_curve.c - optional CURVE security for the mesh.  */
#include "bm_curve.h"
#include "bm_log.h"

static bool
s_set (const char *name)
{
    const char *value = getenv (name);
    return value && *value;
}

//  A certificate loaded from a public file alone (no "_secret" next to it)
//  has a secret key of zeros: it cannot do a handshake.
static bool
s_no_secret (zcert_t *cert)
{
    const byte *key = zcert_secret_key (cert);
    for (int i = 0; i < 32; i++)
        if (key [i])
            return false;
    return true;
}

bm_curve_peer_t
bm_curve_peer_from_env (void)
{
    bm_curve_peer_t peer = { getenv ("CURVE_SERVER_KEY"), getenv ("CURVE_CLIENT_CERT") };
    return peer;
}

int
bm_curve_peer_apply (const bm_curve_peer_t *peer, zsock_t *sock)
{
    const char *server_key = peer->server_key;
    const char *client_cert = peer->client_cert;
    if (!server_key || !*server_key)
        return 0;
    if (strlen (server_key) != 40) {
        bm_error (NULL, "configuration: CURVE_SERVER_KEY must be the broker's public key, "
                  "40 characters of Z85");
        return -1;
    }
    if (!client_cert || !*client_cert) {
        bm_error (NULL, "configuration: CURVE_SERVER_KEY is set, so CURVE_CLIENT_CERT must "
                  "name this peer's secret certificate (botmesh-client keygen)");
        return -1;
    }
    zcert_t *cert = zcert_load (client_cert);
    if (!cert) {
        bm_error (NULL, "configuration: CURVE_CLIENT_CERT: cannot read a certificate from '%s'",
                  client_cert);
        return -1;
    }
    if (s_no_secret (cert)) {
        bm_error (NULL, "configuration: CURVE_CLIENT_CERT: '%s' is a public certificate; give "
                  "the .key_secret file", client_cert);
        zcert_destroy (&cert);
        return -1;
    }
    zcert_apply (cert, sock);
    zsock_set_curve_serverkey (sock, server_key);
    zcert_destroy (&cert);
    return 0;
}

int
bm_curve_client_apply (zsock_t *sock)
{
    bm_curve_peer_t peer = bm_curve_peer_from_env ();
    return bm_curve_peer_apply (&peer, sock);
}

int
bm_curve_server_apply (zsock_t *sock, zactor_t **auth_p)
{
    *auth_p = NULL;
    if (!s_set ("CURVE_SERVER_CERT"))
        return 0;
    if (!s_set ("CURVE_CLIENTS_DIR")) {
        bm_error (NULL, "configuration: CURVE_SERVER_CERT is set, so CURVE_CLIENTS_DIR must "
                  "name the folder of accepted public certificates");
        return -1;
    }
    zcert_t *cert = zcert_load (getenv ("CURVE_SERVER_CERT"));
    if (!cert) {
        bm_error (NULL, "configuration: CURVE_SERVER_CERT: cannot read a certificate from '%s'",
                  getenv ("CURVE_SERVER_CERT"));
        return -1;
    }
    if (s_no_secret (cert)) {
        bm_error (NULL, "configuration: CURVE_SERVER_CERT: '%s' is a public certificate; give "
                  "the .key_secret file", getenv ("CURVE_SERVER_CERT"));
        zcert_destroy (&cert);
        return -1;
    }
    if (!zsys_file_exists (getenv ("CURVE_CLIENTS_DIR"))) {
        bm_error (NULL, "configuration: CURVE_CLIENTS_DIR: no folder '%s'", getenv ("CURVE_CLIENTS_DIR"));
        zcert_destroy (&cert);
        return -1;
    }
    zactor_t *auth = zactor_new (zauth, NULL);
    zstr_sendx (auth, "CURVE", getenv ("CURVE_CLIENTS_DIR"), NULL);
    zsock_wait (auth);
    zcert_apply (cert, sock);
    zsock_set_curve_server (sock, 1);
    bm_info (NULL, "CURVE on: public key %s; accepting the keys in %s",
             zcert_public_txt (cert), getenv ("CURVE_CLIENTS_DIR"));
    zcert_destroy (&cert);
    *auth_p = auth;
    return 0;
}

int
bm_curve_keygen (const char *dir, const char *name)
{
    zcert_t *cert = zcert_new ();
    if (!cert)
        return -1;
    zcert_set_meta (cert, "name", "%s", name);
    char *path = zsys_sprintf ("%s/%s.key", dir, name);
    zsys_dir_create ("%s", dir);
    int rc = zcert_save (cert, path);
    if (rc == 0)
        printf ("public key:  %s\npublic cert: %s\nsecret cert: %s_secret\n",
                zcert_public_txt (cert), path, path);
    else
        fprintf (stderr, "cannot write %s\n", path);
    zstr_free (&path);
    zcert_destroy (&cert);
    return rc;
}

/*  bm_auth.h - API keys: parsing API_KEYS (and ADMIN_API_KEYS) and checking
    a request's key.  Every HTTP service that takes keys (the gateway, the
    webhook manager) checks them with this class.

    API_KEYS is a comma-separated list (spaces around keys are ignored).  A
    request presents its key as "Authorization: Bearer KEY" or
    "X-API-Key: KEY".  Keys are compared in constant time: both sides are
    hashed with SHA-256 and the digests compared with CRYPTO_memcmp, and
    every configured key is compared, so neither the position of the first
    differing byte, nor the key's length, nor which key matched shows in
    the time taken.  */
#ifndef BM_AUTH_H
#define BM_AUTH_H

#include <stdbool.h>
#include <stddef.h>

typedef struct _bm_auth_t bm_auth_t;

#define BM_AUTH_MAX_KEYS    256     //  More keys than this is a config error
#define BM_AUTH_MAX_KEY_LEN 256

//  Parse a comma-separated key list.  NULL or "" gives an authenticator
//  with no keys (bm_auth_enabled is false).  Returns NULL (with a reason in
//  error) on an empty key, a key with spaces or control bytes, or too many
//  or too long keys.
bm_auth_t *bm_auth_new (const char *keys, char *error, size_t error_size);
void bm_auth_destroy (bm_auth_t **self_p);

//  True when keys are configured.
bool bm_auth_enabled (bm_auth_t *self);

//  Pick the presented key out of the two headers (either may be NULL).
//  Returns a pointer into one of them and its length in *len, or NULL if
//  neither carries a key.
const char *bm_auth_presented (const char *authorization, const char *x_api_key, size_t *len);

//  Check a presented key.  Returns the index (0..) of the key it matches,
//  or -1.  Constant time with regard to the key's content.
int bm_auth_check (bm_auth_t *self, const char *key, size_t len);

//  ADMIN_API_KEYS: parsed as API_KEYS is, and each key must be one of
//  keys (an admin key is an API key with more rights).  NULL or "" gives
//  *admin_p NULL (no admin keys: every API key may use every endpoint).
//  Returns 0, or -1 with a reason in error ("ADMIN_API_KEYS is set but
//  API_KEYS is not", a bad key, a key not in API_KEYS).
int bm_auth_admin_new (bm_auth_t *keys, const char *admin_keys, bm_auth_t **admin_p,
                       char *error, size_t error_size);

void bm_auth_test (bool verbose);

#endif

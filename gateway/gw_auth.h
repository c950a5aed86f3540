/*  gw_auth.h - API keys: parsing API_KEYS and checking a request's key.

    API_KEYS is a comma-separated list (spaces around keys are ignored).  A
    request presents its key as "Authorization: Bearer KEY" or
    "X-API-Key: KEY".  Keys are compared in constant time: both sides are
    hashed with SHA-256 and the digests compared with CRYPTO_memcmp, and
    every configured key is compared, so neither the position of the first
    differing byte, nor the key's length, nor which key matched shows in
    the time taken.  */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stdbool.h>
#include <stddef.h>

typedef struct _gw_auth_t gw_auth_t;

#define GW_AUTH_MAX_KEYS    256     //  More keys than this is a config error
#define GW_AUTH_MAX_KEY_LEN 256

//  Parse a comma-separated key list.  NULL or "" gives an authenticator
//  with no keys (gw_auth_enabled is false).  Returns NULL (with a reason in
//  error) on an empty key, a key with spaces or control bytes, or too many
//  or too long keys.
gw_auth_t *gw_auth_new (const char *keys, char *error, size_t error_size);
void gw_auth_destroy (gw_auth_t **self_p);

//  True when keys are configured.
bool gw_auth_enabled (gw_auth_t *self);

//  Pick the presented key out of the two headers (either may be NULL).
//  Returns a pointer into one of them and its length in *len, or NULL if
//  neither carries a key.
const char *gw_auth_presented (const char *authorization, const char *x_api_key, size_t *len);

//  Check a presented key.  Returns the index (0..) of the key it matches,
//  or -1.  Constant time with regard to the key's content.
int gw_auth_check (gw_auth_t *self, const char *key, size_t len);

void gw_auth_test (bool verbose);

#endif

/*  gw_auth.c - API keys: parsing API_KEYS and checking a request's key.  */
#include "gw_auth.h"
#include "bm_selftest.h"

#include <czmq.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <strings.h>

struct _gw_auth_t {
    size_t count;                                       //  Keys configured
    unsigned char digests [GW_AUTH_MAX_KEYS][SHA256_DIGEST_LENGTH]; //  Their SHA-256
};

gw_auth_t *
gw_auth_new (const char *keys, char *error, size_t error_size)
{
    gw_auth_t *self = (gw_auth_t *) zmalloc (sizeof (gw_auth_t));
    if (!keys)
        return self;
    //  Skip a list that is only spaces: keys off.
    const char *p = keys;
    while (*p == ' ')
        p++;
    if (!*p)
        return self;
    while (true) {
        const char *end = strchr (p, ',');
        if (!end)
            end = p + strlen (p);
        const char *start = p;
        const char *stop = end;
        while (start < stop && *start == ' ')
            start++;
        while (stop > start && stop [-1] == ' ')
            stop--;
        size_t len = (size_t) (stop - start);
        if (len == 0) {
            snprintf (error, error_size, "API_KEYS holds an empty key");
            goto fail;
        }
        if (len > GW_AUTH_MAX_KEY_LEN) {
            snprintf (error, error_size, "API_KEYS: a key is longer than %d bytes", GW_AUTH_MAX_KEY_LEN);
            goto fail;
        }
        for (size_t i = 0; i < len; i++)
            if ((unsigned char) start [i] <= 0x20 || (unsigned char) start [i] >= 0x7f) {
                snprintf (error, error_size,
                          "API_KEYS: keys must be printable ASCII without spaces");
                goto fail;
            }
        if (self->count == GW_AUTH_MAX_KEYS) {
            snprintf (error, error_size, "API_KEYS: more than %d keys", GW_AUTH_MAX_KEYS);
            goto fail;
        }
        SHA256 ((const unsigned char *) start, len, self->digests [self->count++]);
        if (!*end)
            break;
        p = end + 1;
    }
    return self;
fail:
    gw_auth_destroy (&self);
    return NULL;
}

void
gw_auth_destroy (gw_auth_t **self_p)
{
    if (*self_p) {
        OPENSSL_cleanse (*self_p, sizeof (gw_auth_t));
        free (*self_p);
        *self_p = NULL;
    }
}

bool
gw_auth_enabled (gw_auth_t *self)
{
    return self->count > 0;
}

//  value without its leading and trailing spaces, or NULL if that leaves
//  nothing (or value is NULL).
static const char *
s_trim (const char *value, size_t *len)
{
    if (!value)
        return NULL;
    while (*value == ' ')
        value++;
    size_t n = strlen (value);
    while (n > 0 && value [n - 1] == ' ')
        n--;
    if (n == 0)
        return NULL;
    *len = n;
    return value;
}

const char *
gw_auth_presented (const char *authorization, const char *x_api_key, size_t *len)
{
    const char *key = NULL;
    if (authorization && strncasecmp (authorization, "Bearer ", 7) == 0)
        key = s_trim (authorization + 7, len);
    return key ? key : s_trim (x_api_key, len);
}

int
gw_auth_check (gw_auth_t *self, const char *key, size_t len)
{
    if (!key)
        return -1;
    unsigned char digest [SHA256_DIGEST_LENGTH];
    SHA256 ((const unsigned char *) key, len, digest);
    //  Compare with every key, whatever matched, and pick the index
    //  without a branch on the result.
    int found = -1;
    for (size_t i = 0; i < self->count; i++) {
        int differ = CRYPTO_memcmp (digest, self->digests [i], SHA256_DIGEST_LENGTH) != 0;
        int mask = differ - 1;          //  0 when different, -1 (all ones) when equal
        found = (found & ~mask) | ((int) i & mask);
    }
    return found;
}

//  --------------------------------------------------------------------------
//  Self test

#define CHECK(cond) BM_CHECK (cond)

void
gw_auth_test (bool verbose)
{
    if (verbose)
        printf (" * gw_auth: ");
    char error [128];
    gw_auth_t *auth = gw_auth_new (NULL, error, sizeof error);
    CHECK (auth && !gw_auth_enabled (auth));
    gw_auth_destroy (&auth);
    auth = gw_auth_new ("  ", error, sizeof error);
    CHECK (auth && !gw_auth_enabled (auth));
    gw_auth_destroy (&auth);
    CHECK (gw_auth_new ("a,,b", error, sizeof error) == NULL);
    CHECK (gw_auth_new ("a, b c", error, sizeof error) == NULL);
    CHECK (gw_auth_new ("a,", error, sizeof error) == NULL);

    auth = gw_auth_new ("alpha, beta-2 ,gamma", error, sizeof error);
    CHECK (auth && gw_auth_enabled (auth));
    CHECK (gw_auth_check (auth, "alpha", 5) == 0);
    CHECK (gw_auth_check (auth, "beta-2", 6) == 1);
    CHECK (gw_auth_check (auth, "gamma", 5) == 2);
    CHECK (gw_auth_check (auth, "gamm", 4) == -1);
    CHECK (gw_auth_check (auth, "alphaX", 6) == -1);
    CHECK (gw_auth_check (auth, NULL, 0) == -1);

    size_t len;
    const char *key = gw_auth_presented ("Bearer beta-2", NULL, &len);
    CHECK (key && len == 6 && gw_auth_check (auth, key, len) == 1);
    key = gw_auth_presented ("bearer  gamma ", NULL, &len);
    CHECK (key && len == 5 && memcmp (key, "gamma", 5) == 0);
    key = gw_auth_presented ("Basic abc", "alpha", &len);
    CHECK (key && len == 5 && gw_auth_check (auth, key, len) == 0);
    CHECK (gw_auth_presented ("Bearer ", NULL, &len) == NULL);
    CHECK (gw_auth_presented (NULL, NULL, &len) == NULL);
    gw_auth_destroy (&auth);

    if (verbose)
        printf ("OK\n");
}

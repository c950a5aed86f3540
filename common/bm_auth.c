/*  bm_auth.c - API keys: parsing API_KEYS and ADMIN_API_KEYS, checking a
    request's key.  */
#include "bm_auth.h"
#include "bm_selftest.h"

#include <czmq.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <strings.h>

struct _bm_auth_t {
    size_t count;                                       //  Keys configured
    unsigned char digests [BM_AUTH_MAX_KEYS][SHA256_DIGEST_LENGTH]; //  Their SHA-256
};

bm_auth_t *
bm_auth_new (const char *keys, char *error, size_t error_size)
{
    bm_auth_t *self = (bm_auth_t *) zmalloc (sizeof (bm_auth_t));
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
        if (len > BM_AUTH_MAX_KEY_LEN) {
            snprintf (error, error_size, "API_KEYS: a key is longer than %d bytes", BM_AUTH_MAX_KEY_LEN);
            goto fail;
        }
        for (size_t i = 0; i < len; i++)
            if ((unsigned char) start [i] <= 0x20 || (unsigned char) start [i] >= 0x7f) {
                snprintf (error, error_size,
                          "API_KEYS: keys must be printable ASCII without spaces");
                goto fail;
            }
        if (self->count == BM_AUTH_MAX_KEYS) {
            snprintf (error, error_size, "API_KEYS: more than %d keys", BM_AUTH_MAX_KEYS);
            goto fail;
        }
        SHA256 ((const unsigned char *) start, len, self->digests [self->count++]);
        if (!*end)
            break;
        p = end + 1;
    }
    return self;
fail:
    bm_auth_destroy (&self);
    return NULL;
}

void
bm_auth_destroy (bm_auth_t **self_p)
{
    if (*self_p) {
        OPENSSL_cleanse (*self_p, sizeof (bm_auth_t));
        free (*self_p);
        *self_p = NULL;
    }
}

bool
bm_auth_enabled (bm_auth_t *self)
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
bm_auth_presented (const char *authorization, const char *x_api_key, size_t *len)
{
    const char *key = NULL;
    if (authorization && strncasecmp (authorization, "Bearer ", 7) == 0)
        key = s_trim (authorization + 7, len);
    return key ? key : s_trim (x_api_key, len);
}

int
bm_auth_check (bm_auth_t *self, const char *key, size_t len)
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

int
bm_auth_admin_new (bm_auth_t *keys, const char *admin_keys, bm_auth_t **admin_p,
                   char *error, size_t error_size)
{
    *admin_p = NULL;
    if (!admin_keys || !*admin_keys)
        return 0;
    if (!bm_auth_enabled (keys)) {
        snprintf (error, error_size, "ADMIN_API_KEYS is set but API_KEYS is not");
        return -1;
    }
    char reason [200];
    bm_auth_t *admin = bm_auth_new (admin_keys, reason, sizeof reason);
    if (!admin) {
        //  The parser names API_KEYS: say which list it was.
        const char *what = strncmp (reason, "API_KEYS", 8) == 0 ? reason + 8 : reason;
        snprintf (error, error_size, "ADMIN_API_KEYS%s%s", *what == ':' ? "" : ": ", what);
        return -1;
    }
    for (const char *at = admin_keys; *at; ) {
        while (*at == ',' || *at == ' ')
            at++;
        size_t len = strcspn (at, ", ");
        if (len && bm_auth_check (keys, at, len) < 0) {
            snprintf (error, error_size, "ADMIN_API_KEYS holds a key that is not in API_KEYS");
            bm_auth_destroy (&admin);
            return -1;
        }
        at += len;
    }
    *admin_p = admin;
    return 0;
}

//  --------------------------------------------------------------------------
//  Self test

#define CHECK(cond) BM_CHECK (cond)

void
bm_auth_test (bool verbose)
{
    if (verbose)
        printf (" * bm_auth: ");
    char error [128];
    bm_auth_t *auth = bm_auth_new (NULL, error, sizeof error);
    CHECK (auth && !bm_auth_enabled (auth));
    bm_auth_destroy (&auth);
    auth = bm_auth_new ("  ", error, sizeof error);
    CHECK (auth && !bm_auth_enabled (auth));
    bm_auth_destroy (&auth);
    CHECK (bm_auth_new ("a,,b", error, sizeof error) == NULL);
    CHECK (bm_auth_new ("a, b c", error, sizeof error) == NULL);
    CHECK (bm_auth_new ("a,", error, sizeof error) == NULL);

    auth = bm_auth_new ("alpha, beta-2 ,gamma", error, sizeof error);
    CHECK (auth && bm_auth_enabled (auth));
    CHECK (bm_auth_check (auth, "alpha", 5) == 0);
    CHECK (bm_auth_check (auth, "beta-2", 6) == 1);
    CHECK (bm_auth_check (auth, "gamma", 5) == 2);
    CHECK (bm_auth_check (auth, "gamm", 4) == -1);
    CHECK (bm_auth_check (auth, "alphaX", 6) == -1);
    CHECK (bm_auth_check (auth, NULL, 0) == -1);

    size_t len;
    const char *key = bm_auth_presented ("Bearer beta-2", NULL, &len);
    CHECK (key && len == 6 && bm_auth_check (auth, key, len) == 1);
    key = bm_auth_presented ("bearer  gamma ", NULL, &len);
    CHECK (key && len == 5 && memcmp (key, "gamma", 5) == 0);
    key = bm_auth_presented ("Basic abc", "alpha", &len);
    CHECK (key && len == 5 && bm_auth_check (auth, key, len) == 0);
    CHECK (bm_auth_presented ("Bearer ", NULL, &len) == NULL);
    CHECK (bm_auth_presented (NULL, NULL, &len) == NULL);

    bm_auth_t *admin = NULL;
    CHECK (bm_auth_admin_new (auth, NULL, &admin, error, sizeof error) == 0 && !admin);
    CHECK (bm_auth_admin_new (auth, "gamma, alpha", &admin, error, sizeof error) == 0 && admin);
    CHECK (bm_auth_check (admin, "alpha", 5) >= 0 && bm_auth_check (admin, "beta-2", 6) < 0);
    bm_auth_destroy (&admin);
    CHECK (bm_auth_admin_new (auth, "alpha,delta", &admin, error, sizeof error) == -1 && !admin);
    CHECK (strstr (error, "not in API_KEYS"));
    CHECK (bm_auth_admin_new (auth, "a,,b", &admin, error, sizeof error) == -1);
    CHECK (strncmp (error, "ADMIN_API_KEYS", 14) == 0);
    bm_auth_destroy (&auth);
    auth = bm_auth_new (NULL, error, sizeof error);
    CHECK (bm_auth_admin_new (auth, "alpha", &admin, error, sizeof error) == -1);
    CHECK (strstr (error, "API_KEYS is not"));
    bm_auth_destroy (&auth);

    if (verbose)
        printf ("OK\n");
}

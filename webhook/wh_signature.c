/*  wh_signature.c - Standard Webhooks signatures (HMAC-SHA256).  */
#include "wh_signature.h"
#include "bm_selftest.h"
#include "bm_log.h"

#include <string.h>
#include <stdlib.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#define WH_MAX_KEY  1024        //  Longer secrets are refused, not truncated

struct _wh_signer_t {
    EVP_MAC *mac;               //  OpenSSL's HMAC implementation, fetched once
    unsigned char key [WH_MAX_KEY];  //  The key bytes
    size_t key_len;             //  Length of key
};

size_t
wh_base64_encode (const void *data, size_t len, char *out)
{
    return (size_t) EVP_EncodeBlock ((unsigned char *) out, (const unsigned char *) data, (int) len);
}

int
wh_base64_decode (const char *text, size_t len, unsigned char *out)
{
    //  EVP_DecodeBlock accepts unpadded tails and stray whitespace and
    //  counts padding as zero bytes: check the shape ourselves first.
    if (len % 4 != 0 || len > INT32_MAX)
        return -1;
    size_t pad = 0;
    for (size_t i = 0; i < len; i++) {
        char c = text [i];
        bool alpha = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
                  || (c >= '0' && c <= '9') || c == '+' || c == '/';
        if (c == '=' && i >= len - 2)
            pad++;
        else
        if (!alpha || pad)
            return -1;
    }
    if (len == 0)
        return 0;
    int size = EVP_DecodeBlock (out, (const unsigned char *) text, (int) len);
    if (size < 0)
        return -1;
    return size - (int) pad;
}

wh_signer_t *
wh_signer_new (const char *secret, char *error, size_t error_size)
{
    if (!secret || !*secret) {
        snprintf (error, error_size, "the secret is empty");
        return NULL;
    }
    wh_signer_t *self = (wh_signer_t *) calloc (1, sizeof (wh_signer_t));
    if (!self)
        return NULL;
    if (strncmp (secret, "whsec_", 6) == 0) {
        const char *text = secret + 6;
        size_t len = strlen (text);
        int size = len / 4 * 3 <= WH_MAX_KEY? wh_base64_decode (text, len, self->key): -1;
        if (size <= 0) {
            snprintf (error, error_size,
                      "a secret starting with whsec_ must continue with base64 of 1 to %d bytes",
                      WH_MAX_KEY);
            free (self);
            return NULL;
        }
        self->key_len = (size_t) size;
    }
    else {
        size_t len = strlen (secret);
        if (len > WH_MAX_KEY) {
            snprintf (error, error_size, "the secret is longer than %d bytes", WH_MAX_KEY);
            free (self);
            return NULL;
        }
        memcpy (self->key, secret, len);
        self->key_len = len;
    }
    self->mac = EVP_MAC_fetch (NULL, "HMAC", NULL);
    if (!self->mac) {
        snprintf (error, error_size, "OpenSSL has no HMAC");
        OPENSSL_cleanse (self->key, sizeof self->key);
        free (self);
        return NULL;
    }
    return self;
}

int
wh_signer_check (const char *var, const char *secret)
{
    if (!secret || !*secret)
        return 0;
    char reason [160];
    wh_signer_t *signer = wh_signer_new (secret, reason, sizeof reason);
    if (!signer) {
        bm_error (NULL, "configuration: %s: %s", var, reason);
        return -1;
    }
    wh_signer_destroy (&signer);
    return 0;
}

void
wh_signer_destroy (wh_signer_t **self_p)
{
    if (*self_p) {
        wh_signer_t *self = *self_p;
        EVP_MAC_free (self->mac);
        OPENSSL_cleanse (self->key, sizeof self->key);
        free (self);
        *self_p = NULL;
    }
}

//  HMAC-SHA256 of id "." timestamp "." body into digest (32 bytes).
static int
s_hmac (wh_signer_t *self, const char *id, const char *timestamp,
        const void *body, size_t body_len, unsigned char *digest)
{
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new (self->mac);
    if (!ctx)
        return -1;
    OSSL_PARAM params [] = {
        OSSL_PARAM_construct_utf8_string (OSSL_MAC_PARAM_DIGEST, (char *) "SHA256", 0),
        OSSL_PARAM_construct_end ()
    };
    size_t size = 0;
    int ok = EVP_MAC_init (ctx, self->key, self->key_len, params)
          && EVP_MAC_update (ctx, (const unsigned char *) id, strlen (id))
          && EVP_MAC_update (ctx, (const unsigned char *) ".", 1)
          && EVP_MAC_update (ctx, (const unsigned char *) timestamp, strlen (timestamp))
          && EVP_MAC_update (ctx, (const unsigned char *) ".", 1)
          && (body_len == 0 || EVP_MAC_update (ctx, (const unsigned char *) body, body_len))
          && EVP_MAC_final (ctx, digest, &size, 32)
          && size == 32;
    EVP_MAC_CTX_free (ctx);
    return ok? 0: -1;
}

int
wh_signer_sign (wh_signer_t *self, const char *id, const char *timestamp,
                const void *body, size_t body_len, char *out, size_t out_size)
{
    unsigned char digest [32];
    if (out_size < WH_SIGNATURE_SIZE || s_hmac (self, id, timestamp, body, body_len, digest))
        return -1;
    memcpy (out, "v1,", 3);
    wh_base64_encode (digest, sizeof digest, out + 3);
    return 0;
}

bool
wh_signer_verify (wh_signer_t *self, const char *id, const char *timestamp,
                  const void *body, size_t body_len, const char *header)
{
    if (!header)
        return false;
    char expected [WH_SIGNATURE_SIZE];
    if (wh_signer_sign (self, id, timestamp, body, body_len, expected, sizeof expected))
        return false;
    size_t expected_len = strlen (expected);
    bool match = false;
    const char *p = header;
    while (*p) {
        while (*p == ' ')
            p++;
        const char *start = p;
        while (*p && *p != ' ')
            p++;
        size_t len = (size_t) (p - start);
        if (len == expected_len && CRYPTO_memcmp (start, expected, len) == 0)
            match = true;       //  Go on: the time taken does not depend on which
    }
    return match;
}

//  --------------------------------------------------------------------------
//  Self test

void
wh_signature_test (bool verbose)
{
    printf (" * wh_signature: ");
    char error [128];

    //  Base64 round trips and refusals.
    char text [64];
    unsigned char bytes [64];
    BM_CHECK (wh_base64_encode ("hello", 5, text) == 8 && strcmp (text, "aGVsbG8=") == 0);
    BM_CHECK (wh_base64_decode ("aGVsbG8=", 8, bytes) == 5 && memcmp (bytes, "hello", 5) == 0);
    BM_CHECK (wh_base64_decode ("aGVsbA==", 8, bytes) == 4);
    BM_CHECK (wh_base64_decode ("aGVs", 4, bytes) == 3);
    BM_CHECK (wh_base64_decode ("", 0, bytes) == 0);
    BM_CHECK (wh_base64_decode ("aGVsbG8", 7, bytes) == -1);      //  Unpadded
    BM_CHECK (wh_base64_decode ("aGV=bG8=", 8, bytes) == -1);     //  Pad inside
    BM_CHECK (wh_base64_decode ("aGVs bG8", 8, bytes) == -1);
    BM_CHECK (wh_base64_decode ("a===", 4, bytes) == -1);

    //  The Standard Webhooks reference test vector (from the specification's
    //  libraries: secret, id, timestamp and payload, and the signature).
    wh_signer_t *signer = wh_signer_new ("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", error, sizeof error);
    BM_CHECK (signer);
    const char *body = "{\"test\": 2432232314}";
    char signature [WH_SIGNATURE_SIZE];
    BM_CHECK (wh_signer_sign (signer, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
                              body, strlen (body), signature, sizeof signature) == 0);
    if (verbose)
        printf ("%s ", signature);
    BM_CHECK (strcmp (signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=") == 0);
    BM_CHECK (wh_signer_verify (signer, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
                                body, strlen (body), signature));
    //  Several signatures, one matching.
    BM_CHECK (wh_signer_verify (signer, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
                                body, strlen (body),
                                "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
    //  Any change breaks it.
    BM_CHECK (!wh_signer_verify (signer, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265331",
                                 body, strlen (body), signature));
    BM_CHECK (!wh_signer_verify (signer, "msg_p5jXN8AQM9LWM0D4loKWxJeK", "1614265330",
                                 body, strlen (body), signature));
    BM_CHECK (!wh_signer_verify (signer, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
                                 body, strlen (body) - 1, signature));
    BM_CHECK (!wh_signer_verify (signer, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330",
                                 body, strlen (body), "v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="));
    BM_CHECK (!wh_signer_verify (signer, "a", "1", "", 0, ""));
    BM_CHECK (!wh_signer_verify (signer, "a", "1", "", 0, NULL));
    wh_signer_destroy (&signer);
    wh_signer_destroy (&signer);

    //  A raw secret is used as it is; an empty body signs too.
    signer = wh_signer_new ("plain-secret", error, sizeof error);
    BM_CHECK (signer);
    BM_CHECK (wh_signer_sign (signer, "id", "0", "", 0, signature, sizeof signature) == 0);
    BM_CHECK (strncmp (signature, "v1,", 3) == 0 && strlen (signature) == 47);
    wh_signer_destroy (&signer);

    //  Bad secrets.
    BM_CHECK (wh_signer_new ("", error, sizeof error) == NULL);
    BM_CHECK (wh_signer_new ("whsec_", error, sizeof error) == NULL);
    BM_CHECK (wh_signer_new ("whsec_not base64!", error, sizeof error) == NULL);
    printf ("OK\n");
}

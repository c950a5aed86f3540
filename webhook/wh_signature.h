/*  wh_signature.h - Standard Webhooks signatures (HMAC-SHA256).

    https://www.standardwebhooks.com/ : a delivery carries

        webhook-id:        an id that stays the same on every retry
        webhook-timestamp: the attempt's time, integer seconds since the epoch
        webhook-signature: v1,<base64 of HMAC-SHA256 (key, id "." timestamp "." body)>

    The header may hold several space-separated signatures (key rotation);
    a receiver accepts the message when any v1 signature matches.

    The key: a secret that starts with "whsec_" is base64 of the key bytes
    (the specification's format); any other secret is used as raw bytes.
    Thread-safe: one signer may sign and verify from several threads.  */
#ifndef WH_SIGNATURE_H
#define WH_SIGNATURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  "v1," + base64 of 32 bytes (44 characters) + NUL.
#define WH_SIGNATURE_SIZE   48

typedef struct _wh_signer_t wh_signer_t;

//  A signer for a secret.  NULL, with a reason in error, when the secret is
//  empty or a "whsec_" secret is not valid base64.
wh_signer_t *wh_signer_new (const char *secret, char *error, size_t error_size);
void wh_signer_destroy (wh_signer_t **self_p);

//  0 when secret (NULL or "": none) makes a signer, else -1 after logging a
//  configuration error naming var (the service then exits 2).
int wh_signer_check (const char *var, const char *secret);

//  Sign one attempt: writes "v1,<base64>" into out (at least
//  WH_SIGNATURE_SIZE bytes).  timestamp is the webhook-timestamp text.
//  Returns 0, or -1 on an OpenSSL failure.
int wh_signer_sign (wh_signer_t *self, const char *id, const char *timestamp,
                    const void *body, size_t body_len, char *out, size_t out_size);

//  True if header (a webhook-signature value) holds a v1 signature that
//  matches id, timestamp and body.  Compares in constant time.
bool wh_signer_verify (wh_signer_t *self, const char *id, const char *timestamp,
                       const void *body, size_t body_len, const char *header);

//  Base64 (standard alphabet, padded) helpers.  encode writes a terminated
//  string into out (4 * ceil (len / 3) + 1 bytes) and returns its length;
//  decode returns the number of bytes written to out (at most
//  3 * strlen / 4), or -1 if text is not valid padded base64.
size_t wh_base64_encode (const void *data, size_t len, char *out);
int wh_base64_decode (const char *text, size_t len, unsigned char *out);

void wh_signature_test (bool verbose);

#endif

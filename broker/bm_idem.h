/*  bm_idem.h - the idempotency index: idempotencyKey -> first job id.

    A SUBMIT with a key seen within IDEMPOTENCY_TTL_MS answers the first
    job while that job exists (protocol.md section 4; a removed job's key
    is dropped, bm_idem_drop), if it asks for the same job: each key
    keeps a fingerprint of its job's botType and payload, and a SUBMIT
    whose fingerprint differs is refused (idempotency_key_reused).  Entries
    expire oldest first: the index keeps the keys in expiry order (a new
    key, with the one window, goes last at once), so bm_idem_expire stops
    at the first live one.  Times are epoch ms: the window survives a
    broker restart (recovery puts the keys back with their expiries, kept
    in Redis).  One thread only, like the broker.  */
#ifndef BM_IDEM_H
#define BM_IDEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>

typedef struct _bm_idem_t bm_idem_t;

bm_idem_t *bm_idem_new (void);
void bm_idem_destroy (bm_idem_t **self_p);

//  The job id key maps to while now is before its expiry, or NULL.  The
//  string is borrowed: valid until the index next changes.  With
//  fingerprint_p, sets it to the fingerprint the key was put with.
const char *bm_idem_lookup (bm_idem_t *self, const char *key, int64_t now,
                            uint64_t *fingerprint_p);

//  Map key to job_id (and the job's fingerprint) until expires, replacing
//  what it mapped to.
void bm_idem_put (bm_idem_t *self, const char *key, const char *job_id, uint64_t fingerprint,
                  int64_t expires);

//  The same, for many keys at once in no particular order (a recovery
//  reading Redis page by page): the key is not put in its place in the
//  expiry order but last, in O(1).  Call bm_idem_sort once after the last
//  one; until then the keys expire late, never early.
void bm_idem_put_unsorted (bm_idem_t *self, const char *key, const char *job_id,
                           uint64_t fingerprint, int64_t expires);

//  Put the keys back in expiry order, in O(n log n) (after
//  bm_idem_put_unsorted).
void bm_idem_sort (bm_idem_t *self);

//  What identifies a job's request: 64-bit FNV-1a of the bot type and the
//  payload in msgpack's shortest encoding with every map's pairs sorted by
//  their keys' encoded bytes, at any depth (payload NULL: nil), so that the
//  same value sent again, or sent once singly and once in a batch, gives
//  the same value however its bytes were encoded and whatever order its
//  map keys came in (pairs of one repeated key keep their order).  A
//  payload without a map costs one pack as it is.  Never 0.
uint64_t bm_idem_fingerprint (const char *bot_type, const msgpack_object *payload);
//  A SUBMIT's (or SUBMIT_MANY item's) fingerprint: bot type and payload as
//  above, and with dependsOn, its ids in order and onDependencyFailure and
//  dependencyResults too (a job without dependsOn: the same as above, so
//  keys stored before match as they did).
uint64_t bm_idem_fingerprint_submit (const char *bot_type, const msgpack_object *body);

//  Whether a SUBMIT of bot_type and payload, whose fingerprint is
//  fingerprint, asks for the job a key was put with, of fingerprint first:
//  equal, or first 0 (unknown), or first made by an earlier version (in
//  Redis), which kept each map's keys in the order received; that one is
//  worked out only when the two differ and payload has a map.
bool bm_idem_same_job (uint64_t first, uint64_t fingerprint, const char *bot_type,
                       const msgpack_object *payload);

//  The message of idempotency_key_reused, given the first job's id.
#define BM_IDEM_REUSED_FMT \
    "idempotencyKey was used for job %s with another botType or payload; use a new key for a new job"

//  The same from a payload's encoded bytes (a recovered job's); a payload
//  that does not decode gives 0, which matches any fingerprint.
uint64_t bm_idem_fingerprint_bytes (const char *bot_type, const char *payload, size_t size);

//  Forget key.  With job_id, only if key maps to that job and has expired
//  by now (a job that is forgotten takes its expired key with it).
void bm_idem_forget (bm_idem_t *self, const char *key, const char *job_id, int64_t now);

//  Forget key if it maps to job_id, expired or not (that job is gone: the
//  key may name a new one).  True if it did.
bool bm_idem_drop (bm_idem_t *self, const char *key, const char *job_id);

//  Drop the keys expired by now, oldest first; gone (if not NULL) is
//  called with each key dropped, or found dropped already (forgotten).
typedef void (bm_idem_gone_fn) (const char *key, void *arg);
void bm_idem_expire (bm_idem_t *self, int64_t now, bm_idem_gone_fn *gone, void *arg);

//  Keys held.
size_t bm_idem_size (bm_idem_t *self);

void bm_idem_test (bool verbose);

#endif

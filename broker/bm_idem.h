/*  bm_idem.h - the idempotency index: idempotencyKey -> first job id.

    A SUBMIT with a key seen within IDEMPOTENCY_TTL_MS answers the first
    job (protocol.md section 4).  Entries expire oldest first: the index
    keeps the keys in insertion order, so bm_idem_expire stops at the first
    live one (Majordomo's waiting list).  Times are epoch ms: the window
    survives a broker restart (recovery puts the keys back with their jobs'
    creation times).  One thread only, like the broker.  */
#ifndef BM_IDEM_H
#define BM_IDEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _bm_idem_t bm_idem_t;

bm_idem_t *bm_idem_new (void);
void bm_idem_destroy (bm_idem_t **self_p);

//  The job id key maps to while now is before its expiry, or NULL.  The
//  string is borrowed: valid until the index next changes.
const char *bm_idem_lookup (bm_idem_t *self, const char *key, int64_t now);

//  Map key to job_id until expires, replacing what it mapped to.
void bm_idem_put (bm_idem_t *self, const char *key, const char *job_id, int64_t expires);

//  Forget key.  With job_id, only if key maps to that job and has expired
//  by now (a job that is forgotten takes its expired key with it).
void bm_idem_forget (bm_idem_t *self, const char *key, const char *job_id, int64_t now);

//  Drop the keys expired by now, oldest first.
void bm_idem_expire (bm_idem_t *self, int64_t now);

//  Keys held.
size_t bm_idem_size (bm_idem_t *self);

void bm_idem_test (bool verbose);

#endif

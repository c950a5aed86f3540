/*  gw_invoke_batch.h - a POST /invoke/batch body: a JSON array of
    POST /invoke bodies, each checked on its own, turned into SUBMIT_MANY
    bodies (docs/protocol.md section 4a).

    Pure, like gw_invoke: bytes in, msgpack and per-item refusals out; no
    I/O, no globals, no clock.

    The body as a whole is refused only when it is not JSON (400
    invalid_json), not an array or an empty one (400 invalid_body), or
    holds more than max_batch items (413 too_many_jobs).  Otherwise every
    item is read: an item gw_invoke would refuse gets that refusal (its
    status, code and message naming the field), the others are encoded as
    SUBMIT bodies without "req", in the items' order.  */
#ifndef GW_INVOKE_BATCH_H
#define GW_INVOKE_BATCH_H

#include "gw_invoke.h"

typedef struct _gw_invoke_batch_t gw_invoke_batch_t;

//  Read body[0..size).  max_batch: the most items (MAX_BATCH, at most
//  BM_MAX_BATCH); limits as in gw_invoke_translate.  NULL with *error
//  when the body as a whole is refused.
gw_invoke_batch_t *gw_invoke_batch_new (const char *body, size_t size, size_t max_batch,
                                        const gw_invoke_limits_t *limits, gw_invoke_error_t *error);

void gw_invoke_batch_destroy (gw_invoke_batch_t **self_p);

//  Items in the body, and how many of them passed the checks.
size_t gw_invoke_batch_size (gw_invoke_batch_t *self);
size_t gw_invoke_batch_valid (gw_invoke_batch_t *self);

//  Item index's refusal, or NULL when it passed.  Borrowed.
const gw_invoke_error_t *gw_invoke_batch_error (gw_invoke_batch_t *self, size_t index);

//  The warning of item index that passed (see gw_invoke_error_t), or NULL.
//  Borrowed.
const char *gw_invoke_batch_warning (gw_invoke_batch_t *self, size_t index);

//  A passed item's bot type (borrowed) and priority.
const char *gw_invoke_batch_bot_type (gw_invoke_batch_t *self, size_t index);
int64_t gw_invoke_batch_priority (gw_invoke_batch_t *self, size_t index);

//  A passed item's unknown top-level keys (gw_invoke_ignored), or NULL.
//  Borrowed.
json_t *gw_invoke_batch_ignored (gw_invoke_batch_t *self, size_t index);

//  The next SUBMIT_MANY body {req, jobs: [...]}: the passed items from
//  index *next on, as many as fit max_bytes of items (at least one) and
//  BM_MAX_BATCH; their indexes go to indexes[] (room for BM_MAX_BATCH),
//  their number to *count, *next moves past them.  Returns the body (made
//  by malloc, caller frees or hands on) and its size, or NULL: no passed
//  item is left (*count 0), or no memory (*count > 0).
char *gw_invoke_batch_message (gw_invoke_batch_t *self, size_t *next, int64_t req,
                               size_t max_bytes, size_t *indexes, size_t *count, size_t *size);

//  Self test.
void gw_invoke_batch_test (bool verbose);

#endif

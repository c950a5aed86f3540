/*  bm_codec_batch.h - the batch bodies of docs/protocol.md (section 4a):
    several jobs in one message, each read and answered on its own.

        SUBMIT_MANY    C->B  {req, jobs: [<SUBMIT body>, ...]}
        ACCEPTED_MANY  B->C  {req, jobs: [<ACCEPTED body> | <REJECTED body>, ...]}
        RESULT_MANY    B->C  {jobs: [<RESULT body>, ...]}
        JOB_MANY       B->W  {jobs: [<JOB body>, ...]}
        DONE_MANY      W->B  {jobs: [<DONE body>, ...]}

    Every batch is one envelope, {req?, jobs: [map, ...]} with 1 to
    BM_MAX_BATCH items, and every item is the body of the single-job
    message as it is (its own "req" ignored): the single-job decoders and
    encoders of bm_codec read and write the items.

    Decode: bm_codec_batch_decode checks the envelope (a refusal is the
    whole message's: bad_request naming "jobs" or "req"), reading the
    items' array from the body's bytes; then bm_codec_batch_next unpacks
    one item after the other, straight from those bytes, into a message
    object the caller keeps (bm_msg_new, reused: no allocation per item
    once warm), as the single-job command, so that bm_codec_submit_decode
    and the others read it and a payload stays the bytes the peer sent.
    An item that is not a map is that item's refusal, not the batch's.
    A message parsed with bm_msg_set_shallow_batches never unpacks the
    items' array as a whole: each item is unpacked once, here.

    Encode: bm_codec_batch_begin writes the envelope's head for count
    items; the caller then encodes exactly count items into the same
    packer with the single-job encoders (has_req false).

    Ownership: a decoded batch borrows from its message, and so does the
    item message (no copy): an item is valid until the next item is
    parsed into it, and only while the batch's message is neither
    destroyed nor parsed into again.  */
#ifndef BM_CODEC_BATCH_H
#define BM_CODEC_BATCH_H

#include "bm_codec.h"

//  A batch envelope being read.
typedef struct {
    bool has_req;
    int64_t req;
    int command;                        //  The single-job command of the items
    bm_peer_t peer;                     //  Of the message
    const char *data;                   //  The items' bytes, one after the other
    size_t size;                        //  Bytes at data
    size_t count;                       //  Items: 1..BM_MAX_BATCH
    size_t index;                       //  Items read so far
    size_t pos;                         //  Offset of the next item in data
} bm_codec_batch_t;

//  The single-job command whose body a batch command's items carry
//  (BM_SUBMIT for BM_SUBMIT_MANY...), or -1 if command is no batch of
//  that peer's side.
int bm_codec_batch_item_command (bm_peer_t peer, int command);

//  Read the envelope of a batch message (its command names the kind).
//  0, or -1 with error (bad_request: the field at fault, "jobs" or "req").
int bm_codec_batch_decode (const bm_msg_t *msg, bm_codec_batch_t *self, bm_codec_error_t *error);

//  Parse the next item into item (a message of the single-job command).
//  1 when an item was parsed; 0 when every item was read; -1 when this
//  item is not a map (error names "jobs[N]"; the batch goes on with the
//  next one).  self->index - 1 is the item's index after 1 or -1.
int bm_codec_batch_next (bm_codec_batch_t *self, bm_msg_t *item, bm_codec_error_t *error);

//  Write the head of a batch body: {req?, jobs: [ then count items follow.
void bm_codec_batch_begin (bm_packer_t *packer, bool has_req, int64_t req, size_t count);

//  An item of ACCEPTED_MANY: the job accepted (an ACCEPTED body) or
//  rejected (a REJECTED body: it has "code").
typedef struct {
    bool accepted;
    bm_codec_accepted_t ok;             //  When accepted
    bm_codec_rejected_t rejected;       //  When not
} bm_codec_outcome_t;

int bm_codec_outcome_decode (const bm_msg_t *item, bm_codec_outcome_t *self,
                             bm_codec_error_t *error);
void bm_codec_outcome_encode (const bm_codec_outcome_t *self, bm_packer_t *packer);

//  Self test (common/bm_codec_batch.c; bm_common_selftest --test codec_batch).
void bm_codec_batch_test (bool verbose);

#endif

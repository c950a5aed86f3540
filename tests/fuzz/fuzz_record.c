/*  fuzz_record.c - the reader of a job's Redis record (broker/bm_record.h)
    under libFuzzer: a record damaged in Redis must be refused or read,
    never crash the broker at recovery or on a STATUS from Redis.

    Input layout: the HGETALL reply's strings (field, value, field, value,
    ...), each as a 2-byte little-endian length then its bytes, at most 32
    of them; a length past the end takes what is left.

    Properties:
    - bm_record_read either refuses (-1) or gives a job with a known state
      and an id;
    - what it read, packed again ("r" and "x" maps, bm_record_pack_*) and
      read back, is the same job: payload, result, attempt errors, numbers
      and texts.  */
#include "bm_broker_internal.h"
#include "bm_record.h"
#include "fuzz_common.h"

#define FUZZ_MAX_STRINGS 32

static bool
s_same_bytes (const char *a, size_t a_size, const char *b, size_t b_size)
{
    return a_size == b_size && (a_size == 0 || memcmp (a, b, a_size) == 0);
}

static bool
s_same_text (const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp (a, b) == 0);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    redisReply cells [FUZZ_MAX_STRINGS], *items [FUZZ_MAX_STRINGS];
    char *copies [FUZZ_MAX_STRINGS];
    redisReply reply = { .type = REDIS_REPLY_ARRAY, .element = items };
    size_t offset = 0;
    while (offset + 2 <= size && reply.elements < FUZZ_MAX_STRINGS) {
        size_t len = (size_t) data [offset] | (size_t) data [offset + 1] << 8;
        offset += 2;
        if (len > size - offset)
            len = size - offset;
        size_t i = reply.elements++;
        //  hiredis ends every string with a NUL byte; so does this copy.
        copies [i] = (char *) malloc (len + 1);
        FUZZ_CHECK (copies [i]);
        memcpy (copies [i], data + offset, len);
        copies [i][len] = 0;
        cells [i] = (redisReply) { .type = REDIS_REPLY_STRING, .str = copies [i], .len = len };
        items [i] = &cells [i];
        offset += len;
    }
    bm_job_t *job = bm_job_new ();
    bm_record_meta_t meta;
    if (bm_record_read (job, "fuzz-1", &reply, &meta) == 0) {
        FUZZ_CHECK (job->id [0] && (int) job->state >= 0 && job->state < JOB_STATES);
        //  Round trip through the newer layout.
        bm_service_t *service = bm_service_new (meta.type [0] ? meta.type : "python", 1, 10);
        job->service = service;
        bm_packer_t r, x;
        bm_packer_init (&r);
        bm_packer_init (&x);
        bm_record_pack_submit (&r.pk, job);
        bm_record_pack_run (&x.pk, job);
        FUZZ_CHECK (!bm_packer_failed (&r) && !bm_packer_failed (&x));
        redisReply again_cells [6] = {
            { .type = REDIS_REPLY_STRING, .str = "state", .len = 5 },
            { .type = REDIS_REPLY_STRING, .str = (char *) bm_job_state_names [job->state],
              .len = strlen (bm_job_state_names [job->state]) },
            { .type = REDIS_REPLY_STRING, .str = "r", .len = 1 },
            { .type = REDIS_REPLY_STRING, .str = r.sbuf.data, .len = r.sbuf.size },
            { .type = REDIS_REPLY_STRING, .str = "x", .len = 1 },
            { .type = REDIS_REPLY_STRING, .str = x.sbuf.data, .len = x.sbuf.size }
        };
        redisReply *again_items [6];
        for (int i = 0; i < 6; i++)
            again_items [i] = &again_cells [i];
        redisReply again = { .type = REDIS_REPLY_ARRAY, .element = again_items, .elements = 6 };
        bm_job_t *back = bm_job_new ();
        bm_record_meta_t back_meta;
        FUZZ_CHECK (bm_record_read (back, job->id, &again, &back_meta) == 0);
        FUZZ_CHECK (back->state == job->state && strcmp (back->id, job->id) == 0);
        FUZZ_CHECK (s_same_bytes (back->payload, back->payload_size, job->payload, job->payload_size));
        FUZZ_CHECK (s_same_bytes (back->result, back->result_size, job->result, job->result_size));
        FUZZ_CHECK (s_same_bytes (back->attempt_errors, back->attempt_errors_size,
                                  job->attempt_errors, job->attempt_errors_size));
        FUZZ_CHECK (back->priority == job->priority && back->seq == job->seq
                    && back->max_attempts == job->max_attempts && back->timeout_ms == job->timeout_ms
                    && back->created_at == job->created_at && back->attempts == job->attempts
                    && back->progress == job->progress && back->started_at == job->started_at
                    && back->finished_at == job->finished_at && back->deliveries == job->deliveries);
        FUZZ_CHECK (s_same_text (back->webhook_url, job->webhook_url)
                    && s_same_text (back->idem_key, job->idem_key)
                    && s_same_text (back->parent, job->parent)
                    && s_same_text (back->worker_name, job->worker_name)
                    && s_same_text (back->error_code, job->error_code));
        bm_job_destroy (&back);
        bm_packer_destroy (&r);
        bm_packer_destroy (&x);
        job->service = NULL;
        bm_service_destroy (&service);
    }
    bm_job_destroy (&job);
    for (size_t i = 0; i < reply.elements; i++)
        free (copies [i]);
    return 0;
}

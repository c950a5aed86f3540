/*  bm_codec_batch.c - the batch bodies: one envelope {req?, jobs: [...]}
    whose items are single-job bodies.  See bm_codec_batch.h.  */
#include "bm_codec_batch.h"
#include "bm_codec_field.h"
#include "bm_json.h"
#include "bm_selftest.h"

#include <stdio.h>
#include <string.h>

int
bm_codec_batch_item_command (bm_peer_t peer, int command)
{
    if (peer == BM_PEER_CLIENT)
        switch (command) {
            case BM_SUBMIT_MANY: return BM_SUBMIT;
            case BM_ACCEPTED_MANY: return BM_ACCEPTED;
            case BM_RESULT_MANY: return BM_RESULT;
            default: return -1;
        }
    switch (command) {
        case BM_JOB_MANY: return BM_JOB;
        case BM_DONE_MANY: return BM_DONE;
        default: return -1;
    }
}

//  The head of a msgpack array at data: its item count and the offset of
//  its first item, or -1 if data holds no array.
static int
s_array_head (const char *data, size_t size, uint64_t *count, size_t *first)
{
    const unsigned char *p = (const unsigned char *) data;
    if (size >= 1 && p [0] >= 0x90 && p [0] <= 0x9f) {
        *count = p [0] & 0x0f;
        *first = 1;
    }
    else
    if (size >= 3 && p [0] == 0xdc) {
        *count = (uint64_t) p [1] << 8 | p [2];
        *first = 3;
    }
    else
    if (size >= 5 && p [0] == 0xdd) {
        *count = (uint64_t) p [1] << 24 | (uint64_t) p [2] << 16 | (uint64_t) p [3] << 8 | p [4];
        *first = 5;
    }
    else
        return -1;
    return 0;
}

int
bm_codec_batch_decode (const bm_msg_t *msg, bm_codec_batch_t *self, bm_codec_error_t *error)
{
    const msgpack_object *body = bm_field_body (msg);
    memset (self, 0, sizeof *self);
    self->peer = bm_msg_peer (msg);
    self->command = bm_codec_batch_item_command (self->peer, bm_msg_command (msg));
    if (self->command < 0)
        return bm_field_fail (error, "", "command 0x%02x is not a batch", bm_msg_command (msg));
    if (bm_field_req (body, &self->has_req, &self->req, error))
        return -1;
    //  The items' bytes as received (the first "jobs" entry, as bm_obj_get
    //  finds it): the body passed bm_msgpack_check, so every item's
    //  declared sizes fit.  Read from the bytes, not from an unpacked
    //  array: a message parsed with shallow batches has none.
    const char *raw;
    size_t raw_size, first;
    uint64_t count;
    if (!bm_msg_raw_value (msg, "jobs", &raw, &raw_size)
    ||  s_array_head (raw, raw_size, &count, &first))
        return bm_field_fail (error, "jobs", "jobs must be an array of 1 to %d job bodies",
                              BM_MAX_BATCH);
    if (count < 1 || count > BM_MAX_BATCH)
        return bm_field_fail (error, "jobs", "jobs holds %u items: a batch holds 1 to %d",
                              (unsigned) count, BM_MAX_BATCH);
    self->data = raw + first;
    self->size = raw_size - first;
    self->count = (size_t) count;
    return 0;
}

int
bm_codec_batch_next (bm_codec_batch_t *self, bm_msg_t *item, bm_codec_error_t *error)
{
    if (self->index >= self->count || self->pos >= self->size)
        return 0;
    size_t index = self->index++;
    size_t used = 0;
    int rc = bm_msg_parse_borrowed (item, self->peer, self->command, self->data + self->pos,
                                    self->size - self->pos, &used);
    if (rc < 0) {
        self->index = self->count;      //  Not reached but without memory: stop here
        return 0;
    }
    self->pos += used;
    if (rc > 0) {
        error->code = "bad_request";
        error->field = "jobs[]";
        snprintf (error->message, sizeof error->message,
                  "jobs[%zu] must be a map (a job's body)", index);
        return -1;
    }
    return 1;
}

void
bm_codec_batch_begin (bm_packer_t *packer, bool has_req, int64_t req, size_t count)
{
    msgpack_pack_map (&packer->pk, 1 + has_req);
    if (has_req)
        bm_field_pack_int (packer, "req", req);
    bm_field_pack_key (packer, "jobs");
    msgpack_pack_array (&packer->pk, count);
}

int
bm_codec_outcome_decode (const bm_msg_t *item, bm_codec_outcome_t *self, bm_codec_error_t *error)
{
    memset (self, 0, sizeof *self);
    self->accepted = bm_obj_get (bm_field_body (item), "code") == NULL;
    return self->accepted ? bm_codec_accepted_decode (item, &self->ok, error)
                          : bm_codec_rejected_decode (item, &self->rejected, error);
}

void
bm_codec_outcome_encode (const bm_codec_outcome_t *self, bm_packer_t *packer)
{
    if (self->accepted)
        bm_codec_accepted_encode (&self->ok, packer);
    else
        bm_codec_rejected_encode (&self->rejected, packer);
}

//  --------------------------------------------------------------------------
//  Self test: transcripts of batches on the wire.

#define CHECK(cond) BM_CHECK (cond)

static bm_msg_t *
s_json_msg (const char *header, int command, const char *json)
{
    char *data;
    size_t size;
    char reason [128];
    const char *code;
    if (bm_json_text_to_msgpack (json, strlen (json), &data, &size, reason, sizeof reason)) {
        fprintf (stderr, "FAIL: bad JSON in a case: %s: %s\n", json, reason);
        abort ();
    }
    unsigned char byte = (unsigned char) command;
    bm_msg_t *msg = bm_msg_new ();
    int rc = bm_msg_parse (msg, header, BM_HEADER_LEN, &byte, 1, data, size, BM_MAX_FRAME_BYTES,
                           &code, reason, sizeof reason);
    free (data);
    CHECK (rc == 0);
    return msg;
}

static bm_msg_t *
s_packed_msg (const char *header, int command, bm_packer_t *packer)
{
    CHECK (!bm_packer_failed (packer));
    unsigned char byte = (unsigned char) command;
    const char *code;
    char reason [128];
    bm_msg_t *msg = bm_msg_new ();
    CHECK (bm_msg_parse (msg, header, BM_HEADER_LEN, &byte, 1, packer->sbuf.data, packer->sbuf.size,
                         BM_MAX_FRAME_BYTES, &code, reason, sizeof reason) == 0);
    bm_packer_reset (packer);
    return msg;
}

//  A SUBMIT_MANY of three items, the second not a map, the third a SUBMIT
//  that its own decoder refuses: the envelope reads, each item on its own;
//  the same with shallow batches (each item unpacked from the bytes only).
static void
s_test_submit_many (bool shallow)
{
    bm_msg_t *msg = s_json_msg (BM_CLIENT_HEADER, BM_SUBMIT_MANY,
        "{\"req\": 7, \"jobs\": [{\"botType\": \"python\", \"payload\": {\"n\": 1}, \"notify\": true},"
        " 42, {\"botType\": \"Bad Type\"}]}");
    if (shallow) {
        const char *json = "{\"req\": 7, \"jobs\": [{\"botType\": \"python\", \"payload\": {\"n\": 1},"
                           " \"notify\": true}, 42, {\"botType\": \"Bad Type\"}]}";
        char *data, reason [128];
        size_t size;
        const char *code;
        unsigned char byte = BM_SUBMIT_MANY;
        CHECK (bm_json_text_to_msgpack (json, strlen (json), &data, &size, reason, sizeof reason) == 0);
        bm_msg_set_shallow_batches (msg, true);
        CHECK (bm_msg_parse (msg, BM_CLIENT_HEADER, BM_HEADER_LEN, &byte, 1, data, size,
                             BM_MAX_FRAME_BYTES, &code, reason, sizeof reason) == 0);
        free (data);
        //  The items' array is not unpacked: "req" is, and reads as sent
        int64_t req;
        CHECK (bm_obj_int (bm_msg_body (msg), "req", &req) && req == 7);
        const msgpack_object *jobs = bm_obj_get (bm_msg_body (msg), "jobs");
        CHECK (jobs && jobs->type == MSGPACK_OBJECT_NIL);
    }
    bm_codec_batch_t batch;
    bm_codec_error_t error;
    CHECK (bm_codec_batch_decode (msg, &batch, &error) == 0);
    CHECK (batch.has_req && batch.req == 7 && batch.count == 3 && batch.command == BM_SUBMIT);
    bm_msg_t *item = bm_msg_new ();
    bm_codec_submit_t submit;
    CHECK (bm_codec_batch_next (&batch, item, &error) == 1);
    CHECK (bm_msg_command (item) == BM_SUBMIT);
    CHECK (bm_codec_submit_decode (item, &submit, &error) == 0);
    CHECK (streq (submit.bot_type, "python") && submit.notify);
    //  The payload is the bytes sent: {"n": 1}
    CHECK (submit.payload.size == 4 && memcmp (submit.payload.data, "\x81\xa1n\x01", 4) == 0);
    CHECK (bm_codec_batch_next (&batch, item, &error) == -1);
    CHECK (streq (error.code, "bad_request") && strstr (error.message, "jobs[1]"));
    CHECK (bm_codec_batch_next (&batch, item, &error) == 1);
    CHECK (bm_codec_submit_decode (item, &submit, &error) == -1);
    CHECK (streq (error.field, "botType"));
    CHECK (bm_codec_batch_next (&batch, item, &error) == 0);
    CHECK (batch.index == 3);
    bm_msg_destroy (&item);
    bm_msg_destroy (&msg);
}

//  The envelope's own refusals name the field.
static void
s_test_envelope_refusals (void)
{
    const char *cases [][2] = {
        { "{\"req\": 1}", "jobs" },
        { "{\"req\": 1, \"jobs\": {}}", "jobs" },
        { "{\"req\": 1, \"jobs\": []}", "jobs" },
        { "{\"req\": \"one\", \"jobs\": [{}]}", "req" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        bm_msg_t *msg = s_json_msg (BM_CLIENT_HEADER, BM_SUBMIT_MANY, cases [i][0]);
        bm_codec_batch_t batch;
        bm_codec_error_t error;
        CHECK (bm_codec_batch_decode (msg, &batch, &error) == -1);
        CHECK (streq (error.code, "bad_request") && streq (error.field, cases [i][1]));
        bm_msg_destroy (&msg);
    }
    //  One item more than BM_MAX_BATCH
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_batch_begin (&packer, true, 1, BM_MAX_BATCH + 1);
    for (int i = 0; i < BM_MAX_BATCH + 1; i++)
        msgpack_pack_map (&packer.pk, 0);
    bm_msg_t *msg = s_packed_msg (BM_CLIENT_HEADER, BM_SUBMIT_MANY, &packer);
    bm_codec_batch_t batch;
    bm_codec_error_t error;
    CHECK (bm_codec_batch_decode (msg, &batch, &error) == -1);
    CHECK (streq (error.field, "jobs") && strstr (error.message, "1001"));
    bm_msg_destroy (&msg);
    //  A single-job command is no batch
    msg = s_json_msg (BM_CLIENT_HEADER, BM_SUBMIT, "{\"jobs\": [{}]}");
    CHECK (bm_codec_batch_decode (msg, &batch, &error) == -1);
    bm_msg_destroy (&msg);
    bm_packer_destroy (&packer);
}

//  ACCEPTED_MANY written with the encoders reads back item by item: an
//  acceptance, a rejection, in order.
static void
s_test_accepted_many (void)
{
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_batch_begin (&packer, true, 9, 3);
    bm_codec_outcome_t outcome = { .accepted = true,
                                   .ok = { .job_id = "job-1", .has_position = true, .position = 4 } };
    bm_codec_outcome_encode (&outcome, &packer);
    //  A duplicate with its job's state now
    bm_codec_outcome_t again = { .accepted = true,
                                 .ok = { .job_id = "job-0", .duplicate = true, .state = "completed" } };
    bm_codec_outcome_encode (&again, &packer);
    bm_codec_outcome_t refusal = { .accepted = false,
                                   .rejected = { .code = "unknown_bot_type",
                                                 .message = { "no bot type nope", 16 } } };
    bm_codec_outcome_encode (&refusal, &packer);
    bm_msg_t *msg = s_packed_msg (BM_CLIENT_HEADER, BM_ACCEPTED_MANY, &packer);
    bm_codec_batch_t batch;
    bm_codec_error_t error;
    CHECK (bm_codec_batch_decode (msg, &batch, &error) == 0);
    CHECK (batch.req == 9 && batch.count == 3 && batch.command == BM_ACCEPTED);
    bm_msg_t *item = bm_msg_new ();
    bm_codec_outcome_t read;
    CHECK (bm_codec_batch_next (&batch, item, &error) == 1);
    CHECK (bm_codec_outcome_decode (item, &read, &error) == 0);
    CHECK (read.accepted && streq (read.ok.job_id, "job-1") && read.ok.position == 4);
    CHECK (!read.ok.duplicate && read.ok.state [0] == 0);
    CHECK (bm_codec_batch_next (&batch, item, &error) == 1);
    CHECK (bm_codec_outcome_decode (item, &read, &error) == 0);
    CHECK (read.accepted && read.ok.duplicate && streq (read.ok.state, "completed"));
    CHECK (!read.ok.has_position);
    CHECK (bm_codec_batch_next (&batch, item, &error) == 1);
    CHECK (bm_codec_outcome_decode (item, &read, &error) == 0);
    CHECK (!read.accepted && streq (read.rejected.code, "unknown_bot_type"));
    CHECK (read.rejected.message.len == 16);
    CHECK (bm_codec_batch_next (&batch, item, &error) == 0);
    bm_msg_destroy (&item);
    bm_msg_destroy (&msg);
    bm_packer_destroy (&packer);
}

//  JOB_MANY and DONE_MANY: worker-side items, payloads and results as the
//  bytes sent; RESULT_MANY's items read as RESULT.
static void
s_test_worker_batches (void)
{
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_batch_begin (&packer, false, 0, 2);
    for (int i = 0; i < 2; i++) {
        bm_codec_job_t job = { .attempt = 1, .timeout_ms = 5000,
                               .payload = { NULL, "\x91\x01", 2 } };
        snprintf (job.job_id, sizeof job.job_id, "j%d", i);
        snprintf (job.bot_type, sizeof job.bot_type, "python");
        bm_codec_job_encode (&job, &packer);
    }
    bm_msg_t *msg = s_packed_msg (BM_WORKER_HEADER, BM_JOB_MANY, &packer);
    bm_codec_batch_t batch;
    bm_codec_error_t error;
    CHECK (bm_codec_batch_decode (msg, &batch, &error) == 0);
    CHECK (!batch.has_req && batch.count == 2 && batch.command == BM_JOB);
    bm_msg_t *item = bm_msg_new ();
    for (int i = 0; i < 2; i++) {
        bm_codec_job_t job;
        CHECK (bm_codec_batch_next (&batch, item, &error) == 1);
        CHECK (bm_msg_peer (item) == BM_PEER_WORKER && bm_msg_command (item) == BM_JOB);
        CHECK (bm_codec_job_decode (item, &job, &error) == 0);
        CHECK (job.job_id [1] == '0' + i && job.payload.size == 2);
        CHECK (memcmp (job.payload.data, "\x91\x01", 2) == 0);
    }
    bm_msg_destroy (&msg);

    msg = s_json_msg (BM_WORKER_HEADER, BM_DONE_MANY,
        "{\"jobs\": [{\"jobId\": \"j0\", \"ok\": true, \"result\": [1]},"
        " {\"jobId\": \"j1\", \"ok\": false, \"error\": {\"code\": \"timeout\"}}]}");
    CHECK (bm_codec_batch_decode (msg, &batch, &error) == 0);
    CHECK (batch.command == BM_DONE && batch.count == 2);
    bm_codec_done_t done;
    CHECK (bm_codec_batch_next (&batch, item, &error) == 1);
    CHECK (bm_codec_done_decode (item, &done, &error) == 0);
    CHECK (done.ok && streq (done.job_id, "j0") && done.result.size == 2);
    CHECK (bm_codec_batch_next (&batch, item, &error) == 1);
    CHECK (bm_codec_done_decode (item, &done, &error) == 0);
    CHECK (!done.ok && streq (done.error.code, "timeout"));
    bm_msg_destroy (&msg);

    msg = s_json_msg (BM_CLIENT_HEADER, BM_RESULT_MANY,
        "{\"jobs\": [{\"jobId\": \"j0\", \"job\": {\"jobId\": \"j0\", \"botType\": \"python\","
        " \"state\": \"completed\", \"result\": 5}}]}");
    CHECK (bm_codec_batch_decode (msg, &batch, &error) == 0);
    bm_codec_job_reply_t result;
    CHECK (bm_codec_batch_next (&batch, item, &error) == 1);
    CHECK (bm_codec_result_decode (item, &result, &error) == 0);
    CHECK (streq (result.job_id, "j0") && streq (result.job.state, "completed"));
    bm_msg_destroy (&msg);
    bm_msg_destroy (&item);
    bm_packer_destroy (&packer);

    //  READY batch: true asks for JOB_MANY; absent reads as false; not a
    //  boolean is refused
    msg = s_json_msg (BM_WORKER_HEADER, BM_READY,
                      "{\"name\": \"w\", \"types\": [\"python\"], \"credit\": 5, \"batch\": true}");
    bm_codec_ready_t ready;
    CHECK (bm_codec_ready_decode (msg, &ready, &error) == 0 && ready.batch);
    bm_msg_destroy (&msg);
    msg = s_json_msg (BM_WORKER_HEADER, BM_READY, "{\"types\": [\"python\"], \"credit\": 5}");
    CHECK (bm_codec_ready_decode (msg, &ready, &error) == 0 && !ready.batch);
    bm_msg_destroy (&msg);
    msg = s_json_msg (BM_WORKER_HEADER, BM_READY, "{\"types\": [\"python\"], \"credit\": 5, \"batch\": 1}");
    CHECK (bm_codec_ready_decode (msg, &ready, &error) == -1 && streq (error.field, "batch"));
    bm_msg_destroy (&msg);

    CHECK (bm_codec_batch_item_command (BM_PEER_CLIENT, BM_SUBMIT) == -1);
    CHECK (bm_codec_batch_item_command (BM_PEER_WORKER, BM_DONE_MANY) == BM_DONE);
    CHECK (streq (bm_command_name (BM_PEER_CLIENT, BM_ACCEPTED_MANY), "ACCEPTED_MANY"));
    CHECK (streq (bm_command_name (BM_PEER_WORKER, BM_JOB_MANY), "JOB_MANY"));
}

//  A SUBMIT_MANY whose one item's payload nests depth arrays (the
//  innermost empty), parsed whole or shallow: rc and reason.
static int
s_nested_parse (int depth, bool shallow, char *reason, size_t reason_size)
{
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_batch_begin (&packer, false, 0, 1);
    msgpack_pack_map (&packer.pk, 2);
    bm_pack_kv_str (&packer.pk, "botType", "python");
    bm_pack_str (&packer.pk, "payload");
    for (int i = 0; i < depth; i++)
        msgpack_pack_array (&packer.pk, i + 1 < depth ? 1 : 0);
    bm_msg_t *msg = bm_msg_new ();
    bm_msg_set_shallow_batches (msg, shallow);
    unsigned char byte = BM_SUBMIT_MANY;
    const char *code = NULL;
    *reason = 0;
    int rc = bm_msg_parse (msg, BM_CLIENT_HEADER, BM_HEADER_LEN, &byte, 1, packer.sbuf.data,
                           packer.sbuf.size, BM_MAX_FRAME_BYTES, &code, reason, reason_size);
    if (rc == 0) {
        bm_codec_batch_t batch;
        bm_codec_error_t error;
        bm_msg_t *item = bm_msg_new ();
        bm_codec_submit_t submit;
        CHECK (bm_codec_batch_decode (msg, &batch, &error) == 0);
        CHECK (bm_codec_batch_next (&batch, item, &error) == 1);
        CHECK (bm_codec_submit_decode (item, &submit, &error) == 0);
        CHECK (submit.payload.size == (size_t) depth);
        bm_msg_destroy (&item);
    }
    else
        CHECK (streq (code, "bad_frame"));
    bm_msg_destroy (&msg);
    bm_packer_destroy (&packer);
    return rc;
}

//  Shallow batches refuse what the whole unpack refuses, with its words:
//  msgpack-c opens 32 non-empty containers at most (body, jobs and the
//  item are 3 of them); a malformed body is malformed either way.
static void
s_test_shallow_refusals (void)
{
    char whole [128], shallow [128];
    CHECK (s_nested_parse (29, false, whole, sizeof whole) == 0);
    CHECK (s_nested_parse (29, true, shallow, sizeof shallow) == 0);
    CHECK (s_nested_parse (30, false, whole, sizeof whole) == -1);
    CHECK (s_nested_parse (30, true, shallow, sizeof shallow) == -1);
    CHECK (streq (whole, shallow) && strstr (whole, "nested too deeply"));
    //  Truncated: one item declared, none there
    bm_msg_t *msg = bm_msg_new ();
    bm_msg_set_shallow_batches (msg, true);
    unsigned char byte = BM_DONE_MANY;
    const char *code = NULL;
    CHECK (bm_msg_parse (msg, BM_WORKER_HEADER, BM_HEADER_LEN, &byte, 1, "\x81\xa4jobs\x91", 7,
                         BM_MAX_FRAME_BYTES, &code, whole, sizeof whole) == -1);
    CHECK (streq (code, "bad_frame") && strstr (whole, "well-formed"));
    //  Not a map
    CHECK (bm_msg_parse (msg, BM_WORKER_HEADER, BM_HEADER_LEN, &byte, 1, "\x91\x80", 2,
                         BM_MAX_FRAME_BYTES, &code, whole, sizeof whole) == -1);
    CHECK (streq (code, "bad_frame") && strstr (whole, "must be a msgpack map"));
    //  A "jobs" that is no array reads as the whole parse reads it
    bm_codec_batch_t batch;
    bm_codec_error_t error;
    CHECK (bm_msg_parse (msg, BM_WORKER_HEADER, BM_HEADER_LEN, &byte, 1, "\x81\xa4jobs\x80", 7,
                         BM_MAX_FRAME_BYTES, &code, whole, sizeof whole) == 0);
    CHECK (bm_msg_body (msg)->type == MSGPACK_OBJECT_MAP);
    CHECK (bm_codec_batch_decode (msg, &batch, &error) == -1 && streq (error.field, "jobs"));
    bm_msg_destroy (&msg);
    CHECK (bm_msgpack_check_nesting ("\x80", 1) == 0);
    CHECK (bm_msgpack_check_nesting ("\x80\x80", 2) == -1);
    CHECK (bm_msgpack_check_nesting ("\x91", 1) == -1);
}

void
bm_codec_batch_test (bool verbose)
{
    if (verbose)
        printf (" * bm_codec_batch: ");
    s_test_submit_many (false);
    s_test_submit_many (true);
    s_test_shallow_refusals ();
    s_test_envelope_refusals ();
    s_test_accepted_many ();
    s_test_worker_batches ();
    if (verbose)
        printf ("OK\n");
}

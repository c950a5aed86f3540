/*  gw_invoke_batch.c - a POST /invoke/batch body, checked item by item and
    turned into SUBMIT_MANY bodies.  */
#include "gw_invoke_batch.h"
#include "gw_arena.h"
#include "bm_selftest.h"
#include "bm_codec_batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  One item of the array.
typedef struct {
    bool passed;                        //  Checked and encoded
    gw_invoke_error_t error;            //  Why not, when not passed
    size_t offset;                      //  Its SUBMIT body in `items`...
    size_t size;                        //  ...and its size
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    int64_t priority;
    json_t *ignored;                    //  Its unknown keys, or NULL
} s_item_t;

struct _gw_invoke_batch_t {
    size_t count;                       //  Items in the body
    size_t valid;                       //  Items that passed
    bm_packer_t items;                  //  The passed items' SUBMIT bodies
    s_item_t *item;                     //  count of them
};

static gw_invoke_batch_t *
s_refuse (gw_invoke_error_t *error, int status, const char *code, const char *message)
{
    error->status = status;
    error->code = code;
    snprintf (error->message, sizeof error->message, "%s", message);
    return NULL;
}

//  The parsed body is dropped in the arena it was made in.
static void
s_drop (gw_arena_t **arena_p, json_t *root)
{
    gw_arena_enter (*arena_p);
    json_decref (root);
    gw_arena_leave (*arena_p);
    gw_arena_destroy (arena_p);
}

gw_invoke_batch_t *
gw_invoke_batch_new (const char *body, size_t size, size_t max_batch,
                     const gw_invoke_limits_t *limits, gw_invoke_error_t *error)
{
    //  The parse's values come from an arena (gw_arena.h), one chunk for
    //  bodies like the benchmark's (jansson's tree takes ~9 bytes a byte
    //  of text).  The items' ignored lists, which outlive it, are made
    //  with it left.
    gw_arena_t *arena = gw_arena_new (size * 10);
    if (!arena)
        return s_refuse (error, 503, "out_of_memory", "no memory to read the jobs");
    gw_arena_enter (arena);
    json_t *root = gw_invoke_parse (body, size, 1, error);
    gw_arena_leave (arena);
    if (!root) {
        gw_arena_destroy (&arena);
        return NULL;
    }
    if (!json_is_array (root) || json_array_size (root) == 0) {
        s_drop (&arena, root);
        return s_refuse (error, 400, "invalid_body",
                         "the body must be a JSON array of 1 or more POST /invoke bodies");
    }
    if (json_array_size (root) > max_batch) {
        char message [120];
        snprintf (message, sizeof message, "the array holds %zu jobs; at most %zu go in one "
                  "request (MAX_BATCH)", json_array_size (root), max_batch);
        s_drop (&arena, root);
        return s_refuse (error, 413, "too_many_jobs", message);
    }
    gw_invoke_batch_t *self = (gw_invoke_batch_t *) calloc (1, sizeof (gw_invoke_batch_t));
    if (self)
        self->item = (s_item_t *) calloc (json_array_size (root), sizeof (s_item_t));
    if (!self || !self->item) {
        free (self);
        s_drop (&arena, root);
        return s_refuse (error, 503, "out_of_memory", "no memory to read the jobs");
    }
    bm_packer_init (&self->items);
    bm_packer_t payload;                //  Each item's payload, in turn
    bm_packer_init (&payload);
    self->count = json_array_size (root);
    for (size_t i = 0; i < self->count; i++) {
        s_item_t *item = &self->item [i];
        size_t mark = self->items.sbuf.size;
        if (gw_invoke_translate_value (json_array_get (root, i), false, 0, limits,
                                       &self->items, &payload, item->bot_type, &item->priority,
                                       &item->ignored, &item->error)) {
            self->items.sbuf.size = mark;       //  Drop what it wrote
            continue;
        }
        item->passed = true;
        item->offset = mark;
        item->size = self->items.sbuf.size - mark;
        self->valid++;
    }
    bm_packer_destroy (&payload);
    s_drop (&arena, root);
    if (bm_packer_failed (&self->items)) {
        gw_invoke_batch_destroy (&self);
        return s_refuse (error, 503, "out_of_memory", "no memory to encode the jobs");
    }
    return self;
}

void
gw_invoke_batch_destroy (gw_invoke_batch_t **self_p)
{
    if (*self_p) {
        gw_invoke_batch_t *self = *self_p;
        bm_packer_destroy (&self->items);
        for (size_t i = 0; i < self->count; i++)
            json_decref (self->item [i].ignored);
        free (self->item);
        free (self);
        *self_p = NULL;
    }
}

size_t
gw_invoke_batch_size (gw_invoke_batch_t *self)
{
    return self->count;
}

size_t
gw_invoke_batch_valid (gw_invoke_batch_t *self)
{
    return self->valid;
}

const gw_invoke_error_t *
gw_invoke_batch_error (gw_invoke_batch_t *self, size_t index)
{
    return index < self->count && !self->item [index].passed ? &self->item [index].error : NULL;
}

const char *
gw_invoke_batch_warning (gw_invoke_batch_t *self, size_t index)
{
    return index < self->count && self->item [index].passed && self->item [index].error.warning [0]
         ? self->item [index].error.warning : NULL;
}

const char *
gw_invoke_batch_bot_type (gw_invoke_batch_t *self, size_t index)
{
    return index < self->count ? self->item [index].bot_type : "";
}

int64_t
gw_invoke_batch_priority (gw_invoke_batch_t *self, size_t index)
{
    return index < self->count ? self->item [index].priority : 0;
}

json_t *
gw_invoke_batch_ignored (gw_invoke_batch_t *self, size_t index)
{
    return index < self->count ? self->item [index].ignored : NULL;
}

char *
gw_invoke_batch_message (gw_invoke_batch_t *self, size_t *next, int64_t req, size_t max_bytes,
                         size_t *indexes, size_t *count, size_t *size)
{
    *count = 0;
    *size = 0;
    size_t bytes = 0;
    size_t index = *next;
    for (; index < self->count && *count < BM_MAX_BATCH; index++) {
        const s_item_t *item = &self->item [index];
        if (!item->passed)
            continue;
        if (*count > 0 && bytes + item->size > max_bytes)
            break;
        bytes += item->size;
        indexes [(*count)++] = index;
    }
    *next = index;
    if (*count == 0)
        return NULL;
    //  SUBMIT_MANY body: {req, jobs: [<SUBMIT body>, ...]}
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_batch_begin (&packer, true, req, *count);
    for (size_t i = 0; i < *count; i++) {
        const s_item_t *item = &self->item [indexes [i]];
        bm_packer_write_raw (&packer, self->items.sbuf.data + item->offset, item->size);
    }
    return bm_packer_detach (&packer, size);
}

//  --------------------------------------------------------------------------
//  Self test

#define CHECK(cond) BM_CHECK (cond)

static const char *
s_code (const char *body, size_t max_batch)
{
    gw_invoke_error_t error;
    gw_invoke_batch_t *batch = gw_invoke_batch_new (body, strlen (body), max_batch, &(gw_invoke_limits_t) { .max_payload = 1024 }, &error);
    if (batch) {
        gw_invoke_batch_destroy (&batch);
        return "ok";
    }
    BM_CHECK (strlen (error.message) > 0);
    return error.code;
}

void
gw_invoke_batch_test (bool verbose)
{
    if (verbose)
        printf (" * gw_invoke_batch: ");

    //  The body as a whole: JSON, an array, 1..max_batch items.
    CHECK (streq (s_code ("", 10), "invalid_json"));
    CHECK (streq (s_code ("[{\"botType\":\"python\",\"payload\":1}", 10), "invalid_json"));
    CHECK (streq (s_code ("{\"botType\":\"python\",\"payload\":1}", 10), "invalid_body"));
    CHECK (streq (s_code ("[]", 10), "invalid_body"));
    CHECK (streq (s_code ("[1,2,3]", 2), "too_many_jobs"));
    CHECK (streq (s_code ("[1,2]", 2), "ok"));      //  Two refused items, not the batch

    //  Mixed items: each passes or is refused on its own, naming the field.
    const char *body = "[{\"botType\":\"python\",\"payload\":{\"n\":1},\"priority\":1},"
                       " {\"botType\":\"Py\",\"payload\":1},"
                       " 7,"
                       " {\"botType\":\"node\",\"payload\":[1,2],\"idempotencyKey\":\"k\"},"
                       " {\"botType\":\"node\"},"
                       " {\"botType\":\"java\",\"payload\":\"" 
                       "0123456789012345678901234567890123456789012345678901234567890123"
                       "\"}]";
    gw_invoke_error_t error;
    gw_invoke_batch_t *batch = gw_invoke_batch_new (body, strlen (body), 10, &(gw_invoke_limits_t) { .max_payload = 32 }, &error);
    CHECK (batch);
    CHECK (gw_invoke_batch_size (batch) == 6);
    CHECK (gw_invoke_batch_valid (batch) == 2);
    CHECK (gw_invoke_batch_error (batch, 0) == NULL);
    CHECK (streq (gw_invoke_batch_error (batch, 1)->code, "invalid_bot_type"));
    CHECK (strstr (gw_invoke_batch_error (batch, 1)->message, "botType"));
    CHECK (streq (gw_invoke_batch_error (batch, 2)->code, "invalid_body"));
    CHECK (gw_invoke_batch_error (batch, 3) == NULL);
    CHECK (streq (gw_invoke_batch_error (batch, 4)->code, "missing_field"));
    CHECK (strstr (gw_invoke_batch_error (batch, 4)->message, "payload"));
    CHECK (gw_invoke_batch_error (batch, 5)->status == 413);
    CHECK (streq (gw_invoke_batch_bot_type (batch, 3), "node"));
    CHECK (gw_invoke_batch_priority (batch, 0) == 1);
    CHECK (gw_invoke_batch_priority (batch, 3) == GW_INVOKE_DEFAULT_PRIORITY);
    CHECK (gw_invoke_batch_ignored (batch, 0) == NULL);

    //  One SUBMIT_MANY of the two passed items, read back with the codec.
    size_t next = 0, count = 0, size = 0;
    size_t indexes [BM_MAX_BATCH];
    char *data = gw_invoke_batch_message (batch, &next, 42, 1 << 20, indexes, &count, &size);
    CHECK (data && count == 2 && indexes [0] == 0 && indexes [1] == 3 && next == 6);
    const char *code;
    char reason [128];
    uint8_t command = BM_SUBMIT_MANY;
    bm_msg_t *msg = bm_msg_decode_raw (BM_CLIENT_HEADER, strlen (BM_CLIENT_HEADER), &command, 1,
                                       data, size, BM_MAX_FRAME_BYTES, &code, reason, sizeof reason);
    CHECK (msg);
    bm_codec_batch_t items;
    bm_codec_error_t cerr;
    CHECK (bm_codec_batch_decode (msg, &items, &cerr) == 0 && items.count == 2 && items.req == 42);
    bm_msg_t *item = bm_msg_new ();
    bm_codec_submit_t submit;
    CHECK (bm_codec_batch_next (&items, item, &cerr) == 1);
    CHECK (bm_codec_submit_decode (item, &submit, &cerr) == 0);
    CHECK (streq (submit.bot_type, "python") && submit.priority == 1);
    CHECK (bm_codec_batch_next (&items, item, &cerr) == 1);
    CHECK (bm_codec_submit_decode (item, &submit, &cerr) == 0);
    CHECK (streq (submit.bot_type, "node") && streq (submit.idempotency_key, "k"));
    CHECK (bm_codec_batch_next (&items, item, &cerr) == 0);
    bm_msg_destroy (&item);
    bm_msg_destroy (&msg);
    free (data);
    CHECK (gw_invoke_batch_message (batch, &next, 43, 1 << 20, indexes, &count, &size) == NULL);
    CHECK (count == 0);

    //  Split by size: each message takes at least one item.
    next = 0;
    data = gw_invoke_batch_message (batch, &next, 44, 1, indexes, &count, &size);
    CHECK (data && count == 1 && indexes [0] == 0 && next == 3);
    free (data);
    data = gw_invoke_batch_message (batch, &next, 45, 1, indexes, &count, &size);
    CHECK (data && count == 1 && indexes [0] == 3 && next == 6);
    free (data);
    CHECK (gw_invoke_batch_message (batch, &next, 46, 1, indexes, &count, &size) == NULL);
    gw_invoke_batch_destroy (&batch);
    gw_invoke_batch_destroy (&batch);          //  Idempotent

    //  Items read BullMQ's names and name their unknown keys, each its own.
    body = "[{\"botType\":\"python\",\"payload\":1,\"jobId\":\"j1\",\"removeOnFail\":1},"
           " {\"botType\":\"node\",\"payload\":1,\"delay\":10}]";
    batch = gw_invoke_batch_new (body, strlen (body), 10, &(gw_invoke_limits_t) { .max_payload = 1024 }, &error);
    CHECK (batch && gw_invoke_batch_valid (batch) == 2);
    json_t *names = gw_invoke_batch_ignored (batch, 0);
    CHECK (names && json_array_size (names) == 1
           && streq (json_string_value (json_array_get (names, 0)), "removeOnFail"));
    CHECK (gw_invoke_batch_ignored (batch, 1) == NULL);
    gw_invoke_batch_destroy (&batch);

    if (verbose)
        printf ("OK\n");
}

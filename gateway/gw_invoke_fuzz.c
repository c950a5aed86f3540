/*  gw_invoke_fuzz.c - libFuzzer harness for gw_invoke_translate, the
    POST /invoke body to SUBMIT translation.

    With -DBM_FUZZ=ON (clang) this is a libFuzzer target:

        gw_invoke_fuzzer -dict=gateway/fuzz/invoke.dict -rss_limit_mb=512 \
            gateway/fuzz/invoke_corpus

    Without it, it builds as a plain program that replays the checked-in
    corpus (every file in the directories given), so CTest runs it on
    every build (libzmq's tests/test_bind_null_fuzzer.cpp does the same).

    Properties checked on every input:
    - it never crashes, leaks or reads out of bounds (the sanitizers);
    - a refusal is a 400 or 413 with a code and a message;
    - an acceptance is one msgpack map that passes bm_msgpack_check, holds
      "req", a valid "botType" and a "payload", and a priority in range;
    - the same bytes, and the same bytes as the one item of an array, read
      as a POST /invoke/batch body: refused as a whole with 400 or 413 and
      a message, or every item passed or refused (400/413, a message) on
      its own, and the SUBMIT_MANY messages of the passed ones decode, each
      item as a SUBMIT with a valid botType.  */
#include "gw_invoke.h"
#include "gw_invoke_batch.h"
#include "gw_arena.h"
#include "bm_codec_batch.h"
#include "bm_proto.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

//  The batch reading of body (see the properties above).
static void
s_check_batch (const char *body, size_t size)
{
    gw_invoke_error_t error;
    gw_invoke_batch_t *batch = gw_invoke_batch_new (body, size, 1000, &(gw_invoke_limits_t) { .max_payload = 4096 }, &error);
    if (!batch) {
        if ((error.status != 400 && error.status != 413) || !error.code || !error.message [0])
            abort ();
        return;
    }
    size_t count = gw_invoke_batch_size (batch);
    if (count == 0 || count > 1000 || gw_invoke_batch_valid (batch) > count)
        abort ();
    for (size_t i = 0; i < count; i++) {
        const gw_invoke_error_t *refusal = gw_invoke_batch_error (batch, i);
        if (refusal && ((refusal->status != 400 && refusal->status != 413) || !refusal->code
                        || !refusal->message [0]))
            abort ();
    }
    size_t next = 0, sent = 0, passed = 0, indexes [BM_MAX_BATCH], msg_size;
    char *msg_body;
    bm_msg_t *item = bm_msg_new ();
    while ((msg_body = gw_invoke_batch_message (batch, &next, 7, 1024, indexes, &sent, &msg_size))) {
        uint8_t command = BM_SUBMIT_MANY;
        const char *code;
        bm_msg_t *msg = bm_msg_decode_raw (BM_CLIENT_HEADER, 5, &command, 1, msg_body, msg_size,
                                           BM_MAX_FRAME_BYTES, &code, NULL, 0);
        bm_codec_batch_t items;
        bm_codec_error_t cerr;
        bm_codec_submit_t submit;
        if (!msg || !item || bm_codec_batch_decode (msg, &items, &cerr) || items.count != sent)
            abort ();
        while (bm_codec_batch_next (&items, item, &cerr) == 1) {
            if (bm_codec_submit_decode (item, &submit, &cerr)
            ||  !bm_valid_bot_type (submit.bot_type, strlen (submit.bot_type)))
                abort ();
            passed++;
        }
        bm_msg_destroy (&msg);
        free (msg_body);
    }
    bm_msg_destroy (&item);
    if (sent != 0 || passed != gw_invoke_batch_valid (batch))
        abort ();                       //  NULL only when none is left
    gw_invoke_batch_destroy (&batch);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    //  jansson's allocator as the gateway runs it (batches parse in arenas)
    static bool installed = false;
    if (!installed) {
        gw_arena_install ();
        installed = true;
    }
    s_check_batch ((const char *) data, size);
    char *wrapped = (char *) malloc (size + 2);
    if (wrapped) {
        wrapped [0] = '[';
        memcpy (wrapped + 1, data, size);
        wrapped [size + 1] = ']';
        s_check_batch (wrapped, size + 2);
        free (wrapped);
    }

    char *out = NULL;
    size_t out_size = 0;
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    gw_invoke_error_t error;
    json_t *ignored = NULL;
    if (gw_invoke_translate ((const char *) data, size, 42, &(gw_invoke_limits_t) { .max_payload = 4096 }, &out, &out_size, bot_type,
                             NULL, &ignored, &error)) {
        if (ignored)
            abort ();
        if ((error.status != 400 && error.status != 413) || !error.code || !error.message [0]
        ||  out != NULL)
            abort ();
        return 0;
    }
    //  The ignored keys: a non-empty array of strings, bounded.
    if (ignored && (!json_is_array (ignored) || json_array_size (ignored) == 0
                    || json_array_size (ignored) > GW_INVOKE_MAX_IGNORED
                    || !json_is_string (json_array_get (ignored, 0))))
        abort ();
    json_decref (ignored);
    if (bm_msgpack_check (out, out_size))
        abort ();
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    if (msgpack_unpack_next (&result, out, out_size, &offset) != MSGPACK_UNPACK_SUCCESS
    ||  offset != out_size || result.data.type != MSGPACK_OBJECT_MAP)
        abort ();
    int64_t value;
    char copy [BM_MAX_BOT_TYPE_LEN + 1];
    if (!bm_obj_int (&result.data, "req", &value) || value != 42
    ||  !bm_obj_strcpy (&result.data, "botType", copy, sizeof copy)
    ||  strcmp (copy, bot_type) != 0 || !bm_valid_bot_type (copy, strlen (copy))
    ||  !bm_obj_get (&result.data, "payload")
    ||  !bm_obj_int (&result.data, "priority", &value) || value < 0 || value > BM_MAX_PRIORITY)
        abort ();
    msgpack_unpacked_destroy (&result);
    free (out);
    return 0;
}

#ifndef GW_FUZZING_ENGINE
//  Replay every file of the directories (or files) given.
static int
s_replay_file (const char *path)
{
    FILE *file = fopen (path, "rb");
    if (!file)
        return -1;
    fseek (file, 0, SEEK_END);
    long size = ftell (file);
    fseek (file, 0, SEEK_SET);
    uint8_t *data = (uint8_t *) malloc (size > 0 ? (size_t) size : 1);
    size_t got = fread (data, 1, (size_t) size, file);
    fclose (file);
    LLVMFuzzerTestOneInput (data, got);
    free (data);
    return 0;
}

int
main (int argc, char *argv [])
{
    int count = 0;
    for (int i = 1; i < argc; i++) {
        DIR *dir = opendir (argv [i]);
        if (!dir) {
            if (s_replay_file (argv [i])) {
                fprintf (stderr, "gw_invoke_fuzz: cannot read %s\n", argv [i]);
                return 1;
            }
            count++;
            continue;
        }
        struct dirent *entry;
        while ((entry = readdir (dir))) {
            if (entry->d_name [0] == '.')
                continue;
            char path [4096];
            snprintf (path, sizeof path, "%s/%s", argv [i], entry->d_name);
            if (s_replay_file (path) == 0)
                count++;
        }
        closedir (dir);
    }
    printf ("gw_invoke_fuzz: replayed %d inputs\n", count);
    return count > 0 ? 0 : 1;
}
#endif

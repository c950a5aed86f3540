/*  fuzz_codec.c - the wire codec under libFuzzer: bytes -> 3 frames ->
    bm_msg_decode_raw -> body accessors -> JSON bridge.

    Input layout (so that the fuzzer controls every frame boundary):

        byte 0      header frame length, 0..7 (low 3 bits; 5 is the real one)
        byte 1      command frame length, 0..3 (low 2 bits; 1 is the real one)
        then        the header bytes, the command bytes, and the rest is the
                    body frame (frame 2)

    Properties checked on every input:
    - never a crash, a leak, an out-of-bounds read or undefined behaviour
      (ASan, UBSan), never a huge allocation (libFuzzer's -rss_limit_mb /
      -malloc_limit_mb: msgpack-c trusts declared sizes, bm_msgpack_check
      must stop them first);
    - a refusal names one of the documented codes with a reason;
    - an acceptance is exactly: header BMC01 or BMW01, one command byte, a
      body of at most max_frame bytes that bm_msgpack_check accepts and that
      holds a map; bm_msg_peer / bm_msg_command report what was sent;
    - every string key of the body is found by bm_obj_get, and the typed
      accessors agree with the value's type;
    - bm_msg_raw_value finds the same value's bytes: one well-formed object
      that decodes to what bm_obj_get returns;
    - the body converts to JSON (bm_json_from_msgpack) and that JSON packs
      back (bm_json_pack) into msgpack that bm_msgpack_check accepts and
      that converts to the same JSON again (a fixpoint after one round);
    - the body decodes as every typed body of bm_codec (whatever the
      command): a refusal is "bad_request" with a field and a message
      that names the field; an
      acceptance encodes back into a body that decodes again, and whose
      second encoding is byte for byte the first (a fixpoint);
    - the body read as every batch command of its side (bm_codec_batch):
      the envelope is refused as bad_request naming its field, or its
      items read one by one, exactly as many as it declares, each refused
      alone or decoded by its single-job decoder; a decoded item written
      into a batch of one reads back and encodes to the same bytes;
    - a message parsed with shallow batches (bm_msg_set_shallow_batches,
      the broker's: each item unpacked once, from the frame's bytes) takes
      or refuses every input exactly as the whole unpack does (same code,
      same reason), and its batch reads the same: the same envelope
      refusal, or the same items, each refused with the same message or
      encoding to the same bytes;
    - bm_msgpack_check_nesting accepts exactly the bodies that
      bm_msgpack_check accepts and msgpack-c unpacks whole;
    - bm_msgpack_peek (a body over the limit read without decoding) finds
      in any body only well-formed values within it, and in a body that
      parses the same bytes bm_msg_raw_value finds;
    - the idempotency fingerprint (bm_idem, the broker's) of the body is
      never 0, the same from the object and from its bytes, and the same
      with the body's pairs in reverse order (map keys compared by value,
      whatever their order).  */
#include "bm_codec.h"
#include "bm_codec_batch.h"
#include "bm_idem.h"
#include "bm_json.h"
#include "bm_proto.h"
#include "fuzz_common.h"

#define FUZZ_MAX_FRAME  (64 * 1024)     //  Small, so that "too large" is reachable

//  A body key as a C string in name (256 bytes), or false for keys no
//  component looks up.  Empty keys are skipped: msgpack-c leaves ptr NULL
//  for a leading empty string, and no component ever looks up the key ""
//  (an empty value under a named key always follows that key's bytes, so
//  its ptr is never NULL).
static bool
s_key_name (const msgpack_object *key, char *name)
{
    if (key->type != MSGPACK_OBJECT_STR || key->via.str.size == 0
    ||  key->via.str.size > 255 || memchr (key->via.str.ptr, 0, key->via.str.size))
        return false;
    memcpy (name, key->via.str.ptr, key->via.str.size);
    name [key->via.str.size] = 0;
    return true;
}

//  The typed accessors must agree with the object's own type.
static void
s_check_accessors (const msgpack_object *map)
{
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        char name [256];
        if (!s_key_name (&map->via.map.ptr [i].key, name))
            continue;
        //  bm_obj_get returns the first entry with this key.
        const msgpack_object *value = bm_obj_get (map, name);
        FUZZ_CHECK (value != NULL);
        const char *str;
        size_t len;
        int64_t number;
        bool flag;
        char buf [BM_MAX_ID_LEN + 1];
        bool is_str = bm_obj_str (map, name, &str, &len);
        FUZZ_CHECK (is_str == (value->type == MSGPACK_OBJECT_STR));
        if (is_str) {
            FUZZ_CHECK (len == value->via.str.size);
            //  The validators read exactly len bytes (ASan checks).
            bm_valid_bot_type (str, len);
            bm_valid_id (str, len);
            bm_valid_url (str, len);
            bool copied = bm_obj_strcpy (map, name, buf, sizeof buf);
            FUZZ_CHECK (copied == (len < sizeof buf && !memchr (str, 0, len)));
            if (copied)
                FUZZ_CHECK (strlen (buf) == len && memcmp (buf, str, len) == 0);
        }
        bool is_int = bm_obj_int (map, name, &number);
        if (value->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            FUZZ_CHECK (is_int && number == value->via.i64 && number < 0);
        else
        if (value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            FUZZ_CHECK (is_int == (value->via.u64 <= INT64_MAX));
        else
            FUZZ_CHECK (!is_int);
        bool is_bool = bm_obj_bool (map, name, &flag);
        FUZZ_CHECK (is_bool == (value->type == MSGPACK_OBJECT_BOOLEAN));
    }
    //  Keys the broker asks for on every command.
    static const char *keys [] = { "req", "jobId", "botType", "payload", "priority",
                                   "webhookUrl", "idempotencyKey", "timeoutMs",
                                   "maxAttempts", "types", "credit", "attempt",
                                   "result", "error", "progress", "state", "limit" };
    for (size_t i = 0; i < sizeof keys / sizeof keys [0]; i++) {
        int64_t number;
        char buf [BM_MAX_URL_LEN + 1];
        bm_obj_int (map, keys [i], &number);
        bm_obj_strcpy (map, keys [i], buf, sizeof buf);
    }
}

//  The bytes bm_msg_raw_value finds under a key are one well-formed object
//  that decodes to what bm_obj_get returns (the broker keeps payloads and
//  results as such slices, without re-encoding them).
static void
s_check_raw_values (const bm_msg_t *msg, const uint8_t *body, size_t body_size)
{
    const msgpack_object *map = bm_msg_body (msg);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        char name [256];
        if (!s_key_name (&map->via.map.ptr [i].key, name))
            continue;
        const msgpack_object *value = bm_obj_get (map, name);
        const char *start;
        size_t len;
        FUZZ_CHECK (bm_msg_raw_value (msg, name, &start, &len));
        FUZZ_CHECK (len > 0 && bm_msgpack_check (start, len) == 0);
        //  Read without decoding (a body over the limit): the same bytes
        const char *key = name, *peek_start = NULL;
        size_t peek_len = 0;
        FUZZ_CHECK (bm_msgpack_peek ((const char *) body, body_size, &key, 1,
                                     &peek_start, &peek_len) == 1);
        FUZZ_CHECK (peek_len == len && memcmp (peek_start, start, len) == 0);
        msgpack_unpacked slice;
        msgpack_unpacked_init (&slice);
        size_t offset = 0;
        FUZZ_CHECK (msgpack_unpack_next (&slice, start, len, &offset) == MSGPACK_UNPACK_SUCCESS
                 && offset == len);
        //  Same object (printed: NaN != NaN for msgpack_object_equal).
        //  print_buffer does not terminate what it cuts: zeroed, one spare.
        static char a [4097], b [4097];
        memset (a, 0, sizeof a);
        memset (b, 0, sizeof b);
        msgpack_object_print_buffer (a, sizeof a - 1, *value);
        msgpack_object_print_buffer (b, sizeof b - 1, slice.data);
        FUZZ_CHECK (strcmp (a, b) == 0);
        msgpack_unpacked_destroy (&slice);
    }
    const char *start;
    size_t len;
    FUZZ_CHECK (!bm_msg_raw_value (msg, "no such key \x01", &start, &len)
             || bm_obj_get (map, "no such key \x01") != NULL);
}

//  JSON -> msgpack -> JSON must be stable after one round.
static void
s_check_json_bridge (const msgpack_object *body)
{
    json_t *json = bm_json_from_msgpack (body, BM_JSON_MAX_DEPTH);
    if (!json)
        return;                     //  Deeper than the limit: refused, fine
    bm_packer_t packer;
    bm_packer_init (&packer);
    FUZZ_CHECK (bm_json_pack (&packer.pk, json, BM_JSON_MAX_DEPTH) == 0);
    FUZZ_CHECK (!bm_packer_failed (&packer));
    const msgpack_sbuffer *sbuf = &packer.sbuf;
    FUZZ_CHECK (sbuf->size > 0 && bm_msgpack_check (sbuf->data, sbuf->size) == 0);

    msgpack_unpacked again;
    msgpack_unpacked_init (&again);
    size_t offset = 0;
    FUZZ_CHECK (msgpack_unpack_next (&again, sbuf->data, sbuf->size, &offset)
                == MSGPACK_UNPACK_SUCCESS);
    FUZZ_CHECK (offset == sbuf->size);
    json_t *json2 = bm_json_from_msgpack (&again.data, BM_JSON_MAX_DEPTH);
    FUZZ_CHECK (json2 != NULL);
    FUZZ_CHECK (fuzz_json_same (json, json2));

    //  And through text, as the gateway and the worker do it.
    char *text = json_dumps (json, JSON_COMPACT | JSON_ENCODE_ANY);
    if (text) {
        char *data = NULL, error [200];
        size_t size = 0;
        if (bm_json_text_to_msgpack (text, strlen (text), &data, &size, error, sizeof error) == 0) {
            FUZZ_CHECK (bm_msgpack_check (data, size) == 0);
            free (data);
        }
        free (text);
    }
    json_decref (json2);
    msgpack_unpacked_destroy (&again);
    bm_packer_destroy (&packer);
    json_decref (json);
}

//  Encode a decoded body of this kind; false for the kinds that have no
//  encoder (the broker writes LIST and STATS replies itself) or whose
//  decoded form is not an encoder's input (READY: types as slices).
static bool
s_encode (bm_codec_kind_t kind, const bm_codec_body_t *body, bm_packer_t *packer)
{
    switch (kind) {
        case BM_CODEC_SUBMIT: bm_codec_submit_encode (&body->submit, packer); break;
        case BM_CODEC_JOB_REF: bm_codec_job_ref_encode (&body->job_ref, packer); break;
        case BM_CODEC_REQUEST: bm_codec_request_encode (&body->request, packer); break;
        case BM_CODEC_LIST: bm_codec_list_encode (&body->list, packer); break;
        case BM_CODEC_ACCEPTED: bm_codec_accepted_encode (&body->accepted, packer); break;
        case BM_CODEC_REJECTED: bm_codec_rejected_encode (&body->rejected, packer); break;
        case BM_CODEC_JOB_REPLY:
        case BM_CODEC_RESULT: bm_codec_job_reply_encode (&body->job_reply, packer); break;
        case BM_CODEC_PING_REPLY: bm_codec_ping_reply_encode (&body->ping_reply, packer); break;
        case BM_CODEC_METRICS_REPLY:
            bm_codec_metrics_reply_encode (&body->metrics_reply, packer); break;
        case BM_CODEC_JOB: bm_codec_job_encode (&body->job, packer); break;
        case BM_CODEC_PROGRESS: bm_codec_progress_encode (&body->progress, packer); break;
        case BM_CODEC_DONE: bm_codec_done_encode (&body->done, packer); break;
        case BM_CODEC_JOB_NOTICE: bm_codec_job_notice_encode (&body->job_notice, packer); break;
        case BM_CODEC_DISCONNECT: bm_codec_disconnect_encode (&body->disconnect, packer); break;
        case BM_CODEC_HEARTBEAT: bm_codec_heartbeat_encode (&body->heartbeat, packer); break;
        default: return false;
    }
    return true;
}

//  Parse packed bytes as a message body into msg, under the command of
//  the message they came from (a decoder may read the command: a STATUS
//  may name its job by idempotencyKey, other commands may not); checks
//  it parses.
static void
s_reparse (bm_msg_t *msg, const bm_msg_t *from, const bm_packer_t *packer)
{
    const char *code;
    char reason [128];
    unsigned char command = (unsigned char) bm_msg_command (from);
    FUZZ_CHECK (!bm_packer_failed (packer));
    FUZZ_CHECK (bm_msg_parse (msg, BM_CLIENT_HEADER, BM_HEADER_LEN, &command, 1,
                              packer->sbuf.data, packer->sbuf.size, SIZE_MAX,
                              &code, reason, sizeof reason) == 0);
}

static void
s_check_typed_bodies (const bm_msg_t *msg)
{
    bm_msg_t *again = bm_msg_new ();
    bm_msg_t *third = bm_msg_new ();
    bm_packer_t first, second;
    bm_packer_init (&first);
    bm_packer_init (&second);
    for (int kind = 0; kind < BM_CODEC_KINDS; kind++) {
        bm_codec_body_t body;
        bm_codec_error_t error = { NULL, NULL, "" };
        if (bm_codec_decode ((bm_codec_kind_t) kind, msg, &body, &error)) {
            FUZZ_CHECK (error.code && strcmp (error.code, "bad_request") == 0);
            FUZZ_CHECK (error.field && error.message [0]);
            //  The message names the field at fault, nested ones by their
            //  path ("webhook.state"): it is what the peer is told.
            FUZZ_CHECK (strstr (error.message, error.field) != NULL);
            continue;
        }
        //  A decoded payload or result slice is the object's own bytes.
        if (kind == BM_CODEC_SUBMIT && body.submit.payload.data)
            FUZZ_CHECK (bm_msgpack_check (body.submit.payload.data, body.submit.payload.size) == 0);
        if (kind == BM_CODEC_DONE && body.done.result.data)
            FUZZ_CHECK (bm_msgpack_check (body.done.result.data, body.done.result.size) == 0);
        //  DONE's error: a code always (bot_failed by default), a limit
        //  name that fits or none.
        if (kind == BM_CODEC_DONE && !body.done.ok)
            FUZZ_CHECK (body.done.error.code [0]
                        && strlen (body.done.error.limit) <= BM_MAX_LIMIT_NAME_LEN);
        bm_packer_reset (&first);
        if (!s_encode ((bm_codec_kind_t) kind, &body, &first))
            continue;
        s_reparse (again, msg, &first);
        bm_codec_body_t body2;
        FUZZ_CHECK (bm_codec_decode ((bm_codec_kind_t) kind, again, &body2, &error) == 0);
        bm_packer_reset (&second);
        FUZZ_CHECK (s_encode ((bm_codec_kind_t) kind, &body2, &second));
        s_reparse (third, msg, &second);
        bm_codec_body_t body3;
        FUZZ_CHECK (bm_codec_decode ((bm_codec_kind_t) kind, third, &body3, &error) == 0);
        bm_packer_reset (&first);
        s_encode ((bm_codec_kind_t) kind, &body3, &first);
        FUZZ_CHECK (first.sbuf.size == second.sbuf.size
                 && memcmp (first.sbuf.data, second.sbuf.data, first.sbuf.size) == 0);
    }
    bm_packer_destroy (&first);
    bm_packer_destroy (&second);
    bm_msg_destroy (&again);
    bm_msg_destroy (&third);
}

//  The single-job body kind of a batch's items.
static bm_codec_kind_t
s_item_kind (int command)
{
    switch (command) {
        case BM_SUBMIT: return BM_CODEC_SUBMIT;
        case BM_ACCEPTED: return BM_CODEC_ACCEPTED;
        case BM_RESULT: return BM_CODEC_RESULT;
        case BM_JOB: return BM_CODEC_JOB;
        default: return BM_CODEC_DONE;
    }
}

//  Decode one item (ACCEPTED_MANY's as an outcome) and encode it into a
//  batch of one; 0, or -1 when the item's decoder refuses it.
static int
s_item_reencode (bm_codec_kind_t kind, const bm_msg_t *item, bm_packer_t *packer)
{
    bm_codec_error_t error = { NULL, NULL, "" };
    bm_codec_batch_begin (packer, false, 0, 1);
    if (kind == BM_CODEC_ACCEPTED) {
        bm_codec_outcome_t outcome;
        if (bm_codec_outcome_decode (item, &outcome, &error))
            return -1;
        bm_codec_outcome_encode (&outcome, packer);
        return 0;
    }
    bm_codec_body_t body;
    if (bm_codec_decode (kind, item, &body, &error)) {
        FUZZ_CHECK (error.code && strcmp (error.code, "bad_request") == 0);
        return -1;
    }
    FUZZ_CHECK (s_encode (kind, &body, packer));
    return 0;
}

//  The same frames parsed whole and with shallow batches: the same
//  outcome, and for a batch the same envelope and items.
static void
s_check_shallow (const void *header, size_t header_size, const void *command,
                 size_t command_size, const void *body, size_t body_size)
{
    bm_msg_t *whole = bm_msg_new ();
    bm_msg_t *shallow = bm_msg_new ();
    bm_msg_set_shallow_batches (shallow, true);
    const char *code_w = NULL, *code_s = NULL;
    char reason_w [128] = "", reason_s [128] = "";
    int rc_w = bm_msg_parse (whole, header, header_size, command, command_size, body, body_size,
                             FUZZ_MAX_FRAME, &code_w, reason_w, sizeof reason_w);
    int rc_s = bm_msg_parse (shallow, header, header_size, command, command_size, body, body_size,
                             FUZZ_MAX_FRAME, &code_s, reason_s, sizeof reason_s);
    FUZZ_CHECK (rc_w == rc_s);
    if (rc_w) {
        FUZZ_CHECK (strcmp (code_w, code_s) == 0 && strcmp (reason_w, reason_s) == 0);
        goto done;
    }
    FUZZ_CHECK (bm_msg_peer (whole) == bm_msg_peer (shallow)
             && bm_msg_command (whole) == bm_msg_command (shallow));
    //  "req" reads the same (refusals answer with it)
    int64_t req_w = 0, req_s = 0;
    FUZZ_CHECK (bm_obj_int (bm_msg_body (whole), "req", &req_w)
             == bm_obj_int (bm_msg_body (shallow), "req", &req_s) && req_w == req_s);
    bm_codec_batch_t batch_w, batch_s;
    bm_codec_error_t error_w = { NULL, NULL, "" }, error_s = { NULL, NULL, "" };
    if (bm_codec_batch_item_command (bm_msg_peer (whole), bm_msg_command (whole)) < 0)
        goto done;
    rc_w = bm_codec_batch_decode (whole, &batch_w, &error_w);
    rc_s = bm_codec_batch_decode (shallow, &batch_s, &error_s);
    FUZZ_CHECK (rc_w == rc_s);
    if (rc_w) {
        FUZZ_CHECK (strcmp (error_w.field, error_s.field) == 0
                 && strcmp (error_w.message, error_s.message) == 0);
        goto done;
    }
    FUZZ_CHECK (batch_w.count == batch_s.count && batch_w.has_req == batch_s.has_req
             && batch_w.req == batch_s.req && batch_w.command == batch_s.command);
    bm_codec_kind_t kind = s_item_kind (batch_w.command);
    bm_msg_t *item_w = bm_msg_new ();
    bm_msg_t *item_s = bm_msg_new ();
    bm_packer_t out_w, out_s;
    bm_packer_init (&out_w);
    bm_packer_init (&out_s);
    while (true) {
        rc_w = bm_codec_batch_next (&batch_w, item_w, &error_w);
        rc_s = bm_codec_batch_next (&batch_s, item_s, &error_s);
        FUZZ_CHECK (rc_w == rc_s && batch_w.index == batch_s.index);
        if (rc_w == 0)
            break;
        if (rc_w < 0) {
            FUZZ_CHECK (strcmp (error_w.message, error_s.message) == 0);
            continue;
        }
        bm_packer_reset (&out_w);
        bm_packer_reset (&out_s);
        int enc_w = s_item_reencode (kind, item_w, &out_w);
        int enc_s = s_item_reencode (kind, item_s, &out_s);
        FUZZ_CHECK (enc_w == enc_s);
        if (enc_w == 0)
            FUZZ_CHECK (out_w.sbuf.size == out_s.sbuf.size
                     && memcmp (out_w.sbuf.data, out_s.sbuf.data, out_w.sbuf.size) == 0);
    }
    FUZZ_CHECK (batch_w.index == batch_w.count);
    bm_packer_destroy (&out_w);
    bm_packer_destroy (&out_s);
    bm_msg_destroy (&item_w);
    bm_msg_destroy (&item_s);
done:
    bm_msg_destroy (&whole);
    bm_msg_destroy (&shallow);
}

static void
s_check_batches (const bm_msg_t *msg, const void *body, size_t body_size)
{
    static const int client [] = { BM_SUBMIT_MANY, BM_ACCEPTED_MANY, BM_RESULT_MANY };
    static const int worker [] = { BM_JOB_MANY, BM_DONE_MANY };
    bool is_worker = bm_msg_peer (msg) == BM_PEER_WORKER;
    const char *header = is_worker ? BM_WORKER_HEADER : BM_CLIENT_HEADER;
    const int *commands = is_worker ? worker : client;
    size_t count = is_worker ? 2 : 3;
    bm_msg_t *batch_msg = bm_msg_new ();
    bm_msg_t *item = bm_msg_new ();
    bm_msg_t *again = bm_msg_new ();
    bm_msg_t *again_item = bm_msg_new ();
    bm_packer_t first, second;
    bm_packer_init (&first);
    bm_packer_init (&second);
    for (size_t c = 0; c < count; c++) {
        const char *code;
        char reason [128];
        unsigned char command = (unsigned char) commands [c];
        s_check_shallow (header, BM_HEADER_LEN, &command, 1, body, body_size);
        FUZZ_CHECK (bm_msg_parse (batch_msg, header, BM_HEADER_LEN, &command, 1, body, body_size,
                                  SIZE_MAX, &code, reason, sizeof reason) == 0);
        bm_codec_batch_t batch;
        bm_codec_error_t error = { NULL, NULL, "" };
        if (bm_codec_batch_decode (batch_msg, &batch, &error)) {
            FUZZ_CHECK (error.code && strcmp (error.code, "bad_request") == 0);
            FUZZ_CHECK (error.field && error.message [0]);
            //  The message names the field at fault, nested ones by their
            //  path ("webhook.state"): it is what the peer is told.
            FUZZ_CHECK (strstr (error.message, error.field) != NULL);
            continue;
        }
        FUZZ_CHECK (batch.count >= 1 && batch.count <= BM_MAX_BATCH);
        bm_codec_kind_t kind = s_item_kind (batch.command);
        int rc;
        size_t seen = 0;
        while ((rc = bm_codec_batch_next (&batch, item, &error)) != 0) {
            seen++;
            if (rc < 0) {
                FUZZ_CHECK (strcmp (error.code, "bad_request") == 0 && error.message [0]);
                continue;
            }
            FUZZ_CHECK (bm_msg_command (item) == batch.command);
            bm_packer_reset (&first);
            if (s_item_reencode (kind, item, &first))
                continue;
            //  The batch of one reads back; its item encodes the same
            FUZZ_CHECK (!bm_packer_failed (&first));
            FUZZ_CHECK (bm_msg_parse (again, header, BM_HEADER_LEN, &command, 1, first.sbuf.data,
                                      first.sbuf.size, SIZE_MAX, &code, reason, sizeof reason) == 0);
            bm_codec_batch_t one;
            FUZZ_CHECK (bm_codec_batch_decode (again, &one, &error) == 0 && one.count == 1);
            FUZZ_CHECK (bm_codec_batch_next (&one, again_item, &error) == 1);
            bm_packer_reset (&second);
            FUZZ_CHECK (s_item_reencode (kind, again_item, &second) == 0);
            FUZZ_CHECK (first.sbuf.size == second.sbuf.size
                     && memcmp (first.sbuf.data, second.sbuf.data, first.sbuf.size) == 0);
        }
        FUZZ_CHECK (seen == batch.count);
    }
    bm_packer_destroy (&first);
    bm_packer_destroy (&second);
    bm_msg_destroy (&batch_msg);
    bm_msg_destroy (&item);
    bm_msg_destroy (&again);
    bm_msg_destroy (&again_item);
}

static int
s_by_u64 (const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
    return (x > y) - (x < y);
}

//  The body's idempotency fingerprint: from the object or its bytes, and
//  with its pairs reversed, the same.
static void
s_check_fingerprint (const msgpack_object *map, const uint8_t *body, size_t body_size)
{
    uint64_t fingerprint = bm_idem_fingerprint ("t", map);
    FUZZ_CHECK (fingerprint != 0);
    FUZZ_CHECK (bm_idem_fingerprint_bytes ("t", (const char *) body, body_size) == fingerprint);
    uint32_t size = map->via.map.size;
    if (size < 2)
        return;
    //  Pairs of one key (by value) keep the order they came in: such a
    //  body reversed is another.
    uint64_t *keys = (uint64_t *) malloc (size * sizeof *keys);
    FUZZ_CHECK (keys != NULL);
    for (uint32_t i = 0; i < size; i++)
        keys [i] = bm_idem_fingerprint ("t", &map->via.map.ptr [i].key);
    qsort (keys, size, sizeof *keys, s_by_u64);
    bool repeated = false;
    for (uint32_t i = 1; i < size && !repeated; i++)
        repeated = keys [i] == keys [i - 1];
    free (keys);
    if (repeated)
        return;
    msgpack_object_kv *reversed = (msgpack_object_kv *) malloc (size * sizeof *reversed);
    FUZZ_CHECK (reversed != NULL);
    for (uint32_t i = 0; i < size; i++)
        reversed [i] = map->via.map.ptr [size - 1 - i];
    msgpack_object other = *map;
    other.via.map.ptr = reversed;
    FUZZ_CHECK (bm_idem_fingerprint ("t", &other) == fingerprint);
    FUZZ_CHECK (bm_idem_same_job (fingerprint, bm_idem_fingerprint ("t", &other), "t", &other));
    free (reversed);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t header_size = data [0] & 7;
    size_t command_size = data [1] & 3;
    data += 2;
    size -= 2;
    if (header_size + command_size > size)
        return 0;
    const uint8_t *header = data;
    const uint8_t *command = data + header_size;
    const uint8_t *body = command + command_size;
    size_t body_size = size - header_size - command_size;

    //  The checker alone, on the body bytes: it must never read past them.
    int well_formed = bm_msgpack_check ((const char *) body, body_size);
    //  The nesting walk: exactly what msgpack-c unpacks whole
    {
        int unpacks = -1;
        if (well_formed == 0) {
            msgpack_zone zone;
            msgpack_zone_init (&zone, 2048);
            msgpack_object obj;
            size_t offset = 0;
            unpacks = msgpack_unpack ((const char *) body, body_size, &offset, &zone, &obj)
                      == MSGPACK_UNPACK_SUCCESS ? 0 : -1;
            msgpack_zone_destroy (&zone);
        }
        FUZZ_CHECK (bm_msgpack_check_nesting ((const char *) body, body_size) == unpacks);
    }
    //  Any body read without decoding (as one over the limit is): what it
    //  finds lies within the body and is one well-formed object.
    {
        static const char *const keys [] = { "req", "jobId", "attempt", "" };
        const char *starts [4];
        size_t lens [4], found = 0;
        size_t count = bm_msgpack_peek ((const char *) body, body_size, keys, 4, starts, lens);
        for (size_t k = 0; k < 4; k++)
            if (lens [k]) {
                found++;
                FUZZ_CHECK (starts [k] >= (const char *) body
                         && starts [k] + lens [k] <= (const char *) body + body_size);
                FUZZ_CHECK (bm_msgpack_check (starts [k], lens [k]) == 0);
            }
        FUZZ_CHECK (found == count);
    }
    //  Parsed whole and with shallow batches: the same outcome
    s_check_shallow (header, header_size, command, command_size, body, body_size);

    const char *code = NULL;
    char reason [256] = "";
    bm_msg_t *msg = bm_msg_decode_raw (header, header_size, command, command_size,
                                       body, body_size, FUZZ_MAX_FRAME,
                                       &code, reason, sizeof reason);
    if (!msg) {
        FUZZ_CHECK (code != NULL);
        FUZZ_CHECK (strcmp (code, "bad_header") == 0 || strcmp (code, "bad_command") == 0
                 || strcmp (code, "bad_frame") == 0);
        FUZZ_CHECK (reason [0] != 0);
        return 0;
    }
    //  Accepted: exactly what the protocol allows.
    FUZZ_CHECK (header_size == BM_HEADER_LEN);
    bool client = memcmp (header, BM_CLIENT_HEADER, BM_HEADER_LEN) == 0;
    bool worker = memcmp (header, BM_WORKER_HEADER, BM_HEADER_LEN) == 0;
    FUZZ_CHECK (client || worker);
    FUZZ_CHECK (bm_msg_peer (msg) == (client? BM_PEER_CLIENT: BM_PEER_WORKER));
    FUZZ_CHECK (command_size == 1 && bm_msg_command (msg) == command [0]);
    FUZZ_CHECK (body_size > 0 && body_size <= FUZZ_MAX_FRAME && well_formed == 0);
    const msgpack_object *map = bm_msg_body (msg);
    FUZZ_CHECK (map && map->type == MSGPACK_OBJECT_MAP);
    FUZZ_CHECK (bm_command_name (bm_msg_peer (msg), bm_msg_command (msg)) != NULL);

    s_check_accessors (map);
    s_check_raw_values (msg, body, body_size);
    s_check_json_bridge (map);
    s_check_typed_bodies (msg);
    s_check_batches (msg, body, body_size);
    s_check_fingerprint (map, body, body_size);
    bm_msg_destroy (&msg);
    FUZZ_CHECK (msg == NULL);
    return 0;
}

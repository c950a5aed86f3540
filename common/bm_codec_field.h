/*  bm_codec_field.h - the field readers and writers the body codecs share
    (bm_codec.c, bm_codec_worker.c).  Internal to the codec: callers use
    bm_codec.h.

    Readers take a body (or nested) map and a key; those returning int
    give 0, or -1 with *error naming the key (code "bad_request").  A key
    that is absent or nil reads as absent.  Writers append one map entry
    (key and value) to a packer.  */
#ifndef BM_CODEC_FIELD_H
#define BM_CODEC_FIELD_H

#include "bm_codec.h"

//  Fill *error (code "bad_request", field, message); returns -1.
int bm_field_fail (bm_codec_error_t *error, const char *field, const char *fmt, ...)
    __attribute__ ((format (printf, 3, 4)));

//  --------------------------------------------------------------------------
//  Readers

//  The value under key, or NULL when absent or nil.
const msgpack_object *bm_field_opt (const msgpack_object *map, const char *key);
//  An integer object's value (any width); false for other types.
bool bm_field_as_int (const msgpack_object *o, int64_t *value);
//  An optional integer in [min, max]: *has tells whether it was given.
int bm_field_opt_int (const msgpack_object *map, const char *key, int64_t min, int64_t max,
                      bool *has, int64_t *value, bm_codec_error_t *error);
//  A required integer in [min, max].
int bm_field_int (const msgpack_object *map, const char *key, int64_t min, int64_t max,
                  int64_t *value, bm_codec_error_t *error);
//  An optional boolean (false when absent).
int bm_field_opt_bool (const msgpack_object *map, const char *key, bool *value,
                       bm_codec_error_t *error);
//  An optional string of at most max_len bytes, borrowed.
int bm_field_opt_str (const msgpack_object *map, const char *key, size_t max_len,
                      bm_codec_str_t *str, bm_codec_error_t *error);
//  Copy a string slice into buf (of more than len bytes), terminated.
void bm_field_copy (char *buf, const char *str, size_t len);
//  A job id or idempotency key (bm_valid_id) into buf [BM_MAX_ID_LEN + 1];
//  "" when absent and not required.
int bm_field_id (const msgpack_object *map, const char *key, bool required, char *buf,
                 bm_codec_error_t *error);
//  A bot type (bm_valid_bot_type) into buf [BM_MAX_BOT_TYPE_LEN + 1].
int bm_field_bot_type (const msgpack_object *map, const char *key, bool required, char *buf,
                       bm_codec_error_t *error);
//  A short string (no NUL) into buf [max_len + 1]; "" when absent.
int bm_field_name (const msgpack_object *map, const char *key, bool required, size_t max_len,
                   char *buf, bm_codec_error_t *error);
//  "req": an optional integer.
int bm_field_req (const msgpack_object *map, bool *has, int64_t *req, bm_codec_error_t *error);
//  The body map of a parsed message.
const msgpack_object *bm_field_body (const bm_msg_t *msg);
//  Any value at the body's top level, with its bytes as received.
void bm_field_value (const bm_msg_t *msg, const char *key, bm_codec_value_t *value);
//  A value nested below the top level: its object only.
void bm_field_nested_value (const msgpack_object *map, const char *key, bm_codec_value_t *value);
//  An optional map (*out NULL when absent).
int bm_field_opt_map (const msgpack_object *map, const char *key, const msgpack_object **out,
                      bm_codec_error_t *error);
//  An optional "webhook" delivery state.
int bm_field_opt_webhook (const msgpack_object *map, bool *has, bm_codec_webhook_t *webhook,
                          bm_codec_error_t *error);
//  The length of text cut to at most max bytes on a UTF-8 boundary.
size_t bm_field_utf8_cut (const char *text, size_t len, size_t max);
//  A job error {code, message, exitCode?} as DONE reads it (never fails:
//  code defaults to bot_failed, message to the one given, cut).
void bm_field_job_error (const msgpack_object *map, bm_codec_job_error_t *self,
                         const char *message);
//  "progress": 0..100, else not given.
void bm_field_progress (const msgpack_object *body, bool *has, int64_t *progress);

//  --------------------------------------------------------------------------
//  Writers

void bm_field_pack_key (bm_packer_t *packer, const char *key);
void bm_field_pack_strn (bm_packer_t *packer, const char *key, const char *str, size_t len);
void bm_field_pack_int (bm_packer_t *packer, const char *key, int64_t value);
//  A value's bytes as they are (or its object packed; nil when absent).
void bm_field_pack_value (bm_packer_t *packer, const char *key, const bm_codec_value_t *value);
//  A string, or nil when ptr is NULL.
void bm_field_pack_opt_str (bm_packer_t *packer, const char *key, const bm_codec_str_t *str);
//  A job error map (the value only, after its key).
void bm_field_job_error_encode (const bm_codec_job_error_t *self, bm_packer_t *packer);

#endif

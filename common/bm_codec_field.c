/*  bm_codec_field.c - field readers and writers of the body codecs.  */
#include "bm_codec_field.h"

#include <stdarg.h>
#include <string.h>

int
bm_field_fail (bm_codec_error_t *error, const char *field, const char *fmt, ...)
{
    error->code = "bad_request";
    error->field = field;
    va_list args;
    va_start (args, fmt);
    vsnprintf (error->message, sizeof error->message, fmt, args);
    va_end (args);
    return -1;
}

//  --------------------------------------------------------------------------
//  Field readers.  Each returns 0, or -1 with *error naming the field.

//  The value under key, or NULL when absent or nil (both read as absent).
const msgpack_object *
bm_field_opt (const msgpack_object *map, const char *key)
{
    const msgpack_object *o = bm_obj_get (map, key);
    return o && o->type != MSGPACK_OBJECT_NIL ? o : NULL;
}

bool
bm_field_as_int (const msgpack_object *o, int64_t *value)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *value = (int64_t) o->via.u64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *value = o->via.i64;
        return true;
    }
    return false;
}

//  An optional integer in [min, max]: *has tells whether it was given.
int
bm_field_opt_int (const msgpack_object *map, const char *key, int64_t min, int64_t max,
                  bool *has, int64_t *value, bm_codec_error_t *error)
{
    const msgpack_object *o = bm_field_opt (map, key);
    *has = false;
    if (!o)
        return 0;
    if (!bm_field_as_int (o, value) || *value < min || *value > max)
        return bm_field_fail (error, key, "%s must be an integer from %lld to %lld",
                       key, (long long) min, (long long) max);
    *has = true;
    return 0;
}

//  A required integer in [min, max].
int
bm_field_int (const msgpack_object *map, const char *key, int64_t min, int64_t max,
              int64_t *value, bm_codec_error_t *error)
{
    bool has;
    if (bm_field_opt_int (map, key, min, max, &has, value, error))
        return -1;
    if (!has)
        return bm_field_fail (error, key, "%s is required: an integer from %lld to %lld",
                       key, (long long) min, (long long) max);
    return 0;
}

//  An optional boolean (false when absent).
int
bm_field_opt_bool (const msgpack_object *map, const char *key, bool *value, bm_codec_error_t *error)
{
    const msgpack_object *o = bm_field_opt (map, key);
    *value = false;
    if (!o)
        return 0;
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return bm_field_fail (error, key, "%s must be a boolean", key);
    *value = o->via.boolean;
    return 0;
}

//  An optional string of at most max_len bytes, borrowed.
int
bm_field_opt_str (const msgpack_object *map, const char *key, size_t max_len,
                  bm_codec_str_t *str, bm_codec_error_t *error)
{
    const msgpack_object *o = bm_field_opt (map, key);
    str->ptr = NULL;
    str->len = 0;
    if (!o)
        return 0;
    if (o->type != MSGPACK_OBJECT_STR || o->via.str.size > max_len)
        return bm_field_fail (error, key, "%s must be a string of at most %zu bytes", key, max_len);
    //  msgpack-c leaves ptr NULL for an empty string at the buffer's start.
    str->ptr = o->via.str.size ? o->via.str.ptr : "";
    str->len = o->via.str.size;
    return 0;
}

//  Copy a string slice into buf[size] (size > len).
void
bm_field_copy (char *buf, const char *str, size_t len)
{
    if (len)
        memcpy (buf, str, len);
    buf [len] = 0;
}

//  A job id or idempotency key: 1..BM_MAX_ID_LEN printable ASCII without
//  spaces, copied into buf [BM_MAX_ID_LEN + 1]; "" when absent and not
//  required.
int
bm_field_id (const msgpack_object *map, const char *key, bool required, char *buf,
             bm_codec_error_t *error)
{
    const msgpack_object *o = bm_field_opt (map, key);
    buf [0] = 0;
    if (!o && !required)
        return 0;
    if (!o || o->type != MSGPACK_OBJECT_STR || !bm_valid_id (o->via.str.ptr, o->via.str.size))
        return bm_field_fail (error, key, "%s %smust be 1-%d printable characters without spaces",
                       key, required ? "is required and " : "", BM_MAX_ID_LEN);
    bm_field_copy (buf, o->via.str.ptr, o->via.str.size);
    return 0;
}

//  A bot type: [a-z0-9_-]{1,BM_MAX_BOT_TYPE_LEN}, into buf.
int
bm_field_bot_type (const msgpack_object *map, const char *key, bool required, char *buf,
                   bm_codec_error_t *error)
{
    const msgpack_object *o = bm_field_opt (map, key);
    buf [0] = 0;
    if (!o && !required)
        return 0;
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return bm_field_fail (error, key, "%s is required and must be a string", key);
    if (!bm_valid_bot_type (o->via.str.ptr, o->via.str.size))
        return bm_field_fail (error, key, "%s must be 1-%d characters of a-z, 0-9, _ and -",
                       key, BM_MAX_BOT_TYPE_LEN);
    bm_field_copy (buf, o->via.str.ptr, o->via.str.size);
    return 0;
}

//  A short name copied into buf [max_len + 1]; "" when absent.
int
bm_field_name (const msgpack_object *map, const char *key, bool required, size_t max_len, char *buf,
               bm_codec_error_t *error)
{
    bm_codec_str_t str;
    buf [0] = 0;
    if (bm_field_opt_str (map, key, max_len, &str, error))
        return -1;
    if (!str.ptr && required)
        return bm_field_fail (error, key, "%s is required: a string of at most %zu bytes",
                       key, max_len);
    if (str.ptr && memchr (str.ptr, 0, str.len))
        return bm_field_fail (error, key, "%s must not hold a NUL byte", key);
    if (str.ptr)
        bm_field_copy (buf, str.ptr, str.len);
    return 0;
}

//  "req": an optional integer.
int
bm_field_req (const msgpack_object *map, bool *has, int64_t *req, bm_codec_error_t *error)
{
    *req = 0;
    return bm_field_opt_int (map, "req", INT64_MIN, INT64_MAX, has, req, error);
}

//  The body map of a message; every body is one (bm_msg_parse checked).
const msgpack_object *
bm_field_body (const bm_msg_t *msg)
{
    return bm_msg_body (msg);
}

//  Any value, borrowed with its bytes when it sits at the body's top level.
void
bm_field_value (const bm_msg_t *msg, const char *key, bm_codec_value_t *value)
{
    value->obj = bm_obj_get (bm_field_body (msg), key);
    value->data = NULL;
    value->size = 0;
    if (value->obj && !bm_msg_raw_value (msg, key, &value->data, &value->size)) {
        value->data = NULL;
        value->size = 0;
    }
}

//  A map-valued field, or NULL when absent; -1 when of another type.
int
bm_field_opt_map (const msgpack_object *map, const char *key, const msgpack_object **out,
                  bm_codec_error_t *error)
{
    *out = bm_field_opt (map, key);
    if (*out && (*out)->type != MSGPACK_OBJECT_MAP)
        return bm_field_fail (error, key, "%s must be a map", key);
    return 0;
}

//  --------------------------------------------------------------------------
//  Writers

void
bm_field_pack_key (bm_packer_t *packer, const char *key)
{
    bm_pack_str (&packer->pk, key);
}

void
bm_field_pack_strn (bm_packer_t *packer, const char *key, const char *str, size_t len)
{
    bm_pack_str (&packer->pk, key);
    bm_pack_strn (&packer->pk, str, len);
}

void
bm_field_pack_int (bm_packer_t *packer, const char *key, int64_t value)
{
    bm_pack_kv_int (&packer->pk, key, value);
}

void
bm_field_pack_value (bm_packer_t *packer, const char *key, const bm_codec_value_t *value)
{
    bm_pack_str (&packer->pk, key);
    if (value->data && value->size)
        bm_packer_write_raw (packer, value->data, value->size);
    else
    if (value->obj)
        msgpack_pack_object (&packer->pk, *value->obj);
    else
        msgpack_pack_nil (&packer->pk);
}

//  A string or nil.
void
bm_field_pack_opt_str (bm_packer_t *packer, const char *key, const bm_codec_str_t *str)
{
    bm_pack_str (&packer->pk, key);
    if (str->ptr)
        bm_pack_strn (&packer->pk, str->ptr, str->len);
    else
        msgpack_pack_nil (&packer->pk);
}

//  An optional webhook map under key.
int
bm_field_opt_webhook (const msgpack_object *map, bool *has, bm_codec_webhook_t *webhook,
                      bm_codec_error_t *error)
{
    const msgpack_object *o;
    *has = false;
    if (bm_field_opt_map (map, "webhook", &o, error))
        return -1;
    if (!o)
        return 0;
    *has = true;
    return bm_codec_webhook_decode (o, webhook, error);
}

//  The message cut to at most max bytes, on a UTF-8 character boundary.
size_t
bm_field_utf8_cut (const char *text, size_t len, size_t max)
{
    if (len <= max)
        return len;
    len = max;
    while (len > 0 && ((unsigned char) text [len] & 0xc0) == 0x80)
        len--;
    return len;
}

//  A job error {code, message, exitCode?, limit?}, read as DONE reads it: code
//  absent or unusable reads as bot_failed; message cut, default given.
void
bm_field_job_error (const msgpack_object *map, bm_codec_job_error_t *self, const char *message)
{
    snprintf (self->code, sizeof self->code, "bot_failed");
    self->message.ptr = message;
    self->message.len = strlen (message);
    self->has_exit_code = false;
    self->exit_code = 0;
    self->limit [0] = 0;
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return;
    if (!bm_obj_strcpy (map, "limit", self->limit, sizeof self->limit))
        self->limit [0] = 0;
    bm_obj_strcpy (map, "code", self->code, sizeof self->code);
    if (!self->code [0])
        snprintf (self->code, sizeof self->code, "bot_failed");
    self->has_exit_code = bm_obj_int (map, "exitCode", &self->exit_code);
    const char *text;
    size_t len;
    if (bm_obj_str (map, "message", &text, &len)) {
        self->message.ptr = len ? text : "";
        self->message.len = bm_field_utf8_cut (text, len, BM_MAX_ERROR_MESSAGE_LEN);
    }
}

void
bm_field_job_error_encode (const bm_codec_job_error_t *self, bm_packer_t *packer)
{
    msgpack_pack_map (&packer->pk, 2 + self->has_exit_code + (self->limit [0] != 0));
    bm_pack_kv_str (&packer->pk, "code", self->code);
    bm_field_pack_strn (packer, "message", self->message.ptr ? self->message.ptr : "",
                 self->message.len);
    if (self->has_exit_code)
        bm_field_pack_int (packer, "exitCode", self->exit_code);
    if (self->limit [0])
        bm_pack_kv_str (&packer->pk, "limit", self->limit);
}

//  A nested value: obj only.
void
bm_field_nested_value (const msgpack_object *map, const char *key, bm_codec_value_t *value)
{
    value->obj = bm_obj_get (map, key);
    value->data = NULL;
    value->size = 0;
}

//  progress: 0..100, else ignored.
void
bm_field_progress (const msgpack_object *body, bool *has, int64_t *progress)
{
    *has = bm_obj_int (body, "progress", progress) && *progress >= 0
        && *progress <= BM_MAX_PROGRESS;
    if (!*has)
        *progress = 0;
}


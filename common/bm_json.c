/*  bm_json.c - JSON (jansson) to msgpack and back.  */
#include "bm_json.h"
#include "bm_proto.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
bm_json_pack (msgpack_packer *pk, const json_t *value, int max_depth)
{
    //  max_depth counts containers (as bm_obj_depth does): an empty array
    //  is one level, so a container needs one level left even when it has
    //  no members to recurse into.
    bool container = json_is_object (value) || json_is_array (value);
    if (max_depth < (container ? 1 : 0))
        return -1;
    switch (json_typeof (value)) {
        case JSON_OBJECT: {
            msgpack_pack_map (pk, json_object_size (value));
            const char *key;
            size_t key_len;
            json_t *member;
            //  Keys may hold NUL bytes (JSON "\u0000", parsed with
            //  JSON_ALLOW_NUL): pack their whole length, not up to the NUL.
            json_object_keylen_foreach ((json_t *) value, key, key_len, member) {
                bm_pack_strn (pk, key, key_len);
                if (bm_json_pack (pk, member, max_depth - 1))
                    return -1;
            }
            return 0;
        }
        case JSON_ARRAY: {
            msgpack_pack_array (pk, json_array_size (value));
            size_t index;
            json_t *member;
            json_array_foreach (value, index, member)
                if (bm_json_pack (pk, member, max_depth - 1))
                    return -1;
            return 0;
        }
        case JSON_STRING:
            bm_pack_strn (pk, json_string_value (value), json_string_length (value));
            return 0;
        case JSON_INTEGER:
            msgpack_pack_int64 (pk, json_integer_value (value));
            return 0;
        case JSON_REAL:
            msgpack_pack_double (pk, json_real_value (value));
            return 0;
        case JSON_TRUE:
            msgpack_pack_true (pk);
            return 0;
        case JSON_FALSE:
            msgpack_pack_false (pk);
            return 0;
        default:
            msgpack_pack_nil (pk);
            return 0;
    }
}

static json_t *
s_from_msgpack (const msgpack_object *obj, int max_depth, unsigned *lost)
{
    //  Containers nest at most max_depth levels, as in bm_json_pack.
    bool container = obj->type == MSGPACK_OBJECT_ARRAY || obj->type == MSGPACK_OBJECT_MAP;
    if (max_depth < (container ? 1 : 0))
        return NULL;
    switch (obj->type) {
        case MSGPACK_OBJECT_NIL:
            return json_null ();
        case MSGPACK_OBJECT_BOOLEAN:
            return json_boolean (obj->via.boolean);
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            if (obj->via.u64 > INT64_MAX) {
                *lost |= BM_JSON_LOST_BIG_UINT;
                return json_real ((double) obj->via.u64);
            }
            return json_integer ((json_int_t) obj->via.u64);
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            return json_integer ((json_int_t) obj->via.i64);
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            //  JSON has no NaN or infinity.
            if (!isfinite (obj->via.f64)) {
                *lost |= BM_JSON_LOST_NONFINITE;
                return json_null ();
            }
            return json_real (obj->via.f64);
        case MSGPACK_OBJECT_STR: {
            //  msgpack-c may leave ptr NULL for an empty string (a fixstr of
            //  length 0 read before any other string), and json_stringn
            //  (NULL, 0) fails: "" would turn into null.
            json_t *str = json_stringn (obj->via.str.size ? obj->via.str.ptr : "",
                                        obj->via.str.size);
            //  Invalid UTF-8 cannot be JSON: say so rather than drop it.
            if (!str)
                *lost |= BM_JSON_LOST_BAD_UTF8;
            return str ? str : json_null ();
        }
        case MSGPACK_OBJECT_ARRAY: {
            json_t *array = json_array ();
            for (uint32_t i = 0; i < obj->via.array.size; i++) {
                json_t *item = s_from_msgpack (&obj->via.array.ptr [i], max_depth - 1, lost);
                if (!item) {
                    json_decref (array);
                    return NULL;
                }
                json_array_append_new (array, item);
            }
            return array;
        }
        case MSGPACK_OBJECT_MAP: {
            json_t *map = json_object ();
            for (uint32_t i = 0; i < obj->via.map.size; i++) {
                const msgpack_object *k = &obj->via.map.ptr [i].key;
                char key [64];
                const char *key_ptr = key;
                size_t key_len;
                if (k->type == MSGPACK_OBJECT_STR) {
                    key_ptr = k->via.str.size ? k->via.str.ptr : "";     //  As above
                    key_len = k->via.str.size;
                }
                else
                if (k->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                    key_len = snprintf (key, sizeof key, "%" PRIu64, k->via.u64);
                else
                if (k->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                    key_len = snprintf (key, sizeof key, "%" PRId64, k->via.i64);
                else {
                    *lost |= BM_JSON_LOST_KEY;
                    continue;       //  No JSON form for this key
                }
                if (k->type != MSGPACK_OBJECT_STR)
                    *lost |= BM_JSON_LOST_INT_KEY;
                json_t *item = s_from_msgpack (&obj->via.map.ptr [i].val, max_depth - 1, lost);
                if (!item) {
                    json_decref (map);
                    return NULL;
                }
                if (json_object_setn_new (map, key_ptr, key_len, item))
                    *lost |= BM_JSON_LOST_KEY;      //  Not UTF-8: left out
            }
            return map;
        }
        case MSGPACK_OBJECT_BIN:
            *lost |= BM_JSON_LOST_BIN;
            return json_null ();
        default:
            *lost |= BM_JSON_LOST_EXT;
            return json_null ();
    }
}

json_t *
bm_json_from_msgpack_lossy (const msgpack_object *obj, int max_depth, unsigned *lost)
{
    unsigned ignored = 0;
    if (!lost)
        lost = &ignored;
    *lost = 0;
    return s_from_msgpack (obj, max_depth, lost);
}

json_t *
bm_json_from_msgpack (const msgpack_object *obj, int max_depth)
{
    return bm_json_from_msgpack_lossy (obj, max_depth, NULL);
}

size_t
bm_json_lost_text (unsigned lost, char *buf, size_t size)
{
    static const struct { unsigned bit; const char *text; } kinds [] = {
        { BM_JSON_LOST_BIN,       "bin as null" },
        { BM_JSON_LOST_EXT,       "ext as null" },
        { BM_JSON_LOST_NONFINITE, "NaN/Infinity as null" },
        { BM_JSON_LOST_BAD_UTF8,  "a string that is not UTF-8 as null" },
        { BM_JSON_LOST_BIG_UINT,  "an integer above 2^63-1 as a float" },
        { BM_JSON_LOST_INT_KEY,   "integer map keys as strings" },
        { BM_JSON_LOST_KEY,       "other map keys left out" },
    };
    size_t n = 0;
    if (size)
        buf [0] = 0;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds [0]; i++) {
        if (!(lost & kinds [i].bit))
            continue;
        int more = snprintf (buf + n, size - n, "%s%s", n ? ", " : "", kinds [i].text);
        if (more < 0 || (size_t) more >= size - n)
            break;
        n += (size_t) more;
    }
    return n;
}

int
bm_json_text_to_msgpack (const char *text, size_t len, char **data, size_t *size,
                         char *error, size_t error_size)
{
    json_error_t jerr;
    json_t *value = json_loadb (text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!value) {
        snprintf (error, error_size, "invalid JSON at line %d column %d: %s",
                  jerr.line, jerr.column, jerr.text);
        return -1;
    }
    bm_packer_t packer;
    bm_packer_init (&packer);
    int rc = bm_json_pack (&packer.pk, value, BM_JSON_MAX_DEPTH);
    json_decref (value);
    if (rc) {
        bm_packer_destroy (&packer);
        snprintf (error, error_size, "JSON nests deeper than %d levels", BM_JSON_MAX_DEPTH);
        return -1;
    }
    *data = bm_packer_detach (&packer, size);
    if (!*data) {
        snprintf (error, error_size, "no memory to encode the JSON value");
        return -1;
    }
    return 0;
}

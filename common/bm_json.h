/*  bm_json.h - JSON (jansson) to msgpack and back.

    Payloads and results cross both worlds: HTTP and bots speak JSON, the
    wire speaks msgpack.  Maps with string keys, arrays, strings, integers,
    reals, booleans and null translate both ways.  From msgpack, non-string
    map keys become their decimal or text form, and bin/ext values (which
    JSON cannot hold) become null.  */
#ifndef BM_JSON_H
#define BM_JSON_H

#include "bm_proto.h"

#include <jansson.h>
#include <msgpack.h>

//  Pack a JSON value.  Returns 0, or -1 if its containers (arrays and
//  objects, empty ones too) nest deeper than max_depth, as bm_obj_depth counts.
int bm_json_pack (msgpack_packer *pk, const json_t *value, int max_depth);

//  A new JSON value for a msgpack object (caller owns the reference).
//  Returns NULL if its containers nest deeper than max_depth.
json_t *bm_json_from_msgpack (const msgpack_object *obj, int max_depth);

//  Parse JSON text and pack it into a new buffer: returns 0 and sets
//  *data / *size (caller frees *data), or -1 with a message in error.
int bm_json_text_to_msgpack (const char *text, size_t len, char **data, size_t *size,
                             char *error, size_t error_size);

//  Containers a payload or result may nest (what a REPLY can still carry).
#define BM_JSON_MAX_DEPTH BM_MAX_NESTING

//  The UTF-8 byte order mark (U+FEFF) some writers put before JSON text:
//  not JSON, and 3 bytes long.
#define BM_UTF8_BOM "\xEF\xBB\xBF"

#endif

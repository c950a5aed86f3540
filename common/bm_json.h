/*  bm_json.h - JSON (jansson) to msgpack and back.

    Payloads and results cross both worlds: HTTP and bots speak JSON, the
    wire speaks msgpack.  Maps with string keys, arrays, strings, integers,
    reals, booleans and null translate both ways.  From msgpack, what JSON
    cannot hold: bin and ext values, NaN and +-Infinity, and strings that
    are not UTF-8 become null; integers above 2^63-1 become reals; integer
    map keys become their decimal text ("1", "-5"); map entries with any
    other key (bin, float, nil, boolean, array, map, non-UTF-8 string) are
    left out.  docs/protocol.md section 7a states the same for users.  */
#ifndef BM_JSON_H
#define BM_JSON_H

#include "bm_json_text.h"      //  bm_json_dumps, which writes the text
#include "bm_proto.h"

#include <jansson.h>
#include <msgpack.h>

//  Pack a JSON value.  Returns 0, or -1 if its containers (arrays and
//  objects, empty ones too) nest deeper than max_depth, as bm_obj_depth counts.
int bm_json_pack (msgpack_packer *pk, const json_t *value, int max_depth);

//  A new JSON value for a msgpack object (caller owns the reference).
//  Returns NULL if its containers nest deeper than max_depth.
json_t *bm_json_from_msgpack (const msgpack_object *obj, int max_depth);

//  What a conversion from msgpack could not keep as it was: bits of *lost.
#define BM_JSON_LOST_BIN        0x01    //  bin -> null
#define BM_JSON_LOST_EXT        0x02    //  ext -> null
#define BM_JSON_LOST_NONFINITE  0x04    //  NaN, +-Infinity -> null
#define BM_JSON_LOST_BAD_UTF8   0x08    //  a string not UTF-8 -> null
#define BM_JSON_LOST_BIG_UINT   0x10    //  > INT64_MAX -> a real
#define BM_JSON_LOST_INT_KEY    0x20    //  integer key -> its decimal text
#define BM_JSON_LOST_KEY        0x40    //  other key: the entry left out

//  bm_json_from_msgpack, and *lost (when not NULL) set to the BM_JSON_LOST_*
//  bits of what it converted.
json_t *bm_json_from_msgpack_lossy (const msgpack_object *obj, int max_depth, unsigned *lost);

//  The kinds in lost as text for a log line ("bin as null, NaN/Infinity as
//  null"); returns its length ("" for 0).
size_t bm_json_lost_text (unsigned lost, char *buf, size_t size);

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

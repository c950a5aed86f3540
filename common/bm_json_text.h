/*  bm_json_text.h - JSON values (jansson) written as text, each real in the
    fewest digits that read back as the same double.

    jansson writes every real of a document with one precision
    (JSON_REAL_PRECISION): 17 digits turn 0.1 into 0.10000000000000001, 16
    turn 858.2457 into 858.2457000000001, and no single precision suits
    both.  This writer chooses per value, much as Python's repr and
    JavaScript's Number#toString do: the shortest of %.15g, %.16g, %.17g
    that strtod reads back exactly (near a power of two, 17 digits where
    a 16-digit text that is not the nearest would also read back) (fewer digits still for subnormals, 5e-324), ".0"
    appended to integral reals so they stay reals (1.0), the exponent
    without "+" or leading zeros (1e300).  Everything else is written as
    json_dumps writes it: integers stay integers, strings are escaped the
    same way, keys keep their order (or are sorted with JSON_SORT_KEYS).  */
#ifndef BM_JSON_TEXT_H
#define BM_JSON_TEXT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

//  Longest text bm_json_real_text writes, with its NUL
//  ("-2.2250738585072014e-308" is 24 characters).
#define BM_JSON_REAL_TEXT_MAX 32

//  A finite double as JSON text in the fewest digits that read back as
//  it, written into text (BM_JSON_REAL_TEXT_MAX bytes).  Returns its
//  length, or -1 for NaN and infinities, which JSON cannot hold.
int bm_json_real_text (double value, char *text);

//  json_dumps with flags (JSON_COMPACT, JSON_INDENT (n), JSON_SORT_KEYS,
//  JSON_ENCODE_ANY, JSON_ENSURE_ASCII, JSON_ESCAPE_SLASH; the precision
//  bits are ignored), each real as bm_json_real_text writes it.  Caller
//  frees; NULL for NULL, no memory, a bare scalar without JSON_ENCODE_ANY
//  (as json_dumps), or containers nested deeper than jansson parses.
char *bm_json_dumps (const json_t *value, size_t flags);

void bm_json_text_test (bool verbose);

#endif

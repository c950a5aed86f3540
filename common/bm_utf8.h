/*  bm_utf8.h - UTF-8 checks for text that came from outside.

    JSON (jansson) refuses strings that are not UTF-8: json_string returns
    NULL, a dump of a json_stringn_nocheck string fails.  Text a peer sent
    (an HTTP path or header, a body, an error message built from them) is
    made safe with these before it becomes JSON.  */
#ifndef BM_UTF8_H
#define BM_UTF8_H

#include <stdbool.h>
#include <stddef.h>

//  Length of the valid UTF-8 sequence at p (at most avail bytes, avail >
//  0), or 0 when none starts there (a stray byte, an overlong form, a
//  surrogate, past U+10FFFF, cut short).
size_t bm_utf8_seq (const unsigned char *p, size_t avail);

//  True when text [0..len) is valid UTF-8 throughout.
bool bm_utf8_valid (const char *text, size_t len);

//  Length of text [0..len) without a UTF-8 sequence cut short at its end
//  (what a cut at a byte count left), 0..3 bytes less.
size_t bm_utf8_whole (const char *text, size_t len);

//  Where the last max bytes of text [0..len) start, moved on past
//  continuation bytes to a character boundary (0 when len <= max).
size_t bm_utf8_tail (const char *text, size_t len, size_t max);

//  A new NUL-terminated copy of text [0..len), each byte that starts no
//  valid UTF-8 sequence replaced by '?', cut on a character boundary to at
//  most max bytes.  Caller frees; NULL for no memory.
char *bm_utf8_sanitised (const char *text, size_t len, size_t max);

#endif

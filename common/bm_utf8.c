/*  bm_utf8.c - UTF-8 checks for text that came from outside.  */
#include "bm_utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

size_t
bm_utf8_seq (const unsigned char *p, size_t avail)
{
    unsigned char c = p [0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    else
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else
    if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else
    if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else
        return 0;
    if (len > avail)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p [i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p [i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)
    ||  cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

bool
bm_utf8_valid (const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *) text;
    while (len) {
        size_t seq = bm_utf8_seq (p, len);
        if (seq == 0)
            return false;
        p += seq;
        len -= seq;
    }
    return true;
}

size_t
bm_utf8_whole (const char *text, size_t len)
{
    const unsigned char *p = (const unsigned char *) text;
    //  Back over up to 3 continuation bytes to the lead byte of the last
    //  sequence; drop it when it needs more bytes than are left.
    size_t back = 0;
    while (back < 3 && back < len && (p [len - 1 - back] & 0xC0) == 0x80)
        back++;
    if (back == len)
        return len;
    unsigned char lead = p [len - 1 - back];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return need > back + 1 ? len - 1 - back : len;
}

size_t
bm_utf8_tail (const char *text, size_t len, size_t max)
{
    if (len <= max)
        return 0;
    size_t start = len - max;
    while (start < len && ((unsigned char) text [start] & 0xc0) == 0x80)
        start++;
    return start;
}

char *
bm_utf8_sanitised (const char *text, size_t len, size_t max)
{
    char *copy = (char *) malloc ((len < max ? len : max) + 1);
    if (!copy)
        return NULL;
    const unsigned char *p = (const unsigned char *) text;
    size_t out = 0;
    while (len) {
        size_t seq = bm_utf8_seq (p, len);
        size_t take = seq ? seq : 1;
        if (out + take > max)
            break;
        if (seq)
            memcpy (copy + out, p, seq);
        else
            copy [out] = '?';
        out += take;
        p += take;
        len -= take;
    }
    copy [out] = 0;
    return copy;
}

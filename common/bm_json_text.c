/*  bm_json_text.c - JSON values (jansson) written as text, each real in the
    fewest digits that read back as the same double.  */
#include "bm_json_text.h"
#include "bm_selftest.h"
#include "bm_text.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Containers nested deeper than jansson's parser accepts are refused.
#define S_MAX_DEPTH 2048

//  %.*g of value, reshaped as JSON: a "." or exponent always there, the
//  exponent without "+" and leading zeros.  Returns the length.
static int
s_real_with (double value, int digits, char *text)
{
    int len = snprintf (text, BM_JSON_REAL_TEXT_MAX, "%.*g", digits, value);
    char *exp = strchr (text, 'e');
    if (!exp && !strchr (text, '.')) {
        memcpy (text + len, ".0", 3);
        return len + 2;
    }
    if (exp) {
        char *from = exp + 1;
        char *to = exp + 1;
        if (*from == '-')
            *to++ = *from++;
        else
        if (*from == '+')
            from++;
        while (*from == '0' && from [1])
            from++;
        memmove (to, from, strlen (from) + 1);
        len = (int) strlen (text);
    }
    return len;
}

int
bm_json_real_text (double value, char *text)
{
    if (!isfinite (value))
        return -1;
    //  Any decimal of 15 or fewer significant digits lies within half an
    //  ulp of one normal double only, so when %.15g reads back it is the
    //  shortest text (%g drops trailing zeros).  Subnormals have fewer
    //  bits: 5e-324 needs one digit, so try from 1 up.
    int digits = fabs (value) < DBL_MIN && value != 0 ? 1 : 15;
    for (; digits < 17; digits++) {
        int len = s_real_with (value, digits, text);
        if (strtod (text, NULL) == value)
            return len;
    }
    return s_real_with (value, 17, text);       //  17 digits always read back
}

//  The code point of the UTF-8 sequence at text (len bytes left) and its
//  length; 1 and the byte for a malformed one (jansson's strings are valid).
static size_t
s_utf8_next (const unsigned char *text, size_t len, uint32_t *code)
{
    unsigned char lead = text [0];
    size_t need = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 0;
    if (need == 0 || need > len) {
        *code = lead;
        return 1;
    }
    uint32_t cp = need == 1 ? lead : lead & (0x7F >> need);
    for (size_t i = 1; i < need; i++)
        cp = (cp << 6) | (text [i] & 0x3F);
    *code = cp;
    return need;
}

//  A string as json_dumps escapes it: \" \\ and control characters always
//  (\b \f \n \r \t short, the rest \u00XX), "/" with JSON_ESCAPE_SLASH,
//  beyond ASCII with JSON_ENSURE_ASCII (as UTF-16 surrogate pairs past
//  U+FFFF).
static void
s_put_string (bm_text_t *self, const char *str, size_t len, size_t flags)
{
    const unsigned char *at = (const unsigned char *) str;
    const unsigned char *end = at + len;
    const unsigned char *plain = at;
    bm_text_put (self, "\"", 1);
    while (at < end) {
        uint32_t code;
        size_t step = s_utf8_next (at, (size_t) (end - at), &code);
        bool escape = code == '"' || code == '\\' || code < 0x20
                   || (code == '/' && (flags & JSON_ESCAPE_SLASH))
                   || (code > 0x7F && (flags & JSON_ENSURE_ASCII));
        if (!escape) {
            at += step;
            continue;
        }
        bm_text_put (self, (const char *) plain, (size_t) (at - plain));
        char seq [16];
        switch (code) {
            case '"':  bm_text_puts (self, "\\\""); break;
            case '\\': bm_text_puts (self, "\\\\"); break;
            case '/':  bm_text_puts (self, "\\/"); break;
            case '\b': bm_text_puts (self, "\\b"); break;
            case '\f': bm_text_puts (self, "\\f"); break;
            case '\n': bm_text_puts (self, "\\n"); break;
            case '\r': bm_text_puts (self, "\\r"); break;
            case '\t': bm_text_puts (self, "\\t"); break;
            default:
                if (code < 0x10000)
                    snprintf (seq, sizeof seq, "\\u%04X", (unsigned) code);
                else {
                    uint32_t rest = code - 0x10000;
                    snprintf (seq, sizeof seq, "\\u%04X\\u%04X",
                              (unsigned) (0xD800 | (rest >> 10)), (unsigned) (0xDC00 | (rest & 0x3FF)));
                }
                bm_text_puts (self, seq);
        }
        at += step;
        plain = at;
    }
    bm_text_put (self, (const char *) plain, (size_t) (at - plain));
    bm_text_put (self, "\"", 1);
}

//  A new line and depth levels of indent with JSON_INDENT; else a space
//  when space is asked and the output is not JSON_COMPACT.
static void
s_put_indent (bm_text_t *self, size_t flags, int depth, bool space)
{
    size_t indent = flags & JSON_MAX_INDENT;
    if (indent) {
        bm_text_put (self, "\n", 1);
        for (size_t i = 0; i < indent * (size_t) depth; i++)
            bm_text_put (self, " ", 1);
    }
    else
    if (space && !(flags & JSON_COMPACT))
        bm_text_put (self, " ", 1);
}

typedef struct {
    const char *key;            //  An object's key (borrowed)
    size_t len;                 //  Its length in bytes
    json_t *value;              //  Its value (borrowed)
} s_member_t;

//  Keys in byte order, a shorter key before the longer ones it starts.
static int
s_member_cmp (const void *a, const void *b)
{
    const s_member_t *ma = a, *mb = b;
    int cmp = memcmp (ma->key, mb->key, ma->len < mb->len ? ma->len : mb->len);
    return cmp ? cmp : (ma->len > mb->len) - (ma->len < mb->len);
}

static int s_put_value (bm_text_t *self, const json_t *value, size_t flags, int depth);

static int
s_put_object (bm_text_t *self, const json_t *object, size_t flags, int depth)
{
    size_t count = json_object_size (object);
    if (count == 0) {
        bm_text_puts (self, "{}");
        return 0;
    }
    s_member_t *members = malloc (count * sizeof *members);
    if (!members)
        return -1;
    size_t n = 0;
    const char *key;
    size_t key_len;
    json_t *member;
    //  jansson's iteration macros take a non-const object; reading only.
    json_object_keylen_foreach ((json_t *) object, key, key_len, member)
        members [n++] = (s_member_t) { key, key_len, member };
    if (flags & JSON_SORT_KEYS)
        qsort (members, n, sizeof *members, s_member_cmp);
    int rc = 0;
    bm_text_put (self, "{", 1);
    s_put_indent (self, flags, depth + 1, false);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i) {
            bm_text_put (self, ",", 1);
            s_put_indent (self, flags, depth + 1, true);
        }
        s_put_string (self, members [i].key, members [i].len, flags);
        bm_text_put (self, ":", 1);
        if (!(flags & JSON_COMPACT))
            bm_text_put (self, " ", 1);
        rc = s_put_value (self, members [i].value, flags, depth + 1);
    }
    s_put_indent (self, flags, depth, false);
    bm_text_put (self, "}", 1);
    free (members);
    return rc;
}

static int
s_put_value (bm_text_t *self, const json_t *value, size_t flags, int depth)
{
    if (depth > S_MAX_DEPTH)
        return -1;
    char text [BM_JSON_REAL_TEXT_MAX];
    switch (json_typeof (value)) {
        case JSON_OBJECT:
            return s_put_object (self, value, flags, depth);
        case JSON_ARRAY: {
            size_t count = json_array_size (value);
            if (count == 0) {
                bm_text_puts (self, "[]");
                return 0;
            }
            bm_text_put (self, "[", 1);
            s_put_indent (self, flags, depth + 1, false);
            for (size_t i = 0; i < count; i++) {
                if (i) {
                    bm_text_put (self, ",", 1);
                    s_put_indent (self, flags, depth + 1, true);
                }
                if (s_put_value (self, json_array_get (value, i), flags, depth + 1))
                    return -1;
            }
            s_put_indent (self, flags, depth, false);
            bm_text_put (self, "]", 1);
            return 0;
        }
        case JSON_STRING:
            s_put_string (self, json_string_value (value), json_string_length (value), flags);
            return 0;
        case JSON_INTEGER:
            snprintf (text, sizeof text, "%" JSON_INTEGER_FORMAT, json_integer_value (value));
            bm_text_puts (self, text);
            return 0;
        case JSON_REAL: {
            int len = bm_json_real_text (json_real_value (value), text);
            if (len < 0)
                return -1;      //  jansson holds no NaN or infinity
            bm_text_put (self, text, (size_t) len);
            return 0;
        }
        case JSON_TRUE:
            bm_text_puts (self, "true");
            return 0;
        case JSON_FALSE:
            bm_text_puts (self, "false");
            return 0;
        default:
            bm_text_puts (self, "null");
            return 0;
    }
}

char *
bm_json_dumps (const json_t *value, size_t flags)
{
    if (!value)
        return NULL;
    if (!(flags & JSON_ENCODE_ANY) && !json_is_object (value) && !json_is_array (value))
        return NULL;
    bm_text_t text = BM_TEXT_INIT;
    int rc = s_put_value (&text, value, flags, 0);
    bm_text_put (&text, "", 1);       //  The NUL
    if (rc || text.failed) {
        free (text.data);
        return NULL;
    }
    return text.data;
}

//  --------------------------------------------------------------------------
//  Self-test

static bool
s_real_is (double value, const char *expected)
{
    char text [BM_JSON_REAL_TEXT_MAX];
    int len = bm_json_real_text (value, text);
    bool ok = len == (int) strlen (expected) && strcmp (text, expected) == 0
           && memcmp (&(double) { strtod (text, NULL) }, &value, sizeof value) == 0;
    if (!ok)
        fprintf (stderr, "bm_json_real_text (%.17g): \"%s\", not \"%s\"\n",
                 value, len < 0 ? "(error)" : text, expected);
    return ok;
}

//  bm_json_dumps (value) == json_dumps (value) for a value without reals.
static bool
s_same_as_jansson (const json_t *value, size_t flags)
{
    char *ours = bm_json_dumps (value, flags);
    char *theirs = json_dumps (value, flags);
    bool same = ours && theirs && strcmp (ours, theirs) == 0;
    if (!same)
        fprintf (stderr, "flags %zx: ours %s, jansson's %s\n", flags,
                 ours ? ours : "NULL", theirs ? theirs : "NULL");
    free (ours);
    free (theirs);
    return same;
}

void
bm_json_text_test (bool verbose)
{
    if (verbose)
        printf (" * bm_json_text: ");

    //  The fewest digits that read back, per value.
    BM_CHECK (s_real_is (0.1, "0.1"));
    BM_CHECK (s_real_is (0.1 + 0.2, "0.30000000000000004"));
    BM_CHECK (s_real_is (858.2457, "858.2457"));
    BM_CHECK (s_real_is (1.0 / 3.0, "0.3333333333333333"));
    BM_CHECK (s_real_is (1e300, "1e300"));
    BM_CHECK (s_real_is (1e-7, "1e-7"));
    BM_CHECK (s_real_is (1.5e16, "1.5e16"));
    BM_CHECK (s_real_is (-2.5, "-2.5"));
    BM_CHECK (s_real_is (5e-324, "5e-324"));                //  Smallest subnormal
    BM_CHECK (s_real_is (2.2250738585072014e-308, "2.2250738585072014e-308"));
    BM_CHECK (s_real_is (1.7976931348623157e308, "1.7976931348623157e308"));
    BM_CHECK (s_real_is (-0.0, "-0.0"));
    BM_CHECK (s_real_is (1.0, "1.0"));
    BM_CHECK (s_real_is (100.0, "100.0"));
    BM_CHECK (s_real_is (9007199254740993.0, "9007199254740992.0"));    //  2^53+1 as a double
    char text [BM_JSON_REAL_TEXT_MAX];
    BM_CHECK (bm_json_real_text (NAN, text) == -1 && bm_json_real_text (-INFINITY, text) == -1);

    //  Every double reads back identical: a sweep of bit patterns.
    uint64_t bits = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 200000; i++) {
        bits ^= bits << 13;
        bits ^= bits >> 7;
        bits ^= bits << 17;
        double value;
        memcpy (&value, &bits, sizeof value);
        if (!isfinite (value))
            continue;
        int len = bm_json_real_text (value, text);
        double back = strtod (text, NULL);
        BM_CHECK (len > 0 && len < BM_JSON_REAL_TEXT_MAX && memcmp (&back, &value, sizeof value) == 0);
    }

    //  Per value, not per document: 0.1 + 0.2 leaves 858.2457 short.
    json_t *doc = json_pack ("{s:f, s:[f, f], s:I, s:I, s:f, s:f}", "a", 858.2457,
                             "b", 0.1 + 0.2, 0.1, "big", (json_int_t) 9007199254740993LL,
                             "one", (json_int_t) 1, "oneReal", 1.0, "tiny", 5e-324);
    char *dumped = bm_json_dumps (doc, JSON_COMPACT);
    BM_CHECK (dumped && strcmp (dumped, "{\"a\":858.2457,\"b\":[0.30000000000000004,0.1],"
              "\"big\":9007199254740993,\"one\":1,\"oneReal\":1.0,\"tiny\":5e-324}") == 0);
    json_t *back = dumped ? json_loads (dumped, 0, NULL) : NULL;
    BM_CHECK (back && json_equal (back, doc));
    BM_CHECK (json_is_integer (json_object_get (back, "big")) && json_is_real (json_object_get (back, "oneReal")));
    json_decref (back);
    free (dumped);
    json_decref (doc);

    //  Everything but reals as json_dumps writes it, for every layout.
    json_t *plain = json_loads ("{\"z\":[1,-2,true,false,null,[],{}],\"ab\\u0001\":\"a\\u0000b\",\"q\":\"q\\\"\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\","
                                "\"\\u00e9\\u20ac\\ud83d\\ude00\":{\"k\":{\"j\":[\"x\"]}},\"a\":\"\",\"ab\":\"\\u007f\"}",
                                JSON_ALLOW_NUL, NULL);
    BM_CHECK (plain);
    size_t layouts [] = { 0, JSON_COMPACT, JSON_INDENT (2), JSON_INDENT (3) | JSON_COMPACT, JSON_SORT_KEYS,
                          JSON_COMPACT | JSON_SORT_KEYS, JSON_ENSURE_ASCII, JSON_ESCAPE_SLASH | JSON_COMPACT };
    for (size_t i = 0; i < sizeof layouts / sizeof layouts [0]; i++)
        BM_CHECK (s_same_as_jansson (plain, layouts [i]));
    json_t *word = json_string ("\xc3\xa9/");
    BM_CHECK (s_same_as_jansson (word, JSON_ENCODE_ANY | JSON_ENSURE_ASCII | JSON_ESCAPE_SLASH));
    BM_CHECK (bm_json_dumps (word, JSON_COMPACT) == NULL);      //  A bare scalar needs JSON_ENCODE_ANY
    json_t *number = json_integer (INT64_MIN);
    BM_CHECK (s_same_as_jansson (number, JSON_ENCODE_ANY));
    json_decref (number);
    json_decref (word);
    json_decref (plain);
    BM_CHECK (bm_json_dumps (NULL, 0) == NULL);

    //  Deeper than jansson parses: refused, not a stack overflow.
    json_t *deep = json_array ();
    json_t *inner = deep;
    for (int i = 0; i < S_MAX_DEPTH + 1; i++) {
        json_t *next = json_array ();
        json_array_append_new (inner, next);
        inner = next;
    }
    BM_CHECK (bm_json_dumps (deep, 0) == NULL);
    json_decref (deep);

    if (verbose)
        printf ("OK\n");
}

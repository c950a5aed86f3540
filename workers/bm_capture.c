/*  bm_capture.c - a bounded byte sink for a bot's output.  */
#include "bm_capture.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _bm_capture_t {
    size_t limit;               //  Most bytes kept
    bool keep_tail;             //  Tail mode (else head mode)
    char *buffer;               //  2 * limit + 1 bytes
    size_t start;               //  Tail mode: where the kept bytes begin
    size_t size;                //  Bytes in buffer from start
    size_t total;               //  Bytes offered in total
};

//  --------------------------------------------------------------------------

bm_capture_t *
bm_capture_new (size_t limit, bool keep_tail)
{
    if (limit == 0)
        limit = 1;
    bm_capture_t *self = (bm_capture_t *) calloc (1, sizeof (bm_capture_t));
    if (!self)
        return NULL;
    self->limit = limit;
    self->keep_tail = keep_tail;
    //  Head mode needs limit + 1; tail mode appends into a window twice
    //  the limit and slides it back when full, so each byte moves at most
    //  once per `limit` bytes appended.
    self->buffer = (char *) malloc ((keep_tail ? 2 * limit : limit) + 1);
    if (!self->buffer) {
        free (self);
        return NULL;
    }
    self->buffer [0] = 0;
    return self;
}

void
bm_capture_destroy (bm_capture_t **self_p)
{
    if (*self_p) {
        bm_capture_t *self = *self_p;
        free (self->buffer);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------

int
bm_capture_append (bm_capture_t *self, const void *data, size_t size)
{
    const char *bytes = (const char *) data;
    self->total += size;
    if (!self->keep_tail) {
        size_t room = self->limit - self->size;
        size_t take = size < room ? size : room;
        memcpy (self->buffer + self->size, bytes, take);
        self->size += take;
        self->buffer [self->size] = 0;
        return self->total > self->limit ? -1 : 0;
    }
    //  Tail mode: only the last `limit` bytes of this chunk can matter.
    if (size >= self->limit) {
        memcpy (self->buffer, bytes + size - self->limit, self->limit);
        self->start = 0;
        self->size = self->limit;
    }
    else {
        if (self->start + self->size + size > 2 * self->limit) {
            //  Slide the bytes we keep (at most limit - size) to the front.
            size_t keep = self->limit - size;
            if (keep > self->size)
                keep = self->size;
            memmove (self->buffer, self->buffer + self->start + self->size - keep, keep);
            self->start = 0;
            self->size = keep;
        }
        memcpy (self->buffer + self->start + self->size, bytes, size);
        self->size += size;
        if (self->size > self->limit) {
            self->start += self->size - self->limit;
            self->size = self->limit;
        }
    }
    self->buffer [self->start + self->size] = 0;
    return 0;
}

const char *
bm_capture_data (bm_capture_t *self)
{
    return self->buffer + self->start;
}

size_t
bm_capture_size (bm_capture_t *self)
{
    return self->size;
}

size_t
bm_capture_total (bm_capture_t *self)
{
    return self->total;
}

bool
bm_capture_overflowed (bm_capture_t *self)
{
    return self->total > self->limit;
}

//  --------------------------------------------------------------------------
//  Length of the valid UTF-8 sequence at p (at most left bytes), or 0.

static size_t
s_utf8_sequence (const unsigned char *p, size_t left)
{
    unsigned char c = p [0];
    size_t length;
    unsigned char low = 0x80, high = 0xbf;   //  Range of the second byte
    if (c < 0x80)
        return 1;
    else
    if (c >= 0xc2 && c <= 0xdf)
        length = 2;
    else
    if (c >= 0xe0 && c <= 0xef) {
        length = 3;
        if (c == 0xe0)
            low = 0xa0;                 //  No overlong forms
        if (c == 0xed)
            high = 0x9f;                //  No surrogates
    }
    else
    if (c >= 0xf0 && c <= 0xf4) {
        length = 4;
        if (c == 0xf0)
            low = 0x90;
        if (c == 0xf4)
            high = 0x8f;                //  Nothing above U+10FFFF
    }
    else
        return 0;
    if (left < length || p [1] < low || p [1] > high)
        return 0;
    for (size_t i = 2; i < length; i++)
        if (p [i] < 0x80 || p [i] > 0xbf)
            return 0;
    return length;
}

char *
bm_text_sanitize (const char *data, size_t size)
{
    const unsigned char *p = (const unsigned char *) data;
    //  Trim surrounding whitespace first.
    while (size > 0 && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
        p++;
        size--;
    }
    while (size > 0 && (p [size - 1] == ' ' || p [size - 1] == '\n'
                     || p [size - 1] == '\r' || p [size - 1] == '\t'))
        size--;
    //  A control byte takes four bytes (\x1b), anything else at most one.
    char *text = (char *) malloc (size * 4 + 1);
    if (!text)
        return NULL;
    size_t out = 0;
    size_t pos = 0;
    while (pos < size) {
        size_t length = s_utf8_sequence (p + pos, size - pos);
        if (length == 0) {
            text [out++] = '?';
            pos++;
        }
        else
        if (length == 1) {
            //  Control bytes as the logs show them (ESC as \x1b): visible,
            //  and unable to move a terminal's cursor or colour the text.
            unsigned char c = p [pos++];
            if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
                out += (size_t) sprintf (text + out, "\\x%02x", c);
            else
                text [out++] = (char) c;
        }
        else {
            memcpy (text + out, p + pos, length);
            out += length;
            pos += length;
        }
    }
    text [out] = 0;
    return text;
}

char *
bm_capture_text (bm_capture_t *self)
{
    return bm_text_sanitize (bm_capture_data (self), bm_capture_size (self));
}

#ifdef BM_SELFTEST
//  --------------------------------------------------------------------------

void
bm_capture_test (bool verbose)
{
    if (verbose)
        printf (" * bm_capture: ");

    //  Head mode: keeps the first bytes, flags the overflow.
    bm_capture_t *head = bm_capture_new (10, false);
    assert (bm_capture_append (head, "hello", 5) == 0);
    assert (bm_capture_append (head, "world", 5) == 0);
    assert (!bm_capture_overflowed (head));
    assert (bm_capture_size (head) == 10);
    assert (strcmp (bm_capture_data (head), "helloworld") == 0);
    assert (bm_capture_append (head, "!", 1) == -1);
    assert (bm_capture_overflowed (head));
    assert (bm_capture_size (head) == 10);
    assert (bm_capture_total (head) == 11);
    assert (strcmp (bm_capture_data (head), "helloworld") == 0);
    //  A huge offer costs nothing more.
    static char big [100000];
    memset (big, 'x', sizeof big);
    assert (bm_capture_append (head, big, sizeof big) == -1);
    assert (bm_capture_size (head) == 10);
    bm_capture_destroy (&head);
    assert (head == NULL);
    bm_capture_destroy (&head);         //  Idempotent

    //  Tail mode: keeps the last bytes, in order, whatever the chunking.
    bm_capture_t *tail = bm_capture_new (8, true);
    char expect [64] = "";
    for (int i = 0; i < 50; i++) {
        char chunk [8];
        int n = snprintf (chunk, sizeof chunk, "%d,", i);
        assert (bm_capture_append (tail, chunk, n) == 0);
        strcat (expect, chunk);
        if (strlen (expect) > 8)
            memmove (expect, expect + strlen (expect) - 8, 9);
        assert (strcmp (bm_capture_data (tail), expect) == 0);
    }
    assert (bm_capture_size (tail) == 8);
    assert (bm_capture_overflowed (tail));
    assert (bm_capture_append (tail, "0123456789ABCDEF", 16) == 0);
    assert (strcmp (bm_capture_data (tail), "89ABCDEF") == 0);
    assert (bm_capture_append (tail, "xy", 2) == 0);
    assert (strcmp (bm_capture_data (tail), "ABCDEFxy") == 0);
    bm_capture_destroy (&tail);

    //  Empty capture is an empty string.
    bm_capture_t *empty = bm_capture_new (4, true);
    assert (bm_capture_size (empty) == 0);
    assert (strcmp (bm_capture_data (empty), "") == 0);
    char *text = bm_capture_text (empty);
    assert (strcmp (text, "") == 0);
    free (text);
    bm_capture_destroy (&empty);

    //  Text: trimmed, control characters escaped, broken UTF-8 replaced.
    text = bm_text_sanitize ("\n  boom\x01\tat \xc3\xa9t\xc3 line 3\n\n", 25);
    assert (strcmp (text, "boom\\x01\tat \xc3\xa9t? line 3") == 0);
    free (text);
    //  An ANSI colour: ESC as the four characters \x1b, DEL as \x7f.
    text = bm_text_sanitize ("\x1b[31mred\x1b[0m\x7f\x1b", 14);
    assert (strcmp (text, "\\x1b[31mred\\x1b[0m\\x7f\\x1b") == 0);
    free (text);
    //  A tail that cut a multibyte sequence in half.
    text = bm_text_sanitize ("\xa9\xe2\x82\xac ok \xf0\x9f", 10);
    assert (strcmp (text, "?\xe2\x82\xac ok ??") == 0);
    free (text);
    //  Overlong and surrogate forms are not UTF-8.
    text = bm_text_sanitize ("\xc0\xaf\xed\xa0\x80", 5);
    assert (strcmp (text, "?????") == 0);
    free (text);

    if (verbose)
        printf ("OK\n");
}
#endif

/*  bm_text.c - text built piece by piece (bm_text.h).  */
#include "bm_text.h"

#include <stdlib.h>
#include <string.h>

void
bm_text_put (bm_text_t *self, const char *bytes, size_t len)
{
    if (self->failed)
        return;
    if (self->size + len + 1 > self->cap) {
        size_t cap = self->cap ? self->cap : 256;
        while (cap < self->size + len + 1)
            cap *= 2;
        char *data = (char *) realloc (self->data, cap);
        if (!data) {
            self->failed = true;
            return;
        }
        self->data = data;
        self->cap = cap;
    }
    memcpy (self->data + self->size, bytes, len);
    self->size += len;
    self->data [self->size] = 0;
}

void
bm_text_puts (bm_text_t *self, const char *str)
{
    bm_text_put (self, str, strlen (str));
}

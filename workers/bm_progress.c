/*  bm_progress.c - the progress channel of a bot: lines on fd 3.  */
#include "bm_progress.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _bm_progress_t {
    char line [BM_PROGRESS_MAX_LINE];   //  The line being assembled
    size_t size;                        //  Bytes in line
    bool skipping;                      //  Current line is too long: skip
                                        //  to its end
    char bad [BM_PROGRESS_MAX_LINE + 4];    //  First bad line, printable
    bool bad_seen;                      //  bad holds one
    bool bad_told;                      //  bm_progress_news said so
};

//  Keep the first bad line (the size bytes assembled; cut: too long).
static void
s_keep_bad (bm_progress_t *self, bool cut)
{
    size_t size = self->size;
    while (size > 0 && self->line [size - 1] == '\r')
        size--;
    if (self->bad_seen || (size == 0 && !cut))
        return;
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char) self->line [i];
        self->bad [i] = c < 0x20 || c == 0x7f ? '?' : (char) c;
    }
    self->bad [size] = 0;
    if (cut)
        strcat (self->bad, "...");
    self->bad_seen = true;
}

bool
bm_progress_news (bm_progress_t *self)
{
    if (!self->bad_seen || self->bad_told)
        return false;
    self->bad_told = true;
    return true;
}

const char *
bm_progress_bad_line (bm_progress_t *self)
{
    return self->bad_seen ? self->bad : "";
}

void
bm_progress_rearm (bm_progress_t *self)
{
    self->bad_seen = self->bad_told = false;
    self->bad [0] = 0;
}

bm_progress_t *
bm_progress_new (void)
{
    return (bm_progress_t *) calloc (1, sizeof (bm_progress_t));
}

void
bm_progress_destroy (bm_progress_t **self_p)
{
    if (*self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------

int
bm_progress_parse (const char *line, size_t size)
{
    static const char keyword [] = "PROGRESS";
    const size_t keyword_size = sizeof keyword - 1;
    if (size > 0 && line [size - 1] == '\r')
        size--;
    if (size <= keyword_size || memcmp (line, keyword, keyword_size) != 0)
        return -1;
    size_t pos = keyword_size;
    if (line [pos] != ' ' && line [pos] != '\t')
        return -1;
    while (pos < size && (line [pos] == ' ' || line [pos] == '\t'))
        pos++;
    int value = 0;
    size_t digits = 0;
    while (pos < size && line [pos] >= '0' && line [pos] <= '9') {
        value = value * 10 + (line [pos] - '0');
        if (value > 100)
            return -1;
        pos++;
        digits++;
    }
    if (digits == 0)
        return -1;
    while (pos < size && (line [pos] == ' ' || line [pos] == '\t'))
        pos++;
    return pos == size ? value : -1;
}

int
bm_progress_feed (bm_progress_t *self, const char *data, size_t size)
{
    int last = -1;
    for (size_t i = 0; i < size; i++) {
        char c = data [i];
        if (c == '\n') {
            if (!self->skipping) {
                int value = bm_progress_parse (self->line, self->size);
                if (value >= 0)
                    last = value;
                else
                    s_keep_bad (self, false);
            }
            else
                s_keep_bad (self, true);
            self->size = 0;
            self->skipping = false;
        }
        else
        if (!self->skipping) {
            if (self->size == sizeof self->line)
                self->skipping = true;
            else
                self->line [self->size++] = c;
        }
    }
    return last;
}

#ifdef BM_SELFTEST
//  --------------------------------------------------------------------------

void
bm_progress_test (bool verbose)
{
    if (verbose)
        printf (" * bm_progress: ");

    assert (bm_progress_parse ("PROGRESS 40", 11) == 40);
    assert (bm_progress_parse ("PROGRESS 0", 10) == 0);
    assert (bm_progress_parse ("PROGRESS 100", 12) == 100);
    assert (bm_progress_parse ("PROGRESS\t 7 \r", 13) == 7);
    assert (bm_progress_parse ("PROGRESS 101", 12) == -1);
    assert (bm_progress_parse ("PROGRESS 99999999999999999999", 29) == -1);
    assert (bm_progress_parse ("PROGRESS -1", 11) == -1);
    assert (bm_progress_parse ("PROGRESS 4O", 11) == -1);
    assert (bm_progress_parse ("PROGRESS 40.5", 13) == -1);
    assert (bm_progress_parse ("PROGRESS", 8) == -1);
    assert (bm_progress_parse ("PROGRESS ", 9) == -1);
    assert (bm_progress_parse ("PROGRESS40", 10) == -1);
    assert (bm_progress_parse ("progress 40", 11) == -1);
    assert (bm_progress_parse (" PROGRESS 40", 12) == -1);
    assert (bm_progress_parse ("", 0) == -1);

    bm_progress_t *progress = bm_progress_new ();
    //  Lines split across reads; the last complete valid line wins.
    assert (bm_progress_feed (progress, "PROG", 4) == -1);
    assert (bm_progress_feed (progress, "RESS 1", 6) == -1);
    assert (bm_progress_feed (progress, "0\nPROGRESS 20\nPROGRESS 3", 24) == 20);
    assert (bm_progress_feed (progress, "0\n", 2) == 30);
    //  Junk lines are skipped, valid ones around them still count.
    assert (bm_progress_feed (progress, "hello\nPROGRESS 200\n", 19) == -1);
    assert (bm_progress_feed (progress, "PROGRESS 50\nnoise\n", 18) == 50);
    //  An over-long line is skipped whole, even if it ends like a valid one.
    char longline [200];
    memset (longline, 'x', sizeof longline);
    assert (bm_progress_feed (progress, longline, sizeof longline) == -1);
    assert (bm_progress_feed (progress, " PROGRESS 60\n", 13) == -1);
    assert (bm_progress_feed (progress, "PROGRESS 70\n", 12) == 70);
    //  An unterminated line yields nothing until its newline.
    assert (bm_progress_feed (progress, "PROGRESS 80", 11) == -1);
    assert (bm_progress_feed (progress, "\n", 1) == 80);
    //  NUL bytes make a line invalid, not the parser confused.
    assert (bm_progress_feed (progress, "PROGRESS \0" "90\n", 13) == -1);
    bm_progress_rearm (progress);
    assert (!bm_progress_news (progress) && strcmp (bm_progress_bad_line (progress), "") == 0);
    assert (bm_progress_feed (progress, "\n\r\nPROGRESS 150\nprogress 40\n", 28) == -1);
    assert (bm_progress_news (progress) && !bm_progress_news (progress));
    assert (strcmp (bm_progress_bad_line (progress), "PROGRESS 150") == 0);
    bm_progress_rearm (progress);
    assert (bm_progress_feed (progress, "PROGRESS 30%\n", 13) == -1 && bm_progress_news (progress));
    assert (strcmp (bm_progress_bad_line (progress), "PROGRESS 30%") == 0);
    bm_progress_destroy (&progress);
    assert (progress == NULL);

    if (verbose)
        printf ("OK\n");
}
#endif

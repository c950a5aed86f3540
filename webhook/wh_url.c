/*  wh_url.c - a webhook URL as logs and error messages show it.  */
#include "wh_url.h"
#include "bm_selftest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MASK "***"

//  Append len bytes of text at *out.
static void
s_put (char **out, const char *text, size_t len)
{
    memcpy (*out, text, len);
    *out += len;
}

char *
wh_url_redacted (const char *url)
{
    size_t url_len = strlen (url);
    //  Worst case: every one-byte query segment becomes "***".
    char *result = (char *) malloc (3 * url_len + 8);
    if (!result)
        return NULL;
    char *out = result;
    const char *end = url + url_len;
    const char *fragment = strchr (url, '#');
    if (!fragment)
        fragment = end;

    //  Scheme and authority: the userinfo ends at the authority's last '@'.
    const char *at = url;
    const char *scheme = strstr (url, "://");
    if (scheme && scheme < fragment) {
        const char *authority = scheme + 3;
        const char *authority_end = authority + strcspn (authority, "/?#");
        const char *userinfo_end = NULL;
        for (const char *p = authority; p < authority_end; p++)
            if (*p == '@')
                userinfo_end = p;
        s_put (&out, url, (size_t) (authority - url));
        if (userinfo_end) {
            const char *colon = memchr (authority, ':', (size_t) (userinfo_end - authority));
            if (colon)
                s_put (&out, authority, (size_t) (colon + 1 - authority));
            s_put (&out, MASK, strlen (MASK));
            at = userinfo_end;
        }
        else
            at = authority;
    }
    //  Host, port and the path's first segment, as they are; the rest of
    //  the path is masked (Slack's /services/T../B../TOKEN, Discord's
    //  /api/webhooks/ID/TOKEN: a token in the path).
    const char *query = memchr (at, '?', (size_t) (fragment - at));
    const char *path_end = query ? query : fragment;
    const char *path = memchr (at, '/', (size_t) (path_end - at));
    const char *second = path ? memchr (path + 1, '/', (size_t) (path_end - path - 1)) : NULL;
    if (second && path_end - second > 1) {
        s_put (&out, at, (size_t) (second + 1 - at));
        s_put (&out, MASK, strlen (MASK));
    }
    else
        s_put (&out, at, (size_t) (path_end - at));

    //  The query: names kept, values masked.
    if (query) {
        s_put (&out, "?", 1);
        const char *segment = query + 1;
        while (segment <= fragment) {
            const char *segment_end = memchr (segment, '&', (size_t) (fragment - segment));
            if (!segment_end)
                segment_end = fragment;
            const char *equals = memchr (segment, '=', (size_t) (segment_end - segment));
            if (equals) {
                s_put (&out, segment, (size_t) (equals + 1 - segment));
                if (equals + 1 < segment_end)
                    s_put (&out, MASK, strlen (MASK));
            }
            else
            if (segment < segment_end)
                s_put (&out, MASK, strlen (MASK));
            if (segment_end == fragment)
                break;
            s_put (&out, "&", 1);
            segment = segment_end + 1;
        }
    }
    if (fragment < end)
        s_put (&out, "#" MASK, 1 + strlen (MASK));
    *out = 0;
    //  Give back what the worst case reserved: a delivery keeps it.
    char *fitted = (char *) realloc (result, (size_t) (out - result) + 1);
    return fitted? fitted: result;
}

//  --------------------------------------------------------------------------
//  Self test

static bool
s_shown_as (const char *url, const char *expected)
{
    char *shown = wh_url_redacted (url);
    bool same = shown && strcmp (shown, expected) == 0;
    if (!same)
        fprintf (stderr, "wh_url: '%s' shown as '%s', expected '%s'\n", url, shown, expected);
    free (shown);
    return same;
}

void
wh_url_test (bool verbose)
{
    (void) verbose;
    printf (" * wh_url: ");
    BM_CHECK (s_shown_as ("http://example.com/hook", "http://example.com/hook"));
    BM_CHECK (s_shown_as ("https://example.com:8443", "https://example.com:8443"));
    BM_CHECK (s_shown_as ("http://user:pw@example.com/", "http://user:***@example.com/"));
    BM_CHECK (s_shown_as ("http://user:p%40ss:w@rd@example.com:81/a", "http://user:***@example.com:81/a"));
    BM_CHECK (s_shown_as ("http://ghp_token@example.com/x", "http://***@example.com/x"));
    BM_CHECK (s_shown_as ("http://user:@example.com/", "http://user:***@example.com/"));
    BM_CHECK (s_shown_as ("http://example.com/p@th?a=1", "http://example.com/p@th?a=***"));
    BM_CHECK (s_shown_as ("http://example.com/h?token=s3cr3t&x=1&flag&empty=",
                          "http://example.com/h?token=***&x=***&***&empty="));
    BM_CHECK (s_shown_as ("http://example.com/h?&&", "http://example.com/h?&&"));
    BM_CHECK (s_shown_as ("http://example.com/h#frag", "http://example.com/h#***"));
    BM_CHECK (s_shown_as ("http://u:p@example.com?k=v#f", "http://u:***@example.com?k=***#***"));
    BM_CHECK (s_shown_as ("http://example.com?a&b&c", "http://example.com?***&***&***"));
    BM_CHECK (s_shown_as ("", ""));
    BM_CHECK (s_shown_as ("no-scheme?x=1", "no-scheme?x=***"));
    //  The path past its first segment: a token there is masked.
    BM_CHECK (s_shown_as ("https://hooks.slack.com/services/T000/B000/XXXXXXXX",
                          "https://hooks.slack.com/services/***"));
    BM_CHECK (s_shown_as ("https://discord.com/api/webhooks/123/tok-en?wait=true",
                          "https://discord.com/api/***?wait=***"));
    BM_CHECK (s_shown_as ("http://[::1]:8080/a/b#c", "http://[::1]:8080/a/***#***"));
    BM_CHECK (s_shown_as ("http://example.com/hook/", "http://example.com/hook/"));
    BM_CHECK (s_shown_as ("http://example.com//", "http://example.com//"));
    printf ("OK\n");
}

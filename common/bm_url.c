/*  bm_url.c - an http(s) URL read as libcurl will read it.  */
#include "bm_url.h"
#include "bm_selftest.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

char *
bm_url_host (const char *url, const char *name, int *port, char *error, size_t error_size)
{
    //  Printable ASCII only, as the broker and the gateway check: raw
    //  UTF-8 (U+2028, bidi controls) must come percent-encoded.
    for (const char *p = url; *p; p++)
        if ((unsigned char) *p < 0x21 || (unsigned char) *p >= 0x7F) {
            snprintf (error, error_size, "%s holds a space, control or non-ASCII character "
                      "(percent-encode it)", name);
            return NULL;
        }
    CURLU *handle = curl_url ();
    if (!handle) {
        snprintf (error, error_size, "out of memory");
        return NULL;
    }
    char *scheme = NULL, *host = NULL, *port_text = NULL, *result = NULL;
    CURLUcode rc = curl_url_set (handle, CURLUPART_URL, url, 0);
    if (rc != CURLUE_OK)
        //  libcurl names the part at fault: "Bad IPv6 address", "Bad
        //  hostname", "No host part in the URL", "Port number was not...".
        snprintf (error, error_size, "%s cannot be parsed (%s)", name, curl_url_strerror (rc));
    else
    if (curl_url_get (handle, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK
    ||  (strcasecmp (scheme, "http") != 0 && strcasecmp (scheme, "https") != 0))
        snprintf (error, error_size, "%s must be http:// or https://", name);
    else
    if (curl_url_get (handle, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host)
        snprintf (error, error_size, "%s has no host", name);
    else
    if (curl_url_get (handle, CURLUPART_PORT, &port_text, CURLU_DEFAULT_PORT) != CURLUE_OK)
        snprintf (error, error_size, "%s has no port", name);
    else {
        *port = atoi (port_text);
        result = strdup (host);
        if (!result)
            snprintf (error, error_size, "out of memory");
    }
    curl_free (scheme);
    curl_free (host);
    curl_free (port_text);
    curl_url_cleanup (handle);
    return result;
}

//  --------------------------------------------------------------------------
//  Self test

void
bm_url_test (bool verbose)
{
    if (verbose)
        printf (" * bm_url: ");
    char error [160];
    int port = 0;
    char *host = bm_url_host ("http://mock-webhook:5000/hook", "webhookUrl", &port, error, sizeof error);
    BM_CHECK (host && !strcmp (host, "mock-webhook") && port == 5000);
    free (host);
    host = bm_url_host ("HTTPS://[::1]/x", "webhookUrl", &port, error, sizeof error);
    BM_CHECK (host && !strcmp (host, "[::1]") && port == 443);
    free (host);
    struct { const char *url, *says; } bad [] = {
        { "http://[::1",                    "webhookUrl cannot be parsed (Bad IPv6 address)" },
        { "http://127.0.0.1%0d%0a:15000/",  "webhookUrl cannot be parsed (Bad hostname)" },
        { "http://:80/",                    "webhookUrl cannot be parsed (No host part" },
        { "http://x:99999/",                "webhookUrl cannot be parsed (Port number" },
        { "ftp://x/",                       "webhookUrl must be http:// or https://" },
        { "http://x/\x7f",                  "webhookUrl holds a space, control" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad [0]; i++) {
        error [0] = 0;
        BM_CHECK (bm_url_host (bad [i].url, "webhookUrl", &port, error, sizeof error) == NULL);
        BM_CHECK (strncmp (error, bad [i].says, strlen (bad [i].says)) == 0);
    }
    if (verbose)
        printf ("OK\n");
}

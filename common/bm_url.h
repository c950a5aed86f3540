/*  bm_url.h - an http(s) URL read as libcurl will read it: the webhook
    manager before a delivery, the gateway when a job names its webhook,
    so that a URL the manager could not use is refused at submit.  */
#ifndef BM_URL_H
#define BM_URL_H

#include <stdbool.h>
#include <stddef.h>

//  The host of an http:// or https:// URL, and its port (the scheme's
//  when none is given).  Returns the host (caller frees), or NULL with a
//  reason in error that begins with name ("webhookUrl cannot be parsed
//  (Bad IPv6 address)").
char *bm_url_host (const char *url, const char *name, int *port, char *error, size_t error_size);

void bm_url_test (bool verbose);

#endif

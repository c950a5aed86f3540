/*  wh_outcome.h - is a delivery attempt's result a success, worth a retry,
    or final?

        success     any 2xx
        retryable   no answer (connection, DNS, TLS errors, timeouts), an
                    answer that is not HTTP (the wrong service on the port,
                    for now, or bytes an earlier answer left on a kept
                    connection), 408, 425, 429, every 5xx, and anything
                    outside 100..599
        permanent   every other 4xx, every 3xx (redirects are never
                    followed: a webhook URL that moved is a configuration
                    error, and following it would bypass the SSRF guard's
                    intent), and requests that can never work (a malformed
                    URL, an unsupported scheme, a target the SSRF guard
                    refuses)

    Pure functions of their inputs.  */
#ifndef WH_OUTCOME_H
#define WH_OUTCOME_H

#include <stdbool.h>

typedef enum {
    WH_SUCCESS = 0,
    WH_RETRYABLE = 1,
    WH_PERMANENT = 2
} wh_verdict_t;

//  The verdict on an HTTP status that arrived.
wh_verdict_t wh_classify_status (long status);

//  The verdict on a transfer that got no usable answer: curl_code is
//  libcurl's CURLcode (not CURLE_OK).
wh_verdict_t wh_classify_curl (int curl_code);

const char *wh_verdict_name (wh_verdict_t verdict);

void wh_outcome_test (bool verbose);

#endif

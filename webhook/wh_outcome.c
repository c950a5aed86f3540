/*  wh_outcome.c - is a delivery attempt's result a success, worth a retry,
    or final?  */
#include "wh_outcome.h"
#include "bm_selftest.h"

#include <curl/curl.h>

wh_verdict_t
wh_classify_status (long status)
{
    if (status >= 200 && status <= 299)
        return WH_SUCCESS;
    if (status == 408 || status == 425 || status == 429)
        return WH_RETRYABLE;
    if ((status >= 300 && status <= 399) || (status >= 400 && status <= 499))
        return WH_PERMANENT;
    return WH_RETRYABLE;        //  5xx, and statuses no server should send
}

wh_verdict_t
wh_classify_curl (int curl_code)
{
    switch (curl_code) {
        case CURLE_OK:
            return WH_SUCCESS;
        //  The request itself can never work: retrying changes nothing.
        //  (The scheme is checked before any attempt, so "unsupported
        //  protocol" is never the URL's: it is an HTTP/0.9 answer, below.)
        case CURLE_URL_MALFORMAT:
        case CURLE_NOT_BUILT_IN:
        case CURLE_BAD_FUNCTION_ARGUMENT:
        case CURLE_TOO_MANY_REDIRECTS:
        case CURLE_LOGIN_DENIED:
            return WH_PERMANENT;
        //  Everything else: DNS, connect, TLS handshake and certificates,
        //  timeouts, resets, truncated answers, out of memory, and protocol
        //  garbage ("Received HTTP/0.9 when not allowed", a weird reply):
        //  what answers on the port may be the wrong service for now (a
        //  deployment in progress), or bytes an earlier answer left on a
        //  kept connection.
        default:
            return WH_RETRYABLE;
    }
}

const char *
wh_verdict_name (wh_verdict_t verdict)
{
    return verdict == WH_SUCCESS? "success": verdict == WH_RETRYABLE? "retryable": "permanent";
}

//  --------------------------------------------------------------------------
//  Self test

void
wh_outcome_test (bool verbose)
{
    (void) verbose;
    printf (" * wh_outcome: ");
    BM_CHECK (wh_classify_status (200) == WH_SUCCESS);
    BM_CHECK (wh_classify_status (204) == WH_SUCCESS);
    BM_CHECK (wh_classify_status (299) == WH_SUCCESS);
    BM_CHECK (wh_classify_status (408) == WH_RETRYABLE);
    BM_CHECK (wh_classify_status (425) == WH_RETRYABLE);
    BM_CHECK (wh_classify_status (429) == WH_RETRYABLE);
    BM_CHECK (wh_classify_status (500) == WH_RETRYABLE);
    BM_CHECK (wh_classify_status (503) == WH_RETRYABLE);
    BM_CHECK (wh_classify_status (599) == WH_RETRYABLE);
    BM_CHECK (wh_classify_status (400) == WH_PERMANENT);
    BM_CHECK (wh_classify_status (401) == WH_PERMANENT);
    BM_CHECK (wh_classify_status (404) == WH_PERMANENT);
    BM_CHECK (wh_classify_status (410) == WH_PERMANENT);
    BM_CHECK (wh_classify_status (499) == WH_PERMANENT);
    BM_CHECK (wh_classify_status (301) == WH_PERMANENT);
    BM_CHECK (wh_classify_status (302) == WH_PERMANENT);
    BM_CHECK (wh_classify_status (307) == WH_PERMANENT);
    BM_CHECK (wh_classify_status (100) == WH_RETRYABLE);
    BM_CHECK (wh_classify_status (0) == WH_RETRYABLE);
    BM_CHECK (wh_classify_status (600) == WH_RETRYABLE);
    BM_CHECK (wh_classify_status (-1) == WH_RETRYABLE);

    BM_CHECK (wh_classify_curl (CURLE_COULDNT_CONNECT) == WH_RETRYABLE);
    BM_CHECK (wh_classify_curl (CURLE_COULDNT_RESOLVE_HOST) == WH_RETRYABLE);
    BM_CHECK (wh_classify_curl (CURLE_OPERATION_TIMEDOUT) == WH_RETRYABLE);
    BM_CHECK (wh_classify_curl (CURLE_SSL_CONNECT_ERROR) == WH_RETRYABLE);
    BM_CHECK (wh_classify_curl (CURLE_PEER_FAILED_VERIFICATION) == WH_RETRYABLE);
    BM_CHECK (wh_classify_curl (CURLE_GOT_NOTHING) == WH_RETRYABLE);
    BM_CHECK (wh_classify_curl (CURLE_RECV_ERROR) == WH_RETRYABLE);
    BM_CHECK (wh_classify_curl (CURLE_UNSUPPORTED_PROTOCOL) == WH_RETRYABLE);
    BM_CHECK (wh_classify_curl (CURLE_WEIRD_SERVER_REPLY) == WH_RETRYABLE);
    BM_CHECK (wh_classify_curl (CURLE_URL_MALFORMAT) == WH_PERMANENT);
    BM_CHECK (wh_classify_curl (CURLE_OK) == WH_SUCCESS);
    printf ("OK\n");
}

/*  fail_add_handle.c - a failure-injection seam for webhook.start_failure:
    preloaded (LD_PRELOAD) into botmesh-webhook, it makes the first
    BM_FAIL_ADD_HANDLE calls of curl_multi_add_handle fail (out of memory),
    as a request that cannot be started would, then calls libcurl's own.
    The manager calls it from its loop's thread only.  */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE                 //  RTLD_NEXT
#endif
#include <curl/curl.h>
#include <dlfcn.h>
#include <stdlib.h>

static int s_failed;

CURLMcode
curl_multi_add_handle (CURLM *multi, CURL *easy)
{
    static CURLMcode (*real) (CURLM *, CURL *);
    if (!real)
        real = (CURLMcode (*) (CURLM *, CURL *)) dlsym (RTLD_NEXT, "curl_multi_add_handle");
    const char *fail = getenv ("BM_FAIL_ADD_HANDLE");
    if (fail && s_failed < atoi (fail)) {
        s_failed++;
        return CURLM_OUT_OF_MEMORY;
    }
    return real ? real (multi, easy) : CURLM_INTERNAL_ERROR;
}

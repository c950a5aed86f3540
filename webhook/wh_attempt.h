/*  wh_attempt.h - one HTTP attempt of a delivery: a libcurl easy handle
    with the request headers (signed afresh on every attempt), the total
    timeout, no redirects, no proxy, and the SSRF guard checked on each
    address libcurl is about to connect to (CURLOPT_OPENSOCKETFUNCTION).
    The attempt_t is allocated only while it runs, so a delivery waiting
    for a retry costs little.  The libcurl callbacks here never call
    curl_multi_* nor report events.  */
#ifndef WH_ATTEMPT_H
#define WH_ATTEMPT_H

#include "wh_engine_priv.h"

//  Build the attempt for d and add it to the engine's multi handle: d
//  moves in flight (d->attempt set, self->inflight counted).  Returns 0,
//  or -1 (out of memory, signing or libcurl failed; d is untouched).
int wh_attempt_start (wh_engine_t *self, delivery_t *d);

//  Take the attempt out of the multi handle and free it; nulls *attempt_p.
//  Does nothing if *attempt_p is NULL.  The caller adjusts self->inflight.
void wh_attempt_free (wh_engine_t *self, attempt_t **attempt_p);

#endif

/*  wh_multi.h - libcurl's multi-socket interface on the engine's zloop.

    libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION ->
    zloop pollers) and when to call it back (CURLMOPT_TIMERFUNCTION -> one
    zloop timer, self->curl_timer); we call curl_multi_socket_action when
    either fires, then wh_engine_check_done.  libcurl is never called back
    from inside its own callbacks.  */
#ifndef WH_MULTI_H
#define WH_MULTI_H

#include "wh_engine_priv.h"

//  CURLMOPT_SOCKETFUNCTION, with CURLMOPT_SOCKETDATA = the engine.
int wh_multi_socket_cb (CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp);

//  CURLMOPT_TIMERFUNCTION, with CURLMOPT_TIMERDATA = the engine.
int wh_multi_timer_cb (CURLM *multi, long timeout_ms, void *userp);

#endif

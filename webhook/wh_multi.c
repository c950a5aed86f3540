/*  wh_multi.c - libcurl's multi-socket interface on the zloop (see wh_multi.h).  */
#include "wh_multi.h"
#include "bm_config.h"
#include "bm_log.h"

//  A socket libcurl watches is ready.
static int
s_socket_ready (zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    (void) loop;
    wh_engine_t *self = (wh_engine_t *) arg;
    int flags = 0;
    if (item->revents & ZMQ_POLLIN)
        flags |= CURL_CSELECT_IN;
    if (item->revents & ZMQ_POLLOUT)
        flags |= CURL_CSELECT_OUT;
    if (item->revents & ZMQ_POLLERR)
        flags |= CURL_CSELECT_ERR;
    int running;
    curl_multi_socket_action (self->multi, item->fd, flags, &running);
    wh_engine_check_done (self);
    return 0;
}

//  CURLMOPT_SOCKETFUNCTION: watch, rewatch or forget a socket.  socketp is
//  non-NULL once we registered a poller for it.
int
wh_multi_socket_cb (CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void) easy;
    wh_engine_t *self = (wh_engine_t *) userp;
    zmq_pollitem_t item = { NULL, fd, 0, 0 };
    if (socketp)
        zloop_poller_end (self->loop, &item);
    if (what == CURL_POLL_REMOVE) {
        curl_multi_assign (self->multi, fd, NULL);
        return 0;
    }
    item.events = (short) (((what & CURL_POLL_IN)? ZMQ_POLLIN: 0)
                         | ((what & CURL_POLL_OUT)? ZMQ_POLLOUT: 0));
    if (zloop_poller (self->loop, &item, s_socket_ready, self)) {
        bm_error (NULL, "cannot watch socket %d", (int) fd);
        curl_multi_assign (self->multi, fd, NULL);
        return -1;
    }
    zloop_poller_set_tolerant (self->loop, &item);
    curl_multi_assign (self->multi, fd, (void *) 1);
    return 0;
}

static void s_arm_curl_timer (wh_engine_t *self, int64_t due);

//  Our libcurl timer fired: call libcurl if its deadline has come (it may
//  have moved later since the timer was armed), else re-arm for it.
static int
s_curl_timeout (zloop_t *loop, int timer_id, void *arg)
{
    (void) loop;
    (void) timer_id;
    wh_engine_t *self = (wh_engine_t *) arg;
    self->curl_timer = -1;
    if (self->curl_due < 0)
        return 0;
    if (self->curl_due > bm_mono_ms ()) {
        s_arm_curl_timer (self, self->curl_due);
        return 0;
    }
    self->curl_due = -1;        //  Before the call: libcurl may set a new one
    int running;
    curl_multi_socket_action (self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    wh_engine_check_done (self);
    return 0;
}

static void
s_arm_curl_timer (wh_engine_t *self, int64_t due)
{
    if (self->curl_timer != -1)
        zloop_timer_end (self->loop, self->curl_timer);
    int64_t delay = due - bm_mono_ms ();
    self->curl_timer = zloop_timer (self->loop, (size_t) (delay > 0? delay: 0), 1, s_curl_timeout, self);
    self->curl_armed = due;
}

//  CURLMOPT_TIMERFUNCTION: libcurl wants a timeout call in timeout_ms (-1:
//  never).  libcurl changes its mind on almost every call, and each zloop
//  timer ended costs a walk of zloop's timer list: keep one timer armed and
//  re-arm it only when the new deadline is earlier; when it fires too
//  early, it re-arms itself.  A 0 ms timer fires on the loop's next turn,
//  so libcurl is never called back from inside its own callback.
int
wh_multi_timer_cb (CURLM *multi, long timeout_ms, void *userp)
{
    (void) multi;
    wh_engine_t *self = (wh_engine_t *) userp;
    if (timeout_ms < 0) {
        self->curl_due = -1;    //  An armed timer will find nothing to do
        return 0;
    }
    int64_t due = bm_mono_ms () + timeout_ms;
    self->curl_due = due;
    if (self->curl_timer != -1 && self->curl_armed <= due)
        return 0;               //  Fires early enough already
    s_arm_curl_timer (self, due);
    return self->curl_timer == -1? -1: 0;
}

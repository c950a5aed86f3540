/*  gw_link.c - the gateway's one pipelined link to the broker.

    Why
    ---
    The gateway used to give every civetweb handler thread its own DEALER
    and let it block in zmq_poll for one synchronous round trip.  Under
    load (wrk, 64 keep-alive connections) that is 64 sockets with one
    request each in flight: every request wakes its handler thread, the
    ZeroMQ I/O thread and the broker separately, libzmq has nothing to
    batch, and the gateway spent most of its CPU in context switches
    (bench/findings.md, "HTTP").

    Design
    ------
    One DEALER socket, owned by one link thread (a ZeroMQ socket is never
    used from two threads).  Handler threads never touch it:

      handler thread                      link thread
      --------------                      -----------
      s_call_t on its stack               loop:
      append to `queue` (under `lock`)      take up to GW_LINK_BATCH calls from
      wake the link (eventfd) only if         `queue` into `pending` (under `lock`)
        it sleeps in zmq_poll               send them back to back (DONTWAIT)
      futex-wait on call.state              zmq_poll (dealer, monitor, eventfd)
                                            read every reply there is, decode,
                                              match by "req" in `pending`,
                                              set call.state = DONE, futex-wake

    So under load the link thread takes many requests per wake-up and sends
    them in one burst, the I/O thread writes them in one go, the broker
    reads them in one go (its ROUTER sees one peer with many messages), and
    replies come back in bursts that one poll drains.  A handler thread
    sleeps on a futex in its own call, so waking it is one system call and
    no lock hand-off.

    Every request carries a "req" number from gw_link_next_req (one
    counter per link); replies are matched by it, a reply nobody waits for
    any more (its caller timed out) is dropped, RESULT pushes are dropped
    (the gateway never asks for them).

    Ownership of a call: the caller's stack.  The link only touches it
    under `lock`, and a caller that gives up (timeout) unlinks it under
    `lock` before returning, so the link never sees a dead call.  The
    body's bytes move into a zmq_msg_t (no copy) that the link takes under
    `lock`.  The one thing done after unlocking is the futex wake on
    &call.state, which may then name a stack slot already reused: a futex
    wake on an address nobody waits on does nothing, and every futex user
    (ours, glibc's) treats a wake as a hint and checks again.

    Knowing the broker is down
    --------------------------
    A socket monitor (inproc PAIR) reports HANDSHAKE_SUCCEEDED (up) and
    DISCONNECTED (down).  A broker that dies (even SIGKILL) closes its TCP
    connections at once; one that hangs or a network that drops is caught
    by ZMTP heartbeats (ZMQ_HEARTBEAT_IVL / _TIMEOUT: libzmq's I/O threads
    answer them, so a broker that is merely busy is not taken for dead).
    While down:
      - ZMQ_IMMEDIATE: nothing is queued for a broker we are not connected
        to, so a request meant for the dead broker is never delivered to
        the next one by surprise;
      - a new request waits in `queue` for a connection, at most the
        connect timeout (BROKER_CONNECT_TIMEOUT_MS), then fails ENOTCONN
        (the gateway answers 503 broker_unavailable); once the broker has
        been down that long, requests fail at once;
      - requests sent but not answered when the connection dropped fail
        ECONNRESET at once: their answers cannot come any more (replies
        that came before the drop are read first), and the broker may have
        acted on them (the gateway answers 504 broker_connection_lost: the
        outcome is unknown).
    Sent requests that get no answer on a live connection fail ETIMEDOUT
    after their timeout (the gateway answers 504 broker_timeout).  */
#include "gw_link.h"
#include "bm_selftest.h"

#include "bm_codec.h"
#include "bm_config.h"
#include "bm_curve.h"
#include "bm_log.h"

#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#define GW_LINK_BUCKETS         1024    //  Pending table (a power of two)
#define GW_LINK_BATCH           256     //  Requests sent per turn of the loop
#define GW_LINK_RECV_MAX        256     //  Replies read per turn
#define GW_LINK_HWM             100000  //  Messages queued in libzmq each way
#define GW_LINK_HEARTBEAT_MS    1000    //  ZMTP PING when the line is quiet
#define GW_LINK_DEAD_MS         3000    //  No traffic for this long: dead
#define GW_LINK_IDLE_POLL_MS    1000    //  Longest sleep in zmq_poll
//  With this many requests in flight the link is "lazy": handlers do not
//  wake it, new requests go out when the next reply wakes it, or within
//  GW_LINK_LAZY_POLL_MS.
#define GW_LINK_LAZY_PENDING    8
#define GW_LINK_LAZY_POLL_MS    1

//  States of a call: the futex word.
#define S_QUEUED    0                   //  In `queue`, not sent
#define S_SENT      1                   //  In `pending`, sent (or being sent)
#define S_DONE      2                   //  Answered, or failed with `error`

typedef struct _s_call_t s_call_t;
struct _s_call_t {
    atomic_int state;                   //  S_QUEUED, S_SENT, S_DONE
    int64_t req;                        //  Its "req"
    int command;                        //  BMC01 command byte
    int64_t sent_ms;                    //  When the link took it (mono ms)
    zmq_msg_t body;                     //  Until the link takes it
    bm_msg_t *reply;                    //  Once DONE: the answer, or NULL
    int error;                          //  Once DONE without reply: errno
    s_call_t *next;                     //  In `queue` or a `pending` bucket
};

struct _gw_link_t {
    char *endpoint;                     //  BROKER_ENDPOINT
    int64_t connect_timeout_ms;         //  BROKER_CONNECT_TIMEOUT_MS
    zsock_t *dealer;                    //  To the broker; link thread only
    zsock_t *monitor;                   //  The dealer's events; link thread only
    int wake_fd;                        //  eventfd: "calls are queued"
    pthread_t thread;
    bool thread_started;
    atomic_int_least64_t req;           //  Last "req" handed out

    pthread_mutex_t lock;               //  Guards all below
    s_call_t *queue_head;               //  Not sent yet, oldest first
    s_call_t *queue_tail;
    s_call_t *pending [GW_LINK_BUCKETS];    //  Sent, by req
    size_t pending_count;               //  Calls in `pending`
    bool sleeping;                      //  Link thread waits in zmq_poll...
    bool lazy;                          //  ...and needs no wake (see above)
    bool connected;                     //  Handshake done, not disconnected
    int64_t down_since;                 //  When it went down (mono ms)
    bool stopping;                      //  gw_link_destroy has begun
};

//  --------------------------------------------------------------------------
//  Futex, queue and pending table (callers hold `lock` for the last two)

static void
s_futex_wait (atomic_int *word, int value, int64_t ms)
{
    struct timespec ts = { (time_t) (ms / 1000), (long) (ms % 1000) * 1000000 };
    syscall (SYS_futex, (int *) word, FUTEX_WAIT_PRIVATE, value, &ts, NULL, 0);
}

static void
s_futex_wake (atomic_int *word)
{
    syscall (SYS_futex, (int *) word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void
s_queue_append (gw_link_t *self, s_call_t *call)
{
    call->next = NULL;
    if (self->queue_tail)
        self->queue_tail->next = call;
    else
        self->queue_head = call;
    self->queue_tail = call;
}

static void
s_queue_remove (gw_link_t *self, s_call_t *call)
{
    s_call_t *prev = NULL;
    for (s_call_t *it = self->queue_head; it; prev = it, it = it->next)
        if (it == call) {
            if (prev)
                prev->next = call->next;
            else
                self->queue_head = call->next;
            if (self->queue_tail == call)
                self->queue_tail = prev;
            return;
        }
}

static void
s_pending_add (gw_link_t *self, s_call_t *call)
{
    size_t bucket = (size_t) ((uint64_t) call->req & (GW_LINK_BUCKETS - 1));
    call->next = self->pending [bucket];
    self->pending [bucket] = call;
    self->pending_count++;
}

//  Unlink and return the call waiting for req, or NULL.
static s_call_t *
s_pending_take (gw_link_t *self, int64_t req)
{
    s_call_t **link = &self->pending [(uint64_t) req & (GW_LINK_BUCKETS - 1)];
    for (; *link; link = &(*link)->next)
        if ((*link)->req == req) {
            s_call_t *call = *link;
            *link = call->next;
            self->pending_count--;
            return call;
        }
    return NULL;
}

//  Finish a call (under `lock`); the caller wakes `word` after unlocking.
static atomic_int *
s_finish (s_call_t *call, bm_msg_t *reply, int error)
{
    call->reply = reply;
    call->error = error;
    atomic_store_explicit (&call->state, S_DONE, memory_order_release);
    return &call->state;
}

static void
s_free_body (void *data, void *hint)
{
    (void) hint;
    free (data);
}

//  --------------------------------------------------------------------------
//  The link thread

//  Read up to GW_LINK_RECV_MAX messages and hand each reply to its caller.
//  Returns how many messages it read.
static int
s_receive (gw_link_t *self, void *dealer)
{
    bm_msg_t *replies [GW_LINK_RECV_MAX];
    int64_t reqs [GW_LINK_RECV_MAX];
    int count = 0, read = 0;
    while (read < GW_LINK_RECV_MAX) {
        zmq_msg_t frames [3];
        int parts = 0;
        bool more = true;
        while (more) {
            zmq_msg_t part;
            zmq_msg_init (&part);
            if (zmq_msg_recv (&part, dealer, ZMQ_DONTWAIT) == -1) {
                zmq_msg_close (&part);
                break;
            }
            more = zmq_msg_more (&part);
            if (parts < 3) {
                zmq_msg_init (&frames [parts]);
                zmq_msg_move (&frames [parts], &part);
            }
            zmq_msg_close (&part);
            parts++;
        }
        if (parts == 0)
            break;                      //  Nothing more to read
        read++;
        bm_msg_t *msg = NULL;
        if (parts == 3) {
            const char *code;
            msg = bm_msg_decode_raw (zmq_msg_data (&frames [0]), zmq_msg_size (&frames [0]),
                                     zmq_msg_data (&frames [1]), zmq_msg_size (&frames [1]),
                                     zmq_msg_data (&frames [2]), zmq_msg_size (&frames [2]),
                                     SIZE_MAX, &code, NULL, 0);
        }
        for (int i = 0; i < parts && i < 3; i++)
            zmq_msg_close (&frames [i]);
        bm_codec_request_t reply;
        bm_codec_error_t error;
        if (msg && bm_msg_command (msg) != BM_RESULT
        &&  bm_codec_request_decode (msg, &reply, &error) == 0 && reply.has_req) {
            replies [count] = msg;
            reqs [count++] = reply.req;
        }
        else {
            if (!msg)
                bm_debug (NULL, "dropped a broken message from the broker");
            bm_msg_destroy (&msg);      //  RESULT push, or no req
        }
    }
    if (count == 0)
        return read;
    atomic_int *wake [GW_LINK_RECV_MAX];
    int woken = 0;
    pthread_mutex_lock (&self->lock);
    for (int i = 0; i < count; i++) {
        s_call_t *call = s_pending_take (self, reqs [i]);
        if (call) {
            wake [woken++] = s_finish (call, replies [i], 0);
            replies [i] = NULL;
        }
    }
    pthread_mutex_unlock (&self->lock);
    for (int i = 0; i < woken; i++)
        s_futex_wake (wake [i]);
    for (int i = 0; i < count; i++)
        bm_msg_destroy (&replies [i]);      //  Late answers: caller gone
    return read;
}

//  Fail every sent call (the connection is gone), or every call at all
//  (the link stops).  Wakes them.
//  Keep one caller to wake once the lock is released; with no memory for
//  the list, wake it at once (under the lock: slower, never lost).
static void
s_wake_later (atomic_int ***wake, size_t *size, size_t *count, atomic_int *one)
{
    if (*count == *size) {
        size_t bigger = *size ? *size * 2 : 64;
        atomic_int **grown = (atomic_int **) realloc (*wake, bigger * sizeof (atomic_int *));
        if (!grown) {
            s_futex_wake (one);
            return;
        }
        *wake = grown;
        *size = bigger;
    }
    (*wake) [(*count)++] = one;
}

static void
s_fail_all (gw_link_t *self, int error, bool queued_too)
{
    pthread_mutex_lock (&self->lock);
    size_t size = 0, count = 0;
    atomic_int **wake = NULL;
    for (int b = 0; b < GW_LINK_BUCKETS; b++) {
        while (self->pending [b]) {
            s_call_t *call = self->pending [b];
            self->pending [b] = call->next;
            s_wake_later (&wake, &size, &count, s_finish (call, NULL, error));
        }
    }
    while (queued_too && self->queue_head) {
        s_call_t *call = self->queue_head;
        self->queue_head = call->next;
        zmq_msg_close (&call->body);
        s_wake_later (&wake, &size, &count, s_finish (call, NULL, error));
    }
    self->pending_count = 0;
    if (queued_too)
        self->queue_tail = NULL;
    pthread_mutex_unlock (&self->lock);
    for (size_t i = 0; i < count; i++)
        s_futex_wake (wake [i]);
    free (wake);
}

//  One event from the socket monitor.
static void
s_monitor_event (gw_link_t *self, void *monitor, void *dealer)
{
    uint16_t event = 0;
    zmq_msg_t part;
    bool first = true, more = true;
    while (more) {
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, monitor, ZMQ_DONTWAIT) == -1) {
            zmq_msg_close (&part);
            return;
        }
        if (first && zmq_msg_size (&part) >= 2)
            memcpy (&event, zmq_msg_data (&part), 2);
        first = false;
        more = zmq_msg_more (&part);
        zmq_msg_close (&part);
    }
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        pthread_mutex_lock (&self->lock);
        self->connected = true;
        pthread_mutex_unlock (&self->lock);
        bm_info (NULL, "connected to the broker at %s", self->endpoint);
    }
    else
    if (event == ZMQ_EVENT_DISCONNECTED) {
        //  Every answer that made it in time, however many.
        while (s_receive (self, dealer) == GW_LINK_RECV_MAX)
            ;
        pthread_mutex_lock (&self->lock);
        bool was = self->connected;
        self->connected = false;
        //  Down since the connection was lost, not since the last failed
        //  attempt (a handshake that fails is DISCONNECTED too, every retry).
        if (was)
            self->down_since = bm_mono_ms ();
        pthread_mutex_unlock (&self->lock);
        //  Sent, unanswered: the broker may have taken them (ECONNRESET:
        //  outcome unknown, not "never sent").
        s_fail_all (self, ECONNRESET, false);
        if (was)
            bm_warn (NULL, "lost the connection to the broker at %s", self->endpoint);
    }
}

static void *
s_link_thread (void *arg)
{
    gw_link_t *self = (gw_link_t *) arg;
    void *dealer = zsock_resolve (self->dealer);
    void *monitor = zsock_resolve (self->monitor);
    zmq_msg_t *bodies = (zmq_msg_t *) malloc (GW_LINK_BATCH * sizeof (zmq_msg_t));
    int64_t reqs [GW_LINK_BATCH];
    uint8_t command [GW_LINK_BATCH];
    bool sleep = false;
    bool lazy = false;
    while (true) {
        zmq_pollitem_t items [] = {
            { dealer, 0, ZMQ_POLLIN, 0 },
            { monitor, 0, ZMQ_POLLIN, 0 },
            { NULL, self->wake_fd, ZMQ_POLLIN, 0 },
        };
        long timeout = !sleep ? 0 : lazy ? GW_LINK_LAZY_POLL_MS : GW_LINK_IDLE_POLL_MS;
        if (zmq_poll (items, 3, timeout) == -1 && errno != EINTR)
            break;                      //  Context terminated
        if (items [2].revents & ZMQ_POLLIN) {
            uint64_t value;
            if (read (self->wake_fd, &value, sizeof value) < 0) {
                //  EAGAIN: another turn read it already
            }
        }
        if (items [1].revents & ZMQ_POLLIN)
            s_monitor_event (self, monitor, dealer);
        if (items [0].revents & ZMQ_POLLIN)
            s_receive (self, dealer);

        //  Take what the handlers queued (only while connected: meanwhile
        //  calls wait in the queue for a connection, or give up).
        int count = 0;
        int64_t now = bm_mono_ms ();
        pthread_mutex_lock (&self->lock);
        if (self->stopping) {
            pthread_mutex_unlock (&self->lock);
            break;
        }
        while (self->connected && self->queue_head && count < GW_LINK_BATCH) {
            s_call_t *call = self->queue_head;
            self->queue_head = call->next;
            if (!self->queue_head)
                self->queue_tail = NULL;
            zmq_msg_init (&bodies [count]);
            zmq_msg_move (&bodies [count], &call->body);
            zmq_msg_close (&call->body);
            reqs [count] = call->req;
            command [count++] = (uint8_t) call->command;
            call->sent_ms = now;
            atomic_store_explicit (&call->state, S_SENT, memory_order_release);
            s_pending_add (self, call);
        }
        //  Sleep in the next poll only if there is nothing left to do; a
        //  handler that queues meanwhile sees `sleeping` and wakes us,
        //  unless many requests are in flight: then the next reply wakes
        //  us anyway, and what queued meanwhile goes out in one burst.
        sleep = count == 0 && !(self->connected && self->queue_head);
        lazy = sleep && self->pending_count >= GW_LINK_LAZY_PENDING;
        self->sleeping = sleep;
        self->lazy = lazy;
        pthread_mutex_unlock (&self->lock);

        //  Send them back to back.  A send fails only when the connection
        //  is gone this very moment (ZMQ_IMMEDIATE) or the HWM is reached.
        int64_t failed [GW_LINK_BATCH];
        int failures = 0;
        for (int i = 0; i < count; i++) {
            if (zmq_send (dealer, BM_CLIENT_HEADER, 5, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1) {
                zmq_msg_close (&bodies [i]);
                failed [failures++] = reqs [i];
                continue;
            }
            //  Once the first frame is in, libzmq takes the rest.
            zmq_send (dealer, &command [i], 1, ZMQ_SNDMORE | ZMQ_DONTWAIT);
            if (zmq_msg_send (&bodies [i], dealer, ZMQ_DONTWAIT) == -1)
                zmq_msg_close (&bodies [i]);
        }
        if (failures) {
            atomic_int *wake [GW_LINK_BATCH];
            int woken = 0;
            pthread_mutex_lock (&self->lock);
            for (int i = 0; i < failures; i++) {
                s_call_t *call = s_pending_take (self, failed [i]);
                if (call)
                    wake [woken++] = s_finish (call, NULL, ENOTCONN);
            }
            pthread_mutex_unlock (&self->lock);
            for (int i = 0; i < woken; i++)
                s_futex_wake (wake [i]);
        }
    }
    free (bodies);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Public API

gw_link_t *
gw_link_new (const char *endpoint, int64_t connect_timeout_ms)
{
    gw_link_t *self = (gw_link_t *) zmalloc (sizeof (gw_link_t));
    pthread_mutex_init (&self->lock, NULL);
    self->endpoint = strdup (endpoint);
    self->connect_timeout_ms = connect_timeout_ms;
    self->down_since = bm_mono_ms ();
    self->wake_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    self->dealer = zsock_new (ZMQ_DEALER);
    self->monitor = zsock_new (ZMQ_PAIR);
    if (self->wake_fd < 0 || !self->dealer || !self->monitor) {
        bm_error (NULL, "cannot make the broker link's sockets");
        goto fail;
    }
    void *dealer = zsock_resolve (self->dealer);
    int linger = 0, hwm = GW_LINK_HWM, one = 1;
    int heartbeat = GW_LINK_HEARTBEAT_MS, dead = GW_LINK_DEAD_MS;
    zmq_setsockopt (dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt (dealer, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (dealer, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (dealer, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt (dealer, ZMQ_HEARTBEAT_IVL, &heartbeat, sizeof heartbeat);
    zmq_setsockopt (dealer, ZMQ_HEARTBEAT_TIMEOUT, &dead, sizeof dead);
    if (bm_curve_client_apply (self->dealer))
        goto fail;
    //  The monitor first, so that the first connection is reported too.
    char monitor_ep [64];
    snprintf (monitor_ep, sizeof monitor_ep, "inproc://gw-link-%p", (void *) self);
    if (zmq_socket_monitor (dealer, monitor_ep,
                            ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_DISCONNECTED)
    ||  zsock_connect (self->monitor, "%s", monitor_ep)) {
        bm_error (NULL, "cannot monitor the broker link: %s", zmq_strerror (errno));
        goto fail;
    }
    if (zsock_connect (self->dealer, "%s", endpoint)) {
        bm_error (NULL, "cannot connect to the broker at %s", endpoint);
        goto fail;
    }
    if (pthread_create (&self->thread, NULL, s_link_thread, self)) {
        bm_error (NULL, "cannot start the broker link thread");
        goto fail;
    }
    self->thread_started = true;
    return self;
fail:
    gw_link_destroy (&self);
    return NULL;
}

void
gw_link_destroy (gw_link_t **self_p)
{
    if (*self_p) {
        gw_link_t *self = *self_p;
        pthread_mutex_lock (&self->lock);
        self->stopping = true;
        pthread_mutex_unlock (&self->lock);
        if (self->thread_started) {
            uint64_t one = 1;
            if (write (self->wake_fd, &one, sizeof one) < 0)
                bm_warn (NULL, "cannot wake the broker link thread");
            pthread_join (self->thread, NULL);
        }
        s_fail_all (self, ESHUTDOWN, true);     //  None, when used as told
        if (self->dealer)
            zmq_socket_monitor (zsock_resolve (self->dealer), NULL, 0);
        zsock_destroy (&self->monitor);
        zsock_destroy (&self->dealer);
        if (self->wake_fd >= 0)
            close (self->wake_fd);
        pthread_mutex_destroy (&self->lock);
        free (self->endpoint);
        free (self);
        *self_p = NULL;
    }
}

int64_t
gw_link_next_req (gw_link_t *self)
{
    return atomic_fetch_add (&self->req, 1) + 1;
}

bool
gw_link_connected (gw_link_t *self)
{
    pthread_mutex_lock (&self->lock);
    bool connected = self->connected;
    pthread_mutex_unlock (&self->lock);
    return connected;
}

bm_msg_t *
gw_link_request (gw_link_t *self, int64_t req, int command,
                 char *body, size_t size, int64_t timeout_ms)
{
    s_call_t call;
    atomic_init (&call.state, S_QUEUED);
    call.req = req;
    call.command = command;
    call.sent_ms = 0;
    call.reply = NULL;
    call.error = 0;
    call.next = NULL;
    if (zmq_msg_init_data (&call.body, body, size, s_free_body, NULL)) {
        free (body);
        errno = ENOMEM;
        return NULL;
    }
    int64_t start = bm_mono_ms ();
    bool wake = false;
    pthread_mutex_lock (&self->lock);
    int refused = self->stopping ? ESHUTDOWN
                : !self->connected && start - self->down_since >= self->connect_timeout_ms
                ? ENOTCONN : 0;
    if (!refused) {
        s_queue_append (self, &call);
        wake = self->sleeping && !self->lazy && self->connected;
        if (wake)
            self->sleeping = false;
    }
    pthread_mutex_unlock (&self->lock);
    if (refused) {
        zmq_msg_close (&call.body);
        errno = refused;
        return NULL;
    }
    if (wake) {
        uint64_t one = 1;
        if (write (self->wake_fd, &one, sizeof one) < 0) {
            //  EAGAIN: the counter is full, the link is awake anyway
        }
    }
    //  Not sent within the connect timeout: not connected (503).  Sent but
    //  not answered within timeout_ms of the send: too slow (504).
    int64_t connect_deadline = start + self->connect_timeout_ms;
    while (true) {
        int state = atomic_load_explicit (&call.state, memory_order_acquire);
        if (state == S_DONE)
            break;
        int64_t until = state == S_QUEUED ? connect_deadline : call.sent_ms + timeout_ms;
        int64_t now = bm_mono_ms ();
        if (now >= until) {
            pthread_mutex_lock (&self->lock);
            state = atomic_load_explicit (&call.state, memory_order_acquire);
            if (state == S_QUEUED) {
                s_queue_remove (self, &call);
                zmq_msg_close (&call.body);
                call.error = ENOTCONN;
            }
            else
            if (state == S_SENT) {
                s_pending_take (self, req);
                call.error = ETIMEDOUT;
            }
            pthread_mutex_unlock (&self->lock);
            if (state != S_DONE) {
                errno = call.error;
                return NULL;
            }
            break;
        }
        //  The link does not wake a call it sends: a queued call looks
        //  again every 100 ms, so that once sent its own timeout counts.
        int64_t sleep_until = state == S_QUEUED && now + 100 < until ? now + 100 : until;
        s_futex_wait (&call.state, state, sleep_until - now);
    }
    if (!call.reply)
        errno = call.error;
    return call.reply;
}

//  --------------------------------------------------------------------------
//  Self test: a ROUTER in this process plays the broker.

#define CHECK(cond) BM_CHECK (cond)

//  {req} as msgpack (malloc'ed).
static char *
s_pack_req (int64_t req, size_t *size)
{
    bm_codec_request_t request = { .has_req = true, .req = req };
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_request_encode (&request, &packer);
    char *data = bm_packer_detach (&packer, size);
    CHECK (data);
    return data;
}

typedef struct {
    zsock_t *router;
    atomic_bool stop;
    pthread_t thread;
} s_fake_t;

//  Answers PING with REPLY {req}; never answers STATUS.
static void *
s_fake_thread (void *arg)
{
    s_fake_t *fake = (s_fake_t *) arg;
    while (!atomic_load (&fake->stop)) {
        zmq_pollitem_t item = { zsock_resolve (fake->router), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 20) <= 0)
            continue;
        zmsg_t *frames = zmsg_recv (fake->router);
        if (!frames)
            break;
        zframe_t *identity = zmsg_pop (frames);
        const char *code;
        bm_msg_t *msg = bm_msg_decode (frames, SIZE_MAX, &code, NULL, 0);
        bm_codec_request_t ping;
        bm_codec_error_t error;
        if (msg && bm_msg_command (msg) == BM_PING
        &&  bm_codec_request_decode (msg, &ping, &error) == 0 && ping.has_req) {
            size_t size;
            char *body = s_pack_req (ping.req, &size);
            bm_msg_send (fake->router, identity, BM_CLIENT_HEADER, BM_REPLY, body, size);
            free (body);
        }
        bm_msg_destroy (&msg);
        zframe_destroy (&identity);
        zmsg_destroy (&frames);
    }
    return NULL;
}

static void
s_fake_start (s_fake_t *fake, const char *endpoint)
{
    fake->router = zsock_new (ZMQ_ROUTER);
    zsock_set_linger (fake->router, 0);
    CHECK (zsock_bind (fake->router, "%s", endpoint) >= 0);
    atomic_init (&fake->stop, false);
    CHECK (pthread_create (&fake->thread, NULL, s_fake_thread, fake) == 0);
}

static void
s_fake_stop (s_fake_t *fake)
{
    atomic_store (&fake->stop, true);
    pthread_join (fake->thread, NULL);
    zsock_destroy (&fake->router);
}

static bm_msg_t *
s_ask (gw_link_t *link, int command, int64_t timeout_ms, int64_t *req_out)
{
    int64_t req = gw_link_next_req (link);
    size_t size;
    char *body = s_pack_req (req, &size);
    if (req_out)
        *req_out = req;
    return gw_link_request (link, req, command, body, size, timeout_ms);
}

static void *
s_client_thread (void *arg)
{
    gw_link_t *link = (gw_link_t *) arg;
    for (int i = 0; i < 200; i++) {
        int64_t req;
        bm_msg_t *reply = s_ask (link, BM_PING, 5000, &req);
        CHECK (reply && bm_msg_command (reply) == BM_REPLY);
        bm_codec_request_t answer;
        bm_codec_error_t error;
        CHECK (bm_codec_request_decode (reply, &answer, &error) == 0 && answer.req == req);
        bm_msg_destroy (&reply);
    }
    return NULL;
}

void
gw_link_test (bool verbose)
{
    if (verbose)
        printf (" * gw_link: ");
    zsys_handler_set (NULL);
    //  An ephemeral port, then the same endpoint again after a "restart".
    zsock_t *probe = zsock_new (ZMQ_ROUTER);
    int port = zsock_bind (probe, "tcp://127.0.0.1:*");
    CHECK (port > 0);
    zsock_destroy (&probe);
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);

    //  No broker yet: a request waits the connect timeout, then ENOTCONN;
    //  after that, at once.
    gw_link_t *link = gw_link_new (endpoint, 300);
    CHECK (link);
    int64_t t0 = bm_mono_ms ();
    bm_msg_t *reply = s_ask (link, BM_PING, 5000, NULL);
    int64_t took = bm_mono_ms () - t0;
    CHECK (!reply && errno == ENOTCONN && took >= 250 && took < 2000);
    t0 = bm_mono_ms ();
    reply = s_ask (link, BM_PING, 5000, NULL);
    CHECK (!reply && errno == ENOTCONN && bm_mono_ms () - t0 < 100);

    //  Broker up: many threads, many requests, each gets its own answer.
    s_fake_t fake;
    s_fake_start (&fake, endpoint);
    int64_t deadline = bm_mono_ms () + 5000;
    while (!gw_link_connected (link) && bm_mono_ms () < deadline)
        zclock_sleep (10);
    CHECK (gw_link_connected (link));
    pthread_t threads [8];
    for (int i = 0; i < 8; i++)
        CHECK (pthread_create (&threads [i], NULL, s_client_thread, link) == 0);
    for (int i = 0; i < 8; i++)
        pthread_join (threads [i], NULL);

    //  No answer: ETIMEDOUT after the timeout; the link still works.
    t0 = bm_mono_ms ();
    reply = s_ask (link, BM_STATUS, 200, NULL);
    took = bm_mono_ms () - t0;
    CHECK (!reply && errno == ETIMEDOUT && took >= 190 && took < 2000);
    reply = s_ask (link, BM_PING, 5000, NULL);
    CHECK (reply);
    bm_msg_destroy (&reply);

    //  The broker goes away: ENOTCONN within the connect timeout (not the
    //  request timeout), then at once; back when it is back.
    s_fake_stop (&fake);
    deadline = bm_mono_ms () + 5000;
    while (gw_link_connected (link) && bm_mono_ms () < deadline)
        zclock_sleep (10);
    CHECK (!gw_link_connected (link));
    t0 = bm_mono_ms ();
    reply = s_ask (link, BM_PING, 5000, NULL);
    CHECK (!reply && errno == ENOTCONN && bm_mono_ms () - t0 < 2000);
    s_fake_start (&fake, endpoint);
    deadline = bm_mono_ms () + 5000;
    while (!reply && bm_mono_ms () < deadline)
        reply = s_ask (link, BM_PING, 1000, NULL);
    CHECK (reply && bm_msg_command (reply) == BM_REPLY);
    bm_msg_destroy (&reply);

    gw_link_destroy (&link);
    CHECK (link == NULL);
    s_fake_stop (&fake);
    if (verbose)
        printf ("OK\n");
}

/*  gw_link.c - the gateway's one pipelined link to the broker.

    Design
    ------
    One DEALER socket, owned by one link thread (a ZeroMQ socket is never
    used from two threads).  Handler threads never touch it:

      handler thread                      link thread
      --------------                      -----------
      gw_call_t on its stack              loop:
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

    SUBMITs go in groups (group commit, gw_group.h): the SUBMITs a turn
    of the loop takes go as one SUBMIT_MANY when there are several (a
    SUBMIT alone goes as it is: at low load nothing waits), and its
    ACCEPTED_MANY is split into one ACCEPTED or REJECTED per caller.  With
    GW_LINK_LAZY_PENDING requests in flight the link is not woken for new
    ones, and while a SUBMIT_MANY is unanswered (GW_LINK_GROUPS_IN_FLIGHT)
    the link sends nothing more for up to GW_LINK_HOLD_MS: what arrives
    meanwhile goes out as the next group when the answer comes.  Without
    that hold the link also sent what queued at each 1 ms lazy wake-up,
    and groups under 64 connections held 15-17 SUBMITs; with it, 34-38.
    A broker that answers SUBMIT_MANY bad_command (no batches) gets
    SUBMITs one by one from then on.

    The hold alone makes groups as big as what queues during one round
    trip to the broker.  Without Redis that round trip is short next to
    the HTTP side of a request (answer, client, next request), so groups
    stayed small and every SUBMIT, JOB and DONE message carried a few
    jobs: the no-Redis case cost more CPU a request than the durable one.
    So once a group of GW_LINK_GATHER_MIN or more is answered, the link
    gathers: it sends nothing until as many calls have queued as that
    group held (its callers come back with their next requests), or
    GW_LINK_GATHER_US have passed; the handler whose call makes up the
    number wakes it.  Groups then grow from one to the next until the
    gather takes that long, or the callers form two halves, one in flight
    while the other queues.  Only an answered group starts a gather, so a
    lone SUBMIT (light load) is never held.

    Every request carries a "req" number from gw_link_next_req (one
    counter per link); replies are matched by it, a reply nobody waits for
    any more (its caller timed out) is dropped, RESULT pushes are dropped
    (the gateway never asks for them).

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
    after their timeout (the gateway answers 504 broker_timeout).

    Several brokers
    ---------------
    BROKER_ENDPOINT may list several brokers, one leading, the others
    standbys answering REJECTED not_leader (docs/protocol.md section 7b).
    The link connects to one at a time (bm_endpoints) and moves to the
    leader a standby names, or the next one, after the list's backoff when
      - an answer is not_leader: that call is sent again (a standby did
        nothing with it), and so are the others sent to the standby
        (EAGAIN inside the link);
      - the connection is lost (ECONNRESET for the calls sent, as above);
      - no handshake succeeds within GW_LINK_HANDSHAKE_MS (a broker that
        is not there at all).
    A broker that answers REJECTED shutting_down (the leader got SIGTERM:
    it flushes its writes, then gives its lease up to a standby) took
    nothing: the link stops sending to it, waits for the answers of what it
    sent there already (SUBMITs it took before answer once Redis has them),
    and then moves on as from a broker that went silent (the standby about
    to lead is asked every 100 ms, the leaving one not again).  The calls
    it refused are sent again, like not_leader ones; during that handover
    a call waits for the next leader up to its own timeout (not only the
    connect timeout), so that a planned restart of the leader refuses
    nothing.
  */
#include "gw_link.h"

#include "gw_calls.h"
#include "gw_group.h"
#include "gw_wire.h"

#include "bm_codec.h"
#include "bm_codec_batch.h"
#include "bm_config.h"
#include "bm_endpoints.h"
#include "bm_log.h"
#include "bm_sock_watch.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <limits.h>
#include <unistd.h>

#define GW_LINK_BATCH           256     //  Requests sent per turn of the loop
#define GW_LINK_RECV_MAX        256     //  Replies read per turn
#define GW_LINK_IDLE_POLL_MS    1000    //  Longest sleep in zmq_poll
//  With this many requests in flight the link is "lazy": handlers do not
//  wake it, new requests go out when the next reply wakes it, or within
//  GW_LINK_LAZY_POLL_MS.
#define GW_LINK_LAZY_PENDING    8
#define GW_LINK_LAZY_POLL_MS    1
#define GW_LINK_HANDSHAKE_MS    1000    //  Lists: no handshake this long: next broker
#define GW_LINK_SWITCH_POLL_MS  20      //  Lists: poll this often while switching
#define GW_LINK_GROUP_SWEEP_MS  1000    //  Forget unanswered groups this often
//  Group commit under load: while a SUBMIT_MANY is unanswered, what the
//  handlers queue waits for its answer (at most GW_LINK_HOLD_MS after it
//  went), so that the next group takes all of it.  A lone SUBMIT is not a
//  group: at low load nothing is held.
#define GW_LINK_GROUPS_IN_FLIGHT 1
#define GW_LINK_HOLD_MS         5
//  Gathering after a group's answer (see the top): at most this long, and
//  only after a group of at least GW_LINK_GATHER_MIN.  1 ms is a tenth of
//  the p99 at 64 connections, and about the time 16-32 requests take to
//  come back on two cores.
#define GW_LINK_GATHER_US       1000
#define GW_LINK_GATHER_MIN      4

struct _gw_link_t {
    bm_endpoints_t *endpoints;          //  BROKER_ENDPOINT's list; link thread
    char *endpoint;                     //  The one connected to; link thread
    int64_t switch_at;                  //  Link thread: connect then (0: done)
    int64_t connect_by;                 //  Link thread: handshake due by then
    int64_t connect_timeout_ms;         //  BROKER_CONNECT_TIMEOUT_MS
    zsock_t *dealer;                    //  To the broker; link thread only
    zsock_t *monitor;                   //  The dealer's events; link thread only
    int wake_fd;                        //  eventfd: "calls are queued"
    pthread_t thread;
    bool thread_started;
    atomic_int_least64_t req;           //  Last "req" handed out
    atomic_int_least64_t max_timeout;   //  Longest timeout_ms a caller gave
    gw_group_t *groups;                 //  SUBMIT groups in flight; link thread
    bool grouping;                      //  Send SUBMITs in groups; link thread
    int64_t swept_ms;                   //  Groups last swept; link thread
    int64_t group_sent_ms;              //  Last SUBMIT_MANY sent; link thread
    size_t groups_in_flight;            //  Hold at this many groups (0: never)
    size_t gather_want;                 //  Gather until this many queue; link thread
    int64_t gather_until_us;            //  ...or until then (mono µs); link thread

    bool leaving;                       //  The broker answered shutting_down:
                                        //  nothing more is sent, the answers
                                        //  of what was are awaited; link thread
    int64_t leaving_since;              //  Then (mono ms); link thread
    bool handshake_said;                //  A failed CURVE handshake logged (once
                                        //  until one succeeds or the endpoint
                                        //  changes)
    pthread_mutex_t lock;               //  Guards all below
    gw_calls_t *calls;                  //  Queued and sent calls
    bool sleeping;                      //  Link thread waits in zmq_poll...
    bool lazy;                          //  ...and needs no wake (see above)
    size_t gather_target;               //  Gathering: wake it when this many queue
    bool connected;                     //  Handshake done, not disconnected
    int64_t down_since;                 //  When it went down (mono ms)
    bool standbys_only;                 //  A broker answered not_leader, and
                                        //  none has answered as leader (nor
                                        //  dropped the connection) since
    int64_t handover_until;             //  A broker answered shutting_down:
                                        //  until a leader answers (at most
                                        //  until then, mono ms), calls wait
                                        //  for it up to their own timeout
    bool standby_said;                  //  "is a standby" logged since a
                                        //  leader last answered; link thread
    bool stopping;                      //  gw_link_destroy has begun
    atomic_int_least64_t connects;      //  Handshakes succeeded so far
    pthread_mutex_t push_lock;          //  Guards the two below: a push is
    gw_link_push_fn *push_fn;           //  never handed to a receiver being
    void *push_arg;                     //  unset.  EVENT pushes go to fn, or NULL
};

//  --------------------------------------------------------------------------
//  The link thread

static void s_fail_all (gw_link_t *self, int error, bool queued_too);

//  Monotonic clock in µs (gathering waits less than bm_mono_ms can tell).
static int64_t
s_mono_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

//  A standby's REJECTED not_leader; the leader it names goes to leader.
static bool
s_not_leader (const bm_msg_t *reply, char *leader, size_t size)
{
    bm_codec_rejected_t rejected;
    bm_codec_error_t error;
    if (bm_msg_command (reply) != BM_REJECTED
    ||  bm_codec_rejected_decode (reply, &rejected, &error) || !streq (rejected.code, "not_leader"))
        return false;
    const msgpack_object *name = bm_obj_get (bm_msg_body (reply), "leader");
    if (name && name->type == MSGPACK_OBJECT_STR && name->via.str.size < size) {
        memcpy (leader, name->via.str.ptr, name->via.str.size);
        leader [name->via.str.size] = 0;
    }
    return true;
}

//  A REJECTED shutting_down: the broker (a leader given SIGTERM) took
//  nothing, and a standby is about to lead.
static bool
s_shutting_down (const bm_msg_t *reply)
{
    bm_codec_rejected_t rejected;
    bm_codec_error_t error;
    return bm_msg_command (reply) == BM_REJECTED
        && bm_codec_rejected_decode (reply, &rejected, &error) == 0
        && streq (rejected.code, "shutting_down");
}

//  Leave the broker for the next one of the list (silent: it was lost, or
//  is leaving, not a standby): disconnect now, connect after the backoff.
//  Calls sent to it fail: EAGAIN from a standby (sent again), ECONNRESET
//  from a lost one.
static void
s_switch (gw_link_t *self, bool silent, const char *leader)
{
    if (self->switch_at)
        return;                         //  Already between two brokers
    zsock_disconnect (self->dealer, "%s", self->endpoint);
    //  A standby that names the leader (it read the lease): on to it after
    //  the first backoff, not the one grown while no broker led (up to
    //  2 s; and a link sent on to a standby first waited twice that).
    //  Standbys naming themselves or each other (no broker leads): the
    //  backoff, growing.
    int64_t delay = silent ? bm_endpoints_next (self->endpoints, true)
                  : bm_endpoints_not_leader (self->endpoints, leader, leader ? strlen (leader) : 0);
    int64_t now = bm_mono_ms ();
    self->switch_at = now + (delay > 0 ? delay : 1);
    pthread_mutex_lock (&self->lock);
    bool was = self->connected;
    self->connected = false;
    if (was)
        self->down_since = now;
    pthread_mutex_unlock (&self->lock);
    s_fail_all (self, silent ? ECONNRESET : EAGAIN, false);
    //  The first move of a search is logged; the next ones, until a
    //  leader answers, are for debug (one line per state change).
    bool first = bm_endpoints_moves (self->endpoints) <= 1 || (!silent && !self->standby_said);
    if (!silent)
        self->standby_said = true;
    bm_log (first ? BM_INFO : BM_DEBUG, NULL,
            "broker %s %s: trying %s in %lld ms", self->endpoint,
            self->leaving ? "shut down" : silent ? "lost" : "is a standby",
            bm_endpoints_current (self->endpoints), (long long) delay);
    self->leaving = false;
}

//  The broker answered shutting_down (lists only): send it nothing more;
//  once what was sent is answered (s_leave_tick), on to the next broker.
static void
s_leave (gw_link_t *self)
{
    if (self->leaving || self->switch_at)
        return;
    int64_t now = bm_mono_ms ();
    int64_t longest = atomic_load (&self->max_timeout);
    self->leaving = true;
    self->leaving_since = now;
    pthread_mutex_lock (&self->lock);
    if (self->connected)
        self->down_since = now;
    self->connected = false;
    self->handover_until = now + (longest > self->connect_timeout_ms ? longest
                                                                     : self->connect_timeout_ms);
    pthread_mutex_unlock (&self->lock);
    bm_info (NULL, "broker %s is shutting down: requests wait for the next leader", self->endpoint);
}

//  Leaving: every call sent has its answer (or their time ran out): switch.
static void
s_leave_tick (gw_link_t *self)
{
    if (!self->leaving)
        return;
    pthread_mutex_lock (&self->lock);
    size_t pending = gw_calls_pending (self->calls);
    pthread_mutex_unlock (&self->lock);
    if (pending == 0 || bm_mono_ms () - self->leaving_since > atomic_load (&self->max_timeout))
        s_switch (self, true, NULL);
}

//  Lists: connect when the backoff is over; move on when a connection
//  does not come.
static void
s_switch_tick (gw_link_t *self)
{
    int64_t now = bm_mono_ms ();
    if (self->switch_at && now >= self->switch_at) {
        char *endpoint = strdup (bm_endpoints_current (self->endpoints));
        if (endpoint && zsock_connect (self->dealer, "%s", endpoint) == 0) {
            free (self->endpoint);
            self->endpoint = endpoint;
            self->switch_at = 0;
            self->connect_by = now + GW_LINK_HANDSHAKE_MS;
            self->handshake_said = false;
        }
        else {
            free (endpoint);
            self->switch_at = now + bm_endpoints_next (self->endpoints, true);
        }
    }
    else
    if (!self->switch_at && self->connect_by && now >= self->connect_by) {
        pthread_mutex_lock (&self->lock);
        bool connected = self->connected;
        pthread_mutex_unlock (&self->lock);
        self->connect_by = 0;
        if (!connected)
            s_switch (self, true, NULL);
    }
}

//  A group's answer (req is a SUBMIT_MANY's): each of its calls gets its
//  own answer, as if its SUBMIT had gone alone.  Returns false when req is
//  no group's.  Does not take the reply.
static bool
s_group_answer (gw_link_t *self, const bm_msg_t *reply, int64_t req, bool *shutting)
{
    bm_msg_t **answers;
    int64_t *reqs;
    size_t count;
    if (!gw_group_split (self->groups, req, reply, &answers, &reqs, &count))
        return false;
    for (size_t i = 0; answers && i < count && !*shutting; i++)
        *shutting = answers [i] && s_shutting_down (answers [i]);
    if (bm_msg_command (reply) == BM_REJECTED && self->grouping) {
        char code [32] = "";
        bm_obj_strcpy (bm_msg_body (reply), "code", code, sizeof code);
        if (streq (code, "bad_command")) {
            //  A broker without batches: SUBMITs go one by one from now on.
            self->grouping = false;
            bm_warn (NULL, "the broker does not take SUBMIT_MANY: SUBMITs go one by one");
        }
    }
    //  Its callers will be back: gather the next group (see the top).
    if (self->grouping && count >= GW_LINK_GATHER_MIN) {
        self->gather_want = count;
        self->gather_until_us = s_mono_us () + GW_LINK_GATHER_US;
    }
    atomic_int *wake [BM_MAX_BATCH];
    size_t woken = 0;
    pthread_mutex_lock (&self->lock);
    for (size_t i = 0; i < count; i++) {
        gw_call_t *call = gw_calls_take (self->calls, reqs [i]);
        if (call && woken < BM_MAX_BATCH) {
            wake [woken++] = gw_call_finish (call, answers ? answers [i] : NULL, EPROTO);
            if (answers)
                answers [i] = NULL;
        }
    }
    pthread_mutex_unlock (&self->lock);
    for (size_t i = 0; i < woken; i++)
        gw_call_wake (wake [i]);
    for (size_t i = 0; answers && i < count; i++)
        bm_msg_destroy (&answers [i]);      //  Late answers: caller gone
    free (answers);
    free (reqs);
    return true;
}

//  Send the SUBMIT calls taken this turn (their indexes in `submits`) in
//  groups of at most BM_MAX_BATCH and GW_GROUP_MAX_BYTES: a group of one
//  as SUBMIT, more as one SUBMIT_MANY.  The reqs of calls whose send
//  failed go to failed[] (*failures counts them).
static void
s_send_submits (gw_link_t *self, void *dealer, zmq_msg_t *bodies, const int64_t *reqs,
                const int *submits, int count, int64_t *failed, int *failures)
{
    int64_t group_reqs [GW_LINK_BATCH];
    zmq_msg_t group [GW_LINK_BATCH];
    int first = 0;
    while (first < count) {
        int size = 0;
        size_t bytes = 0;
        while (first + size < count && size < BM_MAX_BATCH) {
            size_t next = zmq_msg_size (&bodies [submits [first + size]]);
            if (size > 0 && bytes + next > GW_GROUP_MAX_BYTES)
                break;
            bytes += next;
            size++;
        }
        if (size == 1) {
            if (gw_wire_send (dealer, BM_SUBMIT, &bodies [submits [first]]))
                failed [(*failures)++] = reqs [submits [first]];
            first++;
            continue;
        }
        for (int i = 0; i < size; i++) {
            zmq_msg_init (&group [i]);
            zmq_msg_move (&group [i], &bodies [submits [first + i]]);
            group_reqs [i] = reqs [submits [first + i]];
        }
        int64_t group_req = gw_link_next_req (self);
        zmq_msg_t many;
        bool sent = false;
        if (gw_group_encode (group_req, group, (size_t) size, &many) == 0)
            sent = gw_wire_send (dealer, BM_SUBMIT_MANY, &many) == 0;     //  Closes it
        else
            zmq_msg_close (&many);
        if (sent)
            self->group_sent_ms = bm_mono_ms ();
        if (sent && gw_group_remember (self->groups, group_req, group_reqs, (size_t) size,
                                       bm_mono_ms ()))
            bm_error (NULL, "out of memory: a SUBMIT_MANY of %d sent, its answer will be lost",
                      size);
        if (!sent)
            for (int i = 0; i < size; i++)
                failed [(*failures)++] = group_reqs [i];
        for (int i = 0; i < size; i++)
            zmq_msg_close (&group [i]);
        first += size;
    }
}

//  What the answers just read say of the brokers: one answered not_leader
//  (a standby), or answers came and none was not_leader (a leader; one
//  that is not shutting down ends a handover).
static void
s_note_leader (gw_link_t *self, bool not_leader, bool answered, bool shutting)
{
    if (!not_leader && !answered)
        return;
    pthread_mutex_lock (&self->lock);
    self->standbys_only = not_leader;
    if (!not_leader && !shutting && !self->leaving)
        self->handover_until = 0;
    pthread_mutex_unlock (&self->lock);
    if (!not_leader && !shutting && bm_endpoints_moves (self->endpoints) > 0) {
        bm_endpoints_served (self->endpoints);  //  The backoff starts over
        self->standby_said = false;
        bm_info (NULL, "the broker at %s leads: serving through it", self->endpoint);
    }
}

//  Read up to GW_LINK_RECV_MAX messages and hand each reply to its caller.
//  Returns how many messages it read.
static int
s_receive (gw_link_t *self, void *dealer)
{
    bm_msg_t *replies [GW_LINK_RECV_MAX];
    int64_t reqs [GW_LINK_RECV_MAX];
    int count = 0, read = 0;
    char leader [256] = "";
    bool not_leader = false;
    bool shutting = false;
    while (read < GW_LINK_RECV_MAX
    &&     gw_wire_recv (dealer, &replies [count], &reqs [count])) {
        read++;
        if (replies [count] && reqs [count] == GW_WIRE_PUSH) {
            pthread_mutex_lock (&self->push_lock);
            if (self->push_fn)
                self->push_fn (replies [count], self->push_arg);
            pthread_mutex_unlock (&self->push_lock);
            bm_msg_destroy (&replies [count]);
        }
        else
        if (replies [count] && s_group_answer (self, replies [count], reqs [count], &shutting)) {
            if (!not_leader && s_not_leader (replies [count], leader, sizeof leader))
                not_leader = true;
            bm_msg_destroy (&replies [count]);
        }
        else
        if (replies [count])
            count++;
    }
    bool several = bm_endpoints_size (self->endpoints) > 1;
    if (count == 0) {
        s_note_leader (self, not_leader, read > 0, shutting);
        if (shutting && several)
            s_leave (self);
        if (not_leader && several)
            s_switch (self, false, leader);
        return read;
    }
    atomic_int *wake [GW_LINK_RECV_MAX];
    int woken = 0;
    pthread_mutex_lock (&self->lock);
    for (int i = 0; i < count; i++) {
        if (!not_leader && s_not_leader (replies [i], leader, sizeof leader))
            not_leader = true;
        if (!shutting && several && s_shutting_down (replies [i]))
            shutting = true;
        gw_call_t *call = gw_calls_take (self->calls, reqs [i]);
        if (call) {
            wake [woken++] = gw_call_finish (call, replies [i], 0);
            replies [i] = NULL;
        }
    }
    pthread_mutex_unlock (&self->lock);
    s_note_leader (self, not_leader, true, shutting);
    //  Before the callers wake: those refused shutting_down then wait for
    //  the next leader.
    if (shutting && several)
        s_leave (self);
    for (int i = 0; i < woken; i++)
        gw_call_wake (wake [i]);
    for (int i = 0; i < count; i++)
        bm_msg_destroy (&replies [i]);      //  Late answers: caller gone
    if (not_leader && several)
        s_switch (self, false, leader);
    return read;
}

//  Fail every sent call (the connection is gone), or every call at all
//  (the link stops).  Wakes them.
static void
s_fail_all (gw_link_t *self, int error, bool queued_too)
{
    size_t count;
    pthread_mutex_lock (&self->lock);
    atomic_int **wake = gw_calls_fail (self->calls, error, queued_too, &count);
    pthread_mutex_unlock (&self->lock);
    gw_call_wake_all (&wake, count);
    if (self->groups)
        gw_group_forget (self->groups, 0, -1);  //  Their calls have failed
}

//  One event from the socket monitor.
static void
s_monitor_event (gw_link_t *self, void *monitor, void *dealer)
{
    int event = gw_wire_event (monitor);
    if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
        pthread_mutex_lock (&self->lock);
        self->connected = true;
        pthread_mutex_unlock (&self->lock);
        atomic_fetch_add (&self->connects, 1);
        self->connect_by = 0;
        self->handshake_said = false;
        bm_log (bm_endpoints_moves (self->endpoints) > 1 ? BM_DEBUG : BM_INFO, NULL,
                "connected to the broker at %s", self->endpoint);
    }
    else
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH || event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
    ||  event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
        //  libzmq tries again every reconnect interval: one line.
        if (!self->handshake_said)
            bm_error (NULL, "%s (broker %s)", bm_sock_watch_handshake_text (event), self->endpoint);
        self->handshake_said = true;
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
        //  A broker that went away says nothing of who leads any more.
        if (was) {
            self->down_since = bm_mono_ms ();
            self->standbys_only = false;
        }
        pthread_mutex_unlock (&self->lock);
        //  Sent, unanswered: the broker may have taken them (ECONNRESET:
        //  outcome unknown, not "never sent").
        s_fail_all (self, ECONNRESET, false);
        if (was)
            bm_warn (NULL, "lost the connection to the broker at %s", self->endpoint);
        if ((was || self->leaving) && bm_endpoints_size (self->endpoints) > 1)
            s_switch (self, true, NULL);
    }
}

static void *
s_link_thread (void *arg)
{
    gw_link_t *self = (gw_link_t *) arg;
    void *dealer = zsock_resolve (self->dealer);
    void *monitor = zsock_resolve (self->monitor);
    zmq_msg_t *bodies = (zmq_msg_t *) malloc (GW_LINK_BATCH * sizeof (zmq_msg_t));
    if (!bodies) {
        bm_error (NULL, "out of memory for the broker link thread");
        abort ();
    }
    int64_t reqs [GW_LINK_BATCH];
    int command [GW_LINK_BATCH];
    bool sleep = false;
    bool lazy = false;
    while (true) {
        zmq_pollitem_t items [] = {
            { dealer, 0, ZMQ_POLLIN, 0 },
            { monitor, 0, ZMQ_POLLIN, 0 },
            { NULL, self->wake_fd, ZMQ_POLLIN, 0 },
        };
        long timeout = !sleep ? 0 : lazy ? GW_LINK_LAZY_POLL_MS : GW_LINK_IDLE_POLL_MS;
        if ((self->switch_at || self->connect_by || self->leaving) && timeout > GW_LINK_SWITCH_POLL_MS)
            timeout = GW_LINK_SWITCH_POLL_MS;
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
        if (bm_endpoints_size (self->endpoints) > 1) {
            s_leave_tick (self);
            s_switch_tick (self);
        }

        //  Take what the handlers queued (only while connected: meanwhile
        //  calls wait in the queue for a connection, or give up).
        int count = 0;
        int64_t now = bm_mono_ms ();
        int64_t now_us = s_mono_us ();
        bool hold = self->grouping && self->groups_in_flight
                 && gw_group_size (self->groups) >= self->groups_in_flight
                 && now - self->group_sent_ms < GW_LINK_HOLD_MS;
        bool gather = !hold && self->gather_want && now_us < self->gather_until_us;
        pthread_mutex_lock (&self->lock);
        if (self->stopping) {
            pthread_mutex_unlock (&self->lock);
            break;
        }
        if (gather && gw_calls_queued_count (self->calls) >= self->gather_want)
            gather = false;
        if (!gather)
            self->gather_want = 0;
        self->gather_target = gather ? self->gather_want : 0;
        while (self->connected && !hold && !gather && count < GW_LINK_BATCH) {
            gw_call_t *call = gw_calls_send_next (self->calls, &bodies [count], now);
            if (!call)
                break;
            reqs [count] = call->req;
            command [count++] = call->command;
        }
        //  Sleep in the next poll only if there is nothing left to do; a
        //  handler that queues meanwhile sees `sleeping` and wakes us,
        //  unless many requests are in flight: then the next reply wakes
        //  us anyway, and what queued meanwhile goes out in one burst.
        //  While holding (a group unanswered) the same: its answer wakes us.
        //  While gathering, the handler that completes the group wakes us.
        sleep = count == 0
             && (hold || gather || !(self->connected && gw_calls_queued (self->calls)));
        lazy = sleep && (hold || gather || gw_calls_pending (self->calls) >= GW_LINK_LAZY_PENDING);
        self->sleeping = sleep;
        self->lazy = lazy;
        pthread_mutex_unlock (&self->lock);

        //  Send them back to back.  A send fails only when the connection
        //  is gone this very moment (ZMQ_IMMEDIATE) or the HWM is reached.
        //  SUBMITs of several handlers go as one SUBMIT_MANY (group commit).
        int64_t failed [GW_LINK_BATCH];
        int failures = 0;
        int submits [GW_LINK_BATCH];
        int submit_count = 0;
        for (int i = 0; i < count; i++)
            if (command [i] == BM_SUBMIT && self->grouping)
                submits [submit_count++] = i;
            else
            if (gw_wire_send (dealer, command [i], &bodies [i]))
                failed [failures++] = reqs [i];
        if (submit_count)
            s_send_submits (self, dealer, bodies, reqs, submits, submit_count, failed, &failures);
        //  Groups whose calls have all timed out are forgotten.
        if (gw_group_size (self->groups) && now - self->swept_ms >= GW_LINK_GROUP_SWEEP_MS) {
            self->swept_ms = now;
            gw_group_forget (self->groups, now, atomic_load (&self->max_timeout) + 1000);
        }
        if (failures) {
            atomic_int *wake [GW_LINK_BATCH];
            int woken = 0;
            pthread_mutex_lock (&self->lock);
            for (int i = 0; i < failures; i++) {
                gw_call_t *call = gw_calls_take (self->calls, failed [i]);
                if (call)
                    wake [woken++] = gw_call_finish (call, NULL, ENOTCONN);
            }
            pthread_mutex_unlock (&self->lock);
            for (int i = 0; i < woken; i++)
                gw_call_wake (wake [i]);
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
    pthread_mutex_init (&self->push_lock, NULL);
    self->calls = gw_calls_new ();
    self->groups = gw_group_new ();
    self->grouping = true;
    self->groups_in_flight = GW_LINK_GROUPS_IN_FLIGHT;
    if (!self->groups) {
        bm_error (NULL, "out of memory for the broker link");
        gw_link_destroy (&self);
        return NULL;
    }
    self->endpoints = bm_endpoints_new (endpoint);
    if (!self->endpoints) {
        bm_error (NULL, "BROKER_ENDPOINT: not an endpoint or a comma-separated list of them: '%s'",
                  endpoint);
        gw_link_destroy (&self);
        return NULL;
    }
    self->endpoint = strdup (bm_endpoints_current (self->endpoints));
    self->connect_timeout_ms = connect_timeout_ms;
    self->down_since = bm_mono_ms ();
    self->wake_fd = eventfd (0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->wake_fd < 0 || !self->endpoint) {
        bm_error (NULL, "cannot make the broker link's eventfd");
        goto fail;
    }
    self->dealer = gw_wire_dealer_new (self, &self->monitor);
    if (!self->dealer)
        goto fail;
    if (zsock_connect (self->dealer, "%s", self->endpoint)) {
        bm_error (NULL, "cannot connect to the broker at %s", self->endpoint);
        goto fail;
    }
    self->connect_by = bm_mono_ms () + GW_LINK_HANDSHAKE_MS;
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
        gw_wire_dealer_destroy (&self->dealer, &self->monitor);
        if (self->wake_fd >= 0)
            close (self->wake_fd);
        gw_calls_destroy (&self->calls);
        gw_group_destroy (&self->groups);
        pthread_mutex_destroy (&self->lock);
        pthread_mutex_destroy (&self->push_lock);
        free (self->endpoint);
        bm_endpoints_destroy (&self->endpoints);
        free (self);
        *self_p = NULL;
    }
}

int64_t
gw_link_connects (gw_link_t *self)
{
    return atomic_load (&self->connects);
}

void
gw_link_set_push (gw_link_t *self, gw_link_push_fn *fn, void *arg)
{
    pthread_mutex_lock (&self->push_lock);
    self->push_fn = fn;
    self->push_arg = arg;
    pthread_mutex_unlock (&self->push_lock);
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

bool
gw_link_standbys_only (gw_link_t *self)
{
    pthread_mutex_lock (&self->lock);
    bool standbys_only = self->standbys_only;
    pthread_mutex_unlock (&self->lock);
    return standbys_only;
}

static bm_msg_t *s_request_once (gw_link_t *self, int64_t req, int command,
                                 char *body, size_t size, int64_t timeout_ms, int64_t start,
                                 bool patient);

bm_msg_t *
gw_link_request (gw_link_t *self, int64_t req, int command,
                 char *body, size_t size, int64_t timeout_ms)
{
    //  Several brokers: a request a standby refused (not_leader, or EAGAIN
    //  for one sent to it) goes again, to the leader, within the same
    //  connect timeout; so a copy of its body is kept.  One a leader that
    //  shuts down refused (shutting_down: not taken) goes again too, to the
    //  broker that leads next, within its own timeout (patient).
    int64_t start = bm_mono_ms ();
    bool patient = false;
    bool several = bm_endpoints_size (self->endpoints) > 1;
    int64_t longest = atomic_load (&self->max_timeout);
    while (timeout_ms > longest
    &&     !atomic_compare_exchange_weak (&self->max_timeout, &longest, timeout_ms))
        ;
    while (true) {
        char *copy = several ? (char *) malloc (size ? size : 1) : NULL;
        if (several && !copy) {
            free (body);
            errno = ENOMEM;
            return NULL;
        }
        if (copy)
            memcpy (copy, body, size);
        bm_msg_t *reply = s_request_once (self, req, command, body, size, timeout_ms, start,
                                          patient);
        char leader [8];
        bool shutting = reply && copy && s_shutting_down (reply);
        patient = patient || shutting;
        bool again = reply ? shutting || s_not_leader (reply, leader, sizeof leader)
                           : errno == EAGAIN;
        int64_t limit = patient && timeout_ms > self->connect_timeout_ms ? timeout_ms
                                                                         : self->connect_timeout_ms;
        if (!again || !copy || bm_mono_ms () - start >= limit) {
            free (copy);
            //  Standbys only until the end (no broker leads, Redis away):
            //  no broker to answer, as when none is connected.
            if (reply && again && !shutting) {
                bm_msg_destroy (&reply);
                errno = EAGAIN;
            }
            if (!reply && errno == EAGAIN)
                errno = ENOTCONN;
            return reply;
        }
        bm_msg_destroy (&reply);
        body = copy;
    }
}

static bm_msg_t *
s_request_once (gw_link_t *self, int64_t req, int command,
                char *body, size_t size, int64_t timeout_ms, int64_t start, bool patient)
{
    gw_call_t call;
    if (gw_call_init (&call, req, command, body, size)) {
        errno = ENOMEM;
        return NULL;
    }
    bool wake = false;
    pthread_mutex_lock (&self->lock);
    //  During a handover (a broker answered shutting_down) a call waits for
    //  the next leader up to its own timeout.
    if (self->handover_until && bm_mono_ms () < self->handover_until)
        patient = true;
    int refused = self->stopping ? ESHUTDOWN
                : !self->connected && !patient && start - self->down_since >= self->connect_timeout_ms
                ? ENOTCONN : 0;
    if (!refused) {
        gw_calls_enqueue (self->calls, &call);
        wake = self->sleeping && self->connected
            && (!self->lazy || (self->gather_target
                                && gw_calls_queued_count (self->calls) >= self->gather_target));
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
    int64_t connect_deadline = start + (patient && timeout_ms > self->connect_timeout_ms
                                        ? timeout_ms : self->connect_timeout_ms);
    int state = atomic_load_explicit (&call.state, memory_order_acquire);
    while (state != GW_CALL_DONE) {
        int64_t until = state == GW_CALL_QUEUED ? connect_deadline : call.sent_ms + timeout_ms;
        int64_t now = bm_mono_ms ();
        if (now >= until) {
            pthread_mutex_lock (&self->lock);
            state = atomic_load_explicit (&call.state, memory_order_acquire);
            if (state == GW_CALL_QUEUED) {
                gw_calls_unqueue (self->calls, &call);
                zmq_msg_close (&call.body);
                call.error = ENOTCONN;
            }
            else
            if (state == GW_CALL_SENT) {
                gw_calls_take (self->calls, req);
                call.error = ETIMEDOUT;
            }
            pthread_mutex_unlock (&self->lock);
            if (state != GW_CALL_DONE) {
                errno = call.error;
                return NULL;
            }
            break;
        }
        //  The link does not wake a call it sends: a queued call looks
        //  again every 100 ms, so that once sent its own timeout counts.
        int64_t sleep_until = state == GW_CALL_QUEUED && now + 100 < until ? now + 100 : until;
        state = gw_call_wait (&call, state, sleep_until - now);
    }
    if (!call.reply)
        errno = call.error;
    return call.reply;
}

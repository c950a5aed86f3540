/*  gw_events_test.c - gw_events' self test: a ROUTER in this process plays
    the broker, which sends EVENTs right behind its answer to SUBSCRIBE (as
    a busy broker does), and the hub is driven through its public API.  */
#include "gw_events.h"
#include "bm_selftest.h"

#include "gw_wire.h"

#include "bm_codec.h"
#include "bm_config.h"
#include "bm_log.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(cond) BM_CHECK (cond)

#define S_CONNECT_MS    2000
#define S_PATIENCE_MS   30000           //  Bounds on waits: never reached
#define S_ITEM_MS       5000            //  For an item the broker sent already
#define S_BURST         20              //  EVENTs right behind the answer

typedef struct _s_fake_t s_fake_t;
//  How the fake broker answers a request (req its "req"); sbuf is empty.
typedef void (s_answer_fn) (s_fake_t *fake, zframe_t *identity, bm_msg_t *msg, int64_t req,
                            msgpack_packer *pk, msgpack_sbuffer *sbuf);

struct _s_fake_t {
    zsock_t *router;
    atomic_bool stop;
    pthread_t thread;
    s_answer_fn *answer;
    int subscriptions;                  //  SUBSCRIBEs that asked for a new one
    atomic_llong answered;              //  When a replaying SUBSCRIBE was answered
};

static void
s_send (s_fake_t *fake, zframe_t *identity, int command, msgpack_sbuffer *sbuf)
{
    bm_msg_send (fake->router, identity, BM_CLIENT_HEADER, command, sbuf->data, sbuf->size);
    msgpack_sbuffer_clear (sbuf);
}

//  SUBSCRIBE: REPLY {req, subscription, seq: 0, ttlMs} and, in the same
//  burst, S_BURST EVENTs seq 1..S_BURST; a renewal: REPLY of the same
//  subscription; UNSUBSCRIBE and PING: REPLY {req}.
static void
s_answer_burst (s_fake_t *fake, zframe_t *identity, bm_msg_t *msg, int64_t req,
                msgpack_packer *pk, msgpack_sbuffer *sbuf)
{
    if (bm_msg_command (msg) == BM_SUBSCRIBE && !bm_obj_get (bm_msg_body (msg), "subscription")) {
        char id [32];
        snprintf (id, sizeof id, "sub-test-%d", ++fake->subscriptions);
        msgpack_pack_map (pk, 4);
        bm_pack_kv_int (pk, "req", req);
        bm_pack_kv_str (pk, "subscription", id);
        bm_pack_kv_int (pk, "seq", 0);
        bm_pack_kv_int (pk, "ttlMs", GW_EVENTS_TTL_MS);
        s_send (fake, identity, BM_REPLY, sbuf);
        for (int seq = 1; seq <= S_BURST; seq++) {
            char job [32];
            snprintf (job, sizeof job, "j%d", seq);
            msgpack_pack_map (pk, seq == S_BURST ? 6 : 5);
            bm_pack_kv_str (pk, "subscription", id);
            bm_pack_kv_int (pk, "seq", seq);
            bm_pack_kv_str (pk, "event", "waiting");
            bm_pack_kv_str (pk, "jobId", job);
            bm_pack_kv_str (pk, "botType", "t");
            if (seq == S_BURST) {
                //  A double as GET /job prints it: the shortest
                //  digits that read back the same
                msgpack_pack_str_with_body (pk, "result", 6);
                msgpack_pack_map (pk, 1);
                msgpack_pack_str_with_body (pk, "median", 6);
                msgpack_pack_double (pk, 749.39825);
            }
            s_send (fake, identity, BM_EVENT, sbuf);
        }
    }
    else
    if (bm_msg_command (msg) == BM_SUBSCRIBE) {
        //  A renewal: the same subscription
        char id [32] = "";
        const msgpack_object *o = bm_obj_get (bm_msg_body (msg), "subscription");
        if (o && o->type == MSGPACK_OBJECT_STR && o->via.str.size < sizeof id)
            memcpy (id, o->via.str.ptr, o->via.str.size);
        msgpack_pack_map (pk, 4);
        bm_pack_kv_int (pk, "req", req);
        bm_pack_kv_str (pk, "subscription", id);
        bm_pack_kv_int (pk, "seq", S_BURST);
        bm_pack_kv_int (pk, "ttlMs", GW_EVENTS_TTL_MS);
        s_send (fake, identity, BM_REPLY, sbuf);
    }
    else {
        msgpack_pack_map (pk, 1);
        bm_pack_kv_int (pk, "req", req);
        s_send (fake, identity, BM_REPLY, sbuf);
    }
}

//  The fake broker's thread: each request answered by fake->answer.
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
        int64_t req;
        if (msg && bm_obj_int (bm_msg_body (msg), "req", &req)) {
            msgpack_sbuffer sbuf;
            msgpack_sbuffer_init (&sbuf);
            msgpack_packer pk;
            msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
            fake->answer (fake, identity, msg, req, &pk, &sbuf);
            msgpack_sbuffer_destroy (&sbuf);
        }
        bm_msg_destroy (&msg);
        zframe_destroy (&identity);
        zmsg_destroy (&frames);
    }
    return NULL;
}

//  A fake broker answering with answer, and a link connected to it.
//  Connected first: a connection made after a hub subscribed would make
//  it subscribe anew (a `reset`), which is not what is checked.
static gw_link_t *
s_fake_start (s_fake_t *fake, s_answer_fn *answer)
{
    memset (fake, 0, sizeof *fake);
    fake->answer = answer;
    fake->router = zsock_new (ZMQ_ROUTER);
    CHECK (fake->router);
    zsock_set_linger (fake->router, 0);
    zsock_set_sndhwm (fake->router, 0);
    int port = zsock_bind (fake->router, "tcp://127.0.0.1:*");
    CHECK (port > 0);
    atomic_init (&fake->stop, false);
    atomic_init (&fake->answered, 0);
    CHECK (pthread_create (&fake->thread, NULL, s_fake_thread, fake) == 0);
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    gw_link_t *link = gw_link_new (endpoint, S_CONNECT_MS);
    CHECK (link);
    int64_t deadline = bm_mono_ms () + S_PATIENCE_MS;
    while (!gw_link_connected (link) && bm_mono_ms () < deadline)
        zclock_sleep (10);
    CHECK (gw_link_connected (link));
    return link;
}

static void
s_fake_stop (s_fake_t *fake, gw_link_t **link_p)
{
    gw_link_destroy (link_p);
    atomic_store (&fake->stop, true);
    pthread_join (fake->thread, NULL);
    zsock_destroy (&fake->router);
}

//  --------------------------------------------------------------------------
//  A replay while a stream's queue is full and its client reads nothing

#define S_FULL_REPLAY   3               //  Events the second subscription replays

//  One EVENT of subscription sub, id "1-<number>", of job "jlast" from
//  the GW_EVENTS_STREAM_QUEUE-th on, "jother" before.
static void
s_stall_event (s_fake_t *fake, zframe_t *identity, const char *sub, int seq, int number)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    char id [32];
    snprintf (id, sizeof id, "1-%d", number);
    msgpack_pack_map (&pk, 6);
    bm_pack_kv_str (&pk, "subscription", sub);
    bm_pack_kv_int (&pk, "seq", seq);
    bm_pack_kv_str (&pk, "id", id);
    bm_pack_kv_str (&pk, "event", "waiting");
    bm_pack_kv_str (&pk, "jobId", number >= GW_EVENTS_STREAM_QUEUE ? "jlast" : "jother");
    bm_pack_kv_str (&pk, "botType", "t");
    s_send (fake, identity, BM_EVENT, &sbuf);
    msgpack_sbuffer_destroy (&sbuf);
}

//  The first SUBSCRIBE: REPLY "stall-1" (nothing replayed), then
//  GW_EVENTS_STREAM_QUEUE live EVENTs, ids 1-1...  Its renewal: REJECTED
//  not_found (the broker forgot it).  The SUBSCRIBE after it (since
//  1-GW_EVENTS_STREAM_QUEUE): S_FULL_REPLAY EVENTs of "stall-2", replayed,
//  then REPLY, at fake->answered.  PING and the rest: REPLY {req}.
static void
s_answer_stall (s_fake_t *fake, zframe_t *identity, bm_msg_t *msg, int64_t req,
                msgpack_packer *pk, msgpack_sbuffer *sbuf)
{
    bool subscribe = bm_msg_command (msg) == BM_SUBSCRIBE;
    if (subscribe && bm_obj_get (bm_msg_body (msg), "subscription")) {
        msgpack_pack_map (pk, 3);
        bm_pack_kv_int (pk, "req", req);
        bm_pack_kv_str (pk, "code", "not_found");
        bm_pack_kv_str (pk, "message", "no such subscription");
        s_send (fake, identity, BM_REJECTED, sbuf);
    }
    else
    if (subscribe && ++fake->subscriptions == 1) {
        msgpack_pack_map (pk, 5);
        bm_pack_kv_int (pk, "req", req);
        bm_pack_kv_str (pk, "subscription", "stall-1");
        bm_pack_kv_int (pk, "seq", 0);
        bm_pack_kv_int (pk, "replayed", 0);
        bm_pack_kv_int (pk, "ttlMs", GW_EVENTS_TTL_MS);
        s_send (fake, identity, BM_REPLY, sbuf);
        for (int n = 1; n <= GW_EVENTS_STREAM_QUEUE; n++)
            s_stall_event (fake, identity, "stall-1", n, n);
    }
    else
    if (subscribe) {
        for (int n = 1; n <= S_FULL_REPLAY; n++)
            s_stall_event (fake, identity, "stall-2", n, GW_EVENTS_STREAM_QUEUE + n);
        msgpack_pack_map (pk, 6);
        bm_pack_kv_int (pk, "req", req);
        bm_pack_kv_str (pk, "subscription", "stall-2");
        bm_pack_kv_int (pk, "seq", 0);
        bm_pack_kv_int (pk, "replayed", S_FULL_REPLAY);
        msgpack_pack_str_with_body (pk, "reset", 5);
        msgpack_pack_false (pk);
        bm_pack_kv_int (pk, "ttlMs", GW_EVENTS_TTL_MS);
        atomic_store (&fake->answered, bm_mono_ms ());
        s_send (fake, identity, BM_REPLY, sbuf);
    }
    else {
        msgpack_pack_map (pk, 1);
        bm_pack_kv_int (pk, "req", req);
        s_send (fake, identity, BM_REPLY, sbuf);
    }
}

//  Stream S's queue is full (GW_EVENTS_STREAM_QUEUE items, none lost) and
//  its client reads nothing; the subscription is lost (its renewal, a
//  third of GW_EVENTS_TTL_MS in, is refused) and made again since the last
//  event, the broker replaying S_FULL_REPLAY events.  The hub waits for S
//  to take items for GW_EVENTS_REPLAY_STALL_MS (1 s), not the replay's
//  whole GW_EVENTS_REPLAY_WAIT_MS (5 s), then goes on: stream R, which
//  reads, gets the replay about 1 s after the broker's answer, and S,
//  read at last, its queue and then a `gap` slow_reader of the replay.
static void
s_test_full_stream_replay (void)
{
    s_fake_t fake;
    gw_link_t *link = s_fake_start (&fake, s_answer_stall);
    gw_events_t *hub = gw_events_new (link, 2);
    CHECK (hub);

    //  R takes job jlast's events only: the last of the first burst tells
    //  that S has been given the whole burst before it.
    gw_events_filter_t all = { "", "", 0 };
    gw_events_filter_t last = { "", "jlast", 0 };
    gw_stream_t *s_stream = gw_events_open (hub, &all, NULL);
    gw_stream_t *r_stream = gw_events_open (hub, &last, NULL);
    CHECK (s_stream && r_stream);
    CHECK (gw_events_wait_ready (hub, r_stream, S_PATIENCE_MS));
    char *item = gw_events_next (hub, r_stream, S_PATIENCE_MS);
    char want [64];
    snprintf (want, sizeof want, "event: waiting\nid: 1-%d\n", GW_EVENTS_STREAM_QUEUE);
    CHECK (item && strncmp (item, want, strlen (want)) == 0);
    free (item);

    //  The renewal, refused, comes GW_EVENTS_TTL_MS / 3 after the first
    //  answer; the first item of the replay reaches R after S was waited
    //  for, 1 s and not 5.
    item = gw_events_next (hub, r_stream, GW_EVENTS_TTL_MS / 3 + S_PATIENCE_MS);
    int64_t took = bm_mono_ms () - atomic_load (&fake.answered);
    snprintf (want, sizeof want, "event: waiting\nid: 1-%d\n", GW_EVENTS_STREAM_QUEUE + 1);
    if (!item || strncmp (item, want, strlen (want)) != 0)
        fprintf (stderr, "gw_events: R's first item after the replay: %s\n", item ? item : "(none)");
    CHECK (item && strncmp (item, want, strlen (want)) == 0);
    free (item);
    if (took < 900 || took >= 4000)
        fprintf (stderr, "gw_events: the replay reached R %" PRId64 " ms after the broker's "
                 "answer (900 to 4000 expected)\n", took);
    CHECK (took >= 900 && took < 4000);
    for (int n = 2; n <= S_FULL_REPLAY; n++) {
        item = gw_events_next (hub, r_stream, S_ITEM_MS);
        snprintf (want, sizeof want, "event: waiting\nid: 1-%d\n", GW_EVENTS_STREAM_QUEUE + n);
        CHECK (item && strncmp (item, want, strlen (want)) == 0);
        free (item);
    }

    //  S: its queue as it was, then the replay it had no room for
    for (int n = 1; n <= GW_EVENTS_STREAM_QUEUE; n++) {
        item = gw_events_next (hub, s_stream, S_ITEM_MS);
        snprintf (want, sizeof want, "event: waiting\nid: 1-%d\n", n);
        CHECK (item && strncmp (item, want, strlen (want)) == 0);
        free (item);
    }
    item = gw_events_next (hub, s_stream, S_ITEM_MS);
    if (!item || !strstr (item, "event: gap\n") || !strstr (item, "\"missed\":3,")
    ||  !strstr (item, "slow_reader"))
        fprintf (stderr, "gw_events: S's item after its queue: %s\n", item ? item : "(none)");
    CHECK (item && strstr (item, "event: gap\n") && strstr (item, "\"missed\":3,")
           && strstr (item, "slow_reader"));
    free (item);

    gw_events_close (hub, &s_stream);
    gw_events_close (hub, &r_stream);
    gw_events_destroy (&hub);
    s_fake_stop (&fake, &link);
}

void
gw_events_test (bool verbose)
{
    if (verbose)
        printf (" * gw_events: ");
    zsys_handler_set (NULL);
    s_fake_t fake;
    gw_link_t *link = s_fake_start (&fake, s_answer_burst);
    gw_events_t *hub = gw_events_new (link, 2);
    CHECK (hub);

    //  The events the broker sends right behind its answer, before the hub
    //  has recorded the subscription's id, reach the stream, in order, and
    //  no `gap` says they were missed.
    gw_events_filter_t all = { "", "", 0 };
    gw_stream_t *stream = gw_events_open (hub, &all, NULL);
    CHECK (stream);
    CHECK (gw_events_wait_ready (hub, stream, S_PATIENCE_MS));
    for (int seq = 1; seq <= S_BURST; seq++) {
        char *item = gw_events_next (hub, stream, S_ITEM_MS);
        char want [64];
        snprintf (want, sizeof want, "event: waiting\nid: %d\n", seq);
        if (!item || strncmp (item, want, strlen (want)) != 0)
            fprintf (stderr, "gw_events: item %d: %s\n", seq, item ? item : "(none)");
        CHECK (item && strncmp (item, want, strlen (want)) == 0);
        char job [32];
        snprintf (job, sizeof job, "\"jobId\":\"j%d\"", seq);
        CHECK (strstr (item, job) && !strstr (item, "subscription"));
        if (seq == S_BURST && !strstr (item, "\"median\":749.39825}"))
            fprintf (stderr, "gw_events: a double's digits: %s\n", item);
        CHECK (seq < S_BURST || strstr (item, "\"median\":749.39825}"));
        free (item);
    }
    //  At stop, an open stream's socket is shut both ways (its writer's
    //  blocked write fails, its client reads the end); a closed stream's
    //  socket is not touched.
    int pair [2];
    CHECK (socketpair (AF_UNIX, SOCK_STREAM, 0, pair) == 0);
    gw_events_set_socket (hub, stream, pair [0]);
    CHECK (gw_events_cut_all (hub) == 1);
    char byte;
    CHECK (read (pair [1], &byte, 1) == 0);
    CHECK (send (pair [0], "x", 1, MSG_NOSIGNAL) == -1);
    CHECK (gw_events_cut_all (hub) == 0);       //  Once
    gw_events_close (hub, &stream);
    close (pair [0]);
    close (pair [1]);
    gw_stream_t *other = gw_events_open (hub, &all, NULL);
    CHECK (other);
    CHECK (socketpair (AF_UNIX, SOCK_STREAM, 0, pair) == 0);
    gw_events_set_socket (hub, other, pair [0]);
    gw_events_close (hub, &other);
    CHECK (gw_events_cut_all (hub) == 0);
    CHECK (send (pair [0], "x", 1, MSG_NOSIGNAL) == 1);
    close (pair [0]);
    close (pair [1]);
    gw_events_destroy (&hub);
    CHECK (hub == NULL);
    s_fake_stop (&fake, &link);
    s_test_full_stream_replay ();
    if (verbose)
        printf ("OK\n");
}

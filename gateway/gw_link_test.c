/*  gw_link_test.c - gw_link's self test: a ROUTER in this process plays the
    broker, and the link is driven through its public API only.  */
#include "gw_link.h"
#include "bm_selftest.h"

#include "gw_wire.h"

#include "bm_codec.h"
#include "bm_codec_batch.h"
#include "bm_config.h"
#include "bm_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

//  --------------------------------------------------------------------------
//  Self test: a ROUTER in this process plays the broker.  Checks wait for
//  events (a reply, a state) within generous deadlines; the only times
//  compared are lower bounds the link guarantees (it never gives up before
//  a timeout) and "at once" against a connect timeout far longer.

#define CHECK(cond) BM_CHECK (cond)

#define S_CONNECT_MS    2000            //  The links' connect timeout
#define S_PATIENCE_MS   30000           //  Request timeout: never reached

typedef struct {
    zsock_t *router;
    atomic_bool stop;
    pthread_t thread;
    atomic_int groups;                  //  SUBMIT_MANYs seen
} s_fake_t;

//  ACCEPTED {req?, jobId: "j<item>", duplicate: false}: the job id names
//  the "req" the SUBMIT body held (a group's items keep theirs).
static void
s_fake_accepted (bm_packer_t *packer, bool has_req, int64_t req, int64_t item)
{
    bm_codec_accepted_t accepted = { .has_req = has_req, .req = req };
    snprintf (accepted.job_id, sizeof accepted.job_id, "j%lld", (long long) item);
    bm_codec_accepted_encode (&accepted, packer);
}

//  SUBMIT: ACCEPTED; SUBMIT_MANY: ACCEPTED_MANY, the same per item.
static void
s_fake_submit (s_fake_t *fake, zframe_t *identity, const bm_msg_t *msg)
{
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_error_t error;
    int64_t req;
    if (bm_msg_command (msg) == BM_SUBMIT) {
        CHECK (bm_obj_int (bm_msg_body (msg), "req", &req));
        s_fake_accepted (&packer, true, req, req);
    }
    else {
        atomic_fetch_add (&fake->groups, 1);
        bm_codec_batch_t items;
        CHECK (bm_codec_batch_decode (msg, &items, &error) == 0 && items.count >= 2);
        bm_codec_batch_begin (&packer, true, items.req, items.count);
        bm_msg_t *item = bm_msg_new ();
        while (bm_codec_batch_next (&items, item, &error) == 1) {
            CHECK (bm_obj_int (bm_msg_body (item), "req", &req));
            s_fake_accepted (&packer, false, 0, req);
        }
        bm_msg_destroy (&item);
    }
    bm_msg_send (fake->router, identity, BM_CLIENT_HEADER,
                 bm_msg_command (msg) == BM_SUBMIT ? BM_ACCEPTED : BM_ACCEPTED_MANY,
                 packer.sbuf.data, packer.sbuf.size);
    bm_packer_destroy (&packer);
}

//  Answers PING with REPLY {req}, SUBMIT and SUBMIT_MANY (s_fake_submit);
//  never answers STATUS.
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
        if (msg && (bm_msg_command (msg) == BM_SUBMIT || bm_msg_command (msg) == BM_SUBMIT_MANY))
            s_fake_submit (fake, identity, msg);
        else
        if (msg && bm_msg_command (msg) == BM_PING
        &&  bm_codec_request_decode (msg, &ping, &error) == 0 && ping.has_req) {
            size_t size;
            char *body = gw_wire_req_body (ping.req, &size);
            CHECK (body);
            bm_msg_send (fake->router, identity, BM_CLIENT_HEADER, BM_REPLY, body, size);
            free (body);
        }
        bm_msg_destroy (&msg);
        zframe_destroy (&identity);
        zmsg_destroy (&frames);
    }
    return NULL;
}

//  Bind a fake broker at endpoint; returns the port bound (0 for ipc).
static int
s_fake_start (s_fake_t *fake, const char *endpoint)
{
    fake->router = zsock_new (ZMQ_ROUTER);
    CHECK (fake->router);
    zsock_set_linger (fake->router, 0);
    int port = zsock_bind (fake->router, "%s", endpoint);
    CHECK (port >= 0);
    atomic_init (&fake->stop, false);
    atomic_init (&fake->groups, 0);
    CHECK (pthread_create (&fake->thread, NULL, s_fake_thread, fake) == 0);
    return port;
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
    char *body = gw_wire_req_body (req, &size);
    CHECK (body);
    if (req_out)
        *req_out = req;
    return gw_link_request (link, req, command, body, size, timeout_ms);
}

//  Wait (bounded) until the link's monitor says connected, or not.
static void
s_await_connected (gw_link_t *link, bool connected)
{
    int64_t deadline = bm_mono_ms () + S_PATIENCE_MS;
    while (gw_link_connected (link) != connected && bm_mono_ms () < deadline)
        zclock_sleep (10);
    CHECK (gw_link_connected (link) == connected);
}

//  A PING gets its REPLY.
static void
s_check_ping (gw_link_t *link)
{
    bm_msg_t *reply = s_ask (link, BM_PING, S_PATIENCE_MS, NULL);
    CHECK (reply && bm_msg_command (reply) == BM_REPLY);
    bm_msg_destroy (&reply);
}

//  Start the fake broker at endpoint; the link connects, a PING works.
static void
s_broker_up (s_fake_t *fake, const char *endpoint, gw_link_t *link)
{
    s_fake_start (fake, endpoint);
    s_await_connected (link, true);
    s_check_ping (link);
}

//  A client thread: PINGs (each answered REPLY with its req) or SUBMITs
//  (each answered ACCEPTED with its req and its own job, though the link
//  sends them in groups).
typedef struct {
    gw_link_t *link;
    int command;                        //  BM_PING or BM_SUBMIT
    int count;
} s_client_t;

static void *
s_client_thread (void *arg)
{
    s_client_t *client = (s_client_t *) arg;
    for (int i = 0; i < client->count; i++) {
        int64_t req;
        bm_msg_t *reply = s_ask (client->link, client->command, S_PATIENCE_MS, &req);
        bm_codec_error_t error;
        if (client->command == BM_PING) {
            bm_codec_request_t answer;
            CHECK (reply && bm_msg_command (reply) == BM_REPLY);
            CHECK (bm_codec_request_decode (reply, &answer, &error) == 0 && answer.req == req);
        }
        else {
            bm_codec_accepted_t accepted;
            char want [32];
            snprintf (want, sizeof want, "j%lld", (long long) req);
            CHECK (reply && bm_msg_command (reply) == BM_ACCEPTED);
            CHECK (bm_codec_accepted_decode (reply, &accepted, &error) == 0
                   && accepted.req == req && streq (accepted.job_id, want));
        }
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

    //  A broker on an ephemeral TCP port: many threads, many requests,
    //  each gets its own answer.
    s_fake_t fake;
    int port = s_fake_start (&fake, "tcp://127.0.0.1:*");
    CHECK (port > 0);
    char endpoint [PATH_MAX + 16];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    gw_link_t *link = gw_link_new (endpoint, S_CONNECT_MS);
    CHECK (link);
    s_await_connected (link, true);
    pthread_t threads [32];
    s_client_t pings = { link, BM_PING, 200 };
    for (int i = 0; i < 8; i++)
        CHECK (pthread_create (&threads [i], NULL, s_client_thread, &pings) == 0);
    for (int i = 0; i < 8; i++)
        pthread_join (threads [i], NULL);

    //  Concurrent SUBMITs are coalesced into SUBMIT_MANYs (group commit:
    //  what queues while the link is busy goes together), and each caller
    //  still gets its own ACCEPTED.
    s_client_t submits = { link, BM_SUBMIT, 100 };
    for (int i = 0; i < 32; i++)
        CHECK (pthread_create (&threads [i], NULL, s_client_thread, &submits) == 0);
    for (int i = 0; i < 32; i++)
        pthread_join (threads [i], NULL);
    CHECK (atomic_load (&fake.groups) > 0);
    if (verbose)
        printf ("(%d SUBMIT_MANY for 3200 SUBMITs) ", atomic_load (&fake.groups));

    //  The last group's answer starts a gather for its callers' next
    //  SUBMITs; they do not come (the threads are gone): a lone SUBMIT is
    //  still sent, within the gather's bound, long before any timeout.
    s_client_t lone = { link, BM_SUBMIT, 1 };
    int64_t t_lone = bm_mono_ms ();
    s_client_thread (&lone);
    CHECK (bm_mono_ms () - t_lone < S_CONNECT_MS);

    //  No answer: ETIMEDOUT after the timeout, not before; the link still
    //  works.
    int64_t t0 = bm_mono_ms ();
    bm_msg_t *reply = s_ask (link, BM_STATUS, 200, NULL);
    CHECK (!reply && errno == ETIMEDOUT && bm_mono_ms () - t0 >= 200);
    s_check_ping (link);
    gw_link_destroy (&link);
    CHECK (link == NULL);
    s_fake_stop (&fake);

    //  A broker that comes and goes at one endpoint: an ipc path of our
    //  own, so that nobody else can take it while it is down.
    char dir [] = "/tmp/gw_link_test.XXXXXX";
    CHECK (mkdtemp (dir));
    snprintf (endpoint, sizeof endpoint, "ipc://%s/broker", dir);

    //  No broker yet: a request waits the connect timeout (counted from
    //  when the link went down: its start), then ENOTCONN; after that, at
    //  once.
    t0 = bm_mono_ms ();
    link = gw_link_new (endpoint, S_CONNECT_MS);
    CHECK (link);
    reply = s_ask (link, BM_PING, S_PATIENCE_MS, NULL);
    CHECK (!reply && errno == ENOTCONN && bm_mono_ms () - t0 >= S_CONNECT_MS);
    t0 = bm_mono_ms ();
    reply = s_ask (link, BM_PING, S_PATIENCE_MS, NULL);
    CHECK (!reply && errno == ENOTCONN && bm_mono_ms () - t0 < S_CONNECT_MS);

    //  Broker up: answers.
    s_broker_up (&fake, endpoint, link);

    //  The broker goes away: ENOTCONN within the connect timeout (not the
    //  request timeout); back when it is back.
    s_fake_stop (&fake);
    s_await_connected (link, false);
    t0 = bm_mono_ms ();
    reply = s_ask (link, BM_PING, S_PATIENCE_MS, NULL);
    CHECK (!reply && errno == ENOTCONN && bm_mono_ms () - t0 < S_PATIENCE_MS);
    s_broker_up (&fake, endpoint, link);

    gw_link_destroy (&link);
    CHECK (link == NULL);
    s_fake_stop (&fake);
    snprintf (endpoint, sizeof endpoint, "%s/broker", dir);
    unlink (endpoint);                  //  libzmq may have removed it already
    CHECK (rmdir (dir) == 0);
    if (verbose)
        printf ("OK\n");
}

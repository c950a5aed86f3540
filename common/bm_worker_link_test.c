/*  bm_worker_link_test.c - bm_worker_link's self test: a link in poll mode
    against a real ROUTER socket playing the broker.  */
#include "bm_worker_link.h"
#include "bm_codec_batch.h"
#include "bm_config.h"
#include "bm_log.h"
#include "bm_selftest.h"

#include <string.h>
#include <unistd.h>

typedef struct {
    int jobs;                           //  JOBs handed to us
    int cancels;
    char last_job [BM_MAX_ID_LEN + 1];
    int64_t last_attempt;
    size_t last_payload_size;
} s_test_state_t;

static int
s_test_job (void *arg, const bm_codec_job_t *job)
{
    s_test_state_t *state = (s_test_state_t *) arg;
    state->jobs++;
    snprintf (state->last_job, sizeof state->last_job, "%s", job->job_id);
    state->last_attempt = job->attempt;
    state->last_payload_size = job->payload.size;
    return 0;
}

static int
s_test_cancel (void *arg, const bm_codec_job_notice_t *cancel)
{
    (void) cancel;
    ((s_test_state_t *) arg)->cancels++;
    return 0;
}

//  The broker's side: the next message from the worker (its identity in
//  *identity, caller destroys both), within 5 s.
static bm_msg_t *
s_test_recv (zsock_t *router, zframe_t **identity)
{
    zpoller_t *poller = zpoller_new (router, NULL);
    bool ready = zpoller_wait (poller, 5000) != NULL;
    zpoller_destroy (&poller);
    BM_CHECK (ready);
    zmsg_t *frames = zmsg_recv (router);
    BM_CHECK (frames);
    *identity = zmsg_pop (frames);
    const char *code;
    char reason [128];
    bm_msg_t *msg = bm_msg_decode (frames, BM_MAX_FRAME_BYTES, &code, reason, sizeof reason);
    zmsg_destroy (&frames);
    BM_CHECK (msg && bm_msg_peer (msg) == BM_PEER_WORKER);
    return msg;
}

//  Dispatch on the link until the handler counts move or 5 s pass.
static void
s_test_pump (bm_worker_link_t *link, s_test_state_t *state, int jobs, int cancels)
{
    int64_t deadline = bm_mono_ms () + 5000;
    while ((state->jobs < jobs || state->cancels < cancels) && bm_mono_ms () < deadline) {
        zpoller_t *poller = zpoller_new (bm_worker_link_socket (link), NULL);
        zpoller_wait (poller, 100);
        zpoller_destroy (&poller);
        bm_worker_link_dispatch (link);
    }
    BM_CHECK (state->jobs == jobs && state->cancels == cancels);
}

//  Tick and dispatch the link until the broker's side has a message, or
//  ms pass: that message (its identity in *identity), or NULL.
static bm_msg_t *
s_test_tick_recv (bm_worker_link_t *link, zsock_t *router, int64_t ms, zframe_t **identity)
{
    int64_t deadline = bm_mono_ms () + ms;
    zpoller_t *poller = zpoller_new (router, NULL);
    bool ready = false;
    while (!ready && bm_mono_ms () < deadline) {
        bm_worker_link_tick (link);
        if (bm_worker_link_socket (link))
            bm_worker_link_dispatch (link);
        ready = zpoller_wait (poller, 20) != NULL;
    }
    zpoller_destroy (&poller);
    return ready ? s_test_recv (router, identity) : NULL;
}

//  Broker -> worker: DISCONNECT {reason: "replaced", by}.
static void
s_test_replace (zsock_t *router, zframe_t *identity, bm_packer_t *packer)
{
    bm_codec_disconnect_t replaced = { .reason = { "replaced", 8 },
                                       .by = { "pid 7 at 10.0.0.2", 17 } };
    bm_codec_disconnect_encode (&replaced, packer);
    BM_CHECK (bm_msg_send (router, identity, BM_WORKER_HEADER, BM_DISCONNECT,
                           packer->sbuf.data, packer->sbuf.size) == 0);
    bm_packer_reset (packer);
}

void
bm_worker_link_test (bool verbose)
{
    if (verbose)
        printf (" * bm_worker_link: ");
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    BM_CHECK (router);
    int port = zsock_bind (router, "tcp://127.0.0.1:*");
    BM_CHECK (port > 0);
    char endpoint [64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", port);
    const char *types [] = { "python", "node" };
    bm_worker_link_config_t config = { .endpoint = endpoint, .name = "test-worker",
        .types = types, .type_count = 2, .credit = 3, .heartbeat_ms = 1000, .liveness = 3 };
    bm_worker_link_handlers_t handlers = { .job_decoded = s_test_job,
                                           .cancel_decoded = s_test_cancel };
    s_test_state_t state = { 0 };
    bm_worker_link_t *link = bm_worker_link_new (&config, NULL, &handlers, &state);
    BM_CHECK (link);

    //  Worker -> broker: READY {name, types, credit, pid}
    zframe_t *identity;
    bm_msg_t *msg = s_test_recv (router, &identity);
    BM_CHECK (bm_msg_command (msg) == BM_READY);
    bm_codec_ready_t ready;
    bm_codec_error_t error;
    BM_CHECK (bm_codec_ready_decode (msg, &ready, &error) == 0);
    BM_CHECK (streq (ready.name, "test-worker") && ready.type_count == 2
              && ready.credit == 3 && ready.has_pid && ready.pid == getpid ());
    bm_msg_destroy (&msg);

    //  Broker -> worker: JOB, reaches the handler decoded.
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_job_t job = { .job_id = "job-1", .bot_type = "python", .attempt = 2,
                           .timeout_ms = 1000, .deadline = 1,
                           .payload = { NULL, "\x91\x07", 2 } };
    bm_codec_job_encode (&job, &packer);
    BM_CHECK (bm_msg_send (router, identity, BM_WORKER_HEADER, BM_JOB,
                           packer.sbuf.data, packer.sbuf.size) == 0);
    bm_packer_reset (&packer);
    s_test_pump (link, &state, 1, 0);
    BM_CHECK (streq (state.last_job, "job-1") && state.last_attempt == 2
              && state.last_payload_size == 2);

    //  A JOB that does not decode (timeoutMs 0) never reaches the handler:
    //  the link answers DONE ok:false, error bad_request naming the field.
    job.timeout_ms = 0;
    snprintf (job.job_id, sizeof job.job_id, "job-bad");
    bm_codec_job_encode (&job, &packer);
    BM_CHECK (bm_msg_send (router, identity, BM_WORKER_HEADER, BM_JOB,
                           packer.sbuf.data, packer.sbuf.size) == 0);
    bm_packer_reset (&packer);
    zframe_destroy (&identity);
    int64_t deadline = bm_mono_ms () + 5000;
    zpoller_t *poller = zpoller_new (router, NULL);
    while (!zpoller_wait (poller, 10) && bm_mono_ms () < deadline)
        bm_worker_link_dispatch (link);
    zpoller_destroy (&poller);
    msg = s_test_recv (router, &identity);
    BM_CHECK (bm_msg_command (msg) == BM_DONE);
    bm_codec_done_t done;
    BM_CHECK (bm_codec_done_decode (msg, &done, &error) == 0);
    BM_CHECK (streq (done.job_id, "job-bad") && !done.ok
              && streq (done.error.code, "bad_request")
              && done.error.message.len > 0 && memmem (done.error.message.ptr,
                 done.error.message.len, "timeoutMs", 9));
    BM_CHECK (state.jobs == 1);
    bm_msg_destroy (&msg);

    //  CANCEL {jobId, reason}: decoded.
    bm_codec_job_notice_t cancel = { .job_id = "job-1", .reason = { "timeout", 7 } };
    bm_codec_job_notice_encode (&cancel, &packer);
    BM_CHECK (bm_msg_send (router, identity, BM_WORKER_HEADER, BM_WCANCEL,
                           packer.sbuf.data, packer.sbuf.size) == 0);
    bm_packer_reset (&packer);
    s_test_pump (link, &state, 1, 1);

    //  Worker -> broker: PROGRESS, DONE, RELEASE as the codec encodes them.
    bm_codec_progress_t progress = { .job_id = "job-1", .has_progress = true, .progress = 40 };
    BM_CHECK (bm_worker_link_send_progress (link, &progress) == 0);
    bm_codec_done_t finished = { .job_id = "job-1", .ok = true,
                                 .result = { NULL, "\xa2ok", 3 } };
    BM_CHECK (bm_worker_link_send_done (link, &finished) == 0);
    BM_CHECK (bm_worker_link_send_release (link, "job-2") == 0);
    BM_CHECK (bm_worker_link_send_lost (link, "job-3", 9) == 0);
    zframe_destroy (&identity);
    msg = s_test_recv (router, &identity);
    bm_codec_progress_t progress_back;
    BM_CHECK (bm_msg_command (msg) == BM_PROGRESS
              && bm_codec_progress_decode (msg, &progress_back, &error) == 0
              && progress_back.progress == 40);
    bm_msg_destroy (&msg);
    zframe_destroy (&identity);
    msg = s_test_recv (router, &identity);
    BM_CHECK (bm_msg_command (msg) == BM_DONE
              && bm_codec_done_decode (msg, &done, &error) == 0 && done.ok
              && done.result.size == 3 && memcmp (done.result.data, "\xa2ok", 3) == 0);
    bm_msg_destroy (&msg);
    zframe_destroy (&identity);
    msg = s_test_recv (router, &identity);
    bm_codec_job_notice_t release;
    BM_CHECK (bm_msg_command (msg) == BM_RELEASE
              && bm_codec_job_notice_decode (msg, &release, &error) == 0
              && streq (release.job_id, "job-2") && !release.reason.ptr && !release.lost
              && release.signal == 0);
    bm_msg_destroy (&msg);
    zframe_destroy (&identity);
    msg = s_test_recv (router, &identity);
    BM_CHECK (bm_msg_command (msg) == BM_RELEASE
              && bm_codec_job_notice_decode (msg, &release, &error) == 0
              && streq (release.job_id, "job-3") && release.lost && release.signal == 9);
    bm_msg_destroy (&msg);

    //  JOB_MANY: each job as if alone (the good one reaches the handler);
    //  the DONEs the link sends meanwhile (two jobs that do not decode)
    //  leave as one DONE_MANY.
    bm_codec_batch_begin (&packer, false, 0, 3);
    const char *many_ids [] = { "job-m1", "job-m2", "job-m3" };
    for (int i = 0; i < 3; i++) {
        snprintf (job.job_id, sizeof job.job_id, "%s", many_ids [i]);
        job.timeout_ms = i == 1 ? 1000 : 0;
        bm_codec_job_encode (&job, &packer);
    }
    BM_CHECK (bm_msg_send (router, identity, BM_WORKER_HEADER, BM_JOB_MANY,
                           packer.sbuf.data, packer.sbuf.size) == 0);
    bm_packer_reset (&packer);
    zframe_destroy (&identity);
    s_test_pump (link, &state, 2, 1);
    BM_CHECK (streq (state.last_job, "job-m2"));
    msg = s_test_recv (router, &identity);
    BM_CHECK (bm_msg_command (msg) == BM_DONE_MANY);
    bm_codec_batch_t items;
    BM_CHECK (bm_codec_batch_decode (msg, &items, &error) == 0 && items.count == 2);
    bm_msg_t *item = bm_msg_new ();
    const char *bad_ids [] = { "job-m1", "job-m3" };
    for (int i = 0; i < 2; i++) {
        BM_CHECK (bm_codec_batch_next (&items, item, &error) == 1);
        BM_CHECK (bm_codec_done_decode (item, &done, &error) == 0 && !done.ok
                  && streq (done.job_id, bad_ids [i]) && streq (done.error.code, "bad_request"));
    }
    bm_msg_destroy (&msg);
    zframe_destroy (&identity);

    //  The broker sends batches: DONEs held between hold and flush (a typed
    //  one and a raw one) leave as one DONE_MANY; a DONE outside goes alone.
    bm_worker_link_hold (link);
    bm_codec_done_t typed = { .ok = true };
    snprintf (typed.job_id, sizeof typed.job_id, "job-h1");
    BM_CHECK (bm_worker_link_send_done (link, &typed) == 0);
    snprintf (typed.job_id, sizeof typed.job_id, "job-h2");
    bm_codec_done_encode (&typed, &packer);
    BM_CHECK (bm_worker_link_send (link, BM_DONE, packer.sbuf.data, packer.sbuf.size, NULL) == 0);
    bm_packer_reset (&packer);
    bm_worker_link_flush (link);
    msg = s_test_recv (router, &identity);
    BM_CHECK (bm_msg_command (msg) == BM_DONE_MANY);
    BM_CHECK (bm_codec_batch_decode (msg, &items, &error) == 0 && items.count == 2);
    for (int i = 0; i < 2; i++) {
        BM_CHECK (bm_codec_batch_next (&items, item, &error) == 1);
        BM_CHECK (bm_codec_done_decode (item, &done, &error) == 0 && done.ok
                  && streq (done.job_id, i ? "job-h2" : "job-h1"));
    }
    bm_msg_destroy (&msg);
    zframe_destroy (&identity);
    snprintf (typed.job_id, sizeof typed.job_id, "job-h3");
    BM_CHECK (bm_worker_link_send_done (link, &typed) == 0);
    msg = s_test_recv (router, &identity);
    BM_CHECK (bm_msg_command (msg) == BM_DONE
              && bm_codec_done_decode (msg, &done, &error) == 0 && streq (done.job_id, "job-h3"));
    bm_msg_destroy (&item);
    bm_msg_destroy (&msg);
    zframe_destroy (&identity);

    //  DISCONNECT replaced on a live link: READY again on a new socket,
    //  after a wait (1 s at most the first time).
    BM_CHECK (bm_worker_link_send_simple (link, BM_HEARTBEAT, NULL, NULL) == 0);
    msg = s_test_recv (router, &identity);
    bm_msg_destroy (&msg);
    s_test_replace (router, identity, &packer);
    zframe_destroy (&identity);
    msg = s_test_tick_recv (link, router, 5000, &identity);
    BM_CHECK (msg && bm_msg_command (msg) == BM_READY);
    bm_msg_destroy (&msg);
    //  The owner shuts down, and is replaced again: no READY any more (it
    //  would take the name back from the process that holds it now), and
    //  no socket, past the 2 s a second replacement waits at most.
    bm_worker_link_stopping (link);
    s_test_replace (router, identity, &packer);
    zframe_destroy (&identity);
    msg = s_test_tick_recv (link, router, 2500, &identity);
    BM_CHECK (msg == NULL);
    BM_CHECK (bm_worker_link_socket (link) == NULL);

    bm_packer_destroy (&packer);
    bm_worker_link_destroy (&link, 0);
    BM_CHECK (link == NULL);
    zsock_destroy (&router);
    if (verbose)
        printf ("OK\n");
}

/*  bm_bench.c - the botmesh benchmark client: a pipelined BMC01 driver.

        bm-bench throughput --endpoint EP [--jobs 50000] [--window 2000]
                            [--types python | --type-count M --type-prefix P]
                            [--wait-workers K] [--warmup 200] [--batch N]
        bm-bench latency    --endpoint EP [--jobs 2000] [--types python] [--warmup 100]
        bm-bench fill       --endpoint EP --types T [--jobs 100000] [--window 5000]
        bm-bench ping       --endpoint EP [--wait-workers K]

    throughput: submits jobs with ~100-byte payloads and notify: true over one
    DEALER socket, keeping at most --window jobs submitted and not yet ended,
    and counts the RESULT pushes.  jobs/s runs from the first SUBMIT to the
    last RESULT.  Types are used round-robin.  --batch N: SUBMIT_MANY of N
    jobs each (protocol.md 4a) instead of one SUBMIT per job, at most
    --window jobs in flight as before.
    latency: one job at a time; submit-to-RESULT p50/p99.
    fill: submits jobs without notify to a type no worker serves and waits for
    every ACCEPTED (queued jobs for the memory case).
    ping: waits until the broker answers PING (or lists K workers in STATS).

    Each prints one line for bench/run.sh, e.g.
        RESULT jobs=50000 seconds=1.234 rate=40518 failed=0

    Reads no environment variables.  */
#include "bench_util.h"
#include "bm_client.h"
#include "bm_codec_batch.h"
#include "bm_proto.h"

#include <zmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *mode;               //  throughput, latency, fill
    int64_t delay_ms;               //  fill --delay-ms: delayed jobs
    const char *endpoint;           //  Broker endpoint
    int64_t jobs;                   //  Jobs to time
    int64_t window;                 //  Jobs in flight at most
    int64_t warmup;                 //  Jobs before timing
    int64_t wait_workers;           //  Workers to wait for, 0 = none
    int64_t timeout_s;              //  Longest silence before giving up
    int64_t batch;                  //  Jobs per SUBMIT_MANY; 1: SUBMIT
    bench_types_t types;            //  Bot types, round-robin
} s_opts_t;

//  Counts of one phase.
typedef struct {
    int64_t sent, accepted, completed, failed;
    int64_t last_accept_ns;
} s_counts_t;

static void
s_usage (void)
{
    printf ("usage: bm-bench throughput --endpoint EP [--jobs 50000] [--window 2000]\n"
            "                           [--types a,b,... | --type-count M --type-prefix P]\n"
            "                           [--wait-workers K] [--warmup 200] [--timeout 30]\n"
            "                           [--batch N (SUBMIT_MANY of N jobs, 1..1000)]\n"
            "       bm-bench latency    --endpoint EP [--jobs 2000] [--types python] [--warmup 100]\n"
            "       bm-bench fill       --endpoint EP --types T [--jobs 100000] [--window 5000]\n"
            "                           [--delay-ms N]  (delayed jobs, due in N ms)\n"
            "       bm-bench ping       --endpoint EP [--wait-workers K] [--timeout 30]\n"
            "A pipelined BMC01 driver (docs/protocol.md).  Prints one RESULT line.\n"
            "Reads no environment variables.\n");
}

//  SUBMIT {req, botType, payload, notify}
static void
s_submit (void *sock, bench_submit_buf_t *buf, int64_t req, const char *type, bool notify)
{
    bench_pack_submit (buf, req, type, notify);
    unsigned char cmd = BM_SUBMIT;
    if (zmq_send (sock, BM_CLIENT_HEADER, BM_HEADER_LEN, ZMQ_SNDMORE) < 0
    ||  zmq_send (sock, &cmd, 1, ZMQ_SNDMORE) < 0
    ||  zmq_send (sock, buf->body.sbuf.data, buf->body.sbuf.size, 0) < 0) {
        fprintf (stderr, "bm-bench: send: %s\n", zmq_strerror (zmq_errno ()));
        exit (1);
    }
}

//  SUBMIT_MANY {req, jobs: [count SUBMIT bodies]}, the jobs numbered from
//  first; batch is kept between calls.
static void
s_submit_many (void *sock, bench_submit_buf_t *buf, bm_packer_t *batch, int64_t req,
               const s_opts_t *o, int64_t first, int64_t count, bool notify)
{
    bm_packer_reset (batch);
    bm_codec_batch_begin (batch, true, req, (size_t) count);
    for (int64_t i = 0; i < count; i++) {
        bench_pack_submit (buf, first + i, o->types.names [(first + i) % o->types.count], notify);
        bm_packer_write_raw (batch, buf->body.sbuf.data, buf->body.sbuf.size);
    }
    unsigned char cmd = BM_SUBMIT_MANY;
    if (bm_packer_failed (batch)) {
        fprintf (stderr, "bm-bench: out of memory\n");
        exit (1);
    }
    if (zmq_send (sock, BM_CLIENT_HEADER, BM_HEADER_LEN, ZMQ_SNDMORE) < 0
    ||  zmq_send (sock, &cmd, 1, ZMQ_SNDMORE) < 0
    ||  zmq_send (sock, batch->sbuf.data, batch->sbuf.size, 0) < 0) {
        fprintf (stderr, "bm-bench: send: %s\n", zmq_strerror (zmq_errno ()));
        exit (1);
    }
}

//  The messages the replies are parsed into, one for the whole run (no
//  allocation per message once warm): a batch is parsed shallow, its
//  items one after the other into the item message (bm_msg_parse).
static bm_msg_t *s_reply, *s_item;

static bm_msg_t *
s_reply_msg (void)
{
    if (!s_reply) {
        s_reply = bm_msg_new ();
        bm_msg_set_shallow_batches (s_reply, true);
    }
    return s_reply;
}

static bm_msg_t *
s_item_msg (void)
{
    if (!s_item)
        s_item = bm_msg_new ();
    return s_item;
}

static void
s_reply_msgs_free (void)
{
    bm_msg_destroy (&s_reply);
    bm_msg_destroy (&s_item);
}

//  Count one RESULT: completed, or failed.
static void
s_count_result (const bm_msg_t *msg, s_counts_t *c)
{
    bm_codec_job_reply_t result;
    bm_codec_error_t error;
    if (bm_codec_result_decode (msg, &result, &error) == 0 && streq (result.job.state, "completed"))
        c->completed++;
    else
        c->failed++;
}

//  Count the RESULTs of a RESULT_MANY (the broker sends them to a client
//  that has sent SUBMIT_MANY).
static void
s_count_result_many (const bm_msg_t *msg, s_counts_t *c)
{
    bm_codec_batch_t batch;
    bm_codec_error_t error;
    if (bm_codec_batch_decode (msg, &batch, &error)) {
        fprintf (stderr, "bm-bench: bad RESULT_MANY: %s\n", error.message);
        exit (1);
    }
    bm_msg_t *item = s_item_msg ();
    int rc;
    while ((rc = bm_codec_batch_next (&batch, item, &error)) != 0) {
        if (rc > 0)
            s_count_result (item, c);
        else
            c->failed++;
    }
}

//  Count the outcomes of an ACCEPTED_MANY; exits on a refused job.
static void
s_count_accepted_many (const bm_msg_t *msg, s_counts_t *c)
{
    bm_codec_batch_t batch;
    bm_codec_error_t error;
    if (bm_codec_batch_decode (msg, &batch, &error)) {
        fprintf (stderr, "bm-bench: bad ACCEPTED_MANY: %s\n", error.message);
        exit (1);
    }
    bm_msg_t *item = s_item_msg ();
    int rc;
    while ((rc = bm_codec_batch_next (&batch, item, &error)) != 0) {
        bm_codec_outcome_t outcome;
        if (rc < 0 || bm_codec_outcome_decode (item, &outcome, &error)) {
            fprintf (stderr, "bm-bench: bad ACCEPTED_MANY item: %s\n", error.message);
            exit (1);
        }
        if (!outcome.accepted) {
            fprintf (stderr, "bm-bench: a job of a SUBMIT_MANY rejected: %s: %.*s (after %lld accepted)\n",
                     outcome.rejected.code, (int) (outcome.rejected.message.len > 255 ? 255
                                                   : outcome.rejected.message.len),
                     outcome.rejected.message.ptr, (long long) c->accepted);
            exit (1);
        }
        c->accepted++;
    }
    c->last_accept_ns = bench_now_ns ();
}

//  Receive one message (blocking unless dontwait) and count it.  Returns
//  0 when nothing was there, 1 when one was counted.  Exits on REJECTED.
static int
s_receive (void *sock, s_counts_t *c, bool dontwait)
{
    zmq_msg_t parts [3];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, sock, dontwait && n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            zmq_msg_close (&part);
            for (int i = 0; i < n; i++)
                zmq_msg_close (&parts [i]);
            return 0;
        }
        more = zmq_msg_more (&part);
        if (n < 3)
            parts [n++] = part;
        else
            zmq_msg_close (&part);
    }
    int counted = 1;
    if (n != 3) {
        fprintf (stderr, "bm-bench: a message of %d frames from the broker\n", n);
        counted = 0;
    }
    else
    if (zmq_msg_size (&parts [1]) == 1 && *(unsigned char *) zmq_msg_data (&parts [1]) == BM_ACCEPTED
    &&  zmq_msg_size (&parts [0]) == BM_HEADER_LEN
    &&  memcmp (zmq_msg_data (&parts [0]), BM_CLIENT_HEADER, BM_HEADER_LEN) == 0) {
        //  ACCEPTED: counting is all we need (the driver does not match req)
        c->accepted++;
        c->last_accept_ns = bench_now_ns ();
    }
    else {
        const char *code;
        char reason [256];
        bm_msg_t *msg = s_reply_msg ();
        if (bm_msg_parse (msg, zmq_msg_data (&parts [0]), zmq_msg_size (&parts [0]),
                          zmq_msg_data (&parts [1]), zmq_msg_size (&parts [1]),
                          zmq_msg_data (&parts [2]), zmq_msg_size (&parts [2]),
                          BM_MAX_FRAME_BYTES, &code, reason, sizeof reason)) {
            fprintf (stderr, "bm-bench: bad message from the broker: %s %s\n", code, reason);
            counted = 0;
        }
        else {
            int cmd = bm_msg_command (msg);
            bm_codec_error_t error;
            if (cmd == BM_ACCEPTED) {
                c->accepted++;
                c->last_accept_ns = bench_now_ns ();
            }
            else
            if (cmd == BM_ACCEPTED_MANY)
                s_count_accepted_many (msg, c);
            else
            if (cmd == BM_RESULT)
                s_count_result (msg, c);
            else
            if (cmd == BM_RESULT_MANY)
                s_count_result_many (msg, c);
            else
            if (cmd == BM_REJECTED) {
                bm_codec_rejected_t rejected;
                if (bm_codec_rejected_decode (msg, &rejected, &error))
                    fprintf (stderr, "bm-bench: SUBMIT rejected (bad body: %s)\n", error.message);
                else
                    fprintf (stderr, "bm-bench: SUBMIT rejected: %s: %.*s (after %lld accepted)\n",
                             rejected.code, (int) (rejected.message.len > 255 ? 255
                                                   : rejected.message.len),
                             rejected.message.ptr, (long long) c->accepted);
                exit (1);
            }
            else
                counted = 0;
        }
    }
    for (int i = 0; i < n; i++)
        zmq_msg_close (&parts [i]);
    return counted;
}

//  Wait until the broker answers PING and, if asked, lists enough workers.
static void
s_wait_broker (const s_opts_t *o)
{
    bm_client_t *client = bm_client_new (o->endpoint);
    if (!client) {
        fprintf (stderr, "bm-bench: cannot connect to %s\n", o->endpoint);
        exit (1);
    }
    int64_t deadline = bench_now_ns () + o->timeout_s * 1000000000LL;
    bool ready = false;
    while (!ready && !bench_stop && bench_now_ns () < deadline) {
        if (o->wait_workers > 0)
            ready = bench_broker_workers (client, 1000) >= o->wait_workers;
        else {
            bm_msg_t *reply = bench_broker_request (client, BM_PING, 1000);
            ready = reply != NULL;
            bm_msg_destroy (&reply);
        }
        if (!ready)
            zclock_sleep (50);
    }
    bm_client_destroy (&client);
    if (!ready) {
        fprintf (stderr, "bm-bench: broker at %s not ready (%s) within %llds\n", o->endpoint,
                 o->wait_workers > 0 ? "workers" : "PING", (long long) o->timeout_s);
        exit (1);
    }
}

//  Submit jobs keeping at most window in flight until `jobs` have ended
//  (notify) or been accepted (!notify).  Returns the nanoseconds taken.
static int64_t
s_pipeline (void *sock, const s_opts_t *o, int64_t jobs, int64_t window, bool notify,
            int64_t *req, s_counts_t *c)
{
    bench_submit_buf_t buf;
    bench_submit_buf_init (&buf);
    buf.delay_ms = o->delay_ms;
    bm_packer_t batch;
    bm_packer_init (&batch);
    memset (c, 0, sizeof *c);
    zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
    int64_t per = o->batch < window ? o->batch : window;
    int64_t t0 = bench_now_ns ();
    int64_t last_progress = t0;
    while (!bench_stop) {
        int64_t ended = notify ? c->completed + c->failed : c->accepted;
        if (ended >= jobs)
            break;
        if (per > 1)
            //  Whole batches (the last one what is left) while they fit the window
            while (c->sent < jobs
               &&  c->sent - ended + (jobs - c->sent < per ? jobs - c->sent : per) <= window) {
                int64_t n = jobs - c->sent < per ? jobs - c->sent : per;
                s_submit_many (sock, &buf, &batch, ++*req, o, c->sent, n, notify);
                c->sent += n;
            }
        else
            while (c->sent < jobs && c->sent - ended < window) {
                s_submit (sock, &buf, ++*req, o->types.names [c->sent % o->types.count], notify);
                c->sent++;
            }
        int rc = zmq_poll (&item, 1, 200);
        if (rc > 0) {
            while (s_receive (sock, c, true))
                ;
            last_progress = bench_now_ns ();
        }
        else
        if (bench_now_ns () - last_progress > o->timeout_s * 1000000000LL) {
            fprintf (stderr, "bm-bench: no progress for %llds: sent %lld accepted %lld "
                     "completed %lld failed %lld\n", (long long) o->timeout_s,
                     (long long) c->sent, (long long) c->accepted,
                     (long long) c->completed, (long long) c->failed);
            exit (1);
        }
    }
    int64_t t1 = bench_now_ns ();
    bench_submit_buf_destroy (&buf);
    bm_packer_destroy (&batch);
    //  Straggling ACCEPTED may follow the last RESULT (replies are unordered)
    if (notify)
        while (c->accepted < c->sent && zmq_poll (&item, 1, 1000) > 0)
            s_receive (sock, c, true);
    return t1 - t0;
}

static void *
s_connect (void *ctx, const char *endpoint)
{
    void *sock = zmq_socket (ctx, ZMQ_DEALER);
    int hwm = 1000000, linger = 0;
    zmq_setsockopt (sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect (sock, endpoint)) {
        fprintf (stderr, "bm-bench: connect %s: %s\n", endpoint, zmq_strerror (zmq_errno ()));
        exit (1);
    }
    return sock;
}

static int
s_throughput (const s_opts_t *o, bool notify)
{
    s_wait_broker (o);
    void *ctx = zmq_ctx_new ();
    void *sock = s_connect (ctx, o->endpoint);
    int64_t req = 0;
    s_counts_t c;
    if (notify && o->warmup > 0)
        s_pipeline (sock, o, o->warmup, o->window, true, &req, &c);
    int64_t ns = s_pipeline (sock, o, o->jobs, o->window, notify, &req, &c);
    double secs = (double) ns / 1e9;
    if (notify)
        printf ("RESULT jobs=%lld seconds=%.3f rate=%.0f failed=%lld\n",
                (long long) (c.completed + c.failed), secs,
                (double) c.completed / secs, (long long) c.failed);
    else {
        //  The payload's encoded size, for "memory beyond the payload"
        bm_packer_t payload;
        bm_packer_init (&payload);
        bench_pack_payload (&payload.pk, req);
        printf ("RESULT accepted=%lld seconds=%.3f rate=%.0f payload_bytes=%zu\n",
                (long long) c.accepted, secs, (double) c.accepted / secs, payload.sbuf.size);
        bm_packer_destroy (&payload);
    }
    zmq_close (sock);
    zmq_ctx_term (ctx);
    return bench_stop || c.failed ? 1 : 0;
}

static int
s_latency (const s_opts_t *o)
{
    s_wait_broker (o);
    void *ctx = zmq_ctx_new ();
    void *sock = s_connect (ctx, o->endpoint);
    bench_submit_buf_t buf;
    bench_submit_buf_init (&buf);
    bench_lat_t lat;
    bench_lat_init (&lat, (size_t) o->jobs);
    s_counts_t c;
    memset (&c, 0, sizeof c);
    zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
    for (int64_t i = 0; i < o->warmup + o->jobs && !bench_stop; i++) {
        int64_t ended = c.completed + c.failed;
        int64_t t0 = bench_now_ns ();
        s_submit (sock, &buf, i + 1, o->types.names [i % o->types.count], true);
        while (c.completed + c.failed == ended && !bench_stop) {
            if (zmq_poll (&item, 1, (long) o->timeout_s * 1000) <= 0) {
                fprintf (stderr, "bm-bench: job %lld: no RESULT within %llds\n",
                         (long long) i, (long long) o->timeout_s);
                exit (1);
            }
            s_receive (sock, &c, false);
        }
        if (i >= o->warmup)
            bench_lat_add (&lat, (double) (bench_now_ns () - t0) / 1000.0);
    }
    double p50 = bench_lat_pct (&lat, 50), p99 = bench_lat_pct (&lat, 99);
    double max = lat.count ? lat.us [lat.count - 1] : 0;
    printf ("RESULT jobs=%zu p50_us=%.0f p99_us=%.0f max_us=%.0f failed=%lld\n",
            lat.count, p50, p99, max, (long long) c.failed);
    bench_lat_free (&lat);
    bench_submit_buf_destroy (&buf);
    zmq_close (sock);
    zmq_ctx_term (ctx);
    return bench_stop || c.failed ? 1 : 0;
}

int
main (int argc, char *argv [])
{
    int rc = bench_mode_arg (argc, argv, s_usage);
    if (rc >= 0)
        return rc;
    s_opts_t o;
    memset (&o, 0, sizeof o);
    o.mode = argv [1];
    bool latency = !strcmp (o.mode, "latency"), fill = !strcmp (o.mode, "fill");
    o.jobs = latency ? 2000 : fill ? 100000 : 50000;
    o.window = fill ? 5000 : 2000;
    o.warmup = latency ? 100 : fill ? 0 : 200;
    o.timeout_s = 30;
    o.batch = 1;
    for (int i = 2; i < argc; i++) {
        const char *a = argv [i], *v = i + 1 < argc ? argv [i + 1] : NULL;
        if (!strcmp (a, "--endpoint") && v)           { o.endpoint = v; i++; }
        else if (bench_types_arg (&o.types, "bm-bench", a, v)) i++;
        else if (!strcmp (a, "--jobs"))               { o.jobs = bench_arg_int (a, v, 1, 100000000); i++; }
        else if (!strcmp (a, "--window"))             { o.window = bench_arg_int (a, v, 1, 1000000); i++; }
        else if (!strcmp (a, "--warmup"))             { o.warmup = bench_arg_int (a, v, 0, 1000000); i++; }
        else if (!strcmp (a, "--wait-workers"))       { o.wait_workers = bench_arg_int (a, v, 0, 1000000); i++; }
        else if (!strcmp (a, "--timeout"))            { o.timeout_s = bench_arg_int (a, v, 1, 3600); i++; }
        else if (!strcmp (a, "--batch"))              { o.batch = bench_arg_int (a, v, 1, BM_MAX_BATCH); i++; }
        else if (!strcmp (a, "--delay-ms"))           { o.delay_ms = bench_arg_int (a, v, 0, BM_MAX_DELAY_MS); i++; }
        else
            return bench_other_arg ("bm-bench", a, s_usage);
    }
    bench_types_generate (&o.types, "bm-bench");
    if (o.types.count == 0)
        bench_types_add (&o.types, "bm-bench", "python");
    bench_start ("bm-bench", o.endpoint);
    if (!strcmp (o.mode, "throughput"))
        rc = s_throughput (&o, true);
    else
    if (fill)
        rc = s_throughput (&o, false);
    else
    if (latency)
        rc = s_latency (&o);
    else
    if (!strcmp (o.mode, "ping")) {
        s_wait_broker (&o);
        printf ("RESULT ready=1\n");
        rc = 0;
    }
    else {
        s_usage ();
        rc = 2;
    }
    bench_types_free (&o.types);
    s_reply_msgs_free ();
    return rc;
}

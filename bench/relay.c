/*  relay.c - the limit: a bare libzmq relay with no bookkeeping, and the
    driver that measures it with the same message count and size as the
    botmesh throughput and latency cases (bench/bm_bench.c).

        client DEALER -> ROUTER (front)  relay  ROUTER (back) -> worker DEALER
        and the same way back.

    Three roles, one binary, each its own process (like client, broker and
    worker):

        bm-relay relay  --front EP --back EP      forward, round-robin over workers
        bm-relay worker --connect EP              echo every message back
        bm-relay drive  --connect EP [--jobs N] [--window W] [--latency]

    The relay keeps no state but the list of worker identities.  It drains
    each socket in bursts and polls only when both ran dry, and the worker
    blocks in its receive: a poll per message would make the loop, not the
    messages, the figure (bench/relay_check.c is the independent relay that
    checks this one).  A worker says hello with one frame "READY"; after
    that, messages are:

        client -> relay:  [header, command, body]                 (3 frames)
        relay  -> worker: [worker-id] [client-id, header, command, body]
        worker -> relay:  [client-id, header, command, body]
        relay  -> client: [header, command, body]

    The driver prints one line for bench/run.sh:
        RESULT jobs=N seconds=S rate=R            (throughput)
        RESULT jobs=N p50_us=.. p99_us=.. max_us=..   (--latency)  */
#include "bench_util.h"

#include <zmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORKERS 256
#define MAX_ID      256
#define HWM         1000000
#define BURST       1000        //  Messages each way between two polls at most

typedef struct {
    char ids [MAX_WORKERS][MAX_ID];
    size_t sizes [MAX_WORKERS];
    size_t count, next;
} relay_workers_t;

static void *
s_socket (void *ctx, int type)
{
    void *sock = zmq_socket (ctx, type);
    if (!sock) {
        fprintf (stderr, "zmq_socket: %s\n", zmq_strerror (zmq_errno ()));
        exit (1);
    }
    int hwm = HWM, linger = 0;
    zmq_setsockopt (sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    return sock;
}

//  Move every remaining part of the message being received on from to to.
static int
s_forward_rest (void *from, void *to)
{
    int more = 1;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, from, 0) < 0) {
            zmq_msg_close (&part);
            return -1;
        }
        more = zmq_msg_more (&part);
        if (zmq_msg_send (&part, to, more ? ZMQ_SNDMORE : 0) < 0) {
            zmq_msg_close (&part);
            return -1;
        }
    }
    return 0;
}

//  Read and drop the rest of a multipart message.
static void
s_drain (void *sock)
{
    int more = 1;
    while (more) {
        zmq_msg_t part;
        zmq_msg_init (&part);
        if (zmq_msg_recv (&part, sock, 0) < 0)
            more = 0;
        else
            more = zmq_msg_more (&part);
        zmq_msg_close (&part);
    }
}

//  One message from a worker, if one is there: [worker-id] then READY (a
//  new worker) or [client-id, header, command, body] (to that client).
//  0 if one was taken, -1 if none was waiting.
static int
s_from_worker (void *back, void *front, relay_workers_t *workers)
{
    zmq_msg_t wid, first;
    zmq_msg_init (&wid);
    if (zmq_msg_recv (&wid, back, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&wid);
        return -1;
    }
    zmq_msg_init (&first);
    if (zmq_msg_more (&wid) && zmq_msg_recv (&first, back, 0) >= 0) {
        if (!zmq_msg_more (&first)) {
            if (workers->count < MAX_WORKERS && zmq_msg_size (&wid) <= MAX_ID) {
                memcpy (workers->ids [workers->count], zmq_msg_data (&wid), zmq_msg_size (&wid));
                workers->sizes [workers->count++] = zmq_msg_size (&wid);
            }
        }
        else
        if (zmq_msg_send (&first, front, ZMQ_SNDMORE) >= 0)
            s_forward_rest (back, front);
        else
            s_drain (back);
    }
    zmq_msg_close (&wid);
    zmq_msg_close (&first);
    return 0;
}

//  One message from a client, if one is there: [client-id, header,
//  command, body] to the next worker in turn.  0 if one was taken, -1 if
//  none was waiting.
static int
s_from_client (void *front, void *back, relay_workers_t *workers)
{
    zmq_msg_t cid;
    zmq_msg_init (&cid);
    if (zmq_msg_recv (&cid, front, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close (&cid);
        return -1;
    }
    int more = zmq_msg_more (&cid);
    if (workers->count == 0) {
        zmq_msg_close (&cid);         //  Nobody to give it to
        if (more)
            s_drain (front);
        return 0;
    }
    size_t w = workers->next++ % workers->count;
    zmq_send (back, workers->ids [w], workers->sizes [w], ZMQ_SNDMORE);
    zmq_msg_send (&cid, back, more ? ZMQ_SNDMORE : 0);
    zmq_msg_close (&cid);
    if (more)
        s_forward_rest (front, back);
    return 0;
}

//  Poll only when both sockets ran dry: a poll per message costs a
//  poll(2) and the ZMQ_EVENTS of both sockets, more than the move itself.
static int
s_relay (const char *front_ep, const char *back_ep)
{
    void *ctx = zmq_ctx_new ();
    void *front = s_socket (ctx, ZMQ_ROUTER);
    void *back = s_socket (ctx, ZMQ_ROUTER);
    if (zmq_bind (front, front_ep) || zmq_bind (back, back_ep)) {
        fprintf (stderr, "bind: %s\n", zmq_strerror (zmq_errno ()));
        return 1;
    }
    relay_workers_t workers = { .count = 0 };
    bench_catch_signals ();
    zmq_pollitem_t items [] = { { back, 0, ZMQ_POLLIN, 0 }, { front, 0, ZMQ_POLLIN, 0 } };
    while (!bench_stop) {
        int moved = 0, i;
        for (i = 0; i < BURST && s_from_worker (back, front, &workers) == 0; i++)
            ;
        moved += i;
        for (i = 0; i < BURST && s_from_client (front, back, &workers) == 0; i++)
            ;
        moved += i;
        if (!moved)
            zmq_poll (items, 2, 500);
    }
    zmq_close (front);
    zmq_close (back);
    zmq_ctx_term (ctx);
    return 0;
}

//  Echo every message back with the command RESULT.  Blocking receives
//  (a timeout to see a signal) rather than a poll per message.
static int
s_worker (const char *endpoint)
{
    void *ctx = zmq_ctx_new ();
    void *sock = s_socket (ctx, ZMQ_DEALER);
    int timeout = 500;
    zmq_setsockopt (sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    if (zmq_connect (sock, endpoint)) {
        fprintf (stderr, "connect: %s\n", zmq_strerror (zmq_errno ()));
        return 1;
    }
    zmq_send (sock, "READY", 5, 0);
    bench_catch_signals ();
    zmq_msg_t parts [4];
    for (int i = 0; i < 4; i++)
        zmq_msg_init (&parts [i]);
    while (!bench_stop) {
        //  [client-id, header, command, body] -> same, command RESULT
        if (zmq_msg_recv (&parts [0], sock, 0) < 0)
            continue;
        int n = 1, more = zmq_msg_more (&parts [0]);
        while (more) {
            zmq_msg_t *part = &parts [n < 4 ? n : 3];
            if (zmq_msg_recv (part, sock, 0) < 0)
                break;
            more = zmq_msg_more (part);
            n++;
        }
        if (n == 4 && !more) {
            unsigned char result = 0x84;
            zmq_msg_close (&parts [2]);
            zmq_msg_init_size (&parts [2], 1);
            memcpy (zmq_msg_data (&parts [2]), &result, 1);
            for (int i = 0; i < 4; i++)
                zmq_msg_send (&parts [i], sock, i < 3 ? ZMQ_SNDMORE : 0);
        }
    }
    for (int i = 0; i < 4; i++)
        zmq_msg_close (&parts [i]);
    zmq_close (sock);
    zmq_ctx_term (ctx);
    return 0;
}

//  A "job": the same SUBMIT bm_bench sends.
static int
s_send_job (void *sock, bench_submit_buf_t *buf, int64_t seq)
{
    unsigned char cmd = BM_SUBMIT;
    bench_pack_submit (buf, seq, "python", true);
    if (zmq_send (sock, BM_CLIENT_HEADER, BM_HEADER_LEN, ZMQ_SNDMORE) < 0
    ||  zmq_send (sock, &cmd, 1, ZMQ_SNDMORE) < 0
    ||  zmq_send (sock, buf->body.sbuf.data, buf->body.sbuf.size, 0) < 0)
        return -1;
    return 0;
}

//  Wait up to timeout_ms for one reply; 1 if one came, 0 if not.
static int
s_recv_reply (void *sock, int timeout_ms)
{
    zmq_pollitem_t item = { sock, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&item, 1, timeout_ms) <= 0)
        return 0;
    s_drain (sock);
    return 1;
}

static int
s_drive (const char *endpoint, int64_t jobs, int64_t window, bool latency, int64_t warmup)
{
    void *ctx = zmq_ctx_new ();
    void *sock = s_socket (ctx, ZMQ_DEALER);
    if (zmq_connect (sock, endpoint)) {
        fprintf (stderr, "connect: %s\n", zmq_strerror (zmq_errno ()));
        return 1;
    }
    bench_submit_buf_t buf;
    bench_submit_buf_init (&buf);
    bench_catch_signals ();

    //  Until a worker answers (the relay drops what it cannot route).
    int64_t deadline = bench_now_ns () + 10000000000LL;
    bool up = false;
    while (!up && !bench_stop && bench_now_ns () < deadline) {
        s_send_job (sock, &buf, 0);
        up = s_recv_reply (sock, 100);
    }
    if (!up) {
        fprintf (stderr, "bm-relay drive: no answer from %s\n", endpoint);
        return 1;
    }
    while (s_recv_reply (sock, 50))
        ;                               //  Late answers of the probes

    if (latency) {
        bench_lat_t lat;
        bench_lat_init (&lat, (size_t) jobs);
        for (int64_t i = 0; i < warmup + jobs && !bench_stop; i++) {
            int64_t t0 = bench_now_ns ();
            s_send_job (sock, &buf, i + 1);
            if (!s_recv_reply (sock, 5000)) {
                fprintf (stderr, "bm-relay drive: message %lld lost\n", (long long) i);
                return 1;
            }
            if (i >= warmup)
                bench_lat_add (&lat, (double) (bench_now_ns () - t0) / 1000.0);
        }
        double p50 = bench_lat_pct (&lat, 50), p99 = bench_lat_pct (&lat, 99);
        double max = lat.count ? lat.us [lat.count - 1] : 0;
        printf ("RESULT jobs=%zu p50_us=%.0f p99_us=%.0f max_us=%.0f\n", lat.count, p50, p99, max);
        bench_lat_free (&lat);
    }
    else {
        int64_t sent = 0, received = 0;
        int64_t t0 = bench_now_ns ();
        while (received < jobs && !bench_stop) {
            while (sent < jobs && sent - received < window) {
                if (s_send_job (sock, &buf, ++sent) < 0) {
                    fprintf (stderr, "send: %s\n", zmq_strerror (zmq_errno ()));
                    return 1;
                }
            }
            if (!s_recv_reply (sock, 5000)) {
                fprintf (stderr, "bm-relay drive: stalled at %lld of %lld\n",
                         (long long) received, (long long) jobs);
                return 1;
            }
            received++;
            //  Take what is there without polling again
            while (received < jobs) {
                zmq_msg_t part;
                zmq_msg_init (&part);
                if (zmq_msg_recv (&part, sock, ZMQ_DONTWAIT) < 0) {
                    zmq_msg_close (&part);
                    break;
                }
                int more = zmq_msg_more (&part);
                zmq_msg_close (&part);
                if (more)
                    s_drain (sock);
                received++;
            }
        }
        double secs = (double) (bench_now_ns () - t0) / 1e9;
        printf ("RESULT jobs=%lld seconds=%.3f rate=%.0f\n",
                (long long) received, secs, (double) received / secs);
    }
    bench_submit_buf_destroy (&buf);
    zmq_close (sock);
    zmq_ctx_term (ctx);
    return bench_stop ? 1 : 0;
}

static void
s_usage (void)
{
    printf ("usage: bm-relay relay  --front EP --back EP\n"
            "       bm-relay worker --connect EP\n"
            "       bm-relay drive  --connect EP [--jobs 50000] [--window 1000] [--latency] [--warmup 100]\n"
            "The bare libzmq relay (no bookkeeping) that bounds any broker hop, its\n"
            "echo worker and its driver.  Reads no environment variables.\n");
}

int
main (int argc, char *argv [])
{
    if (argc < 2 || !strcmp (argv [1], "--help") || !strcmp (argv [1], "-h")) {
        s_usage ();
        return argc < 2 ? 2 : 0;
    }
    const char *role = argv [1];
    const char *front = NULL, *back = NULL, *connect = NULL;
    int64_t jobs = 50000, window = 1000, warmup = 100;
    bool latency = false;
    for (int i = 2; i < argc; i++) {
        const char *a = argv [i], *v = i + 1 < argc ? argv [i + 1] : NULL;
        if (!strcmp (a, "--front") && v)        { front = v; i++; }
        else if (!strcmp (a, "--back") && v)    { back = v; i++; }
        else if (!strcmp (a, "--connect") && v) { connect = v; i++; }
        else if (!strcmp (a, "--jobs"))         { jobs = bench_arg_int (a, v, 1, 100000000); i++; }
        else if (!strcmp (a, "--window"))       { window = bench_arg_int (a, v, 1, 1000000); i++; }
        else if (!strcmp (a, "--warmup"))       { warmup = bench_arg_int (a, v, 0, 1000000); i++; }
        else if (!strcmp (a, "--latency"))      latency = true;
        else if (!strcmp (a, "--help"))         { s_usage (); return 0; }
        else {
            fprintf (stderr, "bm-relay: unknown argument '%s'\n", a);
            s_usage ();
            return 2;
        }
    }
    if (!strcmp (role, "relay") && front && back)
        return s_relay (front, back);
    if (!strcmp (role, "worker") && connect)
        return s_worker (connect);
    if (!strcmp (role, "drive") && connect)
        return s_drive (connect, jobs, window, latency, warmup);
    s_usage ();
    return 2;
}

/*  relay_check.c - a second, independent bare relay that checks bm-relay:
    it shares no code with relay.c (libzmq's own zmq_proxy forwards, the
    workers are ROUTER sockets that echo whatever comes, the driver sends
    fixed bytes of the SUBMIT's size), so a slow bm-relay shows up as a gap
    between the two rates measured in one run.

        client DEALER -> ROUTER (front)  zmq_proxy  DEALER (back) -> worker ROUTER
        and the same way back.

        bm-relay-check proxy  --front EP --back EP
        bm-relay-check worker --connect EP
        bm-relay-check drive  --connect EP [--jobs N] [--window W] [--size B]

    The driver sends messages of the shape of botmesh's ([header, command,
    body], body B bytes), keeps W in flight and prints
        RESULT jobs=N seconds=S rate=R
    timed from the first message after every worker answered.  */
#include <zmq.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t s_stop = 0;

static void
s_on_signal (int sig)
{
    (void) sig;
    s_stop = 1;
}

static long long
s_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *
s_socket (void *ctx, int type)
{
    void *sock = zmq_socket (ctx, type);
    if (!sock) {
        fprintf (stderr, "zmq_socket: %s\n", zmq_strerror (zmq_errno ()));
        exit (1);
    }
    int hwm = 1000000, linger = 0;
    zmq_setsockopt (sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt (sock, ZMQ_LINGER, &linger, sizeof linger);
    return sock;
}

static int
s_proxy (const char *front_ep, const char *back_ep)
{
    void *ctx = zmq_ctx_new ();
    void *front = s_socket (ctx, ZMQ_ROUTER);
    void *back = s_socket (ctx, ZMQ_DEALER);
    if (zmq_bind (front, front_ep) || zmq_bind (back, back_ep)) {
        fprintf (stderr, "bind: %s\n", zmq_strerror (zmq_errno ()));
        return 1;
    }
    zmq_proxy (front, back, NULL);      //  Until the context is terminated by a signal
    zmq_close (front);
    zmq_close (back);
    zmq_ctx_term (ctx);
    return 0;
}

//  Echo every message back where it came from: the ROUTER's first frame
//  (the relay's identity) routes the copy back.
static int
s_worker (const char *endpoint)
{
    void *ctx = zmq_ctx_new ();
    void *sock = s_socket (ctx, ZMQ_ROUTER);
    if (zmq_connect (sock, endpoint)) {
        fprintf (stderr, "connect: %s\n", zmq_strerror (zmq_errno ()));
        return 1;
    }
    zmq_msg_t part;
    zmq_msg_init (&part);
    while (!s_stop) {
        if (zmq_msg_recv (&part, sock, 0) < 0) {
            if (zmq_errno () == EINTR)
                continue;
            break;
        }
        int more = zmq_msg_more (&part);
        if (zmq_msg_send (&part, sock, more ? ZMQ_SNDMORE : 0) < 0)
            break;
    }
    zmq_msg_close (&part);
    zmq_close (sock);
    zmq_ctx_term (ctx);
    return 0;
}

//  One message of the shape of botmesh's: [header, command, body] (the
//  proxy adds the client's identity on the way in and takes it off on the
//  way out).
static int
s_send (void *sock, const char *body, size_t size)
{
    if (zmq_send (sock, "BMC01", 5, ZMQ_SNDMORE) < 0
    ||  zmq_send (sock, "\x01", 1, ZMQ_SNDMORE) < 0
    ||  zmq_send (sock, body, size, 0) < 0)
        return -1;
    return 0;
}

//  Receive one whole message; -1 on timeout or error.
static int
s_recv (void *sock)
{
    zmq_msg_t part;
    zmq_msg_init (&part);
    int more = 1;
    while (more) {
        if (zmq_msg_recv (&part, sock, 0) < 0) {
            zmq_msg_close (&part);
            return -1;
        }
        more = zmq_msg_more (&part);
    }
    zmq_msg_close (&part);
    return 0;
}

static int
s_drive (const char *endpoint, long long jobs, long long window, size_t size)
{
    void *ctx = zmq_ctx_new ();
    void *sock = s_socket (ctx, ZMQ_DEALER);
    int timeout = 100;
    zmq_setsockopt (sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    if (zmq_connect (sock, endpoint)) {
        fprintf (stderr, "connect: %s\n", zmq_strerror (zmq_errno ()));
        return 1;
    }
    char *body = malloc (size);
    if (!body) {
        fprintf (stderr, "out of memory\n");
        return 1;
    }
    memset (body, 'x', size);
    //  Until a worker echoes (the proxy queues what it cannot pass on)
    long long deadline = s_now_ns () + 10000000000LL;
    int up = 0;
    while (!up && !s_stop && s_now_ns () < deadline) {
        s_send (sock, body, size);
        up = s_recv (sock) == 0;
    }
    while (s_recv (sock) == 0)
        ;                               //  Late echoes of the probes
    if (!up) {
        fprintf (stderr, "bm-relay-check drive: no answer from %s\n", endpoint);
        free (body);
        return 1;
    }
    timeout = 5000;
    zmq_setsockopt (sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    long long sent = 0, received = 0, t0 = s_now_ns ();
    while (received < jobs && !s_stop) {
        while (sent < jobs && sent - received < window && s_send (sock, body, size) == 0)
            sent++;
        if (s_recv (sock)) {
            fprintf (stderr, "bm-relay-check drive: stalled at %lld of %lld\n", received, jobs);
            free (body);
            return 1;
        }
        received++;
    }
    double secs = (double) (s_now_ns () - t0) / 1e9;
    printf ("RESULT jobs=%lld seconds=%.3f rate=%.0f\n", received, secs, (double) received / secs);
    free (body);
    zmq_close (sock);
    zmq_ctx_term (ctx);
    return s_stop ? 1 : 0;
}

static void
s_usage (void)
{
    printf ("usage: bm-relay-check proxy  --front EP --back EP\n"
            "       bm-relay-check worker --connect EP\n"
            "       bm-relay-check drive  --connect EP [--jobs 50000] [--window 1000] [--size 124]\n"
            "An independent bare relay (zmq_proxy, ROUTER echo workers) that checks\n"
            "bm-relay's figure.  Reads no environment variables.\n");
}

static long long
s_arg_int (const char *flag, const char *value, long long min, long long max)
{
    char *end = NULL;
    long long n = value ? strtoll (value, &end, 10) : 0;
    if (!value || *end || n < min || n > max) {
        fprintf (stderr, "bm-relay-check: %s wants an integer in [%lld, %lld]\n", flag, min, max);
        exit (2);
    }
    return n;
}

int
main (int argc, char *argv [])
{
    if (argc < 2 || !strcmp (argv [1], "--help") || !strcmp (argv [1], "-h")) {
        s_usage ();
        return argc < 2 ? 2 : 0;
    }
    const char *role = argv [1], *front = NULL, *back = NULL, *connect = NULL;
    long long jobs = 50000, window = 1000, size = 124;
    for (int i = 2; i < argc; i++) {
        const char *a = argv [i], *v = i + 1 < argc ? argv [i + 1] : NULL;
        if (!strcmp (a, "--front") && v)        { front = v; i++; }
        else if (!strcmp (a, "--back") && v)    { back = v; i++; }
        else if (!strcmp (a, "--connect") && v) { connect = v; i++; }
        else if (!strcmp (a, "--jobs"))         { jobs = s_arg_int (a, v, 1, 100000000); i++; }
        else if (!strcmp (a, "--window"))       { window = s_arg_int (a, v, 1, 1000000); i++; }
        else if (!strcmp (a, "--size"))         { size = s_arg_int (a, v, 1, 1000000); i++; }
        else {
            fprintf (stderr, "bm-relay-check: unknown argument '%s'\n", a);
            s_usage ();
            return 2;
        }
    }
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction (SIGINT, &sa, NULL);
    sigaction (SIGTERM, &sa, NULL);
    if (!strcmp (role, "proxy") && front && back)
        return s_proxy (front, back);
    if (!strcmp (role, "worker") && connect)
        return s_worker (connect);
    if (!strcmp (role, "drive") && connect)
        return s_drive (connect, jobs, window, (size_t) size);
    s_usage ();
    return 2;
}

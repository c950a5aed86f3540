/*  bare_http.c - the HTTP ceiling: a bare civetweb POST /invoke handler
    that only reads the JSON body, parses it with jansson, checks botType
    and answers 202 with a small JSON body.  No broker behind it.  The
    response is built in one buffer and written once (per-line
    header writes halve civetweb's throughput).

        bm-bare-http [--threads 80]

    Listens on 127.0.0.1 on an ephemeral port and prints "listening PORT";
    stops on SIGTERM/SIGINT.  Reads no environment variables.  */
#include "bench_util.h"

#include <civetweb.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_BODY (1024 * 1024)

static atomic_long s_count;

static void
s_reply (struct mg_connection *conn, int status, const char *reason, const char *body)
{
    char buf [512];
    int n = snprintf (buf, sizeof buf,
                      "HTTP/1.1 %d %s\r\n"
                      "Content-Type: application/json\r\n"
                      "Content-Length: %zu\r\n"
                      "\r\n%s", status, reason, strlen (body), body);
    if (n > 0 && (size_t) n < sizeof buf)
        mg_write (conn, buf, (size_t) n);
}

static int
s_invoke (struct mg_connection *conn, void *cbdata)
{
    (void) cbdata;
    const struct mg_request_info *ri = mg_get_request_info (conn);
    if (strcmp (ri->request_method, "POST")) {
        s_reply (conn, 405, "Method Not Allowed", "{\"error\":\"POST only\"}");
        return 405;
    }
    if (ri->content_length < 0 || ri->content_length > MAX_BODY) {
        s_reply (conn, 413, "Payload Too Large", "{\"error\":\"body too large\"}");
        return 413;
    }
    char stack [4096];
    size_t size = (size_t) ri->content_length;
    char *body = size <= sizeof stack ? stack : (char *) malloc (size);
    size_t got = 0;
    while (body && got < size) {
        int n = mg_read (conn, body + got, size - got);
        if (n <= 0)
            break;
        got += (size_t) n;
    }
    json_error_t err;
    json_t *root = body && got == size ? json_loadb (body, size, 0, &err) : NULL;
    if (body != stack)
        free (body);
    json_t *type = root ? json_object_get (root, "botType") : NULL;
    if (!json_is_string (type)) {
        json_decref (root);
        s_reply (conn, 400, "Bad Request", "{\"error\":\"botType must be a string\"}");
        return 400;
    }
    long n = atomic_fetch_add (&s_count, 1) + 1;
    char reply [128];
    snprintf (reply, sizeof reply, "{\"jobId\":\"bare-%ld\",\"status\":\"queued\"}", n);
    json_decref (root);
    s_reply (conn, 202, "Accepted", reply);
    return 202;
}

int
main (int argc, char *argv [])
{
    int64_t threads = 80;
    for (int i = 1; i < argc; i++) {
        if (!strcmp (argv [i], "--threads"))
            threads = bench_arg_int (argv [i], i + 1 < argc ? argv [i + 1] : NULL, 1, 1024), i++;
        else {
            printf ("usage: bm-bare-http [--threads 80]\n"
                    "A bare civetweb POST /invoke handler (JSON parse, 202): the HTTP\n"
                    "ceiling of the benchmarks.  Prints \"listening PORT\".  No env vars.\n");
            return strcmp (argv [i], "--help") ? 2 : 0;
        }
    }
    char nthreads [16];
    snprintf (nthreads, sizeof nthreads, "%lld", (long long) threads);
    const char *options [] = {
        "listening_ports", "127.0.0.1:0",
        "num_threads", nthreads,
        "enable_keep_alive", "yes",
        "keep_alive_timeout_ms", "60000",
        "request_timeout_ms", "10000",
        NULL
    };
    mg_init_library (0);
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    struct mg_context *ctx = mg_start (&callbacks, NULL, options);
    if (!ctx) {
        fprintf (stderr, "bm-bare-http: mg_start failed\n");
        return 1;
    }
    mg_set_request_handler (ctx, "/invoke$", s_invoke, NULL);
    struct mg_server_port ports [4];
    if (mg_get_server_ports (ctx, 4, ports) < 1) {
        fprintf (stderr, "bm-bare-http: no listening port\n");
        mg_stop (ctx);
        return 1;
    }
    printf ("listening %d\n", ports [0].port);
    fflush (stdout);
    bench_catch_signals ();
    while (!bench_stop)
        usleep (50000);
    mg_stop (ctx);
    mg_exit_library ();
    fprintf (stderr, "bm-bare-http: answered %ld\n", (long) atomic_load (&s_count));
    return 0;
}

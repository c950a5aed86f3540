/*  bench_util.c - what the C drivers of bench/ share.  */
#include "bench_util.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

volatile int bench_stop = 0;

int64_t
bench_now_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void
s_pack_kv (msgpack_packer *pk, const char *key, const char *value)
{
    msgpack_pack_str (pk, strlen (key));
    msgpack_pack_str_body (pk, key, strlen (key));
    msgpack_pack_str (pk, strlen (value));
    msgpack_pack_str_body (pk, value, strlen (value));
}

void
bench_pack_payload (msgpack_packer *pk, int64_t seq)
{
    msgpack_pack_map (pk, 4);
    s_pack_kv (pk, "task", "data_analysis");
    s_pack_kv (pk, "dataset", "sales_2024");
    msgpack_pack_str (pk, 3);
    msgpack_pack_str_body (pk, "seq", 3);
    msgpack_pack_int64 (pk, seq);
    s_pack_kv (pk, "pad", "abcdefghijklmnopqrstuvwxyz0123456");
}

void
bench_submit_buf_init (bench_submit_buf_t *self)
{
    bm_packer_init (&self->body);
    bm_packer_init (&self->payload);
}

void
bench_submit_buf_destroy (bench_submit_buf_t *self)
{
    bm_packer_destroy (&self->body);
    bm_packer_destroy (&self->payload);
}

void
bench_pack_submit (bench_submit_buf_t *self, int64_t req, const char *type, bool notify)
{
    bm_packer_reset (&self->payload);
    bm_packer_reset (&self->body);
    bench_pack_payload (&self->payload.pk, req);
    bm_codec_submit_t submit = { .has_req = true, .req = req, .notify = notify,
                                 .payload = { NULL, self->payload.sbuf.data,
                                              self->payload.sbuf.size } };
    snprintf (submit.bot_type, sizeof submit.bot_type, "%s", type);
    submit.has_delay_ms = self->delay_ms > 0;
    submit.delay_ms = self->delay_ms;
    bm_codec_submit_encode (&submit, &self->body);
    if (bm_packer_failed (&self->payload) || bm_packer_failed (&self->body)) {
        fprintf (stderr, "bench: out of memory\n");
        exit (1);
    }
}

void
bench_lat_init (bench_lat_t *self, size_t size)
{
    self->us = (double *) calloc (size ? size : 1, sizeof (double));
    if (!self->us) {
        fprintf (stderr, "out of memory\n");
        exit (1);
    }
    self->count = 0;
    self->size = size;
}

void
bench_lat_add (bench_lat_t *self, double us)
{
    if (self->count < self->size)
        self->us [self->count++] = us;
}

static int
s_cmp (const void *a, const void *b)
{
    double x = *(const double *) a, y = *(const double *) b;
    return x < y ? -1 : x > y;
}

double
bench_lat_pct (bench_lat_t *self, double p)
{
    if (self->count == 0)
        return 0;
    qsort (self->us, self->count, sizeof (double), s_cmp);
    double rank = p / 100.0 * (double) self->count;
    size_t i = (size_t) rank;
    if ((double) i < rank)
        i++;            //  ceil
    if (i > 0)
        i--;
    if (i >= self->count)
        i = self->count - 1;
    return self->us [i];
}

void
bench_lat_free (bench_lat_t *self)
{
    free (self->us);
    self->us = NULL;
    self->count = self->size = 0;
}

int64_t
bench_arg_int (const char *flag, const char *value, int64_t min, int64_t max)
{
    if (!value) {
        fprintf (stderr, "%s: missing value\n", flag);
        exit (2);
    }
    char *end;
    errno = 0;
    long long v = strtoll (value, &end, 10);
    if (errno || end == value || *end || v < min || v > max) {
        fprintf (stderr, "%s: '%s' is not an integer in %lld..%lld\n",
                 flag, value, (long long) min, (long long) max);
        exit (2);
    }
    return v;
}

static void
s_on_signal (int sig)
{
    (void) sig;
    bench_stop = 1;
}

void
bench_catch_signals (void)
{
    struct sigaction sa;
    memset (&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction (SIGINT, &sa, NULL);
    sigaction (SIGTERM, &sa, NULL);
}

void
bench_types_add (bench_types_t *self, const char *program, const char *list)
{
    char *copy = strdup (list);
    for (char *save = NULL, *t = strtok_r (copy, ",", &save); t; t = strtok_r (NULL, ",", &save)) {
        if (self->count >= BENCH_MAX_TYPES || !bm_valid_bot_type (t, strlen (t))) {
            fprintf (stderr, "%s: --types: bad or too many types at '%s'\n", program, t);
            exit (2);
        }
        self->names [self->count++] = strdup (t);
    }
    free (copy);
}

bool
bench_types_arg (bench_types_t *self, const char *program, const char *flag, const char *value)
{
    if (!strcmp (flag, "--types") && value)
        bench_types_add (self, program, value);
    else
    if (!strcmp (flag, "--type-prefix") && value)
        self->prefix = value;
    else
    if (!strcmp (flag, "--type-count"))
        self->generate = bench_arg_int (flag, value, 1, BENCH_MAX_TYPES);
    else
        return false;
    return true;
}

void
bench_types_generate (bench_types_t *self, const char *program)
{
    for (int64_t t = 0; t < self->generate && self->count < BENCH_MAX_TYPES; t++) {
        char name [64];
        snprintf (name, sizeof name, "%s%lld", self->prefix ? self->prefix : "bench", (long long) t);
        bench_types_add (self, program, name);
    }
}

void
bench_types_free (bench_types_t *self)
{
    for (int t = 0; t < self->count; t++)
        free (self->names [t]);
    self->count = 0;
}

bm_msg_t *
bench_broker_request (bm_client_t *client, int command, int timeout_ms)
{
    return bm_client_ask (client, command, timeout_ms);
}

int64_t
bench_broker_workers (bm_client_t *client, int timeout_ms)
{
    bm_msg_t *reply = bench_broker_request (client, BM_STATS, timeout_ms);
    int64_t count = -1;
    if (reply) {
        bm_codec_stats_reply_t stats;
        bm_codec_error_t error;
        if (bm_codec_stats_reply_decode (reply, &stats, &error) == 0)
            count = (int64_t) stats.worker_count;
        else
            fprintf (stderr, "bench: bad STATS reply: %s\n", error.message);
        bm_msg_destroy (&reply);
    }
    return count;
}

int
bench_mode_arg (int argc, char *argv [], void (*usage) (void))
{
    if (argc < 2 || !strcmp (argv [1], "--help") || !strcmp (argv [1], "-h")) {
        usage ();
        return argc < 2 ? 2 : 0;
    }
    return -1;
}

int
bench_other_arg (const char *program, const char *flag, void (*usage) (void))
{
    if (!strcmp (flag, "--help")) {
        usage ();
        return 0;
    }
    fprintf (stderr, "%s: unknown or incomplete argument '%s'\n", program, flag);
    usage ();
    return 2;
}

void
bench_start (const char *program, const char *endpoint)
{
    if (!endpoint) {
        fprintf (stderr, "%s: --endpoint is required\n", program);
        exit (2);
    }
    zsys_handler_set (NULL);
    bench_catch_signals ();
}

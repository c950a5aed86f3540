/*  bm_bench_decode.c - what reading a batch costs: a SUBMIT_MANY and a
    DONE_MANY of 1,000 jobs (the bulk cases' shape: ~100-byte payloads)
    parsed (bm_msg_parse), their envelope read (bm_codec_batch_decode) and
    each item read with its single-job decoder, as the broker does.

        bm-bench-decode [--rounds 30] [--batches 100]

    Prints one RESULT line per body kind and mode: "whole" (the body
    unpacked whole first, as every peer but the broker) and "shallow"
    (bm_msg_set_shallow_batches: each item unpacked once, as the broker),
    ns a job, the best of --rounds timings of --batches bodies each, the
    two modes alternating after a warm-up (the best, not the mean: the
    machine is shared).  Exits 1 if the two modes
    read any item differently.  */
#include "bm_codec.h"
#include "bm_codec_batch.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_JOBS 1000

static void
s_body (bm_packer_t *pk, bool done)
{
    char pad [81];
    memset (pad, 'x', 80);
    pad [80] = 0;
    bm_codec_batch_begin (pk, !done, 1, S_JOBS);
    for (int i = 0; i < S_JOBS; i++) {
        msgpack_pack_map (&pk->pk, 3);
        if (done) {
            char id [40];
            snprintf (id, sizeof id, "01JC0000000000000000%06d", i);
            bm_pack_kv_str (&pk->pk, "jobId", id);
            bm_pack_kv_bool (&pk->pk, "ok", true);
            bm_pack_str (&pk->pk, "result");
            msgpack_pack_map (&pk->pk, 1);
            bm_pack_kv_int (&pk->pk, "n", i);
        }
        else {
            bm_pack_kv_str (&pk->pk, "botType", "python");
            bm_pack_str (&pk->pk, "payload");
            msgpack_pack_map (&pk->pk, 2);
            bm_pack_kv_int (&pk->pk, "n", i);
            bm_pack_kv_str (&pk->pk, "data", pad);
            bm_pack_kv_bool (&pk->pk, "notify", true);
        }
    }
}

//  Read one body; the sum of the items' payload/result sizes (a check
//  that both modes read the same), or -1.
static int64_t
s_read (bm_msg_t *msg, bm_msg_t *item, const bm_packer_t *pk, bool done)
{
    unsigned char command = done ? BM_DONE_MANY : BM_SUBMIT_MANY;
    const char *code;
    char reason [128];
    if (bm_msg_parse (msg, done ? BM_WORKER_HEADER : BM_CLIENT_HEADER, BM_HEADER_LEN, &command, 1,
                      pk->sbuf.data, pk->sbuf.size, SIZE_MAX, &code, reason, sizeof reason))
        return -1;
    bm_codec_batch_t batch;
    bm_codec_error_t error;
    if (bm_codec_batch_decode (msg, &batch, &error))
        return -1;
    int64_t sum = 0, items = 0;
    while (bm_codec_batch_next (&batch, item, &error) == 1) {
        if (done) {
            bm_codec_done_t d;
            if (bm_codec_done_decode (item, &d, &error) || !d.ok)
                return -1;
            sum += (int64_t) d.result.size;
        }
        else {
            bm_codec_submit_t s;
            if (bm_codec_submit_decode (item, &s, &error) || !s.notify)
                return -1;
            sum += (int64_t) s.payload.size;
        }
        items++;
    }
    return items == S_JOBS ? sum : -1;
}

int
main (int argc, char **argv)
{
    int64_t rounds = 30, batches = 100;
    for (int i = 1; i < argc; i++) {
        const char *a = argv [i], *v = i + 1 < argc ? argv [i + 1] : NULL;
        if (!strcmp (a, "--rounds"))        { rounds = bench_arg_int (a, v, 1, 100000); i++; }
        else if (!strcmp (a, "--batches"))  { batches = bench_arg_int (a, v, 1, 100000); i++; }
        else {
            fprintf (stderr, "usage: bm-bench-decode [--rounds 30] [--batches 100]\n");
            return 2;
        }
    }
    int rc = 0;
    for (int kind = 0; kind < 2; kind++) {
        bool done = kind == 1;
        bm_packer_t pk;
        bm_packer_init (&pk);
        s_body (&pk, done);
        int64_t sums [2] = { 0, 0 };
        int64_t best [2] = { INT64_MAX, INT64_MAX };
        bm_msg_t *msgs [2], *items [2];
        for (int shallow = 0; shallow < 2; shallow++) {
            msgs [shallow] = bm_msg_new ();
            items [shallow] = bm_msg_new ();
            bm_msg_set_shallow_batches (msgs [shallow], shallow);
            //  Warm: the message's buffer and zone, the allocator
            for (int64_t b = 0; b < batches; b++)
                sums [shallow] = s_read (msgs [shallow], items [shallow], &pk, done);
        }
        //  The two modes alternate, round by round
        for (int64_t r = 0; r < 2 * rounds; r++) {
            int shallow = (int) (r & 1);
            int64_t t0 = bench_now_ns ();
            for (int64_t b = 0; b < batches; b++)
                sums [shallow] = s_read (msgs [shallow], items [shallow], &pk, done);
            int64_t t = bench_now_ns () - t0;
            if (t < best [shallow])
                best [shallow] = t;
        }
        for (int shallow = 0; shallow < 2; shallow++) {
            printf ("RESULT body=%s mode=%s jobs=%d bytes=%zu ns_per_job=%.0f\n",
                    done ? "DONE_MANY" : "SUBMIT_MANY", shallow ? "shallow" : "whole", S_JOBS,
                    pk.sbuf.size, (double) best [shallow] / (double) (batches * S_JOBS));
            bm_msg_destroy (&msgs [shallow]);
            bm_msg_destroy (&items [shallow]);
        }
        if (sums [0] < 0 || sums [0] != sums [1]) {
            fprintf (stderr, "bm-bench-decode: %s read differently: %lld / %lld\n",
                     done ? "DONE_MANY" : "SUBMIT_MANY", (long long) sums [0], (long long) sums [1]);
            rc = 1;
        }
        bm_packer_destroy (&pk);
    }
    return rc;
}

/*  bm_bench_gwbatch.c - what the gateway's reading of a POST /invoke/batch
    body costs: the body of bench/invoke_batch.lua (1,000 jobs of the
    ~100-byte payload) checked and encoded (gw_invoke_batch_new), its
    SUBMIT_MANY made (gw_invoke_batch_message) and dropped, in a loop.

        bm-bench-gwbatch [--rounds 30] [--batches 20] [--no-arena]

    Prints one RESULT line: ns of CPU a job (the thread's CPU time, which a
    busy machine's preemptions do not inflate as they do wall time), the
    best of --rounds timings of --batches bodies each.  --no-arena leaves jansson on malloc (the
    gateway installs the arena allocator at start: gw_arena.h), so that the
    two can be compared in one build.  Exits 1 if a body does not read as
    1,000 passed jobs.  */
#include "gw_arena.h"
#include "gw_invoke_batch.h"
#include "bench_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_JOBS 1000

//  invoke_batch.lua's item, 1,000 times in an array.
static char *
s_body (size_t *size)
{
    const char *item = "{\"botType\":\"python\",\"payload\":{\"task\":\"data_analysis\","
                       "\"dataset\":\"sales_2024\",\"seq\":12345,"
                       "\"pad\":\"abcdefghijklmnopqrstuvwxyz0123456\"}}";
    size_t len = strlen (item);
    char *body = (char *) malloc (S_JOBS * (len + 1) + 2);
    if (!body)
        exit (1);
    size_t n = 0;
    body [n++] = '[';
    for (int i = 0; i < S_JOBS; i++) {
        if (i > 0)
            body [n++] = ',';
        memcpy (body + n, item, len);
        n += len;
    }
    body [n++] = ']';
    *size = n;
    return body;
}

//  This thread's CPU time in ns.
static int64_t
s_cpu_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

//  Read one body as the gateway does; false if it did not read as 1,000
//  passed jobs in one message.
static bool
s_read (const char *body, size_t size)
{
    gw_invoke_error_t error;
    gw_invoke_batch_t *batch = gw_invoke_batch_new (body, size, S_JOBS, &(gw_invoke_limits_t) { .max_payload = 1 << 20 }, &error);
    if (!batch)
        return false;
    bool ok = gw_invoke_batch_valid (batch) == S_JOBS;
    size_t next = 0, count = 0, message_size = 0;
    static size_t indexes [BM_MAX_BATCH];
    char *message = gw_invoke_batch_message (batch, &next, 1, 1 << 20, indexes, &count,
                                             &message_size);
    ok = ok && message && count == S_JOBS;
    free (message);
    gw_invoke_batch_destroy (&batch);
    return ok;
}

int
main (int argc, char **argv)
{
    int64_t rounds = 30, batches = 20;
    bool arena = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv [i], *v = i + 1 < argc ? argv [i + 1] : NULL;
        if (!strcmp (a, "--rounds"))        { rounds = bench_arg_int (a, v, 1, 100000); i++; }
        else if (!strcmp (a, "--batches"))  { batches = bench_arg_int (a, v, 1, 100000); i++; }
        else if (!strcmp (a, "--no-arena")) arena = false;
        else {
            fprintf (stderr, "usage: bm-bench-gwbatch [--rounds 30] [--batches 20] [--no-arena]\n");
            return 2;
        }
    }
    if (arena)
        gw_arena_install ();
    size_t size;
    char *body = s_body (&size);
    bool ok = true;
    for (int64_t b = 0; b < batches; b++)       //  Warm the allocator
        ok = ok && s_read (body, size);
    int64_t best = INT64_MAX;
    for (int64_t r = 0; r < rounds && ok; r++) {
        int64_t t0 = s_cpu_ns ();
        for (int64_t b = 0; b < batches; b++)
            ok = ok && s_read (body, size);
        int64_t t = s_cpu_ns () - t0;
        if (t < best)
            best = t;
    }
    if (!ok) {
        fprintf (stderr, "bm-bench-gwbatch: the body did not read as %d passed jobs\n", S_JOBS);
        free (body);
        return 1;
    }
    printf ("RESULT jobs=%d bytes=%zu arena=%s cpu_ns_per_job=%.0f\n", S_JOBS, size,
            arena ? "yes" : "no", (double) best / (double) (batches * S_JOBS));
    free (body);
    return 0;
}

/*  bench_util.h - what the C drivers of bench/ share: clocks, latency
    samples, the job payload, argument parsing and the RESULT line that
    bench/run.sh reads.  */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Monotonic clock in nanoseconds.
int64_t bench_now_ns (void);

//  The payload of every case: the msgpack form of the ~100-byte JSON object
//  {"task":"data_analysis","dataset":"sales_2024","seq":N,"pad":"abc...456"}
//  (bench/peers/common.js builds the same one for BullMQ).
void bench_pack_payload (msgpack_packer *pk, int64_t seq);

//  Latency samples in microseconds.
typedef struct {
    double *us;                 //  Samples
    size_t count;               //  Samples taken
    size_t size;                //  Room
} bench_lat_t;

void bench_lat_init (bench_lat_t *self, size_t size);
void bench_lat_add (bench_lat_t *self, double us);
//  Sorts the samples; p in 0..100 (nearest rank).
double bench_lat_pct (bench_lat_t *self, double p);
void bench_lat_free (bench_lat_t *self);

//  Argument helpers: "--name value".  bench_arg_int exits with a message
//  naming the flag when the value is not an integer in [min, max].
int64_t bench_arg_int (const char *flag, const char *value, int64_t min, int64_t max);

//  Stop at SIGINT/SIGTERM: a flag the loops check.
extern volatile int bench_stop;
void bench_catch_signals (void);

#endif

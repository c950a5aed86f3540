/*  bench_util.h - what the C drivers of bench/ share: clocks, latency
    samples, the job payload, argument parsing and the RESULT line that
    bench/run.sh reads.  */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include "bm_client.h"

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

//  A SUBMIT body {req, botType, payload, notify?} with that payload, as
//  bm_codec encodes it: kept between calls (no allocation once warm).
typedef struct {
    bm_packer_t body;               //  The SUBMIT body (body.sbuf.data/size)
    bm_packer_t payload;            //  Its payload, encoded first
    int64_t delay_ms;               //  > 0: SUBMIT delayMs (a delayed job)
} bench_submit_buf_t;

void bench_submit_buf_init (bench_submit_buf_t *self);
void bench_submit_buf_destroy (bench_submit_buf_t *self);
//  Encode into self->body; exits when out of memory.
void bench_pack_submit (bench_submit_buf_t *self, int64_t req, const char *type, bool notify);

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

//  The command line of a driver: "bm-bench MODE --flag value...".
//  bench_mode_arg: -1 to go on, or the exit code after "--help"/"-h" (0)
//  or no mode at all (2), the usage printed.  bench_other_arg, for a flag
//  the driver does not take itself: "--help" prints the usage (exit code
//  0); anything else is named on stderr before the usage (2).
int bench_mode_arg (int argc, char *argv [], void (*usage) (void));
int bench_other_arg (const char *program, const char *flag, void (*usage) (void));

//  Once the flags are read: stop (exit 2) without an endpoint, else catch
//  SIGINT/SIGTERM (bench_stop) instead of czmq.
void bench_start (const char *program, const char *endpoint);

//  Bot types from the command line: "--types a,b,..." (each checked) and
//  "--type-count M --type-prefix P" (P0 .. P<M-1>).  A bad or extra type
//  stops the program (exit 2) with a message naming it.
#define BENCH_MAX_TYPES 1000
typedef struct {
    char *names [BENCH_MAX_TYPES];
    int count;
    const char *prefix;         //  --type-prefix (NULL: "bench")
    int64_t generate;           //  --type-count
} bench_types_t;

//  Take one of the flags above with its value: true (the caller skips the
//  value), or false if flag is another one.
bool bench_types_arg (bench_types_t *self, const char *program, const char *flag,
                      const char *value);
//  Add a comma-separated list of types.
void bench_types_add (bench_types_t *self, const char *program, const char *list);
//  Add the --type-count types, once every flag is read.
void bench_types_generate (bench_types_t *self, const char *program);
void bench_types_free (bench_types_t *self);

//  A request with the body {req} (PING, STATS...): the reply, or NULL
//  without one within timeout_ms.
bm_msg_t *bench_broker_request (bm_client_t *client, int command, int timeout_ms);

//  How many workers the broker lists in STATS; -1 without an answer
//  within timeout_ms.
int64_t bench_broker_workers (bm_client_t *client, int timeout_ms);

//  Stop at SIGINT/SIGTERM: a flag the loops check.
extern volatile int bench_stop;
void bench_catch_signals (void);

#endif

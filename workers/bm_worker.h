/*  bm_worker.h - a botmesh worker: one DEALER to the broker, BMW01, bots.

    The worker registers with the broker (READY: its bot types and its
    credit), runs each JOB it receives as a bot (bm_bot), a simulation or a
    no-op, and reports PROGRESS and DONE.  One zloop, one thread:

      - the DEALER socket (messages from the broker),
      - a signalfd (SIGCHLD: reap bots; SIGTERM/SIGINT: graceful stop),
      - the pipes of every running bot (bm_bot registers them),
      - the link's heartbeat timer, a timer that sends progress held back,
        and one timer per job (deadline, kill, simulation).

    The connection itself is a bm_worker_link (common/): READY, heartbeats
    and liveness as protocol.md section 5 says; after HEARTBEAT_LIVENESS
    intervals of silence from the broker, or a DISCONNECT from it, the
    DEALER is replaced by a new one and READY sent again; bots carry on,
    their DONE goes on the new socket, and recent DONEs are sent again.

    Stop (SIGTERM/SIGINT): READY with credit 0, running jobs get the grace
    period to end, the rest are killed and handed back with RELEASE, then
    DISCONNECT; bm_worker_run returns.  A second signal cuts the grace
    period short.  */
#ifndef BM_WORKER_H
#define BM_WORKER_H

#include "bm_curve.h"
#include "bm_limits.h"
#include "bm_proto.h"

#include <stdbool.h>
#include <stdint.h>

#define BM_WORKER_MAX_TYPES     16

typedef enum {
    BM_WORKER_BOTS = 0,         //  Run the configured programs
    BM_WORKER_SIMULATE = 1,     //  Sleep a random time, fail at some rate
    BM_WORKER_NOOP = 2          //  Complete at once
} bm_worker_mode_t;

//  How the jobs of a bot type run (BOT_<TYPE>_MODE).
typedef enum {
    BM_BOT_SPAWN = 0,           //  A new process per job
    BM_BOT_POOL = 1,            //  Warm processes, reused (bm_pool)
    BM_BOT_FORK = 2             //  A fork server: a forked child per job
} bm_bot_mode_t;

//  One bot type the worker serves.
typedef struct {
    char name [BM_MAX_BOT_TYPE_LEN + 1];    //  e.g. "python"
    char **argv;                //  Program (resolved path) and arguments;
                                //  NULL-terminated, owned by the caller
    bm_bot_mode_t bot_mode;     //  spawn, pool or fork
    int64_t min_procs;          //  Pool/fork: BOT_<TYPE>_MIN_PROCS
    int64_t max_procs;          //  BOT_<TYPE>_MAX_PROCS
    int64_t max_jobs;           //  BOT_<TYPE>_MAX_JOBS
    int64_t max_rss_mb;         //  BOT_<TYPE>_MAX_RSS_MB (0: no limit)
    char rss_var [BM_MAX_BOT_TYPE_LEN + 32];    //  That variable's name
    char memory_var [BM_MAX_BOT_TYPE_LEN + 32]; //  BOT_<TYPE>_MEMORY_MB's name
    int64_t idle_ms;            //  BOT_<TYPE>_IDLE_MS
    int64_t ready_timeout_ms;   //  BOT_<TYPE>_READY_TIMEOUT_MS (0: none)
    int64_t keep_log;           //  BOT_<TYPE>_KEEP_LOG: 1 (default) sends a
                                //  job's stderr tail as its log, 0 not
    char ready_var [BM_MAX_BOT_TYPE_LEN + 32];  //  That variable's name
    bm_limits_t limits;         //  Resource limits of each run
    bool sandboxed;             //  argv runs the bot under bwrap: its
                                //  environment is cut down (bm_sandbox)
    int64_t sim_min_ms;         //  Simulated duration range
    int64_t sim_max_ms;
    double sim_fail_rate;       //  Share of simulated runs that fail
} bm_worker_type_t;

//  Configuration.  The worker borrows it (and the strings it points to)
//  for its whole life.
typedef struct {
    const char *endpoint;       //  Broker, e.g. "tcp://127.0.0.1:5555"
    const char *name;           //  Worker name for logs and STATS
    bm_worker_mode_t mode;
    bm_worker_type_t types [BM_WORKER_MAX_TYPES];
    int type_count;
    int64_t concurrency;        //  Credit: jobs at once, all types together
    int64_t prefetch;           //  WORKER_PREFETCH: jobs taken past what the
                                //  warm processes run at once (in the credit)
    int64_t grace_ms;           //  Time running jobs get at shutdown
    int64_t heartbeat_ms;       //  HEARTBEAT_INTERVAL_MS
    int64_t liveness;           //  HEARTBEAT_LIVENESS
    int64_t kill_grace_ms;      //  SIGTERM to SIGKILL when stopping a bot
    int64_t output_max;         //  Cap on a bot's stdout (bytes)
    int64_t stderr_tail;        //  Bytes of stderr kept for the error
    int64_t max_payload;        //  Largest result (msgpack bytes)
    int64_t max_frame;          //  Largest frame accepted from the broker
    int64_t metrics_port;       //  WORKER_METRICS_PORT: GET /metrics, 0 = off, -1 = any free port
    const char *metrics_addr;   //  WORKER_METRICS_ADDR
    bm_curve_peer_t curve;      //  CURVE_SERVER_KEY, CURVE_CLIENT_CERT:
                                //  copies, as the worker's environment no
                                //  longer holds them (bm_job_env_scrub)
} bm_worker_config_t;

typedef struct _bm_worker_t bm_worker_t;

//  Block SIGCHLD, SIGTERM and SIGINT in the calling thread.  Call it first
//  in main, before any other thread exists (ZeroMQ's included), so that
//  every thread inherits the mask and the worker's signalfd receives them.
//  Also ignores SIGPIPE.  Returns 0 or -1.
int bm_worker_block_signals (void);

//  Create a worker.  Returns NULL (and logs why) on error.
bm_worker_t *bm_worker_new (const bm_worker_config_t *config);
void bm_worker_destroy (bm_worker_t **self_p);

//  Connect, serve jobs, and return 0 after a graceful stop (a signal), or
//  -1 on an internal error.
int bm_worker_run (bm_worker_t *self);

#endif

/*  bm_pool.h - warm bot processes of one bot type: pool and fork modes.

    A pool keeps long-lived bot processes (started with bm_bot_launch, so
    every mode starts its programs the same way) and gives each one job at
    a time, as one frame on its stdin; the process answers with frames on
    its stdout (docs/bots.md: one JSON document per line):

        worker -> bot   {"job": ID, "env": {BOT_JOB_ID: ..., ...}, "payload": ...}
        bot -> worker   {"ready": true}                 loaded, takes jobs
                        {"progress": N}                 0..100 (also: fd 3)
                        {"started": PID}                fork: the job's child
                        {"output": TEXT}                what the job wrote on
                                                        stdout (fork server)
                        {"result": VALUE}               the job completed
                        {"exit": N, "output"?: TEXT, "error"?: TEXT}
                        {"signal": N}                   the job ended like a
                                                        spawned bot would

    A progress or answer frame may name its job ("job": ID).  One that
    names another job than the one its process runs is not taken for it:
    the process is killed, and its job goes back to the head of the queue,
    to run on a process that replaces it (once: a job taken back twice
    fails with bad_output).  Without "job", frames are taken as they come.

    In fork mode each process is a fork server: it forks one child per job,
    names its pid ("started"), and reports how it ended ("exit"/"signal"),
    so the worker can stop exactly that child.  In pool mode the process
    runs the job itself; stopping a job kills the whole process, and a new
    one replaces it.

    A process is recycled after max_jobs jobs, when its resident memory
    passes max_rss_mb after a job, or (pool mode) when its job failed on a
    resource limit; idle processes beyond min_procs exit
    after idle_ms; never more than max_procs exist (retiring ones count).
    A process that exits before it said ready, or is still not ready
    ready_timeout_ms after its start (then killed), or that cannot be
    started, failed at init: while no other process is ready (idle or
    busy), the jobs waiting for a process fail with bot_init_failed (the
    tail of its stderr), and the next start waits 100 ms, 200 ms, ... up to
    30 s, until a process gets ready again.

    Each callback may destroy the job's owner state, but not the pool.
    Processes are reaped by the owner: it calls bm_pool_reap for each
    exited child pid (from a poller handler).  */
#ifndef BM_POOL_H
#define BM_POOL_H

#include "bm_codec.h"
#include "bm_limits.h"

#include <czmq.h>
#include <jansson.h>
#include "bm_metrics.h"
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

typedef struct _bm_pool_t bm_pool_t;

typedef struct {
    const char *type;           //  Bot type, for logs
    char *const *argv;          //  Program and arguments (borrowed)
    bool fork;                  //  Fork server (true) or pool processes
    int64_t min_procs;          //  Kept warm
    int64_t max_procs;          //  Never more processes than this
    int64_t max_jobs;           //  Recycle after this many jobs
    int64_t max_rss_mb;         //  Recycle past this RSS (0: never)
    const char *rss_var;        //  The variable that sets it, for messages
                                //  (BOT_<TYPE>_MAX_RSS_MB; borrowed)
    int64_t idle_ms;            //  Idle processes above min_procs exit
    int64_t ready_timeout_ms;   //  A process not ready this long after its
                                //  start is killed: an init failure (0: no
                                //  deadline)
    const char *ready_var;      //  The variable that sets it, for messages
                                //  (BOT_<TYPE>_READY_TIMEOUT_MS; borrowed)
    int64_t output_max;         //  Cap on a job's stdout (bytes)
    int64_t stderr_tail;        //  Bytes of stderr kept per job
    int64_t kill_grace_ms;      //  SIGTERM to SIGKILL when retiring
    bool sandboxed;             //  argv runs the bot under bwrap
    const char *memory_var;     //  The variable of limits->memory_mb, for
                                //  messages (BOT_<TYPE>_MEMORY_MB; borrowed)
    const bm_limits_t *limits;  //  Resource limits of each process
                                //  (borrowed; NULL: none).  A pool process
                                //  gets the CPU budget anew at each job
                                //  (its soft RLIMIT_CPU moved on); a fork
                                //  server's child starts its own count.
} bm_pool_config_t;

//  How a job ended, in the terms of a spawned bot.
typedef struct {
    bool init_failed;           //  No process could start (bot_init_failed)
    const char *init_limit;     //  With init_failed: the limit that killed
                                //  it at start ("memory": resource_limit),
                                //  or NULL
    bool lost;                  //  Its pool process died under it by a
                                //  SIGKILL or SIGTERM nobody in the worker
                                //  sent (a crash signal is no loss)
    bool not_limit;             //  Its signal is no limit's: the bot reported
                                //  SIGXCPU itself ({"signal": 24}) with the
                                //  job's CPU time well under its budget
    bool overflowed;            //  It wrote more than output_max on stdout
    const char *bad_output;     //  Its answer was unusable: bad_output with
                                //  this message (borrowed), or NULL
    int exit_code;              //  Exit status (0 ok), -1 if killed
    int signal;                 //  Killed by this signal, 0 if not
    bool sandboxed;             //  It ran under bwrap, which passes on its
                                //  bot's death by signal N as exit 128 + N
    const char *memory_var;     //  A spawned bot's BOT_<TYPE>_MEMORY_MB, for
                                //  a crash's hint (borrowed), or NULL
    const char *output;         //  Its stdout (borrowed), for a result
    size_t output_size;
    const json_t *result;       //  Its answer was {"result": VALUE}: VALUE
                                //  (borrowed; output holds its JSON text),
                                //  packed as it is rather than parsed again
                                //  from output; NULL otherwise
    const char *message;        //  Its stderr tail or error text (borrowed)
    const char *log;            //  Its stderr tail (borrowed; the job's
                                //  log), or NULL: the job never ran
    const struct rusage *usage; //  Killed by a signal: the CPU time the job
                                //  used of its own (pool mode: its process,
                                //  since the job began; fork mode: its
                                //  child, the fork server's "cpuMs"), as
                                //  ru_utime (borrowed), or NULL
    const bm_limits_run_t *run; //  Its process's limits (cgroup counters
                                //  taken as the job began), or NULL
} bm_pool_outcome_t;

//  The job ended.  job is the owner's pointer given to bm_pool_submit.
typedef void (bm_pool_done_fn) (void *job, const bm_pool_outcome_t *outcome, void *arg);
//  The job reported progress (0..100), or its first line on fd 3 that is
//  not valid came (BM_PROGRESS_BAD: see bm_pool_progress_bad).
typedef void (bm_pool_progress_fn) (void *job, int progress, void *arg);

//  A job that waited for a process (none was free at bm_pool_submit) is
//  handed to one now, before its frame is written (once: not again if it
//  is taken back to run on another process).  Returns a new frame for it
//  (one line of JSON without the newline, malloc'd, *size its length; the
//  pool owns it), or NULL to keep the frame it was submitted with.
typedef char *(bm_pool_start_fn) (void *job, size_t *size, void *arg);
//  A pool on this loop; envp is the processes' environment (copied).
//  Starts min_procs processes.
bm_pool_t *bm_pool_new (zloop_t *loop, const bm_pool_config_t *config, char *const envp [],
                        bm_pool_done_fn *on_done, bm_pool_progress_fn *on_progress, void *arg);
//  Call on_start (arg: bm_pool_new's) for each job that waited, as it
//  gets a process.
void bm_pool_set_on_start (bm_pool_t *self, bm_pool_start_fn *on_start);
//  Kill every process (SIGKILL to each group) and reap them; no callback.
void bm_pool_destroy (bm_pool_t **self_p);

//  The worker is stopping: from now on no process is started to keep
//  min_procs warm (one is still started for a job that waits for one);
//  what is left is killed by bm_pool_destroy.
void bm_pool_stop (bm_pool_t *self);

//  Run a job: id is its id (copied), frame its job frame (one line of
//  JSON, without the newline; copied).  It waits for a free process if
//  none is; while none is ready after a failed start, for the next start
//  (backed off), and on_done fails it with init_failed only if a start
//  fails while it waits.  Returns 0, or -1 with a reason when the job
//  cannot be queued (out of memory), and then on_done is never called
//  for it.
int bm_pool_submit (bm_pool_t *self, void *job, const char *id, const char *frame, size_t size,
                    char *error, size_t error_size);

//  Send a signal to what runs the job: its child (fork), or its process
//  group (pool; that process takes no more jobs).  Returns 0, or 1 if the
//  job was still waiting for a process (it is dropped; no on_done), or -1
//  if the pool does not know the job.
int bm_pool_signal (bm_pool_t *self, void *job, int signum);

//  Whether the job waits for a process (submitted, not handed to one yet).
bool bm_pool_job_waits (bm_pool_t *self, void *job);
//  The pid of what runs the job (0 if it waits or is unknown).
pid_t bm_pool_job_pid (bm_pool_t *self, void *job);

//  The first line the job wrote on fd 3 that is not PROGRESS 0-100
//  (borrowed), or "".
const char *bm_pool_progress_bad (bm_pool_t *self, void *job);

//  If pid is one of our processes: reap it, end its job if it had one, and
//  return true.  Else false (not ours).
bool bm_pool_reap (bm_pool_t *self, pid_t pid);

//  Counters for logs and metrics.
typedef struct {
    int64_t processes;          //  Alive now (starting, idle, busy, retiring)
    int64_t busy;               //  Running a job
    int64_t waiting;            //  Jobs waiting for a process
    int64_t started;            //  Processes started
    int64_t init_failures;      //  Processes that died before ready
    int64_t recycled_max_jobs;  //  Recycles by reason
    int64_t recycled_max_rss;
    int64_t recycled_idle;
    int64_t recycled_killed;    //  Killed by the worker (its job's timeout
                                //  or cancel, a bad frame)
    int64_t recycled_died;      //  Exited or killed on its own (exit 3,
                                //  SIGSEGV, kill -9 from outside)
    int64_t recycled_limit;     //  Its job hit a resource limit (the
                                //  process survived it or died of it)
    int64_t recycled_output;    //  Its job wrote more than the output cap
} bm_pool_stats_t;
void bm_pool_stats (bm_pool_t *self, bm_pool_stats_t *stats);
//  What the worker tells the broker about the pool in its HEARTBEAT (type,
//  mode, warm processes, recycles, init failures).
void bm_pool_report (bm_pool_t *self, bm_codec_bot_pool_t *report);

//  Keep these metrics of the pool up to date in the registry (every tick,
//  from the loop's thread; the series are atomic): bot_processes{bot_type,
//  mode} (alive now), bot_recycles_total{bot_type,reason} (max_jobs,
//  max_rss, idle, killed), bot_init_failures_total{bot_type}.
void bm_pool_export (bm_pool_t *self, bm_metrics_t *metrics);

//  Self-test; built only into bm_worker_selftest (BM_SELFTEST).
void bm_pool_test (bool verbose);

#endif

/*  bm_runner.h - runs the worker's jobs: bots, pooled runs, simulations.

    The runner starts each job the way its type says (a spawned bot, a job
    frame for the type's pool, or a simulated run), keeps its one pending
    timer (deadline, kill escalation, end of a simulation), stops it
    (SIGTERM to what runs it, SIGKILL kill_grace_ms later), holds its
    progress to at most ten messages a second, and runs a pooled job once
    more when its pool process was killed under it by someone else (kill
    -9, the kernel's OOM killer): that process may have died of an earlier
    job's doing.

    The worker owns the jobs (bm_job_t records, freed with bm_job_destroy)
    and sends what the runner reports: on_end when a job ended (the worker
    sends DONE or RELEASE and destroys it; outcome NULL for a simulation or
    a job stopped before it had a process), on_progress when a progress
    value is due.  Everything runs on the worker's loop thread.  A timer
    handler finds its job through the runner's timers table, so a timer
    that fires after its job ended (zloop removes ended timers only at the
    end of a loop pass) finds nothing and does nothing.  */
#ifndef BM_RUNNER_H
#define BM_RUNNER_H

#include "bm_bot.h"
#include "bm_job_env.h"
#include "bm_pool.h"
#include "bm_worker.h"

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _bm_runner_t bm_runner_t;

//  STOP_LOST: its pool process was killed from outside; the job goes back
//  to the broker as a lost attempt (RELEASE with lost: true).
typedef enum { STOP_NONE = 0, STOP_TIMEOUT, STOP_CANCEL, STOP_RELEASE, STOP_LOST } stop_t;
//  TIMER_WAIT: a pooled job that waits for a process is to be announced to
//  the broker (on_wait) if it still waits.
typedef enum { TIMER_NONE = 0, TIMER_DEADLINE, TIMER_KILL, TIMER_SIMULATION, TIMER_WAIT } jtimer_t;

//  One job we run: a record the worker reads and keeps its bookkeeping in
//  (stop, cancel_code, progress_*, limit_hit); the runner drives
//  its bot, pool run and timer.
typedef struct {
    bm_runner_t *runner;                //  Our runner (back pointer)
    char id [BM_MAX_ID_LEN + 1];        //  jobId
    const bm_worker_type_t *type;       //  Its bot type (in the config)
    int64_t attempt;                    //  Attempt number from the broker
    int64_t limit_ms;                   //  Run-time limit of this attempt
    bm_bot_t *bot;                      //  The bot process (spawn mode)
    bm_pool_t *pool;                    //  Its pool (pool and fork modes)
    json_t *payload;                    //  Its payload (pool and fork modes)
    int64_t deadline;                   //  Wall clock ms of its deadline
    int64_t sim_duration;               //  Simulated run time (simulate mode)
    bool sim_fails;                     //  The simulation ends in failure
    int64_t started_at;                 //  Wall clock (ms)
    int64_t started_mono;               //  Monotonic clock (ms)
    stop_t stop;                        //  Why we are stopping it, if we are
    bool term_sent;                     //  SIGTERM sent to its bot already
    char cancel_code [32];              //  DONE error code of a CANCEL
    char cancel_reason [32];            //  That CANCEL's reason
    int timer_id;                       //  Its one pending timer, or 0
    jtimer_t timer_kind;                //  What that timer is for
    int progress_sent;                  //  Last progress sent (0 at first:
                                        //  the broker's value for a new run)
    int64_t progress_sent_mono;         //  When
    int progress_pending;               //  A newer value held back, or -1
    int progress_timer;                 //  Sends it when the gap is over, or 0
    const char *limit_hit;              //  The resource limit it hit, or NULL
    bool waiting;                       //  Pooled, waiting in the worker for
                                        //  a process: its timeout not running
    bool wait_told;                     //  on_wait told the broker so
    const char *log;                    //  Its stderr tail as it ended, for
                                        //  its DONE (borrowed), or NULL
} job_t;

//  The job ended (outcome NULL: a simulation, or stopped before it ran).
typedef void (bm_runner_end_fn) (job_t *job, const bm_pool_outcome_t *outcome, void *arg);
//  Send this progress value of the job now.
typedef void (bm_runner_progress_fn) (job_t *job, int progress, void *arg);

//  A pooled job waits in the worker for a process, waited_ms since its JOB
//  came, long enough to tell the broker (BM_RUNNER_WAIT_NOTICE_MS, or half
//  its timeout if shorter): started false.  Then, when it began on one
//  (its timeout, BOT_DEADLINE and startedAt count from then): started
//  true.  A job that began sooner is told neither: its wait is within the
//  jitter of the broker's deadline tick.
typedef void (bm_runner_wait_fn) (job_t *job, bool started, int64_t waited_ms, void *arg);
#define BM_RUNNER_WAIT_NOTICE_MS    20
//  A runner on the worker's loop.  config and env are borrowed for its
//  life; timer handlers return -1 (end the loop) once *stopped is true.
bm_runner_t *bm_runner_new (zloop_t *loop, const bm_worker_config_t *config, bm_job_env_t *env,
                            const bool *stopped, bm_runner_end_fn *on_end,
                            bm_runner_progress_fn *on_progress, bm_runner_wait_fn *on_wait,
                            void *arg);
//  Call it after every job was destroyed.
void bm_runner_destroy (bm_runner_t **self_p);

//  A new job record (caller owns it), not started.
job_t *bm_runner_job (bm_runner_t *self, const char *id, const bm_worker_type_t *type,
                      int64_t attempt, int64_t limit_ms, int64_t now);
//  Stop its timer and its bot (killed if still running), and free it.
void bm_job_destroy (job_t **job_p);

//  Simulate the job: a random duration in its type's range, failing at its
//  rate; ends by on_end, or by the deadline timer if longer than its limit.
void bm_runner_simulate (bm_runner_t *self, job_t *job);

//  Start a spawned bot for the job (job->deadline set), input on its
//  stdin.  Returns 0, or -1 (bm_bot_errstr (job->bot) says why).
int bm_runner_spawn (bm_runner_t *self, job_t *job, const char *input, size_t size);

//  Give the job to its pool (job->pool, job->payload, job->deadline set):
//  the job frame {job, env, payload} (docs/bots.md), and its deadline
//  timer, unless it waits for a process (job->waiting): then the timer,
//  BOT_DEADLINE and the job's start are set when a process takes it
//  (on_wait tells the broker of a long wait), as a job that waits for the
//  next start after a failed one does (bm_pool_submit).  Returns 0, or -1
//  with a reason (then on_end is never called for it).
int bm_runner_submit (bm_runner_t *self, job_t *job, char *error, size_t error_size);

//  Arm the job's one timer (replacing any).
void bm_job_set_timer (job_t *job, int64_t delay, jtimer_t kind);

//  Signal what runs the job: its bot's process group (spawn), its child
//  (fork) or its pool process.  Returns 1 if a pooled job was still waiting
//  for a process (now dropped), else 0 or -1.
int bm_job_signal (job_t *job, int signum);

//  Stop a running job: kill its bot (SIGTERM to the group, SIGKILL after
//  the kill grace), or end a simulation at once.  The first reason sticks.
void bm_job_stop (job_t *job, stop_t reason);

//  Pool callbacks (arg: the runner), for the pools the worker creates.
void bm_runner_on_pool_done (void *job, const bm_pool_outcome_t *outcome, void *runner);
void bm_runner_on_pool_progress (void *job, int progress, void *runner);
char *bm_runner_on_pool_start (void *job, size_t *size, void *runner);

#endif

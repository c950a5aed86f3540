/*  bm_limits.h - resource limits of a bot type, applied to each bot run.

    A bm_limits_t is a plain value: the limits of one bot type, read from
    BOT_<TYPE>_MEMORY_MB, _CPU_SECONDS, _MAX_PIDS and _MAX_FILES.  Every
    launch of a bot process (spawn, pool, fork) goes through a
    bm_limits_run_t:

        parent   run = bm_limits_run_new (&limits, name)   before fork
        child    bm_limits_run_apply (run)                 between fork and
                                                            exec; only
                                                            async-signal-safe
                                                            calls
        parent   bm_limits_run_verdict (run, ...)          after the reap:
                                                            was it a limit?
        parent   bm_limits_run_destroy (&run)               kills what is left
                                                            in its cgroup,
                                                            removes it

    What each limit is made of:
        memory   RLIMIT_AS (address space, MiB).  A cgroup memory.max needs a
                 cgroup v2 with the memory controller delegated to us; where
                 it is not (cgroup v1, or a v2 without controllers) the
                 address-space limit is what there is.  The JVM sizes its
                 heap to half of RLIMIT_AS; the default Java bot needs about
                 3 GiB of address space (compressed class space, code cache).
        cpu      RLIMIT_CPU: SIGXCPU at the limit, SIGKILL one second later.
        pids     pids.max of a cgroup of its own per run, where the worker can
                 create one (cgroup v1 "pids" hierarchy or cgroup v2 with the
                 pids controller, writable: the worker runs as root or was
                 delegated a subtree); else RLIMIT_NPROC.  RLIMIT_NPROC counts
                 every process and thread of the bot's real uid, the worker's
                 own included when the bot runs as the worker's user, and the
                 kernel does not apply it to root at all: without a cgroup it
                 only means something for bots run as a dedicated user
                 (BOT_USER).
        files    RLIMIT_NOFILE (highest fd + 1, so it includes fds 0-3).
        core     RLIMIT_CORE 0, always: no core dumps.
        user     with uid/gid set (BOT_USER, for a worker that runs as
                 root), the child switches to them last, after joining its
                 cgroup and setting the rlimits, just before exec.

    A limit of 0 means none (the worker's own limit stays).

    Detection after the run (bm_limits_run_verdict) is honest about what it
    can see.  Certain: SIGXCPU (exit 128+SIGXCPU from bwrap), SIGKILL after
    its whole CPU limit of CPU time of its own (the kernel kills a second
    past it; past 7 s, 7/8 of that hard limit, as the figures may lag the
    kernel's) unless its cgroup's OOM killer struck meanwhile (memory), and the pids cgroup's "max" event counter.  Inferred from the
    tail of stderr of a bot that failed: the messages runtimes print when an
    allocation, a fork/thread creation or an open fails (MemoryError,
    std::bad_alloc, "out of memory", "Cannot allocate memory", "Resource
    temporarily unavailable", "Too many open files", ...).  A bot that
    swallows the error and fails differently, or dies of SIGSEGV on a failed
    allocation without a word, is not seen as a limit kill.  */
#ifndef BM_LIMITS_H
#define BM_LIMITS_H

#include "bm_seccomp.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

//  Defaults: generous, finite.  Address space: the default Java bot needs
//  ~3 GiB of it (the JVM reserves heap, class space and code cache up
//  front), Node ~1 GiB, Python ~30 MiB.
#define BM_LIMITS_MEMORY_MB     4096
//  An hour of CPU: well past any job's own timeout at full speed.
#define BM_LIMITS_CPU_SECONDS   3600
//  Processes and threads of one run (a JVM starts ~20 threads).
#define BM_LIMITS_MAX_PIDS      256
//  Open files of one run.
#define BM_LIMITS_MAX_FILES     1024

typedef struct {
    int64_t memory_mb;          //  Address space (MiB), 0: none
    bool memory_default;        //  memory_mb is BM_LIMITS_MEMORY_MB because
                                //  BOT_<TYPE>_MEMORY_MB is not set (for
                                //  messages: "the default ...")
    int64_t cpu_seconds;        //  CPU time (s), 0: none
    int64_t max_pids;           //  Processes + threads, 0: none
    int64_t max_files;          //  Open file descriptors, 0: none
    int64_t uid;                //  Run as this user (BOT_USER), -1: as we
    int64_t gid;                //  run; with its group, -1: ours
    bool cpu_per_job;           //  A warm process: no CPU limit at its
                                //  start; each job gets the budget (pool:
                                //  bm_limits_cpu_job_start; fork: the child
                                //  sets it from the job frame)
    const bm_seccomp_t *seccomp;
                                //  The system calls refused (bm_seccomp.h,
                                //  BOT_<TYPE>_SECCOMP), borrowed; NULL: none
    bool seccomp_for_bwrap;     //  Handed to bwrap on BM_SECCOMP_BWRAP_FD
                                //  (it loads it for the bot) rather than
                                //  loaded on the process started
} bm_limits_t;

//  The limits a verdict can name, in a fixed order (for counters).
#define BM_LIMITS_KINDS 4
extern const char *bm_limits_names [BM_LIMITS_KINDS];   //  memory cpu pids files
//  The index of a limit's name in bm_limits_names, or -1.
int bm_limits_kind (const char *name);

//  The defaults above, and no change of user.
void bm_limits_default (bm_limits_t *self);

//  Read BOT_<TYPE>_MEMORY_MB, _CPU_SECONDS, _MAX_PIDS and _MAX_FILES (TYPE
//  in upper case, '-' as '_') over the defaults.  Returns 0, or -1 with the
//  problem in error (names the variable and the accepted range).
int bm_limits_from_env (bm_limits_t *self, const char *type, char *error, size_t error_size);

//  "memory 4096 MiB, cpu 3600 s, pids 256 (cgroup), files 1024" (for logs).
void bm_limits_describe (const bm_limits_t *self, char *buffer, size_t size);

//  How MAX_PIDS is enforced on this machine for this process: "cgroup v1",
//  "cgroup v2", or "RLIMIT_NPROC" (checked once, by creating and removing
//  a cgroup).  *effective is false when it is RLIMIT_NPROC and we run as
//  root (the kernel exempts root from it).
const char *bm_limits_pids_method (bool *effective);

//  What holds a process run with these limits to its memory limit (a
//  spawned bot, a pool process): "cgroup v2 memory.max" where each run
//  gets a cgroup of its own (it does for a pids limit) on a cgroup v2 with
//  the memory controller delegated, else "RLIMIT_AS".
const char *bm_limits_memory_method (const bm_limits_t *self);

//  --------------------------------------------------------------------------
//  One run.

typedef struct _bm_limits_run_t bm_limits_run_t;

//  Before the fork: a run with these limits (copied).  name makes its
//  cgroup unique in this worker (e.g. the job id).  Never NULL; a cgroup
//  that cannot be made falls back to RLIMIT_NPROC (logged).
bm_limits_run_t *bm_limits_run_new (const bm_limits_t *limits, const char *name);

//  Kill whatever is left in the run's cgroup and remove it.
void bm_limits_run_destroy (bm_limits_run_t **self_p);

//  Remove the cgroups of ended runs whose processes were still dying when
//  their run was destroyed (they are retried at every new run); wait up to
//  wait_ms for them.  Returns how many are left.  For the worker's exit
//  (with a wait) and its heartbeat (0: one try, no wait).
int bm_limits_sweep (int64_t wait_ms);

//  A pooled process starts a job: its soft CPU limit becomes the CPU time
//  it used so far plus the budget of one job (SIGXCPU when the job uses
//  it up), so the limit is per job rather than spanning the jobs of the
//  process until it is recycled.  Root also moves the hard limit to a
//  second later (SIGKILL for a bot that catches SIGXCPU).  Returns 0 or -1.
//  used_ms (if not NULL) gets the CPU time of its own the process had used
//  as the job began, as bm_limits_cpu_used_ms gives it (from the same read
//  of its CPU clock), or -1 if that did not read.
int bm_limits_cpu_job_start (pid_t pid, const bm_limits_t *limits, int64_t *used_ms);

//  Whether bm_limits_cpu_job_start moves the hard limit too (the worker
//  may raise it again for the next job: CAP_SYS_RESOURCE, probed once).
//  Where it does not, the kernel's SIGKILL a second past the budget never
//  comes for a bot that ignores SIGXCPU: the pool checks its jobs' CPU time
//  itself and kills a process past the budget plus BM_LIMITS_CPU_GRACE_MS.
bool bm_limits_cpu_hard_per_job (void);

//  The grace past a pool job's CPU budget before the worker kills its
//  process (where the hard limit does not follow the job): the second the
//  kernel's hard limit would give.
#define BM_LIMITS_CPU_GRACE_MS  1000

//  The worker killed the run's process (SIGKILL) during its current job for
//  its CPU budget, after used_ms of CPU time in the job: the verdict on that
//  job is the CPU limit, whatever status its process ends with (bwrap
//  reports its bot's SIGKILL as exit 137).  Cleared by
//  bm_limits_run_job_start.
void bm_limits_run_cpu_killed (bm_limits_run_t *self, int64_t used_ms);

//  The CPU time a process used so far, in ms: its own, as RLIMIT_CPU
//  counts it (not that of the children it reaped).  Readable until the
//  process is reaped (a zombie's too); -1 if it cannot be read (gone).
int64_t bm_limits_cpu_used_ms (pid_t pid);

//  A pooled process (or fork server) starts a job: its cgroup's counters
//  (oom_kill, pids refused) as they are now, so that the verdict counts
//  only what this job's run adds.  Nothing without a cgroup.
void bm_limits_run_job_start (bm_limits_run_t *self);

//  In the child, after fork and before exec: join the cgroup and set the
//  rlimits.  Async-signal-safe.  Returns 0, or -1 with errno set.
int bm_limits_run_apply (const bm_limits_run_t *self);

//  After the reap: if the run ended because of a limit, the limit's name
//  ("memory", "cpu", "pids", "files") with what was seen in message;
//  else NULL.  status is the wait status, usage the child's rusage (or
//  NULL), stderr_tail what it last wrote on stderr (or NULL).
const char *bm_limits_run_verdict (const bm_limits_run_t *self, int status,
                                   const struct rusage *usage, const char *stderr_tail,
                                   char *message, size_t message_size);

//  The same classification without a run (no cgroup counter).
const char *bm_limits_verdict (const bm_limits_t *limits, int status,
                               const struct rusage *usage, const char *stderr_tail,
                               char *message, size_t message_size);

//  A pooled job (pool or fork mode): the type's limits, with the cgroup
//  counters of the run its process lives in (run, or NULL) counted since
//  the job began (bm_limits_run_job_start).  The run's own limits are not
//  the job's (a warm process has no CPU limit of its own, a fork server no
//  memory limit: its child takes them from the job frame).
const char *bm_limits_pool_verdict (const bm_limits_t *limits, const bm_limits_run_t *run,
                                    int status, const struct rusage *usage,
                                    const char *stderr_tail, char *message, size_t message_size);

//  Self-test; built only into bm_worker_selftest (BM_SELFTEST).
void bm_limits_test (bool verbose);

#endif

/*  bm_pool_proc.h - one warm bot process of a pool: its pipes and reads.

    A process started with bm_bot_launch in its own process group, with
    four non-blocking pipes on the pool's loop: stdin (job frames written as
    room allows), stdout (frames, one per line, handed whole to on_frame;
    on_read once every line of a read was), stderr (a tail kept per job)
    and fd 3 (progress lines).  A stdout line longer than twice the output
    cap (JSON escapes), plus 64 KiB, is no frame: its job overflowed,
    on_bad kills the process, and its stdout is read no more.  The record
    is shared with bm_pool, which keeps the process's state (idle, busy,
    retiring), its job and its counters in it and decides what a frame
    means.  Everything runs on the loop's thread.  */
#ifndef BM_POOL_PROC_H
#define BM_POOL_PROC_H

#include "bm_capture.h"
#include "bm_limits.h"
#include "bm_pool.h"
#include "bm_progress.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum { PROC_STARTING, PROC_IDLE, PROC_BUSY, PROC_RETIRING } proc_state_t;

//  A job handed to a pool.
typedef struct {
    void *owner;                //  The owner's job pointer
    char *id;                   //  Its id, which a frame may name ("job")
    char *frame;                //  Its frame, newline-terminated (kept
                                //  while it runs: it may run again), or
                                //  NULL once given away
    size_t size;                //  Bytes in frame
    bool taken_back;            //  Taken back once from a process killed
                                //  for a frame of another job
    bool waited;                //  It was not handed to a process in
                                //  bm_pool_submit (on_start when it is)
    int64_t seq;                //  The pool's starts tried before it came
} pjob_t;

typedef struct _proc_t proc_t;

//  A whole stdout line of the process (NUL-terminated at size).
typedef void (bm_pool_proc_frame_fn) (proc_t *proc, const char *line, size_t size);
//  The process broke the framing of its stdout (why: static text; a line
//  past the cap sets overflowed, if it runs a job): kill it, and end its
//  job, if it runs one.
typedef void (bm_pool_proc_bad_fn) (proc_t *proc, const char *why);
//  Every whole line of one read of its stdout went to on_frame (reading
//  is false again): a process that an answer in it left idle may take the
//  next job now.
typedef void (bm_pool_proc_read_fn) (proc_t *proc);
//  Its job reported progress on fd 3.
typedef void (bm_pool_proc_progress_fn) (proc_t *proc, int progress);
//  End of file on its stdout (its fd_out is closed by then): it exits, or
//  it closed its stdout and can never answer again.
typedef void (bm_pool_proc_closed_fn) (proc_t *proc);

//  One bot process.
struct _proc_t {
    struct _bm_pool_t *pool;    //  Our pool (back pointer)
    zloop_t *loop;              //  Its loop (borrowed)
    const bm_pool_config_t *config;     //  Its configuration (borrowed)
    bm_pool_proc_frame_fn *on_frame;
    bm_pool_proc_bad_fn *on_bad;
    bm_pool_proc_read_fn *on_read;
    bm_pool_proc_progress_fn *on_progress;
    bm_pool_proc_closed_fn *on_closed;
    pid_t pid;                  //  Its pid = its process group
    bool reaped;                //  Its pid is gone: never signal it
    proc_state_t state;
    const char *retire_reason;  //  Why it is retiring (static text)
    int fd_in;                  //  Our end of its stdin, or -1
    int fd_out;                 //  Our end of its stdout, or -1
    int fd_err;                 //  Our end of its stderr, or -1
    int fd_progress;            //  Our end of its fd 3, or -1
    int progress_timer;         //  fd 3 unpolled until it fires, or 0
    bool progress_fast;         //  Writes fd 3 fast: never unpolled
    char *wbuf;                 //  Frame being written to its stdin
    size_t wsize, wsent;
    char *line;                 //  Its stdout line being assembled
    size_t line_size, line_cap;
    bool reading;               //  Handing the lines of one read to
                                //  on_frame: it takes no job meanwhile
                                //  (what follows an answer in the same
                                //  read is still the answered job's)
    bm_capture_t *err;          //  Its stderr tail (since the job began)
    bool frame_unread;          //  Its job's frame is not all read by it
                                //  yet, as far as we know: what it writes
                                //  on stderr meanwhile is between jobs
    bm_capture_t *between;      //  The tail of that stderr (NULL if none):
                                //  dropped once it reads the frame, its
                                //  job's message if it dies before
    size_t between_max;         //  Bytes of it kept
    bm_progress_t *progress;    //  Parser of its fd 3 lines
    pjob_t *job;                //  The job it runs, or NULL
    pid_t child;                //  Fork: the job's child, 0 if unknown yet
    int pending_signal;         //  Fork: signal to send once child is known
    bool stopping;              //  A signal was sent for its job
    char *output;               //  The job's stdout so far
    size_t output_size;
    bool overflowed;            //  The job's stdout was too large
    int64_t jobs_done;          //  Jobs it ran
    int64_t idle_since;         //  Monotonic ms
    int64_t started_at;         //  Monotonic ms of its start
    bool ready_expired;         //  Killed for not being ready in time
    bool not_fork;              //  Fork mode: killed at start, its ready
                                //  frame not a fork server's
    bool warned_bad_line;       //  Logged a line that is no frame
    bool warned_bad_progress;   //  Logged a bad progress frame of its job
    int64_t retire_since;       //  Monotonic ms
    bm_limits_run_t *limits;    //  Its resource limits (its cgroup), or NULL
    pid_t inner;                //  Sandboxed: the bot's process inside
                                //  bwrap, 0 until found
    int statm;                  //  /proc/PID/statm of statm_pid (its bot),
    pid_t statm_pid;            //  held open once read (after every job),
                                //  or -1
    char **tmp_kept;            //  Sandboxed: the names in its /tmp before
                                //  its first job, NULL until then
    int64_t cpu_before_ms;      //  Pool mode under a CPU limit: the CPU time
                                //  of its own it had used when its job
                                //  began (as RLIMIT_CPU counts it), or -1
    int64_t cpu_watch_ms;       //  Pool mode, where the pool checks its
                                //  jobs' CPU time itself: the CPU time of
                                //  its bot (under bwrap, the process
                                //  inside) when its job began, or -1
};

void bm_pool_pjob_destroy (pjob_t **job_p);

//  Start a process of the pool's program with envp, its pipes polled on
//  loop.  Returns it (state PROC_STARTING), or NULL with a reason in errstr
//  (*launched: whether the launch itself failed, rather than the pipes).
proc_t *bm_pool_proc_new (struct _bm_pool_t *pool, zloop_t *loop, const bm_pool_config_t *config,
                          char *const envp [], bm_pool_proc_frame_fn *on_frame,
                          bm_pool_proc_bad_fn *on_bad, bm_pool_proc_read_fn *on_read,
                          bm_pool_proc_progress_fn *on_progress,
                          bm_pool_proc_closed_fn *on_closed,
                          bool *launched, char *errstr, size_t errstr_size);
//  Close its pipes and free it (the process itself is the caller's).
void bm_pool_proc_destroy (proc_t **proc_p);

//  Stop polling fd and close it (if open); *fd becomes -1.
void bm_pool_proc_close_fd (proc_t *proc, int *fd);

//  Signal the process's group, unless it was reaped already (its group id
//  may then belong to someone else).
void bm_pool_proc_kill (proc_t *proc, int signum);

//  Write frame (taken: freed when written) to its stdin, as room allows.
void bm_pool_proc_write (proc_t *proc, char *frame, size_t size);

//  Read what its stdout holds now (frames go to on_frame, then on_read).
void bm_pool_proc_read_stdout (proc_t *proc);

//  Read what is in its stderr and fd 3 now (written before the frame that
//  ended the job, so already in the pipes); progress reported if report.
void bm_pool_proc_drain (proc_t *proc, bool report);

//  Read what is in its stderr now, until the pipe is empty, into the tail
//  it keeps now.  Called as its ready line is handled: what it wrote on
//  stderr before that line is in the pipe by then (a write to a pipe
//  returns once its bytes are in it), and it is its start-up output, not
//  the stderr of the job it is about to get.
void bm_pool_proc_drain_stderr (proc_t *proc);

//  Before a job is handed to it: what its stderr pipe holds now, written
//  since its last answer, is between jobs (kept aside, not the job's).
void bm_pool_proc_drain_between (proc_t *proc);

//  It died with a job: if it had not read the job's frame, what it wrote
//  on stderr before (the error that killed it, likely) becomes the job's
//  stderr; else that is dropped.
void bm_pool_proc_take_between (proc_t *proc);

//  Keep the job's stdout text; past the cap it is worthless.
void bm_pool_proc_set_output (proc_t *proc, const char *text, size_t size);

//  The parent pid of a process, -1 if unknown: a fork server names its
//  child, and we signal only a child of its own.
pid_t bm_pool_proc_parent_of (pid_t pid);

//  The process that runs the bot of a pool process started under bwrap
//  (bwrap, then bwrap as pid 1 of the sandbox's pid namespace, then the
//  bot): the first process below it, level by level, whose name is not
//  "bwrap"; found once and remembered.  0 if there is none (yet).  Its
//  per-job CPU limit goes on that process: rlimits are per process, and
//  bwrap's own use no CPU.
pid_t bm_pool_proc_inner (proc_t *proc);

//  The process that runs the bot: bm_pool_proc_inner when sandboxed, else
//  the process itself.  0 if not found (yet).
pid_t bm_pool_proc_bot (proc_t *proc, bool sandboxed);

//  The fork server's child that the server names `named` in {"started":
//  PID}, as the worker sees it (its pid to signal); 0 if the server has no
//  such child.  Unsandboxed, that is `named` itself when the server is its
//  parent.  Under bwrap the server has a pid namespace of its own and
//  names the child by its pid in there: the child is the server's child
//  whose innermost pid (the last of NSpid in /proc/PID/status) is `named`.
pid_t bm_pool_proc_child_named (proc_t *proc, pid_t named, bool sandboxed);

//  Whether a process is gone or on its way out: reaped, a zombie, or
//  exiting (PF_EXITING in /proc/PID/stat's flags, set as it begins to
//  exit, before it closes its files).
bool bm_pool_proc_exiting (pid_t pid);

//  Resident set size of proc's bot process (pid: proc's own, or under
//  bwrap the bot's inside) in MiB, -1 if unknown.
int64_t bm_pool_proc_rss_mb (proc_t *proc, pid_t pid);

#endif

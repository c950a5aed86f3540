/*  bm_job_report.h - what the worker tells the broker about a job.

    Pure translation, no I/O, no clock: packs the msgpack bodies of
    PROGRESS and DONE (docs/protocol.md, section 5), and turns the way a
    bot ended (a bm_pool_outcome_t, from a spawned or a pooled run) into the
    fields of its DONE: completed with the bot's stdout as result, or an
    error code and message (bad_output, bot_init_failed, resource_limit,
    bot_failed).  bm_worker sends what these build.  */
#ifndef BM_JOB_REPORT_H
#define BM_JOB_REPORT_H

#include "bm_bot.h"
#include "bm_limits.h"
#include "bm_pool.h"
#include "bm_proto.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#define BM_MESSAGE_MAX          4000    //  Bytes of an error message we send
                                        //  (the broker keeps 4095)
#define BM_RESULT_MAX_DEPTH     30      //  Nesting of a result: the broker
                                        //  wraps it in two more maps (a job
                                        //  record in a REPLY), and msgpack-c
                                        //  decodes at most 32 levels

//  The fields of a DONE for a job whose bot ran.
typedef struct {
    const char *code;           //  Error code, NULL if the job completed
    char *message;              //  Error message (owned), NULL if completed
    size_t own;                 //  Its first bytes that are the worker's
                                //  words: the rest is the bot's stderr,
                                //  never logged (SIZE_MAX: all of it)
    int exit_code;              //  error.exitCode, -1 for none
    const char *limit;          //  error.limit: the resource limit the bot
                                //  hit (static text), or NULL
    char *result;               //  Completed: the result as a msgpack value
    size_t result_size;         //  (owned), result_size bytes
} bm_job_verdict_t;

//  The verdict on a bot's run.  bot is the spawned bot (it knows its rusage
//  and cgroup), or NULL for a pooled run (judged by its exit and stderr
//  against limits).  output_max and max_payload are the caps on its stdout
//  and on the packed result.  Free the verdict with bm_job_verdict_clear.
void bm_job_report_verdict (const bm_pool_outcome_t *outcome, bm_bot_t *bot,
                            const bm_limits_t *limits, int64_t output_max, int64_t max_payload,
                            bm_job_verdict_t *verdict);
void bm_job_verdict_clear (bm_job_verdict_t *verdict);

//  How a bot's process ended, from its wait status, as words after "the
//  bot": "killed by signal SIGSEGV", "exited with status 3".  sandboxed: it
//  ran under bwrap, which passes on its child's death by signal N as exit
//  128 + N: "exited with status 139 (128+11: killed by SIGSEGV inside the
//  sandbox)".
void bm_job_report_how (int status, bool sandboxed, char *how, size_t how_size);
//  The signal N of a sandboxed bot's exit status 128 + N (bwrap's word for
//  its child's death by signal N), or 0: no such status, or not sandboxed
//  (a bot's own exit 139 is an exit 139).
int bm_job_report_bwrap_signal (int exit_code, bool sandboxed);
//  A bot dead by SIGSEGV, SIGABRT or SIGKILL while limits caps its address
//  space: that limit may be what killed it at start (a JVM reserves its
//  heap and more at once, and crashes when it cannot), as a hint naming
//  memory_var ("; BOT_JAVA_MEMORY_MB=200 may be too low for it to start
//  (...): raise it"; maybe: it may have died later, "if it died at start,
//  ..."; memory_var unset, limits->memory_default: "; the default
//  BOT_JAVA_MEMORY_MB=4096 may be too low for it to start (...): set it
//  higher"); else "".  What holds the bot to its memory limit is what
//  bm_limits_memory_method says for limits (found once per worker).
void bm_job_report_memory_hint (int signum, const bm_limits_t *limits, const char *memory_var,
                                bool maybe, char *hint, size_t hint_size);
//  The same, with what holds the bot to its memory limit given (method, as
//  bm_limits_memory_method names it).  Only "RLIMIT_AS" gets the hint: under
//  a cgroup v2 memory.max nothing caps the bot's address space, and the
//  cgroup's answer to a bot over its limit, an OOM kill (SIGKILL), is
//  counted in its memory.events and judged the memory limit
//  (resource_limit) before a hint is sought: a crash or a SIGKILL the
//  cgroup did not count there is not the limit's doing.
void bm_job_report_memory_hint_under (int signum, const bm_limits_t *limits, const char *method,
                                      const char *memory_var, bool maybe, char *hint,
                                      size_t hint_size);

//  Parse a bot's stdout as JSON and pack it (the whole text, else its last
//  non-empty line).  Returns 0 with *data/*data_size (caller frees), or -1
//  with a message.
int bm_job_report_parse_result (const char *text, size_t size, int64_t max_payload,
                                char **data, size_t *data_size, char *error, size_t error_size);
//  Pack a result already parsed (a pooled bot's {"result": VALUE}), as
//  bm_job_report_parse_result packs what it parsed.
int bm_job_report_pack_result (const json_t *value, int64_t max_payload,
                               char **data, size_t *data_size, char *error, size_t error_size);

//  Whether a spawned bot's stdout begins with a pooled bot's ready frame: its
//  first non-empty line an object {"ready": true} with no other key than
//  "pid" and "mode" (what no result of a spawned bot looks like).
bool bm_job_report_pool_ready (const char *text, size_t size);

//  Keep the last `max` bytes of text (in place), starting at a UTF-8
//  character boundary: the end of stderr is what explains a failure.
void bm_job_report_keep_end (char *text, size_t max);

//  The bodies below are packed into sbuf, which they initialise; the
//  caller destroys it (msgpack_sbuffer_destroy).  DONE and the no-op
//  result are packed into a bm_packer_t the caller keeps instead (one
//  buffer reused for every job: a worker sends one DONE a job).

//  PROGRESS {jobId, progress}
void bm_job_report_progress (msgpack_sbuffer *sbuf, const char *job_id, int progress);

//  PROGRESS {jobId, waiting: true}: the job waits in the worker for a
//  process (its timeout not running); with started, {jobId, started: true}:
//  it began on one now.
void bm_job_report_waiting (msgpack_sbuffer *sbuf, const char *job_id, bool started);

//  DONE {jobId, ok, result | error {code, message, exitCode?, limit?},
//        startedAt, finishedAt, attempt, progress?, log?}, appended to packer.  ok when
//  code is NULL; result_data is then a msgpack value (result_size bytes).
//  exit_code < 0, limit NULL, progress < 0 and log NULL or empty are left
//  out (progress: the job's last progress, when PROGRESS has not carried
//  it yet; log: the bot's stderr tail, its last BM_MAX_JOB_LOG_LEN bytes).
void bm_job_report_done (bm_packer_t *packer, const char *job_id,
                         const char *result_data, size_t result_size,
                         const char *code, const char *message, int exit_code,
                         const char *limit, int64_t attempt, int64_t started_at,
                         int64_t finished_at, int progress, const char *log);

//  A DONE kept (body, size bytes) packed again for another attempt of its
//  job: the same fields, attempt replaced.  0, or -1 when body is not a
//  msgpack map (sbuf is then not initialised).
int bm_job_report_done_again (msgpack_sbuffer *sbuf, const char *body, size_t size,
                              int64_t attempt);

//  The result of a simulated run: {simulated, botType, jobId, attempt,
//  durationMs}.
void bm_job_report_simulated (msgpack_sbuffer *sbuf, const char *bot_type, const char *job_id,
                              int64_t attempt, int64_t duration_ms);

//  The result of a no-op run: {noop, botType, jobId, attempt}, appended
//  to packer.
void bm_job_report_noop (bm_packer_t *packer, const char *bot_type, const char *job_id,
                         int64_t attempt);

//  Self-test; built only into bm_worker_selftest (BM_SELFTEST).
void bm_job_report_test (bool verbose);

#endif

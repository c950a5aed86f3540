/*  bm_codec.h - one C struct per message body of docs/protocol.md, with
    one decode and one encode each.

    bm_proto.h cuts frames and checks msgpack; this class gives each body a
    type.  A decode reads a parsed message (bm_msg_t), checks every field
    against the limits named in bm_proto.h and fills a struct, or returns
    -1 with a typed error naming the field at fault.  An encode writes a
    struct as a msgpack map into a bm_packer_t.  No I/O, no clock, no
    globals: fuzzable as it is (tests/fuzz/fuzz_codec.c decodes every body);
    its self-test is bm_codec_test (CTest common.unit.codec).

    Ownership: a decoded struct borrows from the message it was decoded
    from (string slices, payload/result bytes): it is valid until that
    message is destroyed or parsed into again.  Fixed-size fields (ids,
    bot types, codes) are copied and NUL-terminated.

    Payloads and results stay msgpack bytes, never re-encoded: a decoded
    bm_codec_value_t points at the bytes the peer sent (bm_msg_raw_value),
    and an encode writes a value's bytes as they are.  A broker can keep a
    payload and forward it to a worker with one copy and no re-encoding.

    Rules every decode follows (section 2, "Encoding rules"):
      - unknown keys are ignored; an optional key that is absent or nil
        takes its default;
      - a present key of the wrong type, or out of its range, is an error
        (code "bad_request"), except where the protocol says how the value
        reads instead (a worker name the broker replaces, a LIST limit
        that is clamped, an error code too long that reads as bot_failed,
        PROGRESS outside 0..100 that is ignored, a non-boolean ok that
        reads as false, DONE's optional fields): these read the same way
        as the broker always has;
      - a client body's "req" must be an integer when present.

    The command names the body: bm_codec_submit_decode for SUBMIT and so
    on.  STATUS, CANCEL, RETRY and REDELIVER share one body ({req, jobId}),
    STATS, PING and METRICS another ({req}).  */
#ifndef BM_CODEC_H
#define BM_CODEC_H

#include "bm_backoff.h"
#include "bm_proto.h"

//  Why a body was refused: the wire code, the field at fault ("" for the
//  body itself; "error.code" for a nested one) and a message for humans
//  naming it.
typedef struct {
    const char *code;           //  "bad_request"
    const char *field;          //  "timeoutMs", "types", ...
    char message [160];
} bm_codec_error_t;

//  A string borrowed from a message: not NUL-terminated; ptr NULL when
//  the key was absent.
typedef struct {
    const char *ptr;
    size_t len;
} bm_codec_str_t;

//  Any msgpack value (payload, result), borrowed from a message.  obj is
//  the decoded value (NULL when absent); data/size its encoded bytes as
//  received (NULL when absent; for a value nested below the body's top
//  level data is NULL and obj alone describes it).  For an encode, data/
//  size are what is written (NULL: nil); obj is not read.
typedef struct {
    const msgpack_object *obj;
    const char *data;
    size_t size;
} bm_codec_value_t;

//  --------------------------------------------------------------------------
//  Client side (BMC01), requests

//  SUBMIT {req, botType, payload, webhookUrl?, priority?, idempotencyKey?,
//          timeoutMs?, maxAttempts?, notify?, attempts?, backoff?, delayMs?,
//          runAt?, dependsOn?, onDependencyFailure?, dependencyResults?}
//  dependsOn: 1..BM_MAX_DEPENDS distinct job ids the job waits for;
//  onDependencyFailure "fail" (default) or "ignore"; dependencyResults
//  (only with dependsOn): the bot gets its dependencies' results.
//  attempts counts runs (failed runs are retried), maxAttempts dispatches
//  (lost workers); backoff is {type?, delayMs, jitter?}; delayMs and runAt
//  (epoch ms on the broker's clock) exclude each other.
//  The broker's defaults (JOB_TIMEOUT_MS, JOB_MAX_ATTEMPTS, the default
//  priority) are its own: has_* says whether the client gave the field.
//  The payload nests at most BM_MAX_NESTING levels; its encoded size is
//  the caller's to check (MAX_PAYLOAD_BYTES is configured).
typedef struct {
    bool has_req;
    int64_t req;
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    bm_codec_value_t payload;           //  data NULL: absent (reads as nil)
    bm_codec_str_t webhook_url;         //  http(s)://, <= BM_MAX_URL_LEN
    bool has_priority;
    int64_t priority;                   //  0..BM_MAX_PRIORITY
    char idempotency_key [BM_MAX_ID_LEN + 1];   //  "" when absent
    bool has_timeout_ms;
    int64_t timeout_ms;                 //  1..BM_MAX_TIMEOUT_MS
    bool has_max_attempts;
    int64_t max_attempts;               //  1..BM_MAX_ATTEMPTS
    bool notify;                        //  false when absent
    bool has_attempts;
    int64_t attempts;                   //  1..BM_MAX_ATTEMPTS
    bool has_backoff;
    bm_backoff_t backoff;
    bool has_delay_ms;
    int64_t delay_ms;                   //  0..BM_MAX_DELAY_MS
    bool has_run_at;
    int64_t run_at;                     //  Epoch ms, >= 0
    size_t depends_count;               //  dependsOn: 0 when absent
    bm_codec_str_t depends_on [BM_MAX_DEPENDS];     //  Job ids, distinct
    bool ignore_dependency_failure;     //  onDependencyFailure "ignore"
    bool dependency_results;            //  dependencyResults
} bm_codec_submit_t;

int bm_codec_submit_decode (const bm_msg_t *msg, bm_codec_submit_t *self, bm_codec_error_t *error);
void bm_codec_submit_encode (const bm_codec_submit_t *self, bm_packer_t *packer);

//  STATUS, CANCEL, RETRY, REDELIVER {req, jobId}; STATUS also
//  {req, idempotencyKey}: the job that key names (exactly one of the two).
typedef struct {
    bool has_req;
    int64_t req;
    char job_id [BM_MAX_ID_LEN + 1];            //  "" when a STATUS names a key
    char idempotency_key [BM_MAX_ID_LEN + 1];   //  "" when absent
} bm_codec_job_ref_t;

int bm_codec_job_ref_decode (const bm_msg_t *msg, bm_codec_job_ref_t *self, bm_codec_error_t *error);
void bm_codec_job_ref_encode (const bm_codec_job_ref_t *self, bm_packer_t *packer);

//  STATS, PING, METRICS {req}
typedef struct {
    bool has_req;
    int64_t req;
} bm_codec_request_t;

int bm_codec_request_decode (const bm_msg_t *msg, bm_codec_request_t *self, bm_codec_error_t *error);
void bm_codec_request_encode (const bm_codec_request_t *self, bm_packer_t *packer);

//  LIST {req, state?, botType?, webhook?, limit?}.  A state that is not a
//  short string, a botType that is not a valid bot type or a webhook that
//  is not a webhook state is refused; a state no job has matches no job;
//  the limit is clamped (BM_LIST_*).
typedef struct {
    bool has_req;
    int64_t req;
    char state [BM_MAX_STATE_LEN + 1];  //  "" when absent: any state
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];    //  "" when absent: any type
    char webhook [BM_MAX_STATE_LEN + 1];    //  A webhook state; "" when
                                            //  absent: any (or no) webhook
    int64_t limit;                      //  1..BM_LIST_MAX_LIMIT
} bm_codec_list_t;

int bm_codec_list_decode (const bm_msg_t *msg, bm_codec_list_t *self, bm_codec_error_t *error);
void bm_codec_list_encode (const bm_codec_list_t *self, bm_packer_t *packer);

//  --------------------------------------------------------------------------
//  Client side (BMC01), replies

//  ACCEPTED {req, jobId, duplicate, position?, delayed?, state?, priority?,
//  unserved?}: position is the job's estimated place in its bot type's
//  queue (1: next), when the broker gives it; state and priority are the
//  job's, on a duplicate (the job may have run since; the request that
//  matched it may have asked for another priority), when the broker knows
//  them; unserved (sent when true): no connected worker serves the job's
//  bot type, so the job waits until one connects.
typedef struct {
    bool has_req;
    int64_t req;
    char job_id [BM_MAX_ID_LEN + 1];
    bool duplicate;
    bool has_position;
    int64_t position;                   //  >= 1
    bool delayed;                       //  Waits for its due time (sent when true)
    char state [BM_MAX_STATE_LEN + 1];  //  A duplicate's state now; "" when not given
    bool has_priority;
    int64_t priority;                   //  A duplicate's job's priority
    bool unserved;                      //  No worker serves its type now (sent when true)
} bm_codec_accepted_t;

int bm_codec_accepted_decode (const bm_msg_t *msg, bm_codec_accepted_t *self, bm_codec_error_t *error);
void bm_codec_accepted_encode (const bm_codec_accepted_t *self, bm_packer_t *packer);

//  REJECTED {req?, code, message}; also NACK {code, message} (has_req
//  false).
typedef struct {
    bool has_req;
    int64_t req;
    char code [BM_MAX_ERROR_CODE_LEN + 1];
    bm_codec_str_t message;             //  "" when absent
} bm_codec_rejected_t;

int bm_codec_rejected_decode (const bm_msg_t *msg, bm_codec_rejected_t *self, bm_codec_error_t *error);
void bm_codec_rejected_encode (const bm_codec_rejected_t *self, bm_packer_t *packer);

//  A webhook delivery's state: {state, attempts, lastStatus, lastError,
//  nextAttemptAt}, in PROGRESS, DONE, JOB (of a delivery) and a job record.
//  lastStatus, lastError and nextAttemptAt may be nil (not known).
typedef struct {
    const msgpack_object *obj;          //  The map as received (decode only)
    char state [BM_MAX_STATE_LEN + 1];  //  pending, retrying, delivered, failed
    int64_t attempts;                   //  >= 0
    int64_t last_status;                //  0: not known
    bm_codec_str_t last_error;          //  ptr NULL: not known
    int64_t next_attempt_at;            //  0: not known
} bm_codec_webhook_t;

int bm_codec_webhook_decode (const msgpack_object *map, bm_codec_webhook_t *self,
                             bm_codec_error_t *error);
void bm_codec_webhook_encode (const bm_codec_webhook_t *self, bm_packer_t *packer);

//  A job's error: {code, message, exitCode?, limit?}.  limit (with code
//  resource_limit: which limit the run hit) is "" when absent, not a
//  string or longer than BM_MAX_LIMIT_NAME_LEN.
typedef struct {
    char code [BM_MAX_ERROR_CODE_LEN + 1];
    bm_codec_str_t message;             //  At most BM_MAX_ERROR_MESSAGE_LEN bytes
    bool has_exit_code;
    int64_t exit_code;
    char limit [BM_MAX_LIMIT_NAME_LEN + 1];
} bm_codec_job_error_t;

//  A job's record (section 3), as STATUS, CANCEL and RESULT carry it, and
//  (without payload and result) LIST.  Decoded from the record's map (it
//  sits inside a body): payload and result have obj only.
typedef struct {
    const msgpack_object *obj;          //  The map as received (decode only)
    char job_id [BM_MAX_ID_LEN + 1];
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    char state [BM_MAX_STATE_LEN + 1];  //  queued, running, completed, failed, cancelled
    int64_t priority;
    int64_t progress;
    int64_t attempts;
    int64_t max_attempts;
    int64_t timeout_ms;
    int64_t created_at;
    int64_t started_at;                 //  0: absent
    int64_t finished_at;                //  0: absent
    bm_codec_str_t webhook_url;
    bm_codec_str_t worker;
    bm_codec_value_t payload;
    bm_codec_value_t result;
    bool has_error;
    bm_codec_job_error_t error;
    bool has_webhook;
    bm_codec_webhook_t webhook;
} bm_codec_record_t;

int bm_codec_record_decode (const msgpack_object *map, bm_codec_record_t *self,
                            bm_codec_error_t *error);
void bm_codec_record_encode (const bm_codec_record_t *self, bm_packer_t *packer);

//  REPLY to STATUS or CANCEL {req, job}; RESULT {jobId, job} (has_req
//  false, job_id set).
typedef struct {
    bool has_req;
    int64_t req;
    char job_id [BM_MAX_ID_LEN + 1];    //  RESULT only; "" in a REPLY
    bm_codec_record_t job;
} bm_codec_job_reply_t;

int bm_codec_job_reply_decode (const bm_msg_t *msg, bm_codec_job_reply_t *self,
                               bm_codec_error_t *error);
//  RESULT {jobId, job}
int bm_codec_result_decode (const bm_msg_t *msg, bm_codec_job_reply_t *self,
                            bm_codec_error_t *error);
void bm_codec_job_reply_encode (const bm_codec_job_reply_t *self, bm_packer_t *packer);

//  REPLY to LIST {req, jobs: [record]}: the records are read one at a
//  time (no allocation): bm_codec_list_reply_job.
typedef struct {
    bool has_req;
    int64_t req;
    const msgpack_object *jobs;         //  The array, checked
    size_t count;
} bm_codec_list_reply_t;

int bm_codec_list_reply_decode (const bm_msg_t *msg, bm_codec_list_reply_t *self,
                                bm_codec_error_t *error);
//  The index-th record; 0 or -1.
int bm_codec_list_reply_job (const bm_codec_list_reply_t *self, size_t index,
                             bm_codec_record_t *job, bm_codec_error_t *error);

//  REPLY to PING {req, redis, uptimeMs}
typedef struct {
    bool has_req;
    int64_t req;
    bool redis;
    int64_t uptime_ms;
} bm_codec_ping_reply_t;

int bm_codec_ping_reply_decode (const bm_msg_t *msg, bm_codec_ping_reply_t *self,
                                bm_codec_error_t *error);
void bm_codec_ping_reply_encode (const bm_codec_ping_reply_t *self, bm_packer_t *packer);

//  REPLY to METRICS {req, text}
typedef struct {
    bool has_req;
    int64_t req;
    bm_codec_str_t text;
} bm_codec_metrics_reply_t;

int bm_codec_metrics_reply_decode (const bm_msg_t *msg, bm_codec_metrics_reply_t *self,
                                   bm_codec_error_t *error);
void bm_codec_metrics_reply_encode (const bm_codec_metrics_reply_t *self, bm_packer_t *packer);

//  REPLY to STATS {req, types: {<type>: {...}}, workers: [...], totals,
//  redis, uptimeMs}.  Types and workers are read one at a time.
typedef struct {
    char name [BM_MAX_BOT_TYPE_LEN + 1];
    int64_t waiting, running, completed, failed, cancelled;
    int64_t limit, usage, waiting_for_permit, workers, submitted;
} bm_codec_type_stats_t;

typedef struct {
    bm_codec_str_t name;
    const msgpack_object *types;        //  Array of bot type strings
    int64_t credit, running, last_heartbeat, pid;
} bm_codec_worker_stats_t;

typedef struct {
    bool has_req;
    int64_t req;
    const msgpack_object *types;        //  The map, checked
    size_t type_count;
    const msgpack_object *workers;      //  The array, checked
    size_t worker_count;
    int64_t submitted, completed, failed, cancelled, rejected, retried;     //  totals
    bool redis;
    int64_t uptime_ms;
} bm_codec_stats_reply_t;

int bm_codec_stats_reply_decode (const bm_msg_t *msg, bm_codec_stats_reply_t *self,
                                 bm_codec_error_t *error);
int bm_codec_stats_reply_type (const bm_codec_stats_reply_t *self, size_t index,
                               bm_codec_type_stats_t *type, bm_codec_error_t *error);
int bm_codec_stats_reply_worker (const bm_codec_stats_reply_t *self, size_t index,
                                 bm_codec_worker_stats_t *worker, bm_codec_error_t *error);

//  --------------------------------------------------------------------------
//  Worker side (BMW01)

//  HEARTBEAT from a worker {bots?}: its warm bots per type, a compatible
//  extension (protocol.md section 5): {TYPE: {mode, processes, recycles,
//  initFailures}} for the types it runs in pool or fork mode.
typedef struct {
    char type [BM_MAX_BOT_TYPE_LEN + 1];
    char mode [8];                      //  "pool" or "fork"
    int64_t processes;                  //  Warm processes alive now
    int64_t recycles;                   //  Processes retired so far
    int64_t init_failures;              //  Processes that died loading
} bm_codec_bot_pool_t;

typedef struct {
    int count;                          //  0: a plain HEARTBEAT {}
    bm_codec_bot_pool_t bots [BM_MAX_WORKER_TYPES];
} bm_codec_heartbeat_t;

//  READY {name, types, credit, pid?, batch?, running?, bots?}.  A name that is
//  absent (or nil) leaves name "" (the broker names the worker itself);
//  one that is not a valid id is refused.  running: the ids of the jobs the worker runs (sent on a new
//  connection), 0..BM_MAX_READY_RUNNING valid ids.  bots: the worker's warm
//  bots as a HEARTBEAT's (count 0: not sent), so that STATS shows each
//  type's mode from the READY on.
typedef struct {
    char name [BM_MAX_ID_LEN + 1];
    const char *types [BM_MAX_WORKER_TYPES];    //  Encode: C strings
    size_t type_lens [BM_MAX_WORKER_TYPES];     //  Decode: lengths (not terminated)
    int type_count;                     //  1..BM_MAX_WORKER_TYPES
    int64_t credit;                     //  0..BM_MAX_CREDIT
    bool has_pid;
    int64_t pid;
    bool batch;                         //  JOB_MANY welcome (section 5a); false when absent
    const msgpack_object *running;      //  Decode: the array of ids (checked,
                                        //  borrowed), or NULL when absent
    const char *const *running_ids;     //  Encode: C strings
    int running_count;                  //  Both: how many (0: not sent)
    bm_codec_heartbeat_t bots;          //  Warm bots per type (count 0: none)
} bm_codec_ready_t;

int bm_codec_ready_decode (const bm_msg_t *msg, bm_codec_ready_t *self, bm_codec_error_t *error);
void bm_codec_ready_encode (const bm_codec_ready_t *self, bm_packer_t *packer);

//  JOB {jobId, botType, payload, attempt, timeoutMs, deadline, webhook?}
//  webhook: the delivery state last reported, on a webhook delivery job.
//  job_id is filled first: after a failure on a later field it still
//  names the job (so that the worker can answer DONE for it).
typedef struct {
    char job_id [BM_MAX_ID_LEN + 1];
    char bot_type [BM_MAX_BOT_TYPE_LEN + 1];
    bm_codec_value_t payload;
    int64_t attempt;                    //  >= 1
    int64_t timeout_ms;                 //  1..BM_MAX_TIMEOUT_MS
    int64_t deadline;                   //  ms since the epoch; 0: absent
    bool has_webhook;
    bm_codec_webhook_t webhook;
} bm_codec_job_t;

int bm_codec_job_decode (const bm_msg_t *msg, bm_codec_job_t *self, bm_codec_error_t *error);
void bm_codec_job_encode (const bm_codec_job_t *self, bm_packer_t *packer);

//  PROGRESS {jobId, progress?, waiting?, started?, webhook?}.  A progress
//  outside 0..100 is ignored (has_progress false).  waiting: the job waits
//  in its worker for a process (prefetched), its timeout not running;
//  started: such a job began on a process just now.
typedef struct {
    char job_id [BM_MAX_ID_LEN + 1];
    bool has_progress;
    int64_t progress;
    bool waiting;
    bool started;
    bool has_webhook;
    bm_codec_webhook_t webhook;
} bm_codec_progress_t;

int bm_codec_progress_decode (const bm_msg_t *msg, bm_codec_progress_t *self,
                              bm_codec_error_t *error);
void bm_codec_progress_encode (const bm_codec_progress_t *self, bm_packer_t *packer);

//  DONE {jobId, ok, result?, error?, startedAt?, finishedAt?, progress?,
//        webhook?, attempt?, log?}.
//  ok: true and result, or ok: false and error.  Only jobId is required:
//  a DONE ends its job, so optional fields that do not read (startedAt,
//  finishedAt, webhook) are ignored, not a reason to refuse it.  A result
//  nested deeper than BM_MAX_NESTING is not refused either:
//  result_too_deep tells the broker to fail the job with bad_output (the
//  worker is not at fault for its bot's output).  error.code absent, not
//  a string or longer than BM_MAX_ERROR_CODE_LEN reads as "bot_failed";
//  error.message is cut at BM_MAX_ERROR_MESSAGE_LEN bytes on a UTF-8
//  character boundary.  attempt: the JOB's attempt this DONE ends, so
//  that the DONE of an earlier run (sent again after a reconnect) is told
//  from the run now going; absent (0) from older workers.  log: the tail
//  of what the bot wrote on stderr during the run, any outcome; its last
//  BM_MAX_JOB_LOG_LEN bytes are kept (cut on a UTF-8 character boundary);
//  one that is not a string is ignored, log_invalid saying so.
typedef struct {
    char job_id [BM_MAX_ID_LEN + 1];
    bool ok;
    bm_codec_value_t result;            //  data NULL: absent (reads as nil)
    bool result_too_deep;
    bm_codec_job_error_t error;         //  When !ok; defaults when absent
    int64_t started_at;                 //  0: absent
    int64_t finished_at;                //  0: absent
    bool has_progress;
    int64_t progress;
    bool has_webhook;
    bm_codec_webhook_t webhook;
    int64_t attempt;                    //  0: absent
    bm_codec_str_t log;                 //  ptr NULL: absent (or ignored)
    const char *log_invalid;            //  Why a log sent was ignored
                                        //  (static text), or NULL
} bm_codec_done_t;

int bm_codec_done_decode (const bm_msg_t *msg, bm_codec_done_t *self, bm_codec_error_t *error);
void bm_codec_done_encode (const bm_codec_done_t *self, bm_packer_t *packer);

//  CANCEL (broker to worker) {jobId, reason}; RELEASE {jobId, lost?,
//  signal?} (reason "").
typedef struct {
    char job_id [BM_MAX_ID_LEN + 1];
    bm_codec_str_t reason;              //  ptr NULL when absent
    bool lost;                          //  RELEASE: the process running the
                                        //  job was lost (an attempt that
                                        //  counts); absent: false
    int64_t signal;                     //  RELEASE with lost: the signal
                                        //  that killed that process from
                                        //  outside; 0: absent (one that
                                        //  does not read is ignored)
} bm_codec_job_notice_t;

int bm_codec_job_notice_decode (const bm_msg_t *msg, bm_codec_job_notice_t *self,
                                bm_codec_error_t *error);
void bm_codec_job_notice_encode (const bm_codec_job_notice_t *self, bm_packer_t *packer);

//  DISCONNECT {reason?, by?}; HEARTBEAT {} (reason ptr NULL).  by, with
//  reason "replaced": who took the worker's name ("pid N at ADDRESS"), a
//  compatible extension, informational: decoded best effort (one that is
//  not a string or is over BM_MAX_DISCONNECT_BY_LEN bytes reads as
//  absent; the message still decodes).
typedef struct {
    bm_codec_str_t reason;
    bm_codec_str_t by;
} bm_codec_disconnect_t;

int bm_codec_disconnect_decode (const bm_msg_t *msg, bm_codec_disconnect_t *self,
                                bm_codec_error_t *error);
void bm_codec_disconnect_encode (const bm_codec_disconnect_t *self, bm_packer_t *packer);

//  HEARTBEAT {bots?}: bm_codec_heartbeat_t above.
int bm_codec_heartbeat_decode (const bm_msg_t *msg, bm_codec_heartbeat_t *self,
                               bm_codec_error_t *error);
void bm_codec_heartbeat_encode (const bm_codec_heartbeat_t *self, bm_packer_t *packer);

//  NACK {code, message}: bm_codec_rejected_t, has_req false.

//  --------------------------------------------------------------------------
//  Every body by kind, for tests and the fuzzer: decode msg's body as the
//  given kind into a union that holds any of them.

typedef enum {
    BM_CODEC_SUBMIT, BM_CODEC_JOB_REF, BM_CODEC_REQUEST, BM_CODEC_LIST,
    BM_CODEC_ACCEPTED, BM_CODEC_REJECTED, BM_CODEC_JOB_REPLY, BM_CODEC_RESULT,
    BM_CODEC_LIST_REPLY, BM_CODEC_PING_REPLY, BM_CODEC_METRICS_REPLY, BM_CODEC_STATS_REPLY,
    BM_CODEC_READY, BM_CODEC_JOB, BM_CODEC_PROGRESS, BM_CODEC_DONE, BM_CODEC_JOB_NOTICE,
    BM_CODEC_DISCONNECT, BM_CODEC_HEARTBEAT,
    BM_CODEC_KINDS                      //  How many there are
} bm_codec_kind_t;

typedef union {
    bm_codec_submit_t submit;
    bm_codec_job_ref_t job_ref;
    bm_codec_request_t request;
    bm_codec_list_t list;
    bm_codec_accepted_t accepted;
    bm_codec_rejected_t rejected;
    bm_codec_job_reply_t job_reply;
    bm_codec_list_reply_t list_reply;
    bm_codec_ping_reply_t ping_reply;
    bm_codec_metrics_reply_t metrics_reply;
    bm_codec_stats_reply_t stats_reply;
    bm_codec_ready_t ready;
    bm_codec_job_t job;
    bm_codec_progress_t progress;
    bm_codec_done_t done;
    bm_codec_job_notice_t job_notice;
    bm_codec_disconnect_t disconnect;
    bm_codec_heartbeat_t heartbeat;
} bm_codec_body_t;

int bm_codec_decode (bm_codec_kind_t kind, const bm_msg_t *msg, bm_codec_body_t *body,
                     bm_codec_error_t *error);
//  The body's name for logs and tests ("SUBMIT", "DONE"...).
const char *bm_codec_kind_name (bm_codec_kind_t kind);

//  Self test (common/bm_codec_test.c; bm_common_selftest --test codec).
void bm_codec_test (bool verbose);


#endif

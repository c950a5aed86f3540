/*  bm_record.c - a job's record in Redis, as bytes (bm_record.h).  */
#include "bm_broker_internal.h"
#include "bm_record.h"

//  Keys of the "r" map.
#define R_TYPE          "t"
#define R_PAYLOAD       "p"
#define R_PRIORITY      "y"
#define R_SEQ           "q"
#define R_MAX_ATTEMPTS  "m"
#define R_TIMEOUT       "o"
#define R_CREATED       "c"
#define R_WEBHOOK_URL   "u"
#define R_IDEM_KEY      "k"
#define R_PARENT        "a"
#define R_RUN_ATTEMPTS  "n"
#define R_BACKOFF       "b"
//  Keys of the "x" map.
#define X_ATTEMPTS      "a"
#define X_PROGRESS      "g"
#define X_STARTED       "s"
#define X_FINISHED      "f"
#define X_WORKER        "w"
#define X_LAST_WORKER   "lw"
#define X_RESULT        "r"
#define X_ERROR_CODE    "ec"
#define X_ERROR_MESSAGE "em"
#define X_EXIT_CODE     "ex"
#define X_DELIVERIES    "d"
#define X_DELIVERIES_BEFORE "db"
#define X_RUN_AT        "t"
#define X_ATTEMPT_ERRORS "e"
#define X_HELD          "h"
#define X_RUN_COUNTED   "lc"
#define X_FAILED_DONE   "fd"
#define X_LOG           "lg"
#define R_DEPENDS       "dn"        //  dependsOn: [id, ...]
#define R_DEP_IGNORE    "di"        //  onDependencyFailure ignore: 1
#define R_DEP_RESULTS   "dw"        //  dependencyResults: 1
#define X_DEP_PENDING   "dq"        //  Pending dependencies: [index, ...]
#define X_DEP_FAILED    "df"        //  Failed (cancelled, removed) ones: [index, ...]
#define X_DEP_RETRY     "dv"        //  Pending ones waited for until their own
                                    //  RETRY (failed when the job was retried)
#define X_DEP_FAILED_AT "dt"        //  Of those, when they had ended: {index: ms}
#define X_DEP_RESULTS   "dr"        //  Results kept, as earlier brokers wrote
                                    //  them: {index: bin, ...}; read only

static void
s_pack_bin (msgpack_packer *pk, const char *key, const char *data, size_t size)
{
    bm_pack_str (pk, key);
    msgpack_pack_bin (pk, size);
    msgpack_pack_bin_body (pk, data, size);
}

//  The backoff as one short text: "e2000", "f500", "e2000j", "f500j200"
//  (type letter, delay in ms, j for full jitter or j and the random
//  fraction in 1/1000).
static void
s_backoff_text (const bm_backoff_t *backoff, char *buf, size_t size)
{
    int n = snprintf (buf, size, "%c%" PRId64 "%s", backoff->type == BM_BACKOFF_FIXED ? 'f' : 'e',
                      backoff->delay_ms, backoff->jitter_pm ? "j" : "");
    if (backoff->jitter_pm && backoff->jitter_pm != BM_BACKOFF_FULL_JITTER
    &&  n > 0 && (size_t) n < size)
        snprintf (buf + n, size - (size_t) n, "%d", backoff->jitter_pm);
}

static void
s_backoff_read (bm_backoff_t *backoff, const char *text)
{
    char *end;
    long long delay = strtoll (text + (*text ? 1 : 0), &end, 10);
    char error [128];
    long jitter = 0;
    if (*end == 'j')
        jitter = end [1] ? strtol (end + 1, NULL, 10) : BM_BACKOFF_FULL_JITTER;
    if (jitter < 0 || jitter > BM_BACKOFF_FULL_JITTER)
        jitter = BM_BACKOFF_FULL_JITTER;     //  Not a fraction we write: full
    bm_backoff_set (backoff, *text == 'f' ? "fixed" : "exponential", *text == 'f' ? 5 : 11,
                    delay, (int) jitter, error, sizeof error);
}

static bool
s_custom_retry (const bm_job_t *job, bool *attempts, bool *backoff)
{
    const bm_service_t *service = job->service;
    *attempts = service && job->run_attempts != service->retry_attempts;
    *backoff = service && (job->backoff.type != BM_BACKOFF_EXPONENTIAL || job->backoff.jitter_pm
                       ||  job->backoff.delay_ms != service->retry_backoff_ms);
    return *attempts || *backoff;
}

void
bm_record_pack_submit (msgpack_packer *pk, const bm_job_t *job)
{
    bool custom_attempts, custom_backoff;
    s_custom_retry (job, &custom_attempts, &custom_backoff);
    size_t count = 6 + (job->priority != 0) + (job->webhook_url != NULL) + (job->idem_key != NULL)
                 + (job->parent != NULL) + custom_attempts + custom_backoff
                 + (job->deps ? 1 + job->deps->ignore_failure + job->deps->results : 0);
    msgpack_pack_map (pk, count);
    BM_PACK_KV_STR (pk, R_TYPE, job->service ? job->service->name : "");
    s_pack_bin (pk, R_PAYLOAD, job->payload, job->payload_size);
    if (job->priority != 0)
        BM_PACK_KV_INT (pk, R_PRIORITY, job->priority);
    BM_PACK_KV_INT (pk, R_SEQ, job->seq);
    BM_PACK_KV_INT (pk, R_MAX_ATTEMPTS, job->max_attempts);
    BM_PACK_KV_INT (pk, R_TIMEOUT, job->timeout_ms);
    BM_PACK_KV_INT (pk, R_CREATED, job->created_at);
    if (job->webhook_url)
        BM_PACK_KV_STR (pk, R_WEBHOOK_URL, job->webhook_url);
    if (job->idem_key)
        BM_PACK_KV_STR (pk, R_IDEM_KEY, job->idem_key);
    if (job->parent)
        BM_PACK_KV_STR (pk, R_PARENT, job->parent);
    if (custom_attempts)
        BM_PACK_KV_INT (pk, R_RUN_ATTEMPTS, job->run_attempts);
    if (custom_backoff) {
        char text [32];
        s_backoff_text (&job->backoff, text, sizeof text);
        BM_PACK_KV_STR (pk, R_BACKOFF, text);
    }
    if (job->deps) {
        BM_PACK_KEY (pk, R_DEPENDS);
        msgpack_pack_array (pk, job->deps->count);
        for (size_t i = 0; i < job->deps->count; i++)
            bm_pack_str (pk, job->deps->items [i].id);
        if (job->deps->ignore_failure)
            BM_PACK_KV_INT (pk, R_DEP_IGNORE, 1);
        if (job->deps->results)
            BM_PACK_KV_INT (pk, R_DEP_RESULTS, 1);
    }
}

//  Which dependencies a list of indices names.
typedef enum { S_DEP_PENDING, S_DEP_FAILED, S_DEP_RETRY } s_dep_list_t;

static bool
s_dep_in (const bm_dep_t *dep, s_dep_list_t list)
{
    return list == S_DEP_PENDING ? dep->pending
         : list == S_DEP_FAILED ? dep->failed : dep->pending && dep->wait_retry;
}

//  The indices of the dependencies in list, packed as an array.
static void
s_pack_dep_indices (msgpack_packer *pk, const bm_deps_t *deps, s_dep_list_t list)
{
    size_t count = 0;
    for (size_t i = 0; i < deps->count; i++)
        count += s_dep_in (&deps->items [i], list);
    msgpack_pack_array (pk, count);
    for (size_t i = 0; i < deps->count; i++)
        if (s_dep_in (&deps->items [i], list))
            msgpack_pack_uint64 (pk, i);
}

//  Whether the record says which dependencies wait for their RETRY.
static bool
s_deps_wait_retry (const bm_deps_t *deps)
{
    for (size_t i = 0; i < deps->count; i++)
        if (s_dep_in (&deps->items [i], S_DEP_RETRY))
            return true;
    return false;
}

static void
s_pack_deps_run (msgpack_packer *pk, const bm_deps_t *deps)
{
    BM_PACK_KEY (pk, X_DEP_PENDING);
    s_pack_dep_indices (pk, deps, S_DEP_PENDING);
    BM_PACK_KEY (pk, X_DEP_FAILED);
    s_pack_dep_indices (pk, deps, S_DEP_FAILED);
    if (s_deps_wait_retry (deps)) {
        BM_PACK_KEY (pk, X_DEP_RETRY);
        s_pack_dep_indices (pk, deps, S_DEP_RETRY);
        size_t known = 0;
        for (size_t i = 0; i < deps->count; i++)
            known += s_dep_in (&deps->items [i], S_DEP_RETRY) && deps->items [i].failed_at > 0;
        BM_PACK_KEY (pk, X_DEP_FAILED_AT);
        msgpack_pack_map (pk, known);
        for (size_t i = 0; i < deps->count; i++)
            if (s_dep_in (&deps->items [i], S_DEP_RETRY) && deps->items [i].failed_at > 0) {
                msgpack_pack_uint64 (pk, i);
                msgpack_pack_int64 (pk, deps->items [i].failed_at);
            }
    }
}

size_t
bm_record_dep_result_field (char *buf, size_t size, size_t index)
{
    int n = snprintf (buf, size, BM_RECORD_DEP_RESULT "%zu", index);
    return n > 0 && (size_t) n < size ? (size_t) n : 0;
}

bool
bm_record_has_run (const bm_job_t *job)
{
    return job->attempts || job->progress || job->started_at || job->finished_at
        || job->worker_name || job->last_worker || job->result || job->error_code || job->deliveries
        || job->run_at > 0 || job->attempt_errors_size || job->held || job->failed_done
        || job->log || job->deps;
}

//  last_worker's run was counted (its DONE came): that DONE, sent again,
//  is not the job's.  Written as a flag of its own so a record without it
//  (an older broker's) keeps reading as a lost run.
static bool
s_run_counted (const bm_job_t *job)
{
    return job->last_worker && !job->lost;
}

void
bm_record_pack_run (msgpack_packer *pk, const bm_job_t *job)
{
    bool error = job->error_code != NULL;
    size_t count = (job->attempts != 0) + (job->progress != 0) + (job->started_at != 0)
                 + (job->finished_at != 0) + (job->worker_name != NULL)
                 + (job->last_worker != NULL) + (job->result != NULL)
                 + (error ? 2 + job->has_exit_code : 0) + (job->deliveries != 0)
                 + (job->deliveries_before != 0)
                 + (job->run_at > 0) + (job->attempt_errors_size > 0)
                 + job->held + s_run_counted (job) + (job->failed_done != 0)
                 + (job->log != NULL) + (job->deps ? 2 + 2 * s_deps_wait_retry (job->deps) : 0);
    msgpack_pack_map (pk, count);
    if (job->attempts)
        BM_PACK_KV_INT (pk, X_ATTEMPTS, job->attempts);
    if (job->progress)
        BM_PACK_KV_INT (pk, X_PROGRESS, job->progress);
    if (job->started_at)
        BM_PACK_KV_INT (pk, X_STARTED, job->started_at);
    if (job->finished_at)
        BM_PACK_KV_INT (pk, X_FINISHED, job->finished_at);
    if (job->worker_name)
        BM_PACK_KV_STR (pk, X_WORKER, job->worker_name);
    if (job->last_worker)
        BM_PACK_KV_STR (pk, X_LAST_WORKER, job->last_worker);
    if (job->result)
        s_pack_bin (pk, X_RESULT, job->result, job->result_size);
    if (error) {
        BM_PACK_KV_STR (pk, X_ERROR_CODE, job->error_code);
        BM_PACK_KV_STR (pk, X_ERROR_MESSAGE, job->error_message ? job->error_message : "");
        if (job->has_exit_code)
            BM_PACK_KV_INT (pk, X_EXIT_CODE, job->exit_code);
    }
    if (job->deliveries)
        BM_PACK_KV_INT (pk, X_DELIVERIES, job->deliveries);
    if (job->deliveries_before)
        BM_PACK_KV_INT (pk, X_DELIVERIES_BEFORE, job->deliveries_before);
    if (job->run_at > 0)
        BM_PACK_KV_INT (pk, X_RUN_AT, job->run_at);
    if (job->attempt_errors_size)
        s_pack_bin (pk, X_ATTEMPT_ERRORS, job->attempt_errors, job->attempt_errors_size);
    if (job->held)
        BM_PACK_KV_INT (pk, X_HELD, 1);
    if (s_run_counted (job))
        BM_PACK_KV_INT (pk, X_RUN_COUNTED, 1);
    if (job->failed_done)
        BM_PACK_KV_INT (pk, X_FAILED_DONE, job->failed_done);
    if (job->log)
        BM_PACK_KV_STR (pk, X_LOG, job->log);
    if (job->deps)
        s_pack_deps_run (pk, job->deps);
}

//  --- reading ------------------------------------------------------------

static bool
s_key_is (const msgpack_object *key, const char *name)
{
    size_t len = strlen (name);
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == len
        && memcmp (key->via.str.ptr, name, len) == 0;
}

//  A string value into *field (replacing it); false if not a string or
//  holding a NUL byte.
static bool
s_read_str (const msgpack_object *value, char **field)
{
    if (value->type != MSGPACK_OBJECT_STR
    ||  memchr (value->via.str.ptr, 0, value->via.str.size))
        return false;
    char *copy = (char *) bm_realloc_or_abort (NULL, value->via.str.size + 1, "a record's text");
    memcpy (copy, value->via.str.ptr, value->via.str.size);
    copy [value->via.str.size] = 0;
    free (*field);
    *field = copy;
    return true;
}

static bool
s_read_bin (const msgpack_object *value, char **field, size_t *size)
{
    if (value->type != MSGPACK_OBJECT_BIN)
        return false;
    free (*field);
    *field = bm_memdup (value->via.bin.ptr, value->via.bin.size);
    *size = value->via.bin.size;
    return true;
}

static bool
s_read_int (const msgpack_object *value, int64_t *field)
{
    if (value->type == MSGPACK_OBJECT_POSITIVE_INTEGER && value->via.u64 <= INT64_MAX)
        *field = (int64_t) value->via.u64;
    else
    if (value->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *field = value->via.i64;
    else
        return false;
    return true;
}

//  dependsOn's ids: the job's dependencies, none pending yet (the "x" map
//  says which are).
static bool
s_read_depends (bm_job_t *job, const msgpack_object *value)
{
    if (value->type != MSGPACK_OBJECT_ARRAY || value->via.array.size < 1
    ||  value->via.array.size > BM_MAX_DEPENDS)
        return false;
    bm_deps_t *deps = bm_deps_new (value->via.array.size);
    bm_deps_destroy (&job->deps);
    job->deps = deps;
    for (size_t i = 0; i < deps->count; i++)
        if (!s_read_str (&value->via.array.ptr [i], &deps->items [i].id))
            return false;
    return true;
}

//  Which dependencies are in list: indices into dependsOn.
static bool
s_read_dep_indices (bm_job_t *job, const msgpack_object *value, s_dep_list_t list)
{
    if (!job->deps || value->type != MSGPACK_OBJECT_ARRAY)
        return false;
    for (uint32_t i = 0; i < value->via.array.size; i++) {
        int64_t index;
        if (!s_read_int (&value->via.array.ptr [i], &index)
        ||  index < 0 || (size_t) index >= job->deps->count)
            return false;
        bm_dep_t *dep = &job->deps->items [index];
        if (list == S_DEP_FAILED)
            dep->failed = true;
        else
        if (list == S_DEP_RETRY)
            dep->wait_retry = true;
        else
        if (!dep->pending) {
            dep->pending = true;
            job->deps->pending++;
        }
    }
    return true;
}

//  When the dependencies waited for until their RETRY had ended.
static bool
s_read_dep_failed_at (bm_job_t *job, const msgpack_object *value)
{
    if (!job->deps || value->type != MSGPACK_OBJECT_MAP)
        return false;
    for (uint32_t i = 0; i < value->via.map.size; i++) {
        int64_t index, at;
        if (!s_read_int (&value->via.map.ptr [i].key, &index)
        ||  index < 0 || (size_t) index >= job->deps->count
        ||  !s_read_int (&value->via.map.ptr [i].val, &at) || at < 0)
            return false;
        job->deps->items [index].failed_at = at;
    }
    return true;
}

static bool
s_read_dep_results (bm_job_t *job, const msgpack_object *value)
{
    if (!job->deps || value->type != MSGPACK_OBJECT_MAP)
        return false;
    for (uint32_t i = 0; i < value->via.map.size; i++) {
        int64_t index;
        if (!s_read_int (&value->via.map.ptr [i].key, &index)
        ||  index < 0 || (size_t) index >= job->deps->count)
            return false;
        bm_dep_t *dep = &job->deps->items [index];
        const msgpack_object *bin = &value->via.map.ptr [i].val;
        if (bin->type != MSGPACK_OBJECT_BIN)
            return false;
        bm_deps_result_free (&dep->result);
        dep->result = bm_deps_result_new (bin->via.bin.ptr, bin->via.bin.size);
        dep->result_size = bin->via.bin.size;
        dep->result_saved = false;      //  Its field is still to be written
    }
    return true;
}

//  The kept results' own fields ("dr:<index>", the result's msgpack bytes),
//  over what an "x" map's "dr" held.  A field that names no dependency of
//  the job (not an index of dependsOn, in its decimal form) is skipped.
static void
s_read_dep_result_fields (bm_job_t *job, const redisReply *reply)
{
    size_t prefix = strlen (BM_RECORD_DEP_RESULT);
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *f = reply->element [i], *v = reply->element [i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING
        ||  f->len <= prefix || memcmp (f->str, BM_RECORD_DEP_RESULT, prefix) != 0)
            continue;
        int64_t index;
        char name [32];
        if (bm_parse_int (f->str + prefix, 0, (int64_t) job->deps->count - 1, &index) != 0
        ||  bm_record_dep_result_field (name, sizeof name, (size_t) index) != f->len
        ||  memcmp (name, f->str, f->len) != 0)
            continue;
        bm_dep_t *dep = &job->deps->items [index];
        bm_deps_result_free (&dep->result);
        dep->result = bm_deps_result_new (v->str, v->len);
        dep->result_size = v->len;
        dep->result_saved = true;
    }
}

//  The kept results are spliced as they are into STATUS and JOB frames:
//  one that is not exactly one msgpack object (a damaged record) is
//  dropped, as if its dependency had returned none.
//  A result of a dependency the record does not say completed (its field
//  written, the "x" that says so not: a crash between two HSETs of one
//  group) is dropped too: the dependency's end is seen again.
static void
s_check_dep_results (bm_job_t *job)
{
    for (size_t i = 0; i < job->deps->count; i++) {
        bm_dep_t *dep = &job->deps->items [i];
        if (dep->result && (dep->pending || dep->failed)) {
            bm_deps_result_free (&dep->result);
            dep->result_size = 0;
        }
        if (dep->result && bm_msgpack_check_nesting (dep->result, dep->result_size)) {
            bm_warn (job->id, "the record's kept result of dependency %s is damaged (%zu bytes, "
                     "not one msgpack object): read as none", dep->id, dep->result_size);
            bm_deps_result_free (&dep->result);
            dep->result_size = 0;
        }
    }
}

//  One entry of the "r" map; false if its value is damaged.  Unknown keys
//  are skipped (a newer broker's additions).
static bool
s_read_submit_entry (bm_job_t *job, const msgpack_object *key, const msgpack_object *value,
                     bm_record_meta_t *meta)
{
    if (s_key_is (key, R_TYPE)) {
        if (value->type != MSGPACK_OBJECT_STR || value->via.str.size >= sizeof meta->type)
            return false;
        memcpy (meta->type, value->via.str.ptr, value->via.str.size);
        meta->type [value->via.str.size] = 0;
        return true;
    }
    if (s_key_is (key, R_PAYLOAD))      return s_read_bin (value, &job->payload, &job->payload_size);
    if (s_key_is (key, R_PRIORITY))     return s_read_int (value, &job->priority);
    if (s_key_is (key, R_SEQ))          return s_read_int (value, &job->seq);
    if (s_key_is (key, R_MAX_ATTEMPTS)) return s_read_int (value, &job->max_attempts);
    if (s_key_is (key, R_TIMEOUT))      return s_read_int (value, &job->timeout_ms);
    if (s_key_is (key, R_CREATED))      return s_read_int (value, &job->created_at);
    if (s_key_is (key, R_WEBHOOK_URL))  return s_read_str (value, &job->webhook_url);
    if (s_key_is (key, R_IDEM_KEY))     return s_read_str (value, &job->idem_key);
    if (s_key_is (key, R_PARENT))       return s_read_str (value, &job->parent);
    if (s_key_is (key, R_DEPENDS))      return s_read_depends (job, value);
    if (s_key_is (key, R_DEP_IGNORE) || s_key_is (key, R_DEP_RESULTS)) {
        int64_t flag = 0;
        meta->dep_ignore |= s_key_is (key, R_DEP_IGNORE) && s_read_int (value, &flag) && flag;
        meta->dep_results |= s_key_is (key, R_DEP_RESULTS) && s_read_int (value, &flag) && flag;
        return true;
    }
    if (s_key_is (key, R_RUN_ATTEMPTS)) {
        meta->has_run_attempts = true;
        return s_read_int (value, &job->run_attempts)
            && job->run_attempts >= 1 && job->run_attempts <= BM_MAX_ATTEMPTS;
    }
    if (s_key_is (key, R_BACKOFF)) {
        char *text = NULL;
        if (!s_read_str (value, &text))
            return false;
        s_backoff_read (&job->backoff, text);
        free (text);
        meta->has_backoff = true;
    }
    return true;
}

static bool
s_read_run_entry (bm_job_t *job, const msgpack_object *key, const msgpack_object *value,
                  bm_record_meta_t *meta)
{
    bool held = s_key_is (key, X_HELD);
    if (held || s_key_is (key, X_RUN_COUNTED)) {
        int64_t flag = 0;
        if (!s_read_int (value, &flag))
            return false;
        *(held ? &meta->held : &meta->run_counted) = flag != 0;
        return true;
    }
    if (s_key_is (key, X_ATTEMPTS))     return s_read_int (value, &job->attempts);
    if (s_key_is (key, X_PROGRESS))     return s_read_int (value, &job->progress);
    if (s_key_is (key, X_STARTED))      return s_read_int (value, &job->started_at);
    if (s_key_is (key, X_FINISHED))     return s_read_int (value, &job->finished_at);
    if (s_key_is (key, X_WORKER))       return s_read_str (value, &job->worker_name);
    if (s_key_is (key, X_LAST_WORKER))  return s_read_str (value, &job->last_worker);
    if (s_key_is (key, X_RESULT))       return s_read_bin (value, &job->result, &job->result_size);
    if (s_key_is (key, X_ERROR_CODE))   return s_read_str (value, &job->error_code);
    if (s_key_is (key, X_ERROR_MESSAGE)) return s_read_str (value, &job->error_message);
    if (s_key_is (key, X_EXIT_CODE))
        return (job->has_exit_code = s_read_int (value, &job->exit_code));
    if (s_key_is (key, X_DELIVERIES))   return s_read_int (value, &job->deliveries);
    if (s_key_is (key, X_DELIVERIES_BEFORE))
        return s_read_int (value, &job->deliveries_before) && job->deliveries_before >= 0;
    if (s_key_is (key, X_RUN_AT))       return s_read_int (value, &job->run_at);
    if (s_key_is (key, X_FAILED_DONE))  return s_read_int (value, &job->failed_done);
    if (s_key_is (key, X_LOG))          return s_read_str (value, &job->log);
    if (s_key_is (key, X_DEP_PENDING))  return s_read_dep_indices (job, value, S_DEP_PENDING);
    if (s_key_is (key, X_DEP_FAILED))   return s_read_dep_indices (job, value, S_DEP_FAILED);
    if (s_key_is (key, X_DEP_RETRY))    return s_read_dep_indices (job, value, S_DEP_RETRY);
    if (s_key_is (key, X_DEP_FAILED_AT)) return s_read_dep_failed_at (job, value);
    if (s_key_is (key, X_DEP_RESULTS))  return s_read_dep_results (job, value);
    if (s_key_is (key, X_ATTEMPT_ERRORS))
        return s_read_bin (value, &job->attempt_errors, &job->attempt_errors_size);
    return true;
}

//  A msgpack map field ("r" or "x"), entry by entry.
static bool
s_read_map (bm_job_t *job, const redisReply *value, bool submit, bm_record_meta_t *meta)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    //  Sizes checked first: msgpack-c would reserve what a damaged header
    //  claims before it sees the bytes are not there.
    bool ok = bm_msgpack_check (value->str, value->len) == 0
           && msgpack_unpack_next (&unpacked, value->str, value->len, &offset) == MSGPACK_UNPACK_SUCCESS
           && offset == value->len && unpacked.data.type == MSGPACK_OBJECT_MAP;
    for (uint32_t i = 0; ok && i < unpacked.data.via.map.size; i++) {
        const msgpack_object_kv *kv = &unpacked.data.via.map.ptr [i];
        ok = submit ? s_read_submit_entry (job, &kv->key, &kv->val, meta)
                    : s_read_run_entry (job, &kv->key, &kv->val, meta);
    }
    msgpack_unpacked_destroy (&unpacked);
    return ok;
}

//  A record's webhook state map and the state it names (-1: none, or
//  bytes that are not msgpack: bm_jobstore refuses those records).  The
//  one unpack of the map a record costs; the broker keeps the state.
static void
s_read_webhook (bm_job_t *job, const redisReply *v)
{
    char name [BM_MAX_STATE_LEN + 1] = "";
    if (bm_msgpack_check (v->str, v->len) == 0) {
        msgpack_zone zone;
        msgpack_zone_init (&zone, 256);
        msgpack_object obj;
        size_t offset = 0;
        if (msgpack_unpack (v->str, v->len, &offset, &zone, &obj) == MSGPACK_UNPACK_SUCCESS)
            bm_obj_strcpy (&obj, "state", name, sizeof name);
        msgpack_zone_destroy (&zone);
    }
    bm_delivery_set_state (job, v->str, v->len, bm_webhook_state (name));
}

//  One field of the earlier layout (a hash field per job field).
static void
s_read_flat_field (bm_job_t *job, const char *name, const redisReply *v, bm_record_meta_t *meta)
{
    int64_t n = 0;
    bool numeric = bm_parse_int (v->str, INT64_MIN, INT64_MAX, &n) == 0;
    if (streq (name, "jobId") && v->len < (int) sizeof job->id)
        snprintf (job->id, sizeof job->id, "%s", v->str);
    else if (streq (name, "botType") && v->len < (int) sizeof meta->type)
        snprintf (meta->type, sizeof meta->type, "%s", v->str);
    else if (streq (name, "priority") && numeric) job->priority = n;
    else if (streq (name, "seq") && numeric) job->seq = n;
    else if (streq (name, "attempts") && numeric) job->attempts = n;
    else if (streq (name, "maxAttempts") && numeric) job->max_attempts = n;
    else if (streq (name, "timeoutMs") && numeric) job->timeout_ms = n;
    else if (streq (name, "progress") && numeric) job->progress = n;
    else if (streq (name, "createdAt") && numeric) job->created_at = n;
    else if (streq (name, "startedAt") && numeric) job->started_at = n;
    else if (streq (name, "finishedAt") && numeric) job->finished_at = n;
    else if (streq (name, "deliveries") && numeric) job->deliveries = n;
    else if (streq (name, "runAt") && numeric) job->run_at = n;
    else if (streq (name, "runAttempts") && numeric && n >= 1 && n <= BM_MAX_ATTEMPTS) {
        job->run_attempts = n;
        meta->has_run_attempts = true;
    }
    else if (streq (name, "backoff")) {
        s_backoff_read (&job->backoff, v->str);
        meta->has_backoff = true;
    }
    else if (streq (name, "attemptErrors")) {
        free (job->attempt_errors);
        job->attempt_errors = bm_memdup (v->str, v->len);
        job->attempt_errors_size = v->len;
    }
    else if (streq (name, "payload")) {
        free (job->payload);
        job->payload = bm_memdup (v->str, v->len);
        job->payload_size = v->len;
    }
    else if (streq (name, "result")) {
        free (job->result);
        job->result = bm_memdup (v->str, v->len);
        job->result_size = v->len;
    }
    else if (streq (name, "webhook")) s_read_webhook (job, v);
    else if (streq (name, "webhookUrl")) bm_set_str (&job->webhook_url, v->str);
    else if (streq (name, "idempotencyKey")) bm_set_str (&job->idem_key, v->str);
    else if (streq (name, "parent")) bm_set_str (&job->parent, v->str);
    else if (streq (name, "worker")) bm_set_str (&job->worker_name, v->str);
    else if (streq (name, "errorCode")) bm_set_str (&job->error_code, v->str);
    else if (streq (name, "errorMessage")) bm_set_str (&job->error_message, v->str);
    else if (streq (name, "errorExitCode") && numeric) {
        job->exit_code = n;
        job->has_exit_code = true;
    }
}

int
bm_record_read (bm_job_t *job, const char *id, const redisReply *reply, bm_record_meta_t *meta)
{
    memset (meta, 0, sizeof *meta);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2)
        return -1;
    const redisReply *submit = NULL, *run = NULL, *webhook = NULL;
    int64_t wh_at = 0;
    char state [BM_MAX_STATE_LEN + 1] = "";
    for (size_t i = 0; i + 1 < reply->elements; i += 2) {
        const redisReply *f = reply->element [i], *v = reply->element [i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (streq (f->str, BM_RECORD_STATE)) {
            if (v->len < (int) sizeof state)
                snprintf (state, sizeof state, "%s", v->str);
        }
        else if (streq (f->str, BM_RECORD_SUBMIT)) submit = v;
        else if (streq (f->str, BM_RECORD_RUN)) run = v;
        else if (streq (f->str, BM_RECORD_WEBHOOK)) webhook = v;
        else if (streq (f->str, BM_RECORD_WEBHOOK_AT)) {
            char *end;
            long long n = strtoll (v->str, &end, 10);
            wh_at = end != v->str && *end == 0 && n > 0 ? (int64_t) n : 0;
        }
        else
            s_read_flat_field (job, f->str, v, meta);
    }
    //  The newer fields last: they win over the earlier layout's.
    if (submit && !s_read_map (job, submit, true, meta))
        return -1;
    if (job->deps) {
        job->deps->ignore_failure = meta->dep_ignore;
        job->deps->results = meta->dep_results;
    }
    if (run && !s_read_map (job, run, false, meta))
        return -1;
    if (job->deps)
        s_read_dep_result_fields (job, reply);
    if (webhook)
        s_read_webhook (job, webhook);
    job->wh_at = job->wh_state >= 0 ? wh_at : 0;       //  Not the time of the read
    if (!job->id [0] && id && strlen (id) < sizeof job->id)
        snprintf (job->id, sizeof job->id, "%s", id);
    if (job->deps)
        s_check_dep_results (job);
    int state_index = -1;
    for (int i = 0; i < JOB_STATES; i++)
        if (streq (state, bm_job_state_names [i]))
            state_index = i;
    if (state_index < 0 || !job->id [0])
        return -1;
    job->state = (bm_job_state_t) state_index;
    return 0;
}

//  --- self-test -----------------------------------------------------------

//  An HGETALL reply of name/value pairs (values binary, with their sizes).
typedef struct {
    redisReply reply;
    redisReply *items [32];
    redisReply cells [32];
} s_fake_hash_t;

static void
s_fake_add (s_fake_hash_t *hash, const char *data, size_t size)
{
    size_t i = hash->reply.elements++;
    BM_CHECK (i < sizeof hash->cells / sizeof hash->cells [0]);
    hash->cells [i] = (redisReply) { .type = REDIS_REPLY_STRING, .str = (char *) data, .len = size };
    hash->items [i] = &hash->cells [i];
}

static void
s_fake_init (s_fake_hash_t *hash)
{
    memset (hash, 0, sizeof *hash);
    hash->reply.type = REDIS_REPLY_ARRAY;
    hash->reply.element = hash->items;
}

void
bm_record_test (bool verbose)
{
    (void) verbose;
    printf (" * bm_record: ");
    bm_service_t *service = bm_service_new ("python", 1, 10);
    service->retry_attempts = 3;
    service->retry_backoff_ms = 2000;
    bm_job_t *job = bm_job_new ();
    snprintf (job->id, sizeof job->id, "j-1");
    job->service = service;
    job->priority = 3;
    job->seq = 7;
    job->max_attempts = 3;
    job->timeout_ms = 300000;
    job->created_at = 1764360000000;
    job->payload = bm_memdup ("\x81\xa1n\x01", 4);     //  {n: 1}
    job->payload_size = 4;
    job->webhook_url = strdup ("http://127.0.0.1:9/hook");
    job->run_attempts = 3;
    job->backoff = (bm_backoff_t) { BM_BACKOFF_FIXED, 500, 200 };

    //  Just submitted: nothing to say about its runs; the type's default
    //  runAttempts is left out, the custom backoff is not.
    BM_CHECK (!bm_record_has_run (job));
    bm_packer_t r, x;
    bm_packer_init (&r);
    bm_record_pack_submit (&r.pk, job);
    BM_CHECK (!bm_packer_failed (&r) && r.sbuf.size < 84);
    BM_CHECK (memmem (r.sbuf.data, r.sbuf.size, "f500j200", 8));
    //  Full jitter is a bare j (as records written before fractions).
    bm_backoff_t full;
    s_backoff_read (&full, "e100j");
    BM_CHECK (full.jitter_pm == BM_BACKOFF_FULL_JITTER && full.delay_ms == 100);
    char text [32];
    s_backoff_text (&full, text, sizeof text);
    BM_CHECK (streq (text, "e100j"));

    //  Completed: the run map has the outcome.
    job->state = JOB_COMPLETED;
    job->attempts = 1;
    job->progress = 100;
    job->started_at = 1764360000100;
    job->finished_at = 1764360000200;
    job->worker_name = strdup ("w1");
    job->last_worker = strdup ("w0");
    job->result = bm_memdup ("\x81\xa2ok\xc3", 5);       //  {ok: true}
    job->result_size = 5;
    job->deliveries = 3;
    job->deliveries_before = 2;
    bm_job_set_log (job, "a\nb\0\xff", 5);       //  NUL and a stray byte: '?'
    BM_CHECK (streq (job->log, "a\nb??"));
    BM_CHECK (bm_record_has_run (job));
    bm_packer_init (&x);
    bm_record_pack_run (&x.pk, job);
    BM_CHECK (!bm_packer_failed (&x) && x.sbuf.size < 72);

    //  Read back: every field, the id from the key.
    s_fake_hash_t hash;
    s_fake_init (&hash);
    s_fake_add (&hash, "state", 5);
    s_fake_add (&hash, "completed", 9);
    s_fake_add (&hash, "r", 1);
    s_fake_add (&hash, r.sbuf.data, r.sbuf.size);
    s_fake_add (&hash, "x", 1);
    s_fake_add (&hash, x.sbuf.data, x.sbuf.size);
    s_fake_add (&hash, "w", 1);
    s_fake_add (&hash, "\x81\xa5" "state\xa9" "delivered", 17);
    bm_job_t *back = bm_job_new ();
    bm_record_meta_t meta;
    BM_CHECK (bm_record_read (back, "j-1", &hash.reply, &meta) == 0);
    BM_CHECK (streq (back->id, "j-1") && streq (meta.type, "python") && back->state == JOB_COMPLETED);
    BM_CHECK (meta.run_counted && !meta.held);     //  w0's run was not lost: counted
    BM_CHECK (back->priority == 3 && back->seq == 7 && back->max_attempts == 3
              && back->timeout_ms == 300000 && back->created_at == 1764360000000);
    BM_CHECK (back->payload_size == 4 && memcmp (back->payload, job->payload, 4) == 0);
    BM_CHECK (back->result_size == 5 && memcmp (back->result, job->result, 5) == 0);
    BM_CHECK (streq (back->webhook_url, job->webhook_url) && streq (back->worker_name, "w1"));
    BM_CHECK (back->last_worker && streq (back->last_worker, "w0"));
    BM_CHECK (back->log && streq (back->log, "a\nb??"));
    BM_CHECK (back->attempts == 1 && back->progress == 100 && back->deliveries == 3
              && back->deliveries_before == 2
              && back->started_at == 1764360000100 && back->finished_at == 1764360000200);
    BM_CHECK (!meta.has_run_attempts && meta.has_backoff && back->backoff.type == BM_BACKOFF_FIXED
              && back->backoff.delay_ms == 500 && back->backoff.jitter_pm == 200);
    BM_CHECK (back->wh_size == 17 && back->wh_state == BM_WEBHOOK_DELIVERED && !back->error_code);
    bm_job_destroy (&back);
    //  The webhook state the map names is read with it: none for a map
    //  without one, or bytes that are not msgpack (a size claimed beyond
    //  them), kept as they are for bm_jobstore to refuse.
    const char *maps [][2] = { { "\x81\xa5" "state\xa6" "failed", "failed" },
                               { "\x81\xa5" "state\xa4" "gone", NULL },
                               { "\x81\xa8" "attempts\x01", NULL },
                               { "\x81\xa5" "state\xdb\x7f\xff\xff\xff", NULL } };
    for (size_t i = 0; i < sizeof maps / sizeof maps [0]; i++) {
        hash.cells [7].str = (char *) maps [i][0], hash.cells [7].len = strlen (maps [i][0]);
        back = bm_job_new ();
        BM_CHECK (bm_record_read (back, "j-1", &hash.reply, &meta) == 0);
        BM_CHECK (back->wh_size == strlen (maps [i][0])
                  && back->wh_state == bm_webhook_state (maps [i][1]));
        bm_job_destroy (&back);
    }
    hash.cells [7].str = "\x81\xa5" "state\xa9" "delivered", hash.cells [7].len = 17;

    //  A failed one: error, exit code, attempt errors.
    bm_job_set_error (job, "bot_failed", "exit 1");
    job->has_exit_code = true, job->exit_code = 1;
    job->attempt_errors = bm_memdup ("\x81\xa4" "code\xa1x", 8);
    job->attempt_errors_size = 8;
    bm_packer_reset (&x);
    bm_record_pack_run (&x.pk, job);
    hash.cells [5].str = x.sbuf.data, hash.cells [5].len = x.sbuf.size;
    hash.cells [1].str = "failed", hash.cells [1].len = 6;
    back = bm_job_new ();
    BM_CHECK (bm_record_read (back, "j-1", &hash.reply, &meta) == 0 && back->state == JOB_FAILED);
    BM_CHECK (streq (back->error_code, "bot_failed") && streq (back->error_message, "exit 1")
              && back->has_exit_code && back->exit_code == 1 && back->attempt_errors_size == 8);
    bm_job_destroy (&back);

    //  Damaged: a run map that is not msgpack, a state word unknown.
    hash.cells [5].str = "\xc1", hash.cells [5].len = 1;
    back = bm_job_new ();
    BM_CHECK (bm_record_read (back, "j-1", &hash.reply, &meta) == -1);
    bm_job_destroy (&back);
    hash.cells [5].str = x.sbuf.data, hash.cells [5].len = x.sbuf.size;
    hash.cells [1].str = "lost", hash.cells [1].len = 4;
    back = bm_job_new ();
    BM_CHECK (bm_record_read (back, "j-1", &hash.reply, &meta) == -1);
    bm_job_destroy (&back);

    //  The earlier layout: a field per job field, numbers as text; a newer
    //  run map written over it wins.
    s_fake_init (&hash);
    const char *flat [] = { "jobId", "old-1", "botType", "python", "state", "completed",
                            "seq", "12", "attempts", "2", "createdAt", "1764360000000",
                            "errorCode", "bot_failed", "errorExitCode", "4" };
    for (size_t i = 0; i < sizeof flat / sizeof flat [0]; i++)
        s_fake_add (&hash, flat [i], strlen (flat [i]));
    s_fake_add (&hash, "payload", 7);
    s_fake_add (&hash, "\x80", 1);
    back = bm_job_new ();
    BM_CHECK (bm_record_read (back, NULL, &hash.reply, &meta) == 0);
    BM_CHECK (streq (back->id, "old-1") && streq (meta.type, "python") && back->seq == 12
              && back->attempts == 2 && back->has_exit_code && back->exit_code == 4
              && back->payload_size == 1 && streq (back->error_code, "bot_failed"));
    bm_job_destroy (&back);
    s_fake_add (&hash, "x", 1);
    s_fake_add (&hash, x.sbuf.data, x.sbuf.size);
    back = bm_job_new ();
    BM_CHECK (bm_record_read (back, NULL, &hash.reply, &meta) == 0);
    BM_CHECK (back->attempts == 1 && back->exit_code == 1 && streq (back->worker_name, "w1"));
    bm_job_destroy (&back);

    bm_packer_destroy (&r);
    bm_packer_destroy (&x);

    //  dependsOn: its ids and options in "r", which are pending or failed
    //  and the results kept in "x", read back as they were.
    bm_job_t *waiting = bm_job_new ();
    snprintf (waiting->id, sizeof waiting->id, "j-2");
    waiting->service = service;
    waiting->state = JOB_WAITING_CHILDREN;
    waiting->run_attempts = 3;
    waiting->backoff = (bm_backoff_t) { BM_BACKOFF_EXPONENTIAL, 2000, 0 };
    waiting->payload = bm_memdup ("\x01", 1);
    waiting->payload_size = 1;
    waiting->deps = bm_deps_new (3);
    const char *ids [] = { "dep-a", "dep-b", "dep-c" };
    for (int i = 0; i < 3; i++)
        waiting->deps->items [i].id = strdup (ids [i]);
    waiting->deps->items [0].result = bm_deps_result_new ("\x81\xa2ok\xc3", 5);
    waiting->deps->items [0].result_size = 5;
    waiting->deps->items [1].pending = true;
    waiting->deps->items [1].wait_retry = true;
    waiting->deps->items [1].failed_at = 1700000000123;
    waiting->deps->pending = 1;
    waiting->deps->items [2].failed = true;
    waiting->deps->ignore_failure = true;
    waiting->deps->results = true;
    BM_CHECK (bm_record_has_run (waiting));
    bm_packer_init (&r);
    bm_packer_init (&x);
    bm_record_pack_submit (&r.pk, waiting);
    bm_record_pack_run (&x.pk, waiting);
    s_fake_init (&hash);
    s_fake_add (&hash, "state", 5);
    s_fake_add (&hash, "waiting-children", 16);
    s_fake_add (&hash, "r", 1);
    s_fake_add (&hash, r.sbuf.data, r.sbuf.size);
    s_fake_add (&hash, "x", 1);
    s_fake_add (&hash, x.sbuf.data, x.sbuf.size);
    //  The results are not in "x": each has a field of its own.
    BM_CHECK (!memmem (x.sbuf.data, x.sbuf.size, "\xa2" "dr", 3));
    back = bm_job_new ();
    BM_CHECK (bm_record_read (back, "j-2", &hash.reply, &meta) == 0);
    BM_CHECK (back->deps && !back->deps->items [0].result);
    bm_job_destroy (&back);
    char field [24];
    BM_CHECK (bm_record_dep_result_field (field, sizeof field, 0) == 4 && streq (field, "dr:0"));
    s_fake_add (&hash, field, 4);
    s_fake_add (&hash, "\x81\xa2ok\xc3", 5);
    //  A field of a pending dependency (a crash between two HSETs), of no
    //  index of dependsOn, or not in decimal form: not read.
    s_fake_add (&hash, "dr:1", 4);
    s_fake_add (&hash, "\xc3", 1);
    s_fake_add (&hash, "dr:3", 4);
    s_fake_add (&hash, "\xc3", 1);
    s_fake_add (&hash, "dr:02", 5);
    s_fake_add (&hash, "\xc3", 1);
    back = bm_job_new ();
    BM_CHECK (bm_record_read (back, "j-2", &hash.reply, &meta) == 0);
    BM_CHECK (back->state == JOB_WAITING_CHILDREN && back->deps && back->deps->count == 3);
    BM_CHECK (back->deps->ignore_failure && back->deps->results && back->deps->pending == 1);
    for (int i = 0; i < 3; i++)
        BM_CHECK (streq (back->deps->items [i].id, ids [i]));
    BM_CHECK (!back->deps->items [0].pending && back->deps->items [0].result_size == 5
              && memcmp (back->deps->items [0].result, "\x81\xa2ok\xc3", 5) == 0
              && back->deps->items [0].result_saved);
    BM_CHECK (!back->deps->items [2].result);
    BM_CHECK (back->deps->items [1].pending && back->deps->items [1].wait_retry
              && back->deps->items [1].failed_at == 1700000000123
              && !back->deps->items [1].result && !back->deps->items [0].wait_retry);
    BM_CHECK (back->deps->items [2].failed && !back->deps->items [2].pending);
    bm_job_destroy (&back);
    //  An earlier broker's record: the results in "x" (key "dr"), read
    //  and marked unsaved (the next write gives them their fields).
    bm_packer_reset (&x);
    msgpack_pack_map (&x.pk, 3);
    BM_PACK_KEY (&x.pk, X_DEP_PENDING);
    msgpack_pack_array (&x.pk, 1);
    msgpack_pack_uint64 (&x.pk, 1);
    BM_PACK_KEY (&x.pk, X_DEP_FAILED);
    msgpack_pack_array (&x.pk, 0);
    BM_PACK_KEY (&x.pk, X_DEP_RESULTS);
    msgpack_pack_map (&x.pk, 1);
    msgpack_pack_uint64 (&x.pk, 0);
    msgpack_pack_bin (&x.pk, 5);
    msgpack_pack_bin_body (&x.pk, "\x81\xa2ok\xc3", 5);
    hash.reply.elements = 6;
    hash.cells [5].str = x.sbuf.data, hash.cells [5].len = x.sbuf.size;
    back = bm_job_new ();
    BM_CHECK (bm_record_read (back, "j-2", &hash.reply, &meta) == 0);
    BM_CHECK (back->deps->items [0].result_size == 5 && !back->deps->items [0].result_saved
              && memcmp (back->deps->items [0].result, "\x81\xa2ok\xc3", 5) == 0);
    BM_CHECK (back->deps->items [1].pending && !back->deps->items [1].result);
    bm_job_destroy (&back);
    bm_job_destroy (&waiting);
    bm_packer_destroy (&r);
    bm_packer_destroy (&x);

    bm_job_destroy (&job);
    bm_service_destroy (&service);
    printf ("OK\n");
}

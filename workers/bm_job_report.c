/*  bm_job_report.c - what the worker tells the broker about a job.  */
#include "bm_job_report.h"
#include "bm_codec.h"
#include "bm_utf8.h"
#include "bm_json.h"
#include "bm_log.h"
#include "bm_proto.h"

#include <czmq.h>
#include <jansson.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

//  --------------------------------------------------------------------------
//  A bot's outcome

int
bm_job_report_parse_result (const char *text, size_t size, int64_t max_payload,
                            char **data, size_t *data_size, char *error, size_t error_size)
{
    //  One leading UTF-8 byte order mark (EF BB BF), as Windows tools and
    //  some JSON writers put before what they write, is not part of the
    //  JSON: skip it.
    if (size >= 3 && memcmp (text, BM_UTF8_BOM, 3) == 0) {
        text += 3;
        size -= 3;
    }
    json_error_t jerr;
    const int flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_t *value = json_loadb (text, size, flags, &jerr);
    if (!value) {
        //  A bot that logs to stdout before its result: try the last
        //  non-empty line alone.
        size_t end = size;
        while (end > 0 && (text [end - 1] == '\n' || text [end - 1] == '\r'
                        || text [end - 1] == ' ' || text [end - 1] == '\t'))
            end--;
        size_t start = end;
        while (start > 0 && text [start - 1] != '\n')
            start--;
        if (start > 0 && end > start) {
            json_error_t lerr;
            value = json_loadb (text + start, end - start, flags, &lerr);
            if (!value) {
                int line = 1;
                for (size_t i = 0; i < start; i++)
                    line += text [i] == '\n';
                snprintf (error, error_size, "the bot's stdout is not JSON (line %d, column %d: %s), "
                          "nor is its last non-empty line, line %d (column %d: %s)",
                          jerr.line, jerr.column, jerr.text, line, lerr.column, lerr.text);
                return -1;
            }
        }
    }
    if (!value) {
        if (size == 0)
            snprintf (error, error_size, "the bot wrote nothing on stdout (a result must be JSON)");
        else
            snprintf (error, error_size, "the bot's stdout is not JSON: %s (line %d, column %d)",
                      jerr.text, jerr.line, jerr.column);
        return -1;
    }
    int rc = bm_job_report_pack_result (value, max_payload, data, data_size, error, error_size);
    json_decref (value);
    return rc;
}

int
bm_job_report_pack_result (const json_t *value, int64_t max_payload,
                           char **data, size_t *data_size, char *error, size_t error_size)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    if (bm_json_pack (&pk, value, BM_RESULT_MAX_DEPTH)) {
        snprintf (error, error_size, "the bot's result nests deeper than %d levels", BM_RESULT_MAX_DEPTH);
        msgpack_sbuffer_destroy (&sbuf);
        return -1;
    }
    if ((int64_t) sbuf.size > max_payload) {
        snprintf (error, error_size, "the bot's result is %zu bytes, more than the %lld allowed",
                  sbuf.size, (long long) max_payload);
        msgpack_sbuffer_destroy (&sbuf);
        return -1;
    }
    *data = sbuf.data;
    *data_size = sbuf.size;
    return 0;
}

bool
bm_job_report_pool_ready (const char *text, size_t size)
{
    if (size >= 3 && memcmp (text, BM_UTF8_BOM, 3) == 0) {
        text += 3;
        size -= 3;
    }
    //  Its first non-empty line, which must name "ready" to be one.
    size_t start = 0;
    while (start < size && (text [start] == '\n' || text [start] == '\r' || text [start] == ' '
                         || text [start] == '\t'))
        start++;
    if (start == size || text [start] != '{')
        return false;
    const char *eol = (const char *) memchr (text + start, '\n', size - start);
    size_t len = eol ? (size_t) (eol - text) - start : size - start;
    if (!memmem (text + start, len, "\"ready\"", 7))
        return false;
    json_t *frame = json_loadb (text + start, len, 0, NULL);
    bool ready = json_is_object (frame) && json_is_true (json_object_get (frame, "ready"));
    const char *key;
    json_t *value;
    json_object_foreach (frame, key, value)
        if (!streq (key, "ready") && !streq (key, "pid") && !streq (key, "mode"))
            ready = false;
    json_decref (frame);
    return ready;
}

void
bm_job_report_keep_end (char *text, size_t max)
{
    size_t len = strlen (text);
    size_t start = bm_utf8_tail (text, len, max);
    memmove (text, text + start, len - start + 1);
}

//  A bot ran (spawned or pooled): how it ended.
void
bm_job_report_verdict (const bm_pool_outcome_t *outcome, bm_bot_t *bot,
                       const bm_limits_t *limits, int64_t output_max, int64_t max_payload,
                       bm_job_verdict_t *verdict)
{
    memset (verdict, 0, sizeof *verdict);
    verdict->exit_code = -1;
    verdict->own = SIZE_MAX;
    char message [512];
    char *tail = strdup (outcome->message ? outcome->message : "");
    //  A resource limit: the spawned run knows its rusage and cgroup;
    //  for a pooled one, what its exit, stderr, CPU time and its process's
    //  cgroup (since the job began) show.
    int status = outcome->signal ? outcome->signal : (outcome->exit_code & 0xff) << 8;
    const char *limit = outcome->init_failed || outcome->not_limit ? NULL
                      : bot ? bm_bot_limit_verdict (bot, message, sizeof message)
                      : bm_limits_pool_verdict (limits, outcome->run, status, outcome->usage, tail,
                                                message, sizeof message);
    if (outcome->overflowed) {
        snprintf (message, sizeof message,
                  "the bot wrote more than %lld bytes on stdout and was killed",
                  (long long) output_max);
        verdict->code = "bad_output";
        verdict->message = strdup (message);
    }
    else
    if (outcome->bad_output) {
        verdict->code = "bad_output";
        verdict->message = strdup (outcome->bad_output);
    }
    else
    if (outcome->init_failed) {
        bm_job_report_keep_end (tail, BM_MESSAGE_MAX);
        verdict->code = outcome->init_limit ? "resource_limit" : "bot_init_failed";
        verdict->limit = outcome->init_limit;
        verdict->message = strdup (tail);
        verdict->own = 0;               //  Its init error, with its stderr
    }
    else
    if (limit) {
        verdict->limit = limit;
        verdict->code = "resource_limit";
        verdict->message = strdup (message);
        //  A sandboxed bot's death by SIGXCPU comes as bwrap's exit 128 +
        //  SIGXCPU: no exit code, as for the unsandboxed one.
        bool xcpu = streq (limit, "cpu") && outcome->exit_code == 128 + SIGXCPU;
        verdict->exit_code = outcome->signal || xcpu ? -1 : outcome->exit_code;
    }
    else
    if (outcome->signal) {
        bm_job_report_keep_end (tail, BM_MESSAGE_MAX - 320);
        const char *name = sigabbrev_np (outcome->signal);
        //  A spawned bot that wrote nothing may have died at start.
        char hint [224] = "";
        if (outcome->memory_var && !outcome->output_size)
            bm_job_report_memory_hint (outcome->signal, limits, outcome->memory_var, true,
                                       hint, sizeof hint);
        verdict->code = "bot_failed";
        verdict->message = zsys_sprintf ("the bot was killed by signal SIG%s (%d)%s%s%s",
                                         name ? name : "?", outcome->signal, hint,
                                         *tail ? ": " : "", tail);
        if (verdict->message && *tail)
            verdict->own = strlen (verdict->message) - strlen (tail) - 2;
    }
    else
    if (bm_job_report_bwrap_signal (outcome->exit_code, outcome->sandboxed)) {
        //  Most likely killed by that signal inside the sandbox: say so,
        //  with the status as it came (the bot may have exited so itself).
        bm_job_report_keep_end (tail, BM_MESSAGE_MAX - 384);
        char how [128], hint [224] = "";
        bm_job_report_how (W_EXITCODE (outcome->exit_code, 0), true, how, sizeof how);
        if (outcome->memory_var && !outcome->output_size)
            bm_job_report_memory_hint (outcome->exit_code - 128, limits, outcome->memory_var, true,
                                       hint, sizeof hint);
        verdict->code = "bot_failed";
        verdict->message = zsys_sprintf ("the bot %s%s%s%s", how, hint, *tail ? ": " : "", tail);
        if (verdict->message && *tail)
            verdict->own = strlen (verdict->message) - strlen (tail) - 2;
        verdict->exit_code = outcome->exit_code;
    }
    else
    if (outcome->exit_code != 0) {
        bm_job_report_keep_end (tail, BM_MESSAGE_MAX);
        if (!*tail)
            snprintf (message, sizeof message, "the bot exited with status %d", outcome->exit_code);
        verdict->code = "bot_failed";
        verdict->message = strdup (*tail ? tail : message);
        if (*tail)
            verdict->own = 0;
        verdict->exit_code = outcome->exit_code;
    }
    else
    if (outcome->result ? bm_job_report_pack_result (outcome->result, max_payload, &verdict->result,
                                                     &verdict->result_size, message, sizeof message)
                        : bm_job_report_parse_result (outcome->output, outcome->output_size, max_payload,
                                                      &verdict->result, &verdict->result_size,
                                                      message, sizeof message)) {
        verdict->code = "bad_output";
        verdict->message = strdup (message);
    }
    free (tail);
}

int
bm_job_report_bwrap_signal (int exit_code, bool sandboxed)
{
    if (!sandboxed || exit_code <= 128 || exit_code >= 128 + NSIG)
        return 0;
    return sigabbrev_np (exit_code - 128) ? exit_code - 128 : 0;
}

void
bm_job_report_memory_hint (int signum, const bm_limits_t *limits, const char *memory_var,
                           bool maybe, char *hint, size_t hint_size)
{
    *hint = 0;
    if (limits && limits->memory_mb > 0)
        bm_job_report_memory_hint_under (signum, limits, bm_limits_memory_method (limits),
                                         memory_var, maybe, hint, hint_size);
}

void
bm_job_report_memory_hint_under (int signum, const bm_limits_t *limits, const char *method,
                                 const char *memory_var, bool maybe, char *hint, size_t hint_size)
{
    *hint = 0;
    if (!limits || limits->memory_mb <= 0 || !method || !streq (method, "RLIMIT_AS")
    ||  (signum != SIGSEGV && signum != SIGABRT && signum != SIGKILL))
        return;
    snprintf (hint, hint_size, "; %s%s%s=%lld may be too low for it to start (a JVM, for one, "
              "reserves address space at start): %s", maybe ? "if it died at start, " : "",
              limits->memory_default ? "the default " : "",
              memory_var ? memory_var : "BOT_<TYPE>_MEMORY_MB", (long long) limits->memory_mb,
              limits->memory_default ? "set it higher" : "raise it");
}

void
bm_job_report_how (int status, bool sandboxed, char *how, size_t how_size)
{
    if (WIFSIGNALED (status)) {
        const char *name = sigabbrev_np (WTERMSIG (status));
        snprintf (how, how_size, "killed by signal SIG%s", name ? name : "?");
        return;
    }
    int code = WEXITSTATUS (status);
    int signum = bm_job_report_bwrap_signal (code, sandboxed);
    if (signum)
        snprintf (how, how_size, "exited with status %d (128+%d: killed by SIG%s inside the sandbox)",
                  code, signum, sigabbrev_np (signum));
    else
        snprintf (how, how_size, "exited with status %d", code);
}

void
bm_job_verdict_clear (bm_job_verdict_t *verdict)
{
    free (verdict->message);
    free (verdict->result);
    memset (verdict, 0, sizeof *verdict);
}

//  --------------------------------------------------------------------------
//  Bodies

//  The packer's bytes handed over as an sbuffer the caller destroys;
//  empty, with a log line, if a write found no memory.
static void
s_hand_over (bm_packer_t *packer, msgpack_sbuffer *sbuf, const char *job_id)
{
    size_t size;
    char *data = bm_packer_detach (packer, &size);
    msgpack_sbuffer_init (sbuf);
    if (data) {
        sbuf->data = data;
        sbuf->size = size;
        sbuf->alloc = size;
    }
    else
        bm_error (job_id, "no memory to build a message for the broker");
}

static void
s_progress (msgpack_sbuffer *sbuf, const char *job_id, const bm_codec_progress_t *body)
{
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_progress_encode (body, &packer);
    s_hand_over (&packer, sbuf, job_id);
}

void
bm_job_report_progress (msgpack_sbuffer *sbuf, const char *job_id, int progress)
{
    bm_codec_progress_t body = { .has_progress = true, .progress = progress };
    snprintf (body.job_id, sizeof body.job_id, "%s", job_id);
    s_progress (sbuf, job_id, &body);
}

void
bm_job_report_waiting (msgpack_sbuffer *sbuf, const char *job_id, bool started)
{
    bm_codec_progress_t body = { .waiting = !started, .started = started };
    snprintf (body.job_id, sizeof body.job_id, "%s", job_id);
    s_progress (sbuf, job_id, &body);
}

void
bm_job_report_done (bm_packer_t *packer, const char *job_id,
                    const char *result_data, size_t result_size,
                    const char *code, const char *message, int exit_code,
                    const char *limit, int64_t attempt, int64_t started_at,
                    int64_t finished_at, int progress, const char *log)
{
    bm_codec_done_t body = { .ok = code == NULL, .started_at = started_at,
                             .finished_at = finished_at, .attempt = attempt,
                             .has_progress = progress >= 0, .progress = progress };
    bm_id_copy (body.job_id, sizeof body.job_id, job_id);
    if (body.ok) {
        body.result.data = result_data;
        body.result.size = result_size;
    }
    else {
        snprintf (body.error.code, sizeof body.error.code, "%s", code);
        body.error.message.ptr = message ? message : "";
        body.error.message.len = strlen (body.error.message.ptr);
        body.error.has_exit_code = exit_code >= 0;
        body.error.exit_code = exit_code;
        snprintf (body.error.limit, sizeof body.error.limit, "%s", limit ? limit : "");
    }
    if (log) {
        size_t len = strlen (log);
        size_t start = bm_utf8_tail (log, len, BM_MAX_JOB_LOG_LEN);
        body.log.ptr = log + start;
        body.log.len = len - start;
    }
    bm_codec_done_encode (&body, packer);
}

static bool
s_key_is (const msgpack_object *key, const char *name)
{
    size_t len = strlen (name);
    return key->type == MSGPACK_OBJECT_STR && key->via.str.size == len
        && memcmp (key->via.str.ptr, name, len) == 0;
}

int
bm_job_report_done_again (msgpack_sbuffer *sbuf, const char *body, size_t size, int64_t attempt)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    if (msgpack_unpack_next (&unpacked, body, size, NULL) != MSGPACK_UNPACK_SUCCESS
    ||  unpacked.data.type != MSGPACK_OBJECT_MAP) {
        msgpack_unpacked_destroy (&unpacked);
        return -1;
    }
    const msgpack_object_map *map = &unpacked.data.via.map;
    uint32_t kept = 0;
    for (uint32_t i = 0; i < map->size; i++)
        kept += !s_key_is (&map->ptr [i].key, "attempt");
    msgpack_sbuffer_init (sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, kept + 1);
    for (uint32_t i = 0; i < map->size; i++)
        if (!s_key_is (&map->ptr [i].key, "attempt")) {
            msgpack_pack_object (&pk, map->ptr [i].key);
            msgpack_pack_object (&pk, map->ptr [i].val);
        }
    bm_pack_kv_int (&pk, "attempt", attempt);
    msgpack_unpacked_destroy (&unpacked);
    return 0;
}

void
bm_job_report_simulated (msgpack_sbuffer *sbuf, const char *bot_type, const char *job_id,
                         int64_t attempt, int64_t duration_ms)
{
    msgpack_sbuffer_init (sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 5);
    bm_pack_kv_bool (&pk, "simulated", true);
    bm_pack_kv_str (&pk, "botType", bot_type);
    bm_pack_kv_str (&pk, "jobId", job_id);
    bm_pack_kv_int (&pk, "attempt", attempt);
    bm_pack_kv_int (&pk, "durationMs", duration_ms);
}

void
bm_job_report_noop (bm_packer_t *packer, const char *bot_type, const char *job_id,
                    int64_t attempt)
{
    msgpack_packer *pk = &packer->pk;
    msgpack_pack_map (pk, 4);
    bm_pack_kv_bool (pk, "noop", true);
    bm_pack_kv_str (pk, "botType", bot_type);
    bm_pack_kv_str (pk, "jobId", job_id);
    bm_pack_kv_int (pk, "attempt", attempt);
}

#ifdef BM_SELFTEST
//  --------------------------------------------------------------------------
//  Self-test: verdicts as the broker will read them.

void
bm_job_report_test (bool verbose)
{
    (void) verbose;
    printf (" * bm_job_report: ");
    bm_job_verdict_t verdict;
    bm_limits_t limits;                 //  None set
    memset (&limits, 0, sizeof limits);

    //  Exit 0 with a log line, then JSON: completed with that JSON.
    const char *out = "loading...\n{\"n\": 1}\n";
    bm_pool_outcome_t ok = { .exit_code = 0, .output = out, .output_size = strlen (out) };
    bm_job_report_verdict (&ok, NULL, &limits, 1024, 1024, &verdict);
    assert (verdict.code == NULL && verdict.result && verdict.result_size == 4);
    bm_job_verdict_clear (&verdict);

    //  A pooled bot's {"result": VALUE}: VALUE packed as it is, the same
    //  bytes as its text parsed, and over max_payload the same error.
    json_t *value = json_pack ("{s:i, s:[s, f, b]}", "n", 1, "list", "x", 0.1, true);
    char *value_text = json_dumps (value, JSON_COMPACT);
    bm_pool_outcome_t parsed = { .exit_code = 0, .output = value_text, .output_size = strlen (value_text) };
    bm_pool_outcome_t direct = parsed;
    direct.result = value;
    bm_job_verdict_t from_text;
    bm_job_report_verdict (&parsed, NULL, &limits, 1024, 1024, &from_text);
    bm_job_report_verdict (&direct, NULL, &limits, 1024, 1024, &verdict);
    assert (verdict.code == NULL && from_text.code == NULL && verdict.result_size == from_text.result_size
        &&  memcmp (verdict.result, from_text.result, verdict.result_size) == 0);
    bm_job_verdict_clear (&verdict);
    bm_job_verdict_clear (&from_text);
    bm_job_report_verdict (&direct, NULL, &limits, 1024, 8, &verdict);
    assert (streq (verdict.code, "bad_output") && strstr (verdict.message, "more than the 8 allowed"));
    bm_job_verdict_clear (&verdict);
    free (value_text);
    json_decref (value);

    //  A pooled bot's ready frame as stdout's first line: nothing else.
    const char *ready [] = { "{\"ready\": true}", "\xef\xbb\xbf\n{\"ready\":true,\"pid\":7}\n{\"result\":1}\n",
                             "{\"ready\": true, \"pid\": 9, \"mode\": \"pool\"}\r\n", NULL };
    for (int i = 0; ready [i]; i++)
        assert (bm_job_report_pool_ready (ready [i], strlen (ready [i])));
    const char *not_ready [] = { "", "{\"ready\": false}", "{\"ready\": true, \"rows\": 3}",
                                 "log\n{\"ready\": true}", "[{\"ready\": true}]", "{\"ready\": true",
                                 "{\"n\": 1}\n{\"ready\": true}", NULL };
    for (int i = 0; not_ready [i]; i++)
        assert (!bm_job_report_pool_ready (not_ready [i], strlen (not_ready [i])));

    //  Exit 0, stdout not JSON: bad_output naming the parse error.
    bm_pool_outcome_t junk = { .exit_code = 0, .output = "hello", .output_size = 5 };
    bm_job_report_verdict (&junk, NULL, &limits, 1024, 1024, &verdict);
    assert (streq (verdict.code, "bad_output") && strstr (verdict.message, "not JSON"));
    bm_job_verdict_clear (&verdict);

    //  Several lines, none JSON: the message says the last one was tried.
    const char *junk_lines = "starting\nhello, not json\n\n";
    bm_pool_outcome_t lines = { .exit_code = 0, .output = junk_lines,
                                .output_size = strlen (junk_lines) };
    bm_job_report_verdict (&lines, NULL, &limits, 1024, 1024, &verdict);
    assert (streq (verdict.code, "bad_output")
        &&  strstr (verdict.message, "nor is its last non-empty line, line 2 (column 5:"));
    bm_job_verdict_clear (&verdict);

    //  One leading UTF-8 byte order mark is skipped, with or without log
    //  lines before the JSON; a second one is not JSON.
    const char *bom = "\xEF\xBB\xBF{\"n\": 1}";
    bm_pool_outcome_t with_bom = { .exit_code = 0, .output = bom, .output_size = strlen (bom) };
    bm_job_report_verdict (&with_bom, NULL, &limits, 1024, 1024, &verdict);
    assert (verdict.code == NULL && verdict.result && verdict.result_size == 4
        &&  memcmp (verdict.result, "\x81\xA1n\x01", 4) == 0);
    bm_job_verdict_clear (&verdict);
    const char *bom_lines = "\xEF\xBB\xBFloading...\n[true]\n";
    with_bom.output = bom_lines;
    with_bom.output_size = strlen (bom_lines);
    bm_job_report_verdict (&with_bom, NULL, &limits, 1024, 1024, &verdict);
    assert (verdict.code == NULL && verdict.result_size == 2
        &&  memcmp (verdict.result, "\x91\xC3", 2) == 0);
    bm_job_verdict_clear (&verdict);
    const char *two_boms = "\xEF\xBB\xBF\xEF\xBB\xBF{}";
    with_bom.output = two_boms;
    with_bom.output_size = strlen (two_boms);
    bm_job_report_verdict (&with_bom, NULL, &limits, 1024, 1024, &verdict);
    assert (streq (verdict.code, "bad_output") && strstr (verdict.message, "not JSON"));
    bm_job_verdict_clear (&verdict);
    //  A BOM alone: nothing after it.
    with_bom.output = "\xEF\xBB\xBF";
    with_bom.output_size = 3;
    bm_job_report_verdict (&with_bom, NULL, &limits, 1024, 1024, &verdict);
    assert (streq (verdict.code, "bad_output") && strstr (verdict.message, "wrote nothing"));
    bm_job_verdict_clear (&verdict);

    //  A result over max_payload: bad_output.
    bm_job_report_verdict (&ok, NULL, &limits, 1024, 2, &verdict);
    assert (streq (verdict.code, "bad_output") && strstr (verdict.message, "more than the 2"));
    bm_job_verdict_clear (&verdict);

    //  Exit 3 with stderr: bot_failed, the stderr as message, exitCode 3.
    bm_pool_outcome_t failed = { .exit_code = 3, .message = "boom", .output = "" };
    bm_job_report_verdict (&failed, NULL, &limits, 1024, 1024, &verdict);
    assert (streq (verdict.code, "bot_failed") && streq (verdict.message, "boom"));
    assert (verdict.exit_code == 3);
    bm_job_verdict_clear (&verdict);

    //  Exit 3, no stderr: the status says it.
    failed.message = NULL;
    bm_job_report_verdict (&failed, NULL, &limits, 1024, 1024, &verdict);
    assert (streq (verdict.message, "the bot exited with status 3"));
    bm_job_verdict_clear (&verdict);

    //  Killed by SIGSEGV: named, with the stderr tail, no exitCode.
    bm_pool_outcome_t killed = { .exit_code = -1, .signal = 11, .message = "oops", .output = "" };
    bm_job_report_verdict (&killed, NULL, &limits, 1024, 1024, &verdict);
    assert (streq (verdict.code, "bot_failed") && verdict.exit_code == -1);
    assert (streq (verdict.message, "the bot was killed by signal SIGSEGV (11): oops"));
    bm_job_verdict_clear (&verdict);
    //  A spawned bot that wrote nothing, under an address-space limit: a
    //  hint at the limit; with output, none.
    killed.memory_var = "BOT_JAVA_MEMORY_MB";
    bm_job_report_verdict (&killed, NULL, &limits, 1024, 1024, &verdict);
    assert (!strstr (verdict.message, "too low"));          //  No limit: no hint
    bm_job_verdict_clear (&verdict);
    bm_limits_t capped = limits;
    capped.memory_mb = 200;
    bm_job_report_verdict (&killed, NULL, &capped, 1024, 1024, &verdict);
    assert (strstr (verdict.message, "the bot was killed by signal SIGSEGV (11); if it died at start, "
                                     "BOT_JAVA_MEMORY_MB=200") == verdict.message);
    assert (strstr (verdict.message, "may be too low for it to start"));
    assert (verdict.own == strlen (verdict.message) - strlen ("oops") - 2);
    bm_job_verdict_clear (&verdict);
    //  BOT_JAVA_MEMORY_MB unset: the default named as the default.
    bm_limits_t fallback = limits;
    fallback.memory_mb = BM_LIMITS_MEMORY_MB;
    fallback.memory_default = true;
    bm_job_report_verdict (&killed, NULL, &fallback, 1024, 1024, &verdict);
    assert (strstr (verdict.message, "the bot was killed by signal SIGSEGV (11); if it died at start, "
                                     "the default BOT_JAVA_MEMORY_MB=4096 may be too low for it to "
                                     "start (a JVM, for one, reserves address space at start): set "
                                     "it higher: oops") == verdict.message);
    bm_job_verdict_clear (&verdict);
    killed.output = "{";
    killed.output_size = 1;
    bm_job_report_verdict (&killed, NULL, &capped, 1024, 1024, &verdict);
    assert (!strstr (verdict.message, "too low"));
    bm_job_verdict_clear (&verdict);

    //  The hint itself (a warm process dead at load: no "if"), by what holds
    //  the bot to its memory limit.  An address-space limit (no pids limit
    //  here, so no cgroup: RLIMIT_AS): SIGSEGV, SIGABRT, SIGKILL get it.
    char hint [256];
    const int crashes [] = { SIGSEGV, SIGABRT, SIGKILL };
    for (size_t i = 0; i < sizeof crashes / sizeof crashes [0]; i++) {
        bm_job_report_memory_hint (crashes [i], &capped, "BOT_JAVA_MEMORY_MB", false, hint, sizeof hint);
        assert (streq (hint, "; BOT_JAVA_MEMORY_MB=200 may be too low for it to start (a JVM, for "
                             "one, reserves address space at start): raise it"));
    }
    bm_job_report_memory_hint_under (SIGSEGV, &fallback, "RLIMIT_AS", "BOT_JAVA_MEMORY_MB", false,
                                     hint, sizeof hint);
    assert (strstr (hint, "; the default BOT_JAVA_MEMORY_MB=4096 may be too low") == hint);
    bm_job_report_memory_hint (SIGTERM, &capped, "BOT_JAVA_MEMORY_MB", false, hint, sizeof hint);
    assert (streq (hint, ""));              //  Not a crash
    bm_job_report_memory_hint (SIGSEGV, &limits, "BOT_JAVA_MEMORY_MB", false, hint, sizeof hint);
    assert (streq (hint, ""));              //  No memory limit
    //  Under a cgroup v2 memory.max the address space is not capped, and
    //  the cgroup's OOM kill is judged the memory limit before any hint:
    //  no hint, for a crash or for a SIGKILL it did not count.
    for (size_t i = 0; i < sizeof crashes / sizeof crashes [0]; i++) {
        strcpy (hint, "unset");
        bm_job_report_memory_hint_under (crashes [i], &capped, "cgroup v2 memory.max",
                                         "BOT_JAVA_MEMORY_MB", true, hint, sizeof hint);
        assert (streq (hint, ""));
        strcpy (hint, "unset");
        bm_job_report_memory_hint_under (crashes [i], &fallback, "cgroup v2 memory.max",
                                         "BOT_JAVA_MEMORY_MB", false, hint, sizeof hint);
        assert (streq (hint, ""));
    }

    //  Under bwrap, exit 139 is its bot's death by SIGSEGV: said so, the
    //  status kept; the worker's words are its own, the stderr the bot's.
    bm_pool_outcome_t boxed = { .exit_code = 139, .sandboxed = true, .message = "oops", .output = "" };
    bm_job_report_verdict (&boxed, NULL, &limits, 1024, 1024, &verdict);
    assert (streq (verdict.code, "bot_failed") && verdict.exit_code == 139);
    assert (streq (verdict.message, "the bot exited with status 139 "
                                    "(128+11: killed by SIGSEGV inside the sandbox): oops"));
    assert (verdict.own == strlen (verdict.message) - strlen ("oops") - 2);
    bm_job_verdict_clear (&verdict);
    //  Unsandboxed, or past 128 + the last signal: an exit status.
    boxed.sandboxed = false;
    bm_job_report_verdict (&boxed, NULL, &limits, 1024, 1024, &verdict);
    assert (streq (verdict.message, "oops") && verdict.exit_code == 139);
    bm_job_verdict_clear (&verdict);
    assert (!bm_job_report_bwrap_signal (128, true) && !bm_job_report_bwrap_signal (255, true));
    char how [128];
    bm_job_report_how (W_EXITCODE (134, 0), true, how, sizeof how);
    assert (streq (how, "exited with status 134 (128+6: killed by SIGABRT inside the sandbox)"));
    bm_job_report_how (W_EXITCODE (134, 0), false, how, sizeof how);
    assert (streq (how, "exited with status 134"));
    bm_job_report_how (SIGSEGV, false, how, sizeof how);
    assert (streq (how, "killed by signal SIGSEGV"));

    //  Too much stdout wins over everything else.
    bm_pool_outcome_t big = { .overflowed = true, .exit_code = -1, .signal = 9, .output = "" };
    bm_job_report_verdict (&big, NULL, &limits, 1024, 1024, &verdict);
    assert (streq (verdict.code, "bad_output") && strstr (verdict.message, "more than 1024 bytes"));
    bm_job_verdict_clear (&verdict);

    //  A process that never got ready.
    //  A sandboxed pool bot's CPU kill (bwrap's exit 152): no exitCode.
    bm_limits_t cpu_limits = { .cpu_seconds = 2 };
    bm_pool_outcome_t xcpu = { .exit_code = 128 + SIGXCPU, .output = "" };
    bm_job_report_verdict (&xcpu, NULL, &cpu_limits, 1024, 1 << 20, &verdict);
    assert (streq (verdict.code, "resource_limit") && streq (verdict.limit, "cpu") && verdict.exit_code == -1);
    bm_job_verdict_clear (&verdict);
    //  An answer the pool refused: bad_output with its message.
    bm_pool_outcome_t refused = { .exit_code = 0, .bad_output = "unknown keys", .output = "{}" };
    bm_job_report_verdict (&refused, NULL, &limits, 1024, 1 << 20, &verdict);
    assert (streq (verdict.code, "bad_output") && streq (verdict.message, "unknown keys"));
    bm_job_verdict_clear (&verdict);
    bm_pool_outcome_t init = { .init_failed = true, .exit_code = -1, .message = "ImportError" };
    bm_job_report_verdict (&init, NULL, &limits, 1024, 1024, &verdict);
    assert (streq (verdict.code, "bot_init_failed") && streq (verdict.message, "ImportError"));
    assert (verdict.limit == NULL);
    bm_job_verdict_clear (&verdict);
    //  Out of memory at start, under the memory limit: resource_limit.
    bm_pool_outcome_t oom = { .init_failed = true, .init_limit = "memory", .exit_code = -1,
                              .message = "ran out of memory while loading" };
    bm_job_report_verdict (&oom, NULL, &limits, 1024, 1024, &verdict);
    assert (streq (verdict.code, "resource_limit") && streq (verdict.limit, "memory"));
    assert (streq (verdict.message, "ran out of memory while loading"));
    bm_job_verdict_clear (&verdict);

    //  keep_end cuts at a character boundary: "é" is two bytes.
    char text [] = "ab\xc3\xa9xy";
    bm_job_report_keep_end (text, 3);
    assert (streq (text, "xy"));

    //  A DONE with an error carries exitCode and limit only when set.
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_job_report_done (&packer, "j1", NULL, 0, "resource_limit", "m", -1, "memory", 1, 1, 2, 40,
                        "a line\nthe last");
    assert (!bm_packer_failed (&packer));
    msgpack_sbuffer sbuf = packer.sbuf;
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    assert (msgpack_unpack_next (&unpacked, sbuf.data, sbuf.size, NULL) == MSGPACK_UNPACK_SUCCESS);
    const msgpack_object *error = bm_obj_get (&unpacked.data, "error");
    assert (error && error->type == MSGPACK_OBJECT_MAP && error->via.map.size == 3);
    int64_t progress = -1;              //  The job's last progress, held back
    assert (bm_obj_int (&unpacked.data, "progress", &progress) && progress == 40);
    const char *log_text = NULL;       //  Its stderr tail, any outcome
    size_t log_len = 0;
    assert (bm_obj_str (&unpacked.data, "log", &log_text, &log_len) && log_len == 15
            && memcmp (log_text, "a line\nthe last", 15) == 0);
    uint32_t fields = unpacked.data.via.map.size;
    msgpack_unpacked_destroy (&unpacked);

    //  Packed again for attempt 7: the same fields, attempt replaced.
    msgpack_sbuffer again;
    assert (bm_job_report_done_again (&again, sbuf.data, sbuf.size, 7) == 0);
    msgpack_unpacked_init (&unpacked);
    assert (msgpack_unpack_next (&unpacked, again.data, again.size, NULL) == MSGPACK_UNPACK_SUCCESS);
    int64_t attempt = 0;
    assert (unpacked.data.via.map.size == fields);
    assert (bm_obj_int (&unpacked.data, "attempt", &attempt) && attempt == 7);
    assert (bm_obj_get (&unpacked.data, "error") && bm_obj_get (&unpacked.data, "startedAt"));
    msgpack_unpacked_destroy (&unpacked);
    msgpack_sbuffer_destroy (&again);
    assert (bm_job_report_done_again (&again, "\xc0", 1, 2) == -1);     //  nil: not a map

    //  The packer is reused: a no-op result, then a DONE carrying it, each
    //  from an empty packer, as the worker builds them for every job.
    bm_packer_t result;
    bm_packer_init (&result);
    bm_job_report_noop (&result, "python", "j2", 3);
    bm_packer_reset (&packer);
    bm_job_report_done (&packer, "j2", result.sbuf.data, result.sbuf.size, NULL, NULL, -1, NULL,
                        3, 10, 11, -1, "");
    assert (!bm_packer_failed (&packer) && !bm_packer_failed (&result));
    msgpack_unpacked_init (&unpacked);
    assert (msgpack_unpack_next (&unpacked, packer.sbuf.data, packer.sbuf.size, NULL)
            == MSGPACK_UNPACK_SUCCESS);
    bool done_ok = false, noop = false;
    const char *id = NULL;
    size_t id_len = 0;
    const msgpack_object *done_result = bm_obj_get (&unpacked.data, "result");
    assert (bm_obj_bool (&unpacked.data, "ok", &done_ok) && done_ok);
    assert (bm_obj_str (&unpacked.data, "jobId", &id, &id_len) && id_len == 2 && memcmp (id, "j2", 2) == 0);
    assert (bm_obj_int (&unpacked.data, "attempt", &attempt) && attempt == 3);
    assert (bm_obj_bool (done_result, "noop", &noop) && noop);
    assert (bm_obj_int (done_result, "attempt", &attempt) && attempt == 3);
    assert (!bm_obj_get (&unpacked.data, "error") && !bm_obj_get (&unpacked.data, "progress")
            && !bm_obj_get (&unpacked.data, "log"));        //  An empty log: none
    msgpack_unpacked_destroy (&unpacked);
    bm_packer_destroy (&result);
    bm_packer_destroy (&packer);
    printf ("OK\n");
}
#endif

/*  bm_cli.c - botmesh-client: submit, status, stats, cancel over ZeroMQ.

    A small command-line client for shells and scripts.  Prints JSON on
    stdout; exit code 0 on success, 1 when the broker rejected the request
    or the job did not complete, 2 on a usage error, 3 on a timeout.  */
#include "bm_client.h"
#include "bm_codec.h"
#include "bm_config.h"
#include "bm_curve.h"
#include "bm_env_check.h"
#include "bm_http.h"
#include "bm_json.h"
#include "bm_log.h"

#include <errno.h>
#include <limits.h>
#include <unistd.h>

//  list --webhook-state: a value that is not a webhook state (what GET
//  /jobs?webhook= answers 400 invalid_webhook), named by the flag.
#define WEBHOOK_STATE_ERROR "--webhook-state must be one of: pending, retrying, delivered, failed"

static void
s_usage (FILE *out)
{
    fprintf (out,
"usage: botmesh-client [--endpoint E] [--timeout-ms N] COMMAND [ARGS]\n"
"\n"
"Commands:\n"
"  submit TYPE [PAYLOAD_JSON] [--priority N] [--webhook URL] [--key IDEMPOTENCY_KEY]\n"
"         [--job-timeout-ms N] [--attempts N] [--delay-ms N] [--max-attempts N] [--wait]\n"
"         [--depends-on JOB_ID]... [--dependency-results] [--ignore-dependency-failure]\n"
"                       submit a job; prints {\"jobId\":...}; with --wait, waits\n"
"                       for the job to end and prints its record; PAYLOAD_JSON\n"
"                       - reads the payload from stdin, @FILE from FILE (a\n"
"                       large payload does not fit in an argument).\n"
"                       --attempts: runs allowed when the bot fails (1-100;\n"
"                       default RETRY_ATTEMPTS); --delay-ms: run no sooner than\n"
"                       this many ms from now (0 to a year; the job is delayed);\n"
"                       --max-attempts: dispatches lost to crashed workers\n"
"                       allowed (1-100; default JOB_MAX_ATTEMPTS);\n"
"                       --depends-on (1-100 times): run once these jobs completed\n"
"                       (waiting-children until then); --dependency-results: the\n"
"                       bot gets {payload, dependencies: {id: result}};\n"
"                       --ignore-dependency-failure: a dependency that fails\n"
"                       counts as done (docs/protocol.md section 3, Dependencies)\n"
"  status JOB_ID        the job's record\n"
"  wait JOB_ID          wait until the job ends; prints its record\n"
"  cancel JOB_ID        cancel a queued or running job\n"
"  retry JOB_ID         run a failed or cancelled job again\n"
"  redeliver JOB_ID     deliver a finished job's webhook again; prints {\"jobId\":...}\n"
"  list [--state S] [--type T] [--webhook-state W] [--limit N]\n"
"                       recent jobs, newest first: those\n"
"                       the broker holds in memory, every unfinished job and\n"
"                       the newest KEEP_FINISHED_JOBS finished ones (a restarted\n"
"                       broker reads them back from Redis, but for cancelled\n"
"                       ones; status JOB_ID reads Redis too). S: queued (or waiting,\n"
"                       wait), running (or active), delayed, completed, failed,\n"
"                       cancelled. W: the jobs whose webhook is in that state,\n"
"                       newest to reach it first: pending, retrying, delivered,\n"
"                       failed (list --webhook-state failed: the failed webhooks\n"
"                       list, each redelivered with redeliver JOB_ID)\n"
"  stats                queues, semaphores, workers, totals\n"
"  ping                 is the broker up (and its Redis)?\n"
"  metrics              the broker's metrics (Prometheus text)\n"
"  keygen DIR NAME [--force]\n"
"                       write a CURVE certificate pair: DIR/NAME.key (public, give\n"
"                       it to the broker's CURVE_CLIENTS_DIR) and DIR/NAME.key_secret;\n"
"                       refuses (exit 1) when either exists, unless --force\n"
"\n"
"Flags:\n"
"  --endpoint E         broker endpoint (BROKER_CLIENT_ENDPOINT, then\n"
"                       BROKER_ENDPOINT with * read as 127.0.0.1;\n"
"                       default tcp://127.0.0.1:5555)\n"
"  --timeout-ms N       how long to wait for the broker's answer (5000); with\n"
"                       --wait or wait, how long to wait for the job (600000)\n"
"\n"
"Job records (submit --wait, status, wait, cancel, list) give their times (the\n"
"fields ending in At) as ISO 8601 UTC strings with milliseconds, as the HTTP API.\n"
"\n"
"Environment: CURVE_SERVER_KEY (the broker's public key) and CURVE_CLIENT_CERT\n"
"(this client's secret certificate) when the broker runs with CURVE.\n"
"\n"
"Exit codes: 0 ok, 1 rejected or job not completed, 2 usage, 3 timeout.\n");
}

static void s_print_json (json_t *json);

//  The whole of a stream, NUL-terminated, or NULL (errno set) on a read
//  error or past max bytes (E2BIG). The caller frees it.
static char *
s_read_all (FILE *file, size_t max, size_t *size)
{
    size_t cap = 65536, len = 0;
    char *buf = (char *) malloc (cap);
    while (buf) {
        len += fread (buf + len, 1, cap - 1 - len, file);
        if (ferror (file)) {
            free (buf);
            return NULL;
        }
        if (feof (file)) {
            buf [len] = 0;
            *size = len;
            return buf;
        }
        if (cap > max) {
            free (buf);
            errno = E2BIG;
            return NULL;
        }
        char *grown = (char *) realloc (buf, cap * 2);
        if (!grown)
            free (buf);
        buf = grown;
        cap *= 2;
    }
    return NULL;
}

//  The payload argument of submit: JSON text, "-" for stdin, "@FILE" for a
//  file. Returns the text (owned by the caller) or NULL with a message.
static char *
s_payload_text (const char *arg, size_t *size)
{
    const size_t max = 256u << 20;              //  Far above any payload cap
    if (!streq (arg, "-") && arg [0] != '@') {
        *size = strlen (arg);
        return strdup (arg);
    }
    const char *path = streq (arg, "-") ? NULL : arg + 1;
    FILE *file = path ? fopen (path, "rb") : stdin;
    if (!file) {
        fprintf (stderr, "botmesh-client: cannot open the payload file '%s': %s\n", path,
                 strerror (errno));
        return NULL;
    }
    char *text = s_read_all (file, max, size);
    if (!text)
        fprintf (stderr, "botmesh-client: cannot read the payload from %s: %s\n",
                 path ? path : "stdin", strerror (errno));
    if (path)
        fclose (file);
    return text;
}

//  Print a reply body without the protocol's req (a request's number, no
//  business of the user's), and without the field drop if not NULL (the
//  SUBMIT-only duplicate flag in the ACCEPTED of a RETRY or REDELIVER).
static void
s_print_reply (const msgpack_object *obj, const char *drop)
{
    json_t *json = bm_json_from_msgpack (obj, 64);
    json_object_del (json, "req");
    if (drop)
        json_object_del (json, drop);
    s_print_json (json);
}

//  A job record as JSON, its times (createdAt, startedAt, finishedAt,
//  runAt, the webhook's nextAttemptAt ...) ISO 8601 strings as in the
//  HTTP API's job records; the field names stay.  NULL if it does not
//  convert.
static json_t *
s_record_json (const msgpack_object *obj)
{
    json_t *json = bm_json_from_msgpack (obj, 64);
    bm_http_record_times (json);
    return json;
}

static void
s_print_json (json_t *json)
{
    char *text = bm_json_dumps (json, JSON_COMPACT | JSON_ENCODE_ANY);
    printf ("%s\n", text ? text : "null");
    free (text);
    json_decref (json);
}

//  Print a job record (s_record_json).
static void
s_print_record (const msgpack_object *obj)
{
    s_print_json (s_record_json (obj));
}

//  Print a LIST reply: {jobs: [record, ...]}, each record as s_record_json.
static void
s_print_list (const msgpack_object *obj)
{
    json_t *json = bm_json_from_msgpack (obj, 64);
    json_object_del (json, "req");
    json_t *jobs = json_object_get (json, "jobs");
    size_t i;
    json_t *job;
    json_array_foreach (jobs, i, job) {
        bm_http_record_times (job);
    }
    s_print_json (json);
}

//  Print a REJECTED reply on stderr; returns 1.
static int
s_rejected (bm_msg_t *reply)
{
    bm_codec_rejected_t rejected;
    bm_codec_error_t error;
    if (bm_codec_rejected_decode (reply, &rejected, &error)) {
        snprintf (rejected.code, sizeof rejected.code, "?");
        rejected.message = (bm_codec_str_t) { error.message, strlen (error.message) };
    }
    fprintf (stderr, "botmesh-client: rejected: %s: %.*s\n", rejected.code,
             (int) rejected.message.len, rejected.message.ptr);
    printf ("{\"error\":{\"code\":\"%s\"}}\n", rejected.code);
    return 1;
}

//  The broker endpoint in use, for error messages.
static const char *s_endpoint = "";

//  Send a body the codec packed; NULL (with a line on stderr, naming the
//  endpoint tried and how to change it) when no answer came in time.
static bm_msg_t *
s_request (bm_client_t *client, int command, bm_packer_t *packer, int timeout_ms)
{
    bm_msg_t *reply = NULL;
    if (bm_packer_failed (packer))
        fprintf (stderr, "botmesh-client: no memory to build the request\n");
    else {
        reply = bm_client_request (client, command, packer->sbuf.data, packer->sbuf.size,
                                   timeout_ms);
        const char *curve = reply ? NULL : bm_client_handshake_problem (client);
        if (curve)
            fprintf (stderr, "botmesh-client: no answer from the broker at %s within %d ms: "
                     "%s\n", s_endpoint, timeout_ms, curve);
        else
        if (!reply)
            fprintf (stderr, "botmesh-client: no answer from the broker at %s within %d ms "
                     "(is it running there? set the endpoint with --endpoint or "
                     "BROKER_CLIENT_ENDPOINT, the wait with --timeout-ms)\n",
                     s_endpoint, timeout_ms);
    }
    bm_packer_destroy (packer);
    return reply;
}

//  {req, jobId} for STATUS, CANCEL, RETRY, REDELIVER.
static bm_msg_t *
s_job_request (bm_client_t *client, int command, const char *id, int timeout_ms)
{
    bm_codec_job_ref_t ref = { .has_req = true, .req = bm_client_next_req (client) };
    snprintf (ref.job_id, sizeof ref.job_id, "%s", id);
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_job_ref_encode (&ref, &packer);
    return s_request (client, command, &packer, timeout_ms);
}

static bool
s_terminal (const bm_codec_record_t *job)
{
    return streq (job->state, "completed") || streq (job->state, "failed")
        || streq (job->state, "cancelled");
}

//  Print a job's record; the exit code its state gives.
static int
s_print_job (const bm_codec_record_t *job)
{
    s_print_record (job->obj);
    return streq (job->state, "completed") ? 0 : 1;
}

//  Wait for a job to end: RESULT pushes when we submitted with notify, and
//  STATUS polls (every 500 ms) in case the push cannot come (a restart).
static int
s_wait (bm_client_t *client, const char *id, int wait_ms, int timeout_ms)
{
    int64_t deadline = bm_mono_ms () + wait_ms;
    while (bm_mono_ms () < deadline) {
        bm_msg_t *result = bm_client_recv_result (client, 500);
        bm_codec_job_reply_t reply_body;
        bm_codec_error_t error;
        if (result) {
            int rc = -1;
            if (bm_codec_result_decode (result, &reply_body, &error) == 0
            &&  streq (reply_body.job_id, id))
                rc = s_print_job (&reply_body.job);
            bm_msg_destroy (&result);
            if (rc >= 0)
                return rc;
            continue;
        }
        if (errno == EINTR)
            return 3;
        bm_msg_t *reply = s_job_request (client, BM_STATUS, id, timeout_ms);
        int rc = -1;
        if (reply && bm_msg_command (reply) == BM_REPLY) {
            if (bm_codec_job_reply_decode (reply, &reply_body, &error) == 0
            &&  s_terminal (&reply_body.job))
                rc = s_print_job (&reply_body.job);
        }
        else
        if (reply && bm_msg_command (reply) == BM_REJECTED) {
            bm_codec_rejected_t rejected;
            if (bm_codec_rejected_decode (reply, &rejected, &error) == 0
            &&  streq (rejected.code, "not_found"))
                rc = s_rejected (reply);
        }
        bm_msg_destroy (&reply);
        if (rc >= 0)
            return rc;
    }
    fprintf (stderr, "botmesh-client: job %s did not end within %d ms\n", id, wait_ms);
    return 3;
}

//  keygen DIR NAME: a new CURVE pair, never over an existing one unless
//  force (a key given out would stop working).  Exit code: 0, or 1.
static int
s_keygen (const char *dir, const char *name, bool force)
{
    const char *suffixes [] = { ".key", ".key_secret" };
    for (size_t i = 0; !force && i < sizeof suffixes / sizeof suffixes [0]; i++) {
        char path [PATH_MAX];
        snprintf (path, sizeof path, "%s/%s%s", dir, name, suffixes [i]);
        if (access (path, F_OK) == 0) {
            fprintf (stderr, "botmesh-client: keygen: %s exists: not overwritten (--force replaces "
                     "the pair; a client or worker holding the old one can no longer connect)\n",
                     path);
            return 1;
        }
    }
    return bm_curve_keygen (dir, name) ? 1 : 0;
}

//  The words a command takes, itself included: an extra word is a usage
//  error rather than silently ignored.
static int
s_max_positional (const char *command)
{
    if (streq (command, "submit") || streq (command, "keygen"))
        return 3;
    if (streq (command, "stats") || streq (command, "ping") || streq (command, "list")
    ||  streq (command, "metrics"))
        return 1;
    if (streq (command, "status") || streq (command, "wait") || streq (command, "cancel")
    ||  streq (command, "retry") || streq (command, "redeliver"))
        return 2;
    return 3;           //  an unknown command: named as such below
}

int
main (int argc, char *argv [])
{
    bm_log_init ("client");
    //  A misspelt BROKER_CLIENT_ENDPOINT or CURVE_* would leave the client
    //  talking to the default broker, or without CURVE: say so.
    bm_env_check_warn ("client", environ);
    const char *endpoint = bm_env_str ("BROKER_CLIENT_ENDPOINT", NULL);
    char derived [256];
    if (!endpoint) {
        //  BROKER_ENDPOINT is the broker's bind address: "*" means here.
        const char *bind = bm_env_str ("BROKER_ENDPOINT", "tcp://127.0.0.1:5555");
        const char *star = strstr (bind, "*");
        if (star)
            snprintf (derived, sizeof derived, "%.*s127.0.0.1%s", (int) (star - bind), bind, star + 1);
        else
            snprintf (derived, sizeof derived, "%s", bind);
        endpoint = derived;
    }
    int64_t timeout_ms = 5000, wait_ms = 600000, priority = -1, job_timeout = -1, attempts = -1;
    int64_t run_attempts = -1, delay_ms = -1;
    int64_t limit = 50;
    bool wait = false, timeout_set = false, force = false;
    const char *webhook = NULL, *key = NULL, *state = NULL, *type = NULL, *webhook_state = NULL;
    const char *positional [3] = { NULL, NULL, NULL };
    int npos = 0;
    const char *depends [BM_MAX_DEPENDS];
    size_t depends_count = 0;
    bool dependency_results = false, ignore_dependency_failure = false;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv [i];
        const char *next = i + 1 < argc ? argv [i + 1] : NULL;
        #define INT_FLAG(flag, var, min, max) \
            if (streq (arg, flag)) { \
                if (!next || bm_parse_int (next, min, max, &var)) { \
                    fprintf (stderr, "botmesh-client: %s needs a number from %lld to %lld\n", \
                             flag, (long long) (min), (long long) (max)); \
                    return 2; } \
                i++; continue; }
        if (streq (arg, "--help") || streq (arg, "-h")) {
            s_usage (stdout);
            return 0;
        }
        if (streq (arg, "--endpoint") && next) { endpoint = next; i++; continue; }
        if (streq (arg, "--timeout-ms")) timeout_set = true;
        INT_FLAG ("--timeout-ms", timeout_ms, 1, BM_DAY_MS)
        INT_FLAG ("--priority", priority, 0, BM_MAX_PRIORITY)
        INT_FLAG ("--job-timeout-ms", job_timeout, 1, BM_MAX_TIMEOUT_MS)
        INT_FLAG ("--max-attempts", attempts, 1, BM_MAX_ATTEMPTS)
        INT_FLAG ("--attempts", run_attempts, 1, BM_MAX_ATTEMPTS)
        INT_FLAG ("--delay-ms", delay_ms, 0, BM_MAX_DELAY_MS)
        INT_FLAG ("--limit", limit, 1, BM_LIST_MAX_LIMIT)
        if (streq (arg, "--webhook") && next) { webhook = next; i++; continue; }
        if (streq (arg, "--key") && next) { key = next; i++; continue; }
        if (streq (arg, "--state") && next) { state = next; i++; continue; }
        if (streq (arg, "--type") && next) { type = next; i++; continue; }
        if (streq (arg, "--webhook-state")) {
            if (!next) {
                fprintf (stderr, "botmesh-client: %s\n", WEBHOOK_STATE_ERROR);
                return 2;
            }
            webhook_state = next; i++; continue; }
        if (streq (arg, "--depends-on")) {
            if (!next || !bm_valid_id (next, strlen (next)) || depends_count == BM_MAX_DEPENDS) {
                fprintf (stderr, "botmesh-client: --depends-on needs a job id (1-128 printable "
                         "characters without spaces), at most %d times\n", BM_MAX_DEPENDS);
                return 2;
            }
            depends [depends_count++] = next;
            i++;
            continue;
        }
        if (streq (arg, "--dependency-results")) { dependency_results = true; continue; }
        if (streq (arg, "--ignore-dependency-failure")) { ignore_dependency_failure = true; continue; }
        if (streq (arg, "--wait")) { wait = true; continue; }
        if (streq (arg, "--force")) { force = true; continue; }
        if (arg [0] == '-' && arg [1] == '-') {
            fprintf (stderr, "botmesh-client: unknown flag '%s' (see --help)\n", arg);
            return 2;
        }
        if (npos == 3) {
            fprintf (stderr, "botmesh-client: too many arguments (see --help)\n");
            return 2;
        }
        positional [npos++] = arg;
    }
    if (timeout_set)
        wait_ms = timeout_ms;
    const char *command = positional [0];
    if (!command) {
        s_usage (stderr);
        return 2;
    }
    //  What the body's fields cannot hold is a usage error here rather
    //  than a bad_request from the broker.
    const char *bad = NULL;
    if (streq (command, "submit") && positional [1]
    &&  !bm_valid_bot_type (positional [1], strlen (positional [1])))
        bad = "TYPE must be 1-32 characters of a-z, 0-9, _ and -";
    else
    if (key && !bm_valid_id (key, strlen (key)))
        bad = "--key must be 1-128 printable characters without spaces";
    else
    if (state && !bm_list_state (state))
        bad = "--" BM_LIST_STATE_ERROR;
    else
    if (webhook_state && bm_webhook_state (webhook_state) < 0)
        bad = WEBHOOK_STATE_ERROR;
    else
    if (type && !bm_valid_bot_type (type, strlen (type)))
        bad = "--type must be 1-32 characters of a-z, 0-9, _ and -";
    else
    if (!streq (command, "submit") && !streq (command, "keygen") && positional [1]
    &&  !bm_valid_id (positional [1], strlen (positional [1])))
        bad = "JOB_ID must be 1-128 printable characters without spaces";
    if (bad) {
        fprintf (stderr, "botmesh-client: %s\n", bad);
        return 2;
    }
    int max_words = s_max_positional (command);
    if (npos > max_words && max_words < 3) {
        fprintf (stderr, "botmesh-client: %s takes %s, not '%s' too (see --help)\n",
                 command, max_words == 1 ? "no argument" : "one argument", positional [max_words]);
        return 2;
    }
    zsys_handler_set (NULL);
    if (streq (command, "keygen")) {
        if (!positional [1] || !positional [2]) {
            fprintf (stderr, "botmesh-client: keygen needs DIR and NAME\n");
            return 2;
        }
        return s_keygen (positional [1], positional [2], force);
    }
    s_endpoint = endpoint;
    bm_client_t *client = bm_client_new (endpoint);
    if (!client) {
        fprintf (stderr, "botmesh-client: cannot connect to '%s'\n", endpoint);
        return 2;
    }
    int rc = 0;
    int request_ms = wait && !timeout_set ? 5000 : (int) timeout_ms;
    if (streq (command, "submit")) {
        if (!positional [1]) {
            fprintf (stderr, "botmesh-client: submit needs a bot type\n");
            bm_client_destroy (&client);
            return 2;
        }
        char *payload = NULL;
        size_t payload_size = 0;
        char error [256];
        size_t json_size = 0;
        char *json = s_payload_text (positional [2] ? positional [2] : "null", &json_size);
        if (!json) {
            bm_client_destroy (&client);
            return 2;
        }
        int bad = bm_json_text_to_msgpack (json, json_size, &payload, &payload_size,
                                           error, sizeof error);
        free (json);
        if (bad) {
            fprintf (stderr, "botmesh-client: the payload is not valid JSON: %s\n", error);
            bm_client_destroy (&client);
            return 2;
        }
        bm_codec_submit_t submit = {
            .has_req = true, .req = bm_client_next_req (client),
            .payload = { NULL, payload, payload_size },
            .webhook_url = { webhook, webhook ? strlen (webhook) : 0 },
            .has_priority = priority >= 0, .priority = priority,
            .has_timeout_ms = job_timeout > 0, .timeout_ms = job_timeout,
            .has_max_attempts = attempts > 0, .max_attempts = attempts,
            .has_attempts = run_attempts > 0, .attempts = run_attempts,
            .has_delay_ms = delay_ms >= 0, .delay_ms = delay_ms,
            .notify = wait, .depends_count = depends_count,
            .dependency_results = dependency_results,
            .ignore_dependency_failure = ignore_dependency_failure };
        for (size_t d = 0; d < depends_count; d++)
            submit.depends_on [d] = (bm_codec_str_t) { depends [d], strlen (depends [d]) };
        snprintf (submit.bot_type, sizeof submit.bot_type, "%s", positional [1]);
        snprintf (submit.idempotency_key, sizeof submit.idempotency_key, "%s", key ? key : "");
        bm_packer_t packer;
        bm_packer_init (&packer);
        bm_codec_submit_encode (&submit, &packer);
        free (payload);
        bm_msg_t *reply = s_request (client, BM_SUBMIT, &packer, request_ms);
        if (!reply)
            rc = 3;
        else
        if (bm_msg_command (reply) != BM_ACCEPTED)
            rc = s_rejected (reply);
        else {
            bm_codec_accepted_t accepted;
            bm_codec_error_t error;
            if (bm_codec_accepted_decode (reply, &accepted, &error)) {
                fprintf (stderr, "botmesh-client: the broker's ACCEPTED does not read: %s\n",
                         error.message);
                rc = 1;
            }
            else
            if (wait)
                rc = s_wait (client, accepted.job_id, (int) wait_ms, request_ms);
            else
                s_print_reply (bm_msg_body (reply), NULL);
        }
        bm_msg_destroy (&reply);
    }
    else
    if (streq (command, "status") || streq (command, "cancel") || streq (command, "retry")
    ||  streq (command, "redeliver") || streq (command, "wait")) {
        if (!positional [1]) {
            fprintf (stderr, "botmesh-client: %s needs a job id\n", command);
            bm_client_destroy (&client);
            return 2;
        }
        if (streq (command, "wait"))
            rc = s_wait (client, positional [1], (int) wait_ms, 5000);
        else {
            int cmd = streq (command, "status") ? BM_STATUS
                    : streq (command, "cancel") ? BM_CANCEL
                    : streq (command, "retry") ? BM_RETRY : BM_REDELIVER;
            bm_msg_t *reply = s_job_request (client, cmd, positional [1], request_ms);
            if (!reply)
                rc = 3;
            else
            if (bm_msg_command (reply) == BM_REJECTED)
                rc = s_rejected (reply);
            else {
                //  STATUS and CANCEL answer a record, RETRY and REDELIVER
                //  ACCEPTED.
                bm_codec_job_reply_t reply_body;
                bm_codec_error_t error;
                if (bm_msg_command (reply) == BM_REPLY
                &&  bm_codec_job_reply_decode (reply, &reply_body, &error) == 0)
                    s_print_record (reply_body.job.obj);
                else
                    s_print_reply (bm_msg_body (reply), "duplicate");
            }
            bm_msg_destroy (&reply);
        }
    }
    else
    if (streq (command, "stats") || streq (command, "ping") || streq (command, "list")
    ||  streq (command, "metrics")) {
        int cmd = streq (command, "stats") ? BM_STATS
                : streq (command, "ping") ? BM_PING
                : streq (command, "list") ? BM_LIST : BM_METRICS;
        bm_packer_t packer;
        bm_packer_init (&packer);
        if (cmd == BM_LIST) {
            bm_codec_list_t list = { .has_req = true, .req = bm_client_next_req (client),
                                     .limit = limit };
            snprintf (list.state, sizeof list.state, "%s", state ? bm_list_state (state) : "");
            snprintf (list.bot_type, sizeof list.bot_type, "%s", type ? type : "");
            snprintf (list.webhook, sizeof list.webhook, "%s", webhook_state ? webhook_state : "");
            bm_codec_list_encode (&list, &packer);
        }
        else {
            bm_codec_request_t request = { .has_req = true, .req = bm_client_next_req (client) };
            bm_codec_request_encode (&request, &packer);
        }
        bm_msg_t *reply = s_request (client, cmd, &packer, request_ms);
        if (!reply)
            rc = 3;
        else
        if (bm_msg_command (reply) == BM_REJECTED)
            rc = s_rejected (reply);
        else
        if (cmd == BM_METRICS) {
            bm_codec_metrics_reply_t metrics;
            bm_codec_error_t error;
            if (bm_codec_metrics_reply_decode (reply, &metrics, &error) == 0 && metrics.text.ptr)
                fwrite (metrics.text.ptr, 1, metrics.text.len, stdout);
        }
        else
        if (cmd == BM_LIST)
            s_print_list (bm_msg_body (reply));
        else
            s_print_reply (bm_msg_body (reply), NULL);
        bm_msg_destroy (&reply);
    }
    else {
        fprintf (stderr, "botmesh-client: unknown command '%s' (see --help)\n", command);
        rc = 2;
    }
    bm_client_destroy (&client);
    return rc;
}

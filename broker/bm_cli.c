/*  bm_cli.c - botmesh-client: submit, status, stats, cancel over ZeroMQ.

    A small command-line client for shells and scripts.  Prints JSON on
    stdout; exit code 0 on success, 1 when the broker rejected the request
    or the job did not complete, 2 on a usage error, 3 on a timeout.  */
#include "bm_client.h"
#include "bm_config.h"
#include "bm_curve.h"
#include "bm_json.h"
#include "bm_log.h"

#include <errno.h>

static void
s_usage (FILE *out)
{
    fprintf (out,
"usage: botmesh-client [--endpoint E] [--timeout-ms N] COMMAND [ARGS]\n"
"\n"
"Commands:\n"
"  submit TYPE [PAYLOAD_JSON] [--priority N] [--webhook URL] [--key IDEMPOTENCY_KEY]\n"
"         [--job-timeout-ms N] [--max-attempts N] [--wait]\n"
"                       submit a job; prints {\"jobId\":...}; with --wait, waits\n"
"                       for the job to end and prints its record\n"
"  status JOB_ID        the job's record\n"
"  wait JOB_ID          wait until the job ends; prints its record\n"
"  cancel JOB_ID        cancel a queued or running job\n"
"  retry JOB_ID         run a failed or cancelled job again\n"
"  redeliver JOB_ID     deliver a finished job's webhook again\n"
"  list [--state S] [--type T] [--limit N]   recent jobs, newest first\n"
"  stats                queues, semaphores, workers, totals\n"
"  ping                 is the broker up (and its Redis)?\n"
"  metrics              the broker's metrics (Prometheus text)\n"
"  keygen DIR NAME      write a CURVE certificate pair: DIR/NAME.key (public, give\n"
"                       it to the broker's CURVE_CLIENTS_DIR) and DIR/NAME.key_secret\n"
"\n"
"Flags:\n"
"  --endpoint E         broker endpoint (BROKER_CLIENT_ENDPOINT, then\n"
"                       BROKER_ENDPOINT with * read as 127.0.0.1;\n"
"                       default tcp://127.0.0.1:5555)\n"
"  --timeout-ms N       how long to wait for the broker's answer (5000); with\n"
"                       --wait or wait, how long to wait for the job (600000)\n"
"\n"
"Environment: CURVE_SERVER_KEY (the broker's public key) and CURVE_CLIENT_CERT\n"
"(this client's secret certificate) when the broker runs with CURVE.\n"
"\n"
"Exit codes: 0 ok, 1 rejected or job not completed, 2 usage, 3 timeout.\n");
}

static void
s_print_object (const msgpack_object *obj)
{
    json_t *json = bm_json_from_msgpack (obj, 64);
    char *text = json ? json_dumps (json, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION (16)) : NULL;
    printf ("%s\n", text ? text : "null");
    free (text);
    json_decref (json);
}

//  Print a REJECTED reply on stderr; returns 1.
static int
s_rejected (bm_msg_t *reply)
{
    char code [64] = "?", message [512] = "";
    bm_obj_strcpy (bm_msg_body (reply), "code", code, sizeof code);
    bm_obj_strcpy (bm_msg_body (reply), "message", message, sizeof message);
    fprintf (stderr, "botmesh-client: rejected: %s: %s\n", code, message);
    printf ("{\"error\":{\"code\":\"%s\"}}\n", code);
    return 1;
}

static bm_msg_t *
s_request (bm_client_t *client, int command, msgpack_sbuffer *sbuf, int timeout_ms)
{
    bm_msg_t *reply = bm_client_request (client, command, sbuf->data, sbuf->size, timeout_ms);
    if (!reply)
        fprintf (stderr, "botmesh-client: no answer from the broker within %d ms\n", timeout_ms);
    return reply;
}

//  {req, jobId} for STATUS, CANCEL, RETRY, REDELIVER.
static bm_msg_t *
s_job_request (bm_client_t *client, int command, const char *id, int timeout_ms)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 2);
    bm_pack_kv_int (&pk, "req", bm_client_next_req (client));
    bm_pack_kv_str (&pk, "jobId", id);
    bm_msg_t *reply = s_request (client, command, &sbuf, timeout_ms);
    msgpack_sbuffer_destroy (&sbuf);
    return reply;
}

static bool
s_terminal (const msgpack_object *job)
{
    char state [16] = "";
    bm_obj_strcpy (job, "state", state, sizeof state);
    return streq (state, "completed") || streq (state, "failed") || streq (state, "cancelled");
}

static int
s_exit_for (const msgpack_object *job)
{
    char state [16] = "";
    bm_obj_strcpy (job, "state", state, sizeof state);
    return streq (state, "completed") ? 0 : 1;
}

//  Wait for a job to end: RESULT pushes when we submitted with notify, and
//  STATUS polls (every 500 ms) in case the push cannot come (a restart).
static int
s_wait (bm_client_t *client, const char *id, int wait_ms, int timeout_ms)
{
    int64_t deadline = bm_mono_ms () + wait_ms;
    while (bm_mono_ms () < deadline) {
        bm_msg_t *result = bm_client_recv_result (client, 500);
        if (result) {
            char got [160] = "";
            bm_obj_strcpy (bm_msg_body (result), "jobId", got, sizeof got);
            const msgpack_object *job = bm_obj_get (bm_msg_body (result), "job");
            if (streq (got, id) && job) {
                s_print_object (job);
                int rc = s_exit_for (job);
                bm_msg_destroy (&result);
                return rc;
            }
            bm_msg_destroy (&result);
            continue;
        }
        if (errno == EINTR)
            return 3;
        bm_msg_t *reply = s_job_request (client, BM_STATUS, id, timeout_ms);
        if (reply && bm_msg_command (reply) == BM_REPLY) {
            const msgpack_object *job = bm_obj_get (bm_msg_body (reply), "job");
            if (job && s_terminal (job)) {
                s_print_object (job);
                int rc = s_exit_for (job);
                bm_msg_destroy (&reply);
                return rc;
            }
        }
        else
        if (reply && bm_msg_command (reply) == BM_REJECTED) {
            char code [64] = "";
            bm_obj_strcpy (bm_msg_body (reply), "code", code, sizeof code);
            if (streq (code, "not_found")) {
                int rc = s_rejected (reply);
                bm_msg_destroy (&reply);
                return rc;
            }
        }
        bm_msg_destroy (&reply);
    }
    fprintf (stderr, "botmesh-client: job %s did not end within %d ms\n", id, wait_ms);
    return 3;
}

int
main (int argc, char *argv [])
{
    bm_log_init ("client");
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
    int64_t limit = 50;
    bool wait = false, timeout_set = false;
    const char *webhook = NULL, *key = NULL, *state = NULL, *type = NULL;
    const char *positional [3] = { NULL, NULL, NULL };
    int npos = 0;
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
        INT_FLAG ("--timeout-ms", timeout_ms, 1, 86400000)
        INT_FLAG ("--priority", priority, 0, BM_MAX_PRIORITY)
        INT_FLAG ("--job-timeout-ms", job_timeout, 1, 86400000)
        INT_FLAG ("--max-attempts", attempts, 1, 100)
        INT_FLAG ("--limit", limit, 1, 500)
        if (streq (arg, "--webhook") && next) { webhook = next; i++; continue; }
        if (streq (arg, "--key") && next) { key = next; i++; continue; }
        if (streq (arg, "--state") && next) { state = next; i++; continue; }
        if (streq (arg, "--type") && next) { type = next; i++; continue; }
        if (streq (arg, "--wait")) { wait = true; continue; }
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
    zsys_handler_set (NULL);
    if (streq (command, "keygen")) {
        if (!positional [1] || !positional [2]) {
            fprintf (stderr, "botmesh-client: keygen needs DIR and NAME\n");
            return 2;
        }
        return bm_curve_keygen (positional [1], positional [2]) ? 1 : 0;
    }
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
        const char *json = positional [2] ? positional [2] : "null";
        if (bm_json_text_to_msgpack (json, strlen (json), &payload, &payload_size,
                                     error, sizeof error)) {
            fprintf (stderr, "botmesh-client: the payload is not valid JSON: %s\n", error);
            bm_client_destroy (&client);
            return 2;
        }
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        int count = 3 + (priority >= 0) + (job_timeout > 0) + (attempts > 0)
                  + (webhook != NULL) + (key != NULL) + wait;
        msgpack_pack_map (&pk, count);
        bm_pack_kv_int (&pk, "req", bm_client_next_req (client));
        bm_pack_kv_str (&pk, "botType", positional [1]);
        bm_pack_str (&pk, "payload");
        msgpack_sbuffer_write (&sbuf, payload, payload_size);
        free (payload);
        if (priority >= 0) bm_pack_kv_int (&pk, "priority", priority);
        if (job_timeout > 0) bm_pack_kv_int (&pk, "timeoutMs", job_timeout);
        if (attempts > 0) bm_pack_kv_int (&pk, "maxAttempts", attempts);
        if (webhook) bm_pack_kv_str (&pk, "webhookUrl", webhook);
        if (key) bm_pack_kv_str (&pk, "idempotencyKey", key);
        if (wait) bm_pack_kv_bool (&pk, "notify", true);
        bm_msg_t *reply = s_request (client, BM_SUBMIT, &sbuf, request_ms);
        msgpack_sbuffer_destroy (&sbuf);
        if (!reply)
            rc = 3;
        else
        if (bm_msg_command (reply) != BM_ACCEPTED)
            rc = s_rejected (reply);
        else {
            char id [160] = "";
            bm_obj_strcpy (bm_msg_body (reply), "jobId", id, sizeof id);
            if (wait)
                rc = s_wait (client, id, (int) wait_ms, request_ms);
            else
                s_print_object (bm_msg_body (reply));
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
                const msgpack_object *job = bm_obj_get (bm_msg_body (reply), "job");
                s_print_object (job ? job : bm_msg_body (reply));
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
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init (&sbuf);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 1 + (cmd == BM_LIST) * (1 + (state != NULL) + (type != NULL)));
        bm_pack_kv_int (&pk, "req", bm_client_next_req (client));
        if (cmd == BM_LIST) {
            bm_pack_kv_int (&pk, "limit", limit);
            if (state) bm_pack_kv_str (&pk, "state", state);
            if (type) bm_pack_kv_str (&pk, "botType", type);
        }
        bm_msg_t *reply = s_request (client, cmd, &sbuf, request_ms);
        msgpack_sbuffer_destroy (&sbuf);
        if (!reply)
            rc = 3;
        else
        if (bm_msg_command (reply) == BM_REJECTED)
            rc = s_rejected (reply);
        else
        if (cmd == BM_METRICS) {
            const char *text;
            size_t len;
            if (bm_obj_str (bm_msg_body (reply), "text", &text, &len))
                fwrite (text, 1, len, stdout);
        }
        else
            s_print_object (bm_msg_body (reply));
        bm_msg_destroy (&reply);
    }
    else {
        fprintf (stderr, "botmesh-client: unknown command '%s' (see --help)\n", command);
        rc = 2;
    }
    bm_client_destroy (&client);
    return rc;
}

/*  bm_codec_test.c - self-test of the typed body codec (bm_codec): every
    body survives encode -> frames -> decode; every refusal names its
    field; the tolerant reads read as the protocol says; payloads and
    results travel as the bytes that were sent.

    Bodies are written as JSON text (bm_json_text_to_msgpack) so that each
    case reads like the message on the wire.  */
#include "bm_codec.h"
#include "bm_codec_field.h"
#include "bm_json.h"
#include "bm_selftest.h"

#include <stdio.h>
#include <string.h>

static bool s_verbose = false;
#define CHECK(cond) BM_CHECK (cond)

//  A message with this body (peer by header), parsed.
static bm_msg_t *
s_msg (const char *header, int command, const char *body, size_t size)
{
    bm_msg_t *msg = bm_msg_new ();
    unsigned char byte = (unsigned char) command;
    const char *code;
    char reason [128];
    if (bm_msg_parse (msg, header, BM_HEADER_LEN, &byte, 1, body, size, BM_MAX_FRAME_BYTES,
                      &code, reason, sizeof reason)) {
        fprintf (stderr, "FAIL: body does not parse: %s\n", reason);
        abort ();
    }
    return msg;
}

//  A message from JSON text.
static bm_msg_t *
s_json_msg (const char *header, int command, const char *json)
{
    char *data;
    size_t size;
    char error [128];
    if (bm_json_text_to_msgpack (json, strlen (json), &data, &size, error, sizeof error)) {
        fprintf (stderr, "FAIL: bad JSON in a case: %s: %s\n", json, error);
        abort ();
    }
    bm_msg_t *msg = s_msg (header, command, data, size);
    free (data);
    return msg;
}

//  A message from an encoder's output.
static bm_msg_t *
s_packed_msg (const char *header, int command, bm_packer_t *packer)
{
    CHECK (!bm_packer_failed (packer));
    bm_msg_t *msg = s_msg (header, command, packer->sbuf.data, packer->sbuf.size);
    bm_packer_reset (packer);
    return msg;
}

static bool
s_str_is (bm_codec_str_t str, const char *want)
{
    return str.ptr && str.len == strlen (want) && memcmp (str.ptr, want, str.len) == 0;
}

//  --------------------------------------------------------------------------
//  Round trips: what is encoded is what is decoded.

static void
test_client_round_trips (void)
{
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_error_t error;
    const char payload [] = "\x82\xa4" "task" "\xa8" "analysis" "\xa1" "n" "\x2a";

    bm_codec_submit_t submit = { .has_req = true, .req = 7, .bot_type = "python",
        .payload = { NULL, payload, sizeof payload - 1 },
        .webhook_url = { "http://mock:5000/hook", 21 }, .has_priority = true, .priority = 3,
        .idempotency_key = "order-42", .has_timeout_ms = true, .timeout_ms = BM_MAX_TIMEOUT_MS,
        .has_max_attempts = true, .max_attempts = BM_MAX_ATTEMPTS, .notify = true,
        .has_attempts = true, .attempts = 5, .has_backoff = true,
        .backoff = { BM_BACKOFF_FIXED, 250, 250 }, .has_run_at = true, .run_at = 1790000000000 };
    bm_codec_submit_encode (&submit, &packer);
    bm_msg_t *msg = s_packed_msg (BM_CLIENT_HEADER, BM_SUBMIT, &packer);
    bm_codec_submit_t back;
    CHECK (msg && bm_codec_submit_decode (msg, &back, &error) == 0);
    CHECK (back.has_req && back.req == 7 && streq (back.bot_type, "python"));
    CHECK (s_str_is (back.webhook_url, "http://mock:5000/hook"));
    CHECK (back.has_priority && back.priority == 3);
    CHECK (streq (back.idempotency_key, "order-42"));
    CHECK (back.has_timeout_ms && back.timeout_ms == BM_MAX_TIMEOUT_MS);
    CHECK (back.has_max_attempts && back.max_attempts == BM_MAX_ATTEMPTS && back.notify);
    CHECK (back.has_attempts && back.attempts == 5 && back.has_backoff
           && back.backoff.type == BM_BACKOFF_FIXED && back.backoff.delay_ms == 250
           && back.backoff.jitter_pm == 250 && back.has_run_at && back.run_at == 1790000000000
           && !back.has_delay_ms);
    //  The payload: the very bytes sent, and its decoded value.
    CHECK (back.payload.size == sizeof payload - 1
           && memcmp (back.payload.data, payload, back.payload.size) == 0);
    CHECK (back.payload.obj && back.payload.obj->type == MSGPACK_OBJECT_MAP);
    //  Re-encoded from the decoded struct: byte for byte the same body.
    bm_codec_submit_encode (&back, &packer);
    bm_msg_t *again = s_packed_msg (BM_CLIENT_HEADER, BM_SUBMIT, &packer);
    bm_codec_submit_t third;
    CHECK (again && bm_codec_submit_decode (again, &third, &error) == 0
           && third.payload.size == back.payload.size && third.priority == 3);
    bm_msg_destroy (&again);
    bm_msg_destroy (&msg);

    //  The least SUBMIT: defaults are the broker's, payload nil.
    msg = s_json_msg (BM_CLIENT_HEADER, BM_SUBMIT, "{\"botType\":\"node\",\"priority\":null}");
    CHECK (msg && bm_codec_submit_decode (msg, &back, &error) == 0);
    CHECK (!back.has_req && !back.has_priority && !back.has_timeout_ms
           && !back.has_attempts && !back.has_backoff && !back.has_delay_ms && !back.has_run_at
           && !back.has_max_attempts && !back.notify && !back.webhook_url.ptr
           && !back.idempotency_key [0] && !back.payload.obj && !back.payload.data);
    bm_msg_destroy (&msg);

    bm_codec_job_ref_t ref = { .has_req = true, .req = 9, .job_id = "0192b0c4e1a2-7f3a-00000001" };
    bm_codec_job_ref_encode (&ref, &packer);
    msg = s_packed_msg (BM_CLIENT_HEADER, BM_STATUS, &packer);
    bm_codec_job_ref_t ref_back;
    CHECK (msg && bm_codec_job_ref_decode (msg, &ref_back, &error) == 0
           && ref_back.req == 9 && streq (ref_back.job_id, ref.job_id));
    bm_msg_destroy (&msg);
    //  A STATUS may name the job by its idempotencyKey; nothing else may
    bm_codec_job_ref_t by_key = { .has_req = true, .req = 10, .idempotency_key = "order-42" };
    bm_codec_job_ref_encode (&by_key, &packer);
    msg = s_packed_msg (BM_CLIENT_HEADER, BM_STATUS, &packer);
    CHECK (msg && bm_codec_job_ref_decode (msg, &ref_back, &error) == 0
           && !ref_back.job_id [0] && streq (ref_back.idempotency_key, "order-42"));
    bm_msg_destroy (&msg);
    bm_codec_job_ref_encode (&by_key, &packer);
    msg = s_packed_msg (BM_CLIENT_HEADER, BM_CANCEL, &packer);
    CHECK (msg && bm_codec_job_ref_decode (msg, &ref_back, &error) != 0
           && strstr (error.message, "jobId"));
    bm_msg_destroy (&msg);
    //  A STATUS naming neither: the refusal names both ways (a CANCEL's
    //  only jobId)
    msgpack_pack_map (&packer.pk, 1);
    bm_field_pack_int (&packer, "req", 11);
    msg = s_packed_msg (BM_CLIENT_HEADER, BM_STATUS, &packer);
    CHECK (msg && bm_codec_job_ref_decode (msg, &ref_back, &error) != 0
           && streq (error.code, "bad_request") && strstr (error.message, "jobId")
           && strstr (error.message, "idempotencyKey"));
    bm_msg_destroy (&msg);
    msgpack_pack_map (&packer.pk, 1);
    bm_field_pack_int (&packer, "req", 11);
    msg = s_packed_msg (BM_CLIENT_HEADER, BM_CANCEL, &packer);
    CHECK (msg && bm_codec_job_ref_decode (msg, &ref_back, &error) != 0
           && strstr (error.message, "jobId") && !strstr (error.message, "idempotencyKey"));
    bm_msg_destroy (&msg);

    bm_codec_request_t request = { .has_req = true, .req = -5 };
    bm_codec_request_encode (&request, &packer);
    msg = s_packed_msg (BM_CLIENT_HEADER, BM_PING, &packer);
    bm_codec_request_t request_back;
    CHECK (msg && bm_codec_request_decode (msg, &request_back, &error) == 0
           && request_back.has_req && request_back.req == -5);
    bm_msg_destroy (&msg);

    bm_codec_list_t list = { .has_req = true, .req = 1, .state = "failed", .bot_type = "java",
                             .webhook = "failed", .limit = 20 };
    bm_codec_list_encode (&list, &packer);
    msg = s_packed_msg (BM_CLIENT_HEADER, BM_LIST, &packer);
    bm_codec_list_t list_back;
    CHECK (msg && bm_codec_list_decode (msg, &list_back, &error) == 0
           && streq (list_back.state, "failed") && streq (list_back.bot_type, "java")
           && streq (list_back.webhook, "failed") && list_back.limit == 20);
    bm_msg_destroy (&msg);

    bm_codec_accepted_t accepted = { .has_req = true, .req = 2, .job_id = "j-1",
                                     .duplicate = true, .has_position = true, .position = 4 };
    bm_codec_accepted_encode (&accepted, &packer);
    msg = s_packed_msg (BM_CLIENT_HEADER, BM_ACCEPTED, &packer);
    bm_codec_accepted_t accepted_back;
    CHECK (msg && bm_codec_accepted_decode (msg, &accepted_back, &error) == 0
           && streq (accepted_back.job_id, "j-1") && accepted_back.duplicate
           && accepted_back.has_position && accepted_back.position == 4);
    bm_msg_destroy (&msg);
    //  delayed is sent only when true, with no position.
    bm_codec_accepted_t later = { .job_id = "j-2", .delayed = true, .unserved = true };
    bm_codec_accepted_encode (&later, &packer);
    msg = s_packed_msg (BM_CLIENT_HEADER, BM_ACCEPTED, &packer);
    CHECK (msg && bm_codec_accepted_decode (msg, &accepted_back, &error) == 0
           && accepted_back.delayed && !accepted_back.has_position && accepted_back.unserved);
    bm_msg_destroy (&msg);
    //  position is optional: an ACCEPTED from an older broker has none.
    msg = s_json_msg (BM_CLIENT_HEADER, BM_ACCEPTED, "{\"req\":2,\"jobId\":\"j-1\",\"duplicate\":false}");
    CHECK (msg && bm_codec_accepted_decode (msg, &accepted_back, &error) == 0
           && !accepted_back.has_position && !accepted_back.duplicate && !accepted_back.unserved);
    bm_msg_destroy (&msg);

    bm_codec_rejected_t rejected = { .has_req = true, .req = 3, .code = "queue_full",
                                     .message = { "retry later", 11 } };
    bm_codec_rejected_encode (&rejected, &packer);
    msg = s_packed_msg (BM_CLIENT_HEADER, BM_REJECTED, &packer);
    bm_codec_rejected_t rejected_back;
    CHECK (msg && bm_codec_rejected_decode (msg, &rejected_back, &error) == 0
           && streq (rejected_back.code, "queue_full")
           && s_str_is (rejected_back.message, "retry later") && rejected_back.req == 3);
    bm_msg_destroy (&msg);

    //  RESULT {jobId, job}: a completed job's whole record.
    const char result [] = "\x81\xa4" "mean" "\xcb\x40\x10\xcc\xcc\xcc\xcc\xcc\xcd";
    bm_codec_job_reply_t reply = { .job_id = "j-2" };
    bm_codec_record_t *job = &reply.job;
    snprintf (job->job_id, sizeof job->job_id, "j-2");
    snprintf (job->bot_type, sizeof job->bot_type, "python");
    snprintf (job->state, sizeof job->state, "failed");
    job->priority = 1, job->progress = 40, job->attempts = 2, job->max_attempts = 3;
    job->timeout_ms = 1000, job->created_at = 1764360000000, job->started_at = 1764360000100;
    job->finished_at = 1764360000200;
    job->payload = (bm_codec_value_t) { NULL, payload, sizeof payload - 1 };
    job->result = (bm_codec_value_t) { NULL, result, sizeof result - 1 };
    job->worker = (bm_codec_str_t) { "host-1", 6 };
    job->webhook_url = (bm_codec_str_t) { "https://x.y/z", 13 };
    job->has_error = true;
    snprintf (job->error.code, sizeof job->error.code, "timeout");
    job->error.message = (bm_codec_str_t) { "ran past timeoutMs", 18 };
    job->error.has_exit_code = true, job->error.exit_code = -9;
    job->has_webhook = true;
    snprintf (job->webhook.state, sizeof job->webhook.state, "retrying");
    job->webhook.attempts = 2, job->webhook.last_status = 503;
    job->webhook.last_error = (bm_codec_str_t) { "HTTP 503", 8 };
    job->webhook.next_attempt_at = 1764360001000;
    bm_codec_job_reply_encode (&reply, &packer);
    msg = s_packed_msg (BM_CLIENT_HEADER, BM_RESULT, &packer);
    bm_codec_job_reply_t reply_back;
    CHECK (msg && bm_codec_result_decode (msg, &reply_back, &error) == 0);
    bm_codec_record_t *rec = &reply_back.job;
    CHECK (streq (reply_back.job_id, "j-2") && streq (rec->job_id, "j-2")
           && streq (rec->bot_type, "python") && streq (rec->state, "failed"));
    CHECK (rec->priority == 1 && rec->progress == 40 && rec->attempts == 2
           && rec->max_attempts == 3 && rec->timeout_ms == 1000
           && rec->created_at == 1764360000000 && rec->started_at == 1764360000100
           && rec->finished_at == 1764360000200);
    CHECK (rec->payload.obj && rec->payload.obj->type == MSGPACK_OBJECT_MAP);
    CHECK (rec->result.obj && rec->result.obj->type == MSGPACK_OBJECT_MAP);
    CHECK (s_str_is (rec->worker, "host-1") && s_str_is (rec->webhook_url, "https://x.y/z"));
    CHECK (rec->has_error && streq (rec->error.code, "timeout")
           && s_str_is (rec->error.message, "ran past timeoutMs")
           && rec->error.has_exit_code && rec->error.exit_code == -9);
    CHECK (rec->has_webhook && streq (rec->webhook.state, "retrying")
           && rec->webhook.attempts == 2 && rec->webhook.last_status == 503
           && s_str_is (rec->webhook.last_error, "HTTP 503")
           && rec->webhook.next_attempt_at == 1764360001000);
    //  The same record as a REPLY to STATUS: {req, job}.
    bm_codec_job_reply_t status = reply_back;
    status.has_req = true, status.req = 11, status.job_id [0] = 0;
    bm_codec_job_reply_encode (&status, &packer);
    bm_msg_t *status_msg = s_packed_msg (BM_CLIENT_HEADER, BM_REPLY, &packer);
    CHECK (status_msg && bm_codec_job_reply_decode (status_msg, &reply_back, &error) == 0
           && reply_back.req == 11 && streq (reply_back.job.error.code, "timeout"));
    bm_msg_destroy (&status_msg);
    bm_msg_destroy (&msg);

    bm_codec_ping_reply_t ping = { .has_req = true, .req = 4, .redis = true, .uptime_ms = 12345 };
    bm_codec_ping_reply_encode (&ping, &packer);
    msg = s_packed_msg (BM_CLIENT_HEADER, BM_REPLY, &packer);
    bm_codec_ping_reply_t ping_back;
    CHECK (msg && bm_codec_ping_reply_decode (msg, &ping_back, &error) == 0
           && ping_back.redis && ping_back.uptime_ms == 12345);
    bm_msg_destroy (&msg);

    bm_codec_metrics_reply_t metrics = { .has_req = true, .req = 5,
                                         .text = { "jobs_total 3\n", 13 } };
    bm_codec_metrics_reply_encode (&metrics, &packer);
    msg = s_packed_msg (BM_CLIENT_HEADER, BM_REPLY, &packer);
    bm_codec_metrics_reply_t metrics_back;
    CHECK (msg && bm_codec_metrics_reply_decode (msg, &metrics_back, &error) == 0
           && s_str_is (metrics_back.text, "jobs_total 3\n"));
    bm_msg_destroy (&msg);
    bm_packer_destroy (&packer);
}

//  REPLY to LIST and to STATS, as the broker writes them.
static void
test_list_and_stats_replies (void)
{
    bm_codec_error_t error;
    bm_msg_t *msg = s_json_msg (BM_CLIENT_HEADER, BM_REPLY,
        "{\"req\":1,\"jobs\":[{\"jobId\":\"a\",\"botType\":\"python\",\"state\":\"queued\","
        "\"priority\":0,\"progress\":0,\"attempts\":0,\"maxAttempts\":3,\"timeoutMs\":300000,"
        "\"createdAt\":1},{\"jobId\":\"b\",\"botType\":\"node\",\"state\":\"completed\"}]}");
    bm_codec_list_reply_t list;
    bm_codec_record_t record;
    CHECK (msg && bm_codec_list_reply_decode (msg, &list, &error) == 0 && list.count == 2);
    CHECK (bm_codec_list_reply_job (&list, 1, &record, &error) == 0
           && streq (record.job_id, "b") && streq (record.state, "completed"));
    CHECK (bm_codec_list_reply_job (&list, 2, &record, &error) == -1);
    bm_msg_destroy (&msg);

    msg = s_json_msg (BM_CLIENT_HEADER, BM_REPLY,
        "{\"req\":2,\"types\":{\"python\":{\"waiting\":4,\"running\":1,\"completed\":9,"
        "\"failed\":1,\"cancelled\":0,\"limit\":3,\"usage\":1,\"waitingForPermit\":2,"
        "\"workers\":1,\"submitted\":15}},\"workers\":[{\"name\":\"host-1\",\"types\":"
        "[\"python\"],\"credit\":5,\"running\":1,\"lastHeartbeat\":1764360000000,\"pid\":42}],"
        "\"totals\":{\"submitted\":15,\"completed\":9,\"failed\":1,\"cancelled\":0,"
        "\"rejected\":2,\"retried\":1},\"redis\":true,\"uptimeMs\":5000}");
    bm_codec_stats_reply_t stats;
    CHECK (msg && bm_codec_stats_reply_decode (msg, &stats, &error) == 0);
    CHECK (stats.type_count == 1 && stats.worker_count == 1 && stats.redis
           && stats.uptime_ms == 5000 && stats.submitted == 15 && stats.rejected == 2);
    bm_codec_type_stats_t type;
    CHECK (bm_codec_stats_reply_type (&stats, 0, &type, &error) == 0
           && streq (type.name, "python") && type.waiting == 4 && type.limit == 3
           && type.waiting_for_permit == 2 && type.submitted == 15);
    bm_codec_worker_stats_t worker;
    CHECK (bm_codec_stats_reply_worker (&stats, 0, &worker, &error) == 0
           && s_str_is (worker.name, "host-1") && worker.credit == 5 && worker.pid == 42
           && worker.types && worker.types->via.array.size == 1);
    bm_msg_destroy (&msg);
}

static void
test_worker_round_trips (void)
{
    bm_packer_t packer;
    bm_packer_init (&packer);
    bm_codec_error_t error;

    bm_codec_ready_t ready = { .name = "host-1234", .types = { "python", "node" },
                               .type_count = 2, .credit = 5, .has_pid = true, .pid = 1234 };
    bm_codec_ready_encode (&ready, &packer);
    bm_msg_t *msg = s_packed_msg (BM_WORKER_HEADER, BM_READY, &packer);
    bm_codec_ready_t ready_back;
    CHECK (msg && bm_codec_ready_decode (msg, &ready_back, &error) == 0);
    CHECK (streq (ready_back.name, "host-1234") && ready_back.type_count == 2
           && ready_back.type_lens [1] == 4 && memcmp (ready_back.types [1], "node", 4) == 0
           && ready_back.credit == 5 && ready_back.has_pid && ready_back.pid == 1234
           && ready_back.running == NULL && ready_back.running_count == 0);
    bm_msg_destroy (&msg);
    //  running: the ids of the jobs the worker runs.
    const char *running [] = { "0192b0c4e1a2-7f3a-00000001", "job-2" };
    ready.running_ids = running;
    ready.running_count = 2;
    bm_codec_ready_encode (&ready, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_READY, &packer);
    CHECK (msg && bm_codec_ready_decode (msg, &ready_back, &error) == 0
           && ready_back.running_count == 2 && ready_back.running
           && ready_back.running->via.array.ptr [1].via.str.size == 5
           && memcmp (ready_back.running->via.array.ptr [1].via.str.ptr, "job-2", 5) == 0
           && ready_back.bots.count == 0);
    bm_msg_destroy (&msg);
    //  bots: the worker's warm bots, as a HEARTBEAT's.
    ready.bots.count = 1;
    ready.bots.bots [0] = (bm_codec_bot_pool_t) { "python", "pool", 2, 0, 0 };
    bm_codec_ready_encode (&ready, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_READY, &packer);
    CHECK (msg && bm_codec_ready_decode (msg, &ready_back, &error) == 0
           && ready_back.running_count == 2 && ready_back.bots.count == 1
           && streq (ready_back.bots.bots [0].type, "python") && streq (ready_back.bots.bots [0].mode, "pool")
           && ready_back.bots.bots [0].processes == 2);
    bm_msg_destroy (&msg);
    msg = s_json_msg (BM_WORKER_HEADER, BM_READY, "{\"types\":[\"python\"],\"credit\":1,"
                      "\"bots\":{\"python\":{\"mode\":\"spawn\"}}}");
    CHECK (msg && bm_codec_ready_decode (msg, &ready_back, &error) == -1 && streq (error.field, "bots"));
    bm_msg_destroy (&msg);
    //  A bad running is refused, naming the field.
    const char *bad_running [] = {
        "{\"types\":[\"python\"],\"credit\":1,\"running\":\"job-1\"}",
        "{\"types\":[\"python\"],\"credit\":1,\"running\":[\"job-1\",7]}",
        "{\"types\":[\"python\"],\"credit\":1,\"running\":[\"has space\"]}" };
    for (size_t i = 0; i < sizeof bad_running / sizeof bad_running [0]; i++) {
        msg = s_json_msg (BM_WORKER_HEADER, BM_READY, bad_running [i]);
        CHECK (msg && bm_codec_ready_decode (msg, &ready_back, &error) == -1
               && streq (error.field, "running") && streq (error.code, "bad_request"));
        bm_msg_destroy (&msg);
    }
    char *many = (char *) malloc (BM_MAX_READY_RUNNING * 8 + 128);
    CHECK (many);
    size_t at = (size_t) sprintf (many, "{\"types\":[\"python\"],\"credit\":1,\"running\":[");
    for (int i = 0; i <= BM_MAX_READY_RUNNING; i++)
        at += (size_t) sprintf (many + at, "%s\"j%d\"", i ? "," : "", i % 1000);
    strcpy (many + at, "]}");
    msg = s_json_msg (BM_WORKER_HEADER, BM_READY, many);
    CHECK (msg && bm_codec_ready_decode (msg, &ready_back, &error) == -1
           && streq (error.field, "running"));
    bm_msg_destroy (&msg);
    free (many);

    const char payload [] = "\x93\x01\xa1" "x" "\xc0";
    bm_codec_job_t job = { .job_id = "0192b0c4e1a2-7f3a-00000001", .bot_type = "python",
                           .payload = { NULL, payload, sizeof payload - 1 }, .attempt = 2,
                           .timeout_ms = 300000, .deadline = 1764360000000,
                           .has_webhook = true };
    snprintf (job.webhook.state, sizeof job.webhook.state, "pending");
    bm_codec_job_encode (&job, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_JOB, &packer);
    bm_codec_job_t job_back;
    CHECK (msg && bm_codec_job_decode (msg, &job_back, &error) == 0);
    CHECK (streq (job_back.job_id, job.job_id) && streq (job_back.bot_type, "python")
           && job_back.attempt == 2 && job_back.timeout_ms == 300000
           && job_back.deadline == 1764360000000);
    CHECK (job_back.payload.size == sizeof payload - 1
           && memcmp (job_back.payload.data, payload, job_back.payload.size) == 0);
    CHECK (job_back.has_webhook && streq (job_back.webhook.state, "pending")
           && !job_back.webhook.last_error.ptr && job_back.webhook.last_status == 0);
    bm_msg_destroy (&msg);

    bm_codec_progress_t progress = { .job_id = "j-1", .has_progress = true, .progress = 50 };
    bm_codec_progress_encode (&progress, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_PROGRESS, &packer);
    bm_codec_progress_t progress_back;
    CHECK (msg && bm_codec_progress_decode (msg, &progress_back, &error) == 0
           && progress_back.has_progress && progress_back.progress == 50
           && !progress_back.has_webhook);
    bm_msg_destroy (&msg);
    //  PROGRESS {jobId, waiting: true}, then {jobId, started: true}: a
    //  prefetched job waits in its worker, then began.
    bm_codec_progress_t waiting = { .job_id = "j-1", .waiting = true };
    bm_codec_progress_encode (&waiting, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_PROGRESS, &packer);
    CHECK (msg && bm_codec_progress_decode (msg, &progress_back, &error) == 0
           && progress_back.waiting && !progress_back.started && !progress_back.has_progress);
    bm_msg_destroy (&msg);
    bm_codec_progress_t started = { .job_id = "j-1", .started = true };
    bm_codec_progress_encode (&started, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_PROGRESS, &packer);
    CHECK (msg && bm_codec_progress_decode (msg, &progress_back, &error) == 0
           && progress_back.started && !progress_back.waiting && !progress_back.has_progress);
    bm_msg_destroy (&msg);

    //  DONE ok: the result's bytes as the bot's worker sent them.
    const char result [] = "\x81\xa2" "ok" "\xc3";
    bm_codec_done_t done = { .job_id = "j-1", .ok = true,
                             .result = { NULL, result, sizeof result - 1 },
                             .started_at = 10, .finished_at = 20 };
    bm_codec_done_encode (&done, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_DONE, &packer);
    bm_codec_done_t done_back;
    CHECK (msg && bm_codec_done_decode (msg, &done_back, &error) == 0);
    CHECK (done_back.ok && done_back.result.size == sizeof result - 1
           && memcmp (done_back.result.data, result, done_back.result.size) == 0
           && !done_back.result_too_deep && done_back.started_at == 10
           && done_back.finished_at == 20);
    bm_msg_destroy (&msg);

    //  DONE failed: error {code, message, exitCode}.
    memset (&done, 0, sizeof done);
    snprintf (done.job_id, sizeof done.job_id, "j-1");
    snprintf (done.error.code, sizeof done.error.code, "bot_failed");
    done.error.message = (bm_codec_str_t) { "Traceback...", 12 };
    done.error.has_exit_code = true, done.error.exit_code = 3;
    bm_codec_done_encode (&done, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_DONE, &packer);
    CHECK (msg && bm_codec_done_decode (msg, &done_back, &error) == 0);
    CHECK (!done_back.ok && streq (done_back.error.code, "bot_failed")
           && s_str_is (done_back.error.message, "Traceback...")
           && done_back.error.has_exit_code && done_back.error.exit_code == 3
           && done_back.error.limit [0] == 0);
    bm_msg_destroy (&msg);

    //  DONE resource_limit: error.limit names the limit; a limit name
    //  longer than BM_MAX_LIMIT_NAME_LEN is dropped, the DONE still reads.
    snprintf (done.error.code, sizeof done.error.code, "resource_limit");
    snprintf (done.error.limit, sizeof done.error.limit, "memory");
    bm_codec_done_encode (&done, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_DONE, &packer);
    CHECK (msg && bm_codec_done_decode (msg, &done_back, &error) == 0);
    CHECK (streq (done_back.error.code, "resource_limit") && streq (done_back.error.limit, "memory"));
    bm_msg_destroy (&msg);
    msg = s_json_msg (BM_WORKER_HEADER, BM_DONE, "{\"jobId\":\"j-1\",\"ok\":false,"
                      "\"error\":{\"code\":\"resource_limit\",\"limit\":\"a-limit-name-far-too-long\"}}");
    CHECK (msg && bm_codec_done_decode (msg, &done_back, &error) == 0
           && streq (done_back.error.code, "resource_limit") && done_back.error.limit [0] == 0);
    bm_msg_destroy (&msg);

    //  DONE log: carried with any outcome; over BM_MAX_JOB_LOG_LEN its
    //  last bytes, from a character boundary; not a string: ignored, said.
    memset (&done, 0, sizeof done);
    snprintf (done.job_id, sizeof done.job_id, "j-1");
    done.ok = true;
    done.log = (bm_codec_str_t) { "line 1\nline 2", 13 };
    bm_codec_done_encode (&done, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_DONE, &packer);
    CHECK (msg && bm_codec_done_decode (msg, &done_back, &error) == 0
           && done_back.ok && s_str_is (done_back.log, "line 1\nline 2") && !done_back.log_invalid);
    bm_msg_destroy (&msg);
    static char big [BM_MAX_JOB_LOG_LEN + 8];
    memset (big, 'x', sizeof big);
    memcpy (big + 7, "\xc3\xa9", 2);      //  "é" across the cut: it starts after it
    done.log = (bm_codec_str_t) { big, sizeof big };
    bm_codec_done_encode (&done, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_DONE, &packer);
    CHECK (msg && bm_codec_done_decode (msg, &done_back, &error) == 0
           && done_back.log.len == BM_MAX_JOB_LOG_LEN - 1 && done_back.log.ptr [0] == 'x');
    bm_msg_destroy (&msg);
    msg = s_json_msg (BM_WORKER_HEADER, BM_DONE, "{\"jobId\":\"j-1\",\"ok\":true,\"log\":[1]}");
    CHECK (msg && bm_codec_done_decode (msg, &done_back, &error) == 0 && done_back.ok
           && !done_back.log.ptr && done_back.log_invalid);
    bm_msg_destroy (&msg);

    bm_codec_job_notice_t notice = { .job_id = "j-1", .reason = { "timeout", 7 } };
    bm_codec_job_notice_encode (&notice, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_WCANCEL, &packer);
    bm_codec_job_notice_t notice_back;
    CHECK (msg && bm_codec_job_notice_decode (msg, &notice_back, &error) == 0
           && streq (notice_back.job_id, "j-1") && s_str_is (notice_back.reason, "timeout"));
    bm_msg_destroy (&msg);
    //  RELEASE {jobId, lost, signal}: the signal that killed the bot
    //  process comes back; one that does not read is ignored, never refused
    //  (the job would stay with a worker that no longer runs it).
    bm_codec_job_notice_t lost = { .job_id = "j-2", .lost = true, .signal = 9 };
    bm_codec_job_notice_encode (&lost, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_RELEASE, &packer);
    CHECK (msg && bm_codec_job_notice_decode (msg, &notice_back, &error) == 0
           && notice_back.lost && notice_back.signal == 9 && !notice_back.reason.ptr);
    bm_msg_destroy (&msg);
    const char *odd_signals [] = { "0", "128", "-9", "\"KILL\"", "9.5", "null" };
    for (size_t index = 0; index < sizeof odd_signals / sizeof *odd_signals; index++) {
        char json [96];
        snprintf (json, sizeof json, "{\"jobId\":\"j-2\",\"lost\":true,\"signal\":%s,\"later\":1}",
                  odd_signals [index]);
        msg = s_json_msg (BM_WORKER_HEADER, BM_RELEASE, json);
        CHECK (msg && bm_codec_job_notice_decode (msg, &notice_back, &error) == 0
               && notice_back.lost && notice_back.signal == 0);
        bm_msg_destroy (&msg);
    }

    bm_codec_disconnect_t bye = { .reason = { "shutting down", 13 } };
    bm_codec_disconnect_encode (&bye, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_DISCONNECT, &packer);
    bm_codec_disconnect_t bye_back;
    CHECK (msg && bm_codec_disconnect_decode (msg, &bye_back, &error) == 0
           && s_str_is (bye_back.reason, "shutting down") && !bye_back.by.ptr);
    bm_msg_destroy (&msg);
    //  DISCONNECT replaced, naming who took the name.
    bm_codec_disconnect_t replaced = { .reason = { "replaced", 8 }, .by = { "pid 7 at 10.0.0.2", 17 } };
    bm_codec_disconnect_encode (&replaced, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_DISCONNECT, &packer);
    CHECK (msg && bm_codec_disconnect_decode (msg, &bye_back, &error) == 0
           && s_str_is (bye_back.reason, "replaced") && s_str_is (bye_back.by, "pid 7 at 10.0.0.2"));
    bm_msg_destroy (&msg);
    //  A by that is not a string, or is over 255 bytes, is left out: the
    //  DISCONNECT replaced still decodes (a worker must not take it for a
    //  plain DISCONNECT and register again at once).
    char long_by [300];
    memset (long_by, 'x', sizeof long_by);
    for (int bad = 0; bad < 2; bad++) {
        msgpack_pack_map (&packer.pk, 2);
        bm_field_pack_strn (&packer, "reason", "replaced", 8);
        if (bad == 0) {
            msgpack_pack_str_with_body (&packer.pk, "by", 2);
            msgpack_pack_int64 (&packer.pk, 7);
        }
        else
            bm_field_pack_strn (&packer, "by", long_by, sizeof long_by);
        msg = s_packed_msg (BM_WORKER_HEADER, BM_DISCONNECT, &packer);
        CHECK (msg && bm_codec_disconnect_decode (msg, &bye_back, &error) == 0
               && s_str_is (bye_back.reason, "replaced") && !bye_back.by.ptr && !bye_back.by.len);
        bm_msg_destroy (&msg);
    }
    //  255 bytes is still a by.
    replaced.by = (bm_codec_str_t) { long_by, BM_MAX_DISCONNECT_BY_LEN };
    bm_codec_disconnect_encode (&replaced, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_DISCONNECT, &packer);
    CHECK (msg && bm_codec_disconnect_decode (msg, &bye_back, &error) == 0
           && bye_back.by.len == BM_MAX_DISCONNECT_BY_LEN);
    bm_msg_destroy (&msg);
    //  HEARTBEAT: the empty map.
    bye.reason.ptr = NULL;
    bm_codec_disconnect_encode (&bye, &packer);
    CHECK (packer.sbuf.size == 1 && packer.sbuf.data [0] == '\x80');
    bm_packer_reset (&packer);
    //  HEARTBEAT with a worker's warm bots.
    bm_codec_heartbeat_t beat = { .count = 2 };
    beat.bots [0] = (bm_codec_bot_pool_t) { "python", "fork", 2, 3, 1 };
    beat.bots [1] = (bm_codec_bot_pool_t) { "node", "pool", 1, 0, 0 };
    bm_codec_heartbeat_encode (&beat, &packer);
    msg = s_packed_msg (BM_WORKER_HEADER, BM_HEARTBEAT, &packer);
    bm_codec_heartbeat_t beat_back;
    CHECK (msg && bm_codec_heartbeat_decode (msg, &beat_back, &error) == 0 && beat_back.count == 2
           && streq (beat_back.bots [0].type, "python") && streq (beat_back.bots [0].mode, "fork")
           && beat_back.bots [0].processes == 2 && beat_back.bots [0].recycles == 3
           && beat_back.bots [0].init_failures == 1 && streq (beat_back.bots [1].mode, "pool"));
    bm_msg_destroy (&msg);
    bm_codec_heartbeat_t empty = { .count = 0 };
    bm_codec_heartbeat_encode (&empty, &packer);
    CHECK (packer.sbuf.size == 1 && packer.sbuf.data [0] == '\x80');
    bm_packer_reset (&packer);
    bm_packer_destroy (&packer);
}

//  --------------------------------------------------------------------------
//  Refusals: each names the field at fault.

static void
test_rejections (void)
{
    struct {
        bm_codec_kind_t kind;
        const char *body;
        const char *field;
    } cases [] = {
        //  SUBMIT: every field, every limit (docs/protocol.md section 4).
        { BM_CODEC_SUBMIT, "{\"payload\":1}", "botType" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"x\",\"dependsOn\":[]}", "dependsOn" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"x\",\"dependsOn\":\"a\"}", "dependsOn" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"x\",\"dependsOn\":[\"a\",\"a\"]}", "dependsOn" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"x\",\"dependsOn\":[\"a\",\"b c\"]}", "dependsOn" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"x\",\"dependencyResults\":true}", "dependencyResults" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"x\",\"dependsOn\":[\"a\"],\"onDependencyFailure\":\"no\"}",
          "onDependencyFailure" },
        { BM_CODEC_SUBMIT, "{\"botType\":7}", "botType" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"Python\"}", "botType" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"\"}", "botType" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}", "botType" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"webhook\"}", "botType" },
        { BM_CODEC_SUBMIT, "{\"req\":\"1\",\"botType\":\"python\"}", "req" },
        { BM_CODEC_SUBMIT, "{\"req\":1.5,\"botType\":\"python\"}", "req" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"priority\":-1}", "priority" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"priority\":2097153}", "priority" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"priority\":true}", "priority" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"timeoutMs\":0}", "timeoutMs" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"timeoutMs\":86400001}", "timeoutMs" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"timeoutMs\":5000.0}", "timeoutMs" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"maxAttempts\":0}", "maxAttempts" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"attempts\":0}", "attempts" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"attempts\":101}", "attempts" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"delayMs\":-1}", "delayMs" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"delayMs\":31536000001}", "delayMs" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"runAt\":\"soon\"}", "runAt" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"runAt\":5,\"delayMs\":5}", "runAt" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"backoff\":2000}", "backoff" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"backoff\":{}}", "backoff.delayMs" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"backoff\":{\"delayMs\":-5}}", "backoff.delayMs" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"backoff\":{\"type\":\"linear\",\"delayMs\":5}}",
          "backoff.type" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"backoff\":{\"type\":1,\"delayMs\":5}}",
          "backoff.type" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"backoff\":{\"delayMs\":5,\"jitter\":2}}",
          "backoff.jitter" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"backoff\":{\"delayMs\":5,\"jitter\":\"yes\"}}",
          "backoff.jitter" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"maxAttempts\":101}", "maxAttempts" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"webhookUrl\":\"ftp://x\"}", "webhookUrl" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"webhookUrl\":\"http://\"}", "webhookUrl" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"webhookUrl\":5}", "webhookUrl" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"webhookUrl\":\"http://x/\\u2028\"}", "webhookUrl" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"webhookUrl\":\"http://x/\\u202e\"}", "webhookUrl" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"idempotencyKey\":\"a b\"}", "idempotencyKey" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"idempotencyKey\":\"\"}", "idempotencyKey" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"idempotencyKey\":7}", "idempotencyKey" },
        { BM_CODEC_SUBMIT, "{\"botType\":\"python\",\"notify\":1}", "notify" },
        //  STATUS, CANCEL, RETRY, REDELIVER.
        { BM_CODEC_JOB_REF, "{\"req\":1}", "jobId" },
        { BM_CODEC_JOB_REF, "{\"req\":1,\"jobId\":\"\"}", "jobId" },
        { BM_CODEC_JOB_REF, "{\"req\":1,\"jobId\":\"a\\tb\"}", "jobId" },
        { BM_CODEC_JOB_REF, "{\"req\":1,\"jobId\":3}", "jobId" },
        { BM_CODEC_REQUEST, "{\"req\":[1]}", "req" },
        //  LIST.
        { BM_CODEC_LIST, "{\"state\":7}", "state" },
        { BM_CODEC_LIST, "{\"state\":\"a-state-name-much-too-long\"}", "state" },
        { BM_CODEC_LIST, "{\"botType\":\"Not A Type\"}", "botType" },
        { BM_CODEC_LIST, "{\"limit\":\"10\"}", "limit" },
        //  Replies.
        { BM_CODEC_ACCEPTED, "{\"req\":1,\"duplicate\":false}", "jobId" },
        { BM_CODEC_ACCEPTED, "{\"jobId\":\"a\",\"duplicate\":\"no\"}", "duplicate" },
        { BM_CODEC_ACCEPTED, "{\"jobId\":\"a\",\"position\":0}", "position" },
        { BM_CODEC_REJECTED, "{\"message\":\"m\"}", "code" },
        { BM_CODEC_REJECTED, "{\"code\":\"x\",\"message\":5}", "message" },
        { BM_CODEC_JOB_REPLY, "{\"req\":1}", "job" },
        { BM_CODEC_JOB_REPLY, "{\"req\":1,\"job\":[]}", "job" },
        { BM_CODEC_JOB_REPLY, "{\"req\":1,\"job\":{\"botType\":\"p\",\"state\":\"queued\"}}", "jobId" },
        { BM_CODEC_JOB_REPLY, "{\"job\":{\"jobId\":\"a\",\"botType\":\"p\",\"state\":\"queued\","
                              "\"progress\":101}}", "progress" },
        { BM_CODEC_JOB_REPLY, "{\"job\":{\"jobId\":\"a\",\"botType\":\"p\",\"state\":\"failed\","
                              "\"error\":\"x\"}}", "error" },
        { BM_CODEC_JOB_REPLY, "{\"job\":{\"jobId\":\"a\",\"botType\":\"p\",\"state\":\"failed\","
                              "\"webhook\":{\"attempts\":1}}}", "webhook.state" },
        { BM_CODEC_RESULT, "{\"job\":{\"jobId\":\"a\",\"botType\":\"p\",\"state\":\"queued\"}}", "jobId" },
        { BM_CODEC_LIST_REPLY, "{\"req\":1}", "jobs" },
        { BM_CODEC_LIST_REPLY, "{\"jobs\":[{\"jobId\":\"a\"}]}", "botType" },
        { BM_CODEC_PING_REPLY, "{\"redis\":1}", "redis" },
        { BM_CODEC_METRICS_REPLY, "{\"req\":1}", "text" },
        { BM_CODEC_STATS_REPLY, "{\"types\":[]}", "types" },
        { BM_CODEC_STATS_REPLY, "{\"types\":{\"python\":{\"waiting\":-1}}}", "waiting" },
        { BM_CODEC_STATS_REPLY, "{\"workers\":{}}", "workers" },
        { BM_CODEC_STATS_REPLY, "{\"totals\":{\"failed\":\"3\"}}", "failed" },
        //  READY (section 5): types 1..16, credit 0..1000000.
        { BM_CODEC_READY, "{\"name\":\"w\",\"credit\":1}", "types" },
        { BM_CODEC_READY, "{\"types\":[],\"credit\":1}", "types" },
        { BM_CODEC_READY, "{\"types\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\","
                          "\"k\",\"l\",\"m\",\"n\",\"o\",\"p\",\"q\"],\"credit\":1}", "types" },
        { BM_CODEC_READY, "{\"types\":[\"python\",7],\"credit\":1}", "types" },
        { BM_CODEC_READY, "{\"types\":[\"python\"]}", "credit" },
        { BM_CODEC_READY, "{\"types\":[\"python\"],\"credit\":-1}", "credit" },
        { BM_CODEC_READY, "{\"types\":[\"python\"],\"credit\":1000001}", "credit" },
        { BM_CODEC_READY, "{\"types\":[\"python\"],\"credit\":1,\"pid\":\"1\"}", "pid" },
        //  JOB.
        { BM_CODEC_JOB, "{\"botType\":\"python\",\"attempt\":1,\"timeoutMs\":1}", "jobId" },
        { BM_CODEC_JOB, "{\"jobId\":\"a\",\"attempt\":1,\"timeoutMs\":1}", "botType" },
        { BM_CODEC_JOB, "{\"jobId\":\"a\",\"botType\":\"python\",\"timeoutMs\":1}", "attempt" },
        { BM_CODEC_JOB, "{\"jobId\":\"a\",\"botType\":\"python\",\"attempt\":0,\"timeoutMs\":1}", "attempt" },
        { BM_CODEC_JOB, "{\"jobId\":\"a\",\"botType\":\"python\",\"attempt\":1}", "timeoutMs" },
        { BM_CODEC_JOB, "{\"jobId\":\"a\",\"botType\":\"python\",\"attempt\":1,"
                        "\"timeoutMs\":86400001}", "timeoutMs" },
        { BM_CODEC_JOB, "{\"jobId\":\"a\",\"botType\":\"python\",\"attempt\":1,\"timeoutMs\":1,"
                        "\"deadline\":-1}", "deadline" },
        { BM_CODEC_JOB, "{\"jobId\":\"a\",\"botType\":\"python\",\"attempt\":1,\"timeoutMs\":1,"
                        "\"webhook\":7}", "webhook" },
        //  PROGRESS, DONE, CANCEL, RELEASE, DISCONNECT.
        { BM_CODEC_PROGRESS, "{\"progress\":5}", "jobId" },
        { BM_CODEC_PROGRESS, "{\"jobId\":\"a\",\"webhook\":{\"state\":\"pending\","
                             "\"lastStatus\":1000}}", "webhook.lastStatus" },
        { BM_CODEC_DONE, "{\"ok\":true}", "jobId" },
        { BM_CODEC_JOB_NOTICE, "{\"reason\":\"timeout\"}", "jobId" },
        { BM_CODEC_JOB_NOTICE, "{\"jobId\":\"a\",\"reason\":1}", "reason" },
        { BM_CODEC_DISCONNECT, "{\"reason\":[]}", "reason" },
        { BM_CODEC_HEARTBEAT, "{\"bots\":[]}", "bots" },
        { BM_CODEC_HEARTBEAT, "{\"bots\":{\"py\":{\"mode\":\"spawn\"}}}", "bots" },
        { BM_CODEC_HEARTBEAT, "{\"bots\":{\"py\":{\"mode\":\"pool\",\"processes\":-1}}}", "processes" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        bm_msg_t *msg = s_json_msg (BM_CLIENT_HEADER, 1, cases [i].body);
        if (!msg)
            continue;
        bm_codec_body_t body;
        bm_codec_error_t error = { NULL, NULL, "" };
        int rc = bm_codec_decode (cases [i].kind, msg, &body, &error);
        if (rc != -1 || !error.field || !streq (error.field, cases [i].field)
        ||  !streq (error.code, "bad_request")
        ||  !strstr (error.message, strchr (cases [i].field, '.')
                                    ? strchr (cases [i].field, '.') + 1 : cases [i].field)) {
            fprintf (stderr, "FAIL case %zu: %s %s: rc %d, field %s (%s), want %s\n", i,
                     bm_codec_kind_name (cases [i].kind), cases [i].body, rc,
                     error.field ? error.field : "-", error.message, cases [i].field);
            abort ();
        }
        else
        if (s_verbose)
            printf ("  %-14s %-60.60s -> %s\n", bm_codec_kind_name (cases [i].kind),
                    cases [i].body, error.message);
        bm_msg_destroy (&msg);
    }

    //  A payload nested deeper than BM_MAX_NESTING is refused; exactly that
    //  deep passes.  A result that deep fails the job instead (bad_output).
    for (int extra = 0; extra < 2; extra++) {
        int levels = BM_MAX_NESTING + extra;
        //  JSON that deep is refused by the JSON bridge: pack by hand.
        bm_packer_t packer;
        bm_packer_init (&packer);
        msgpack_pack_map (&packer.pk, 4);
        bm_pack_kv_str (&packer.pk, "jobId", "a");
        bm_pack_kv_str (&packer.pk, "botType", "python");
        bm_pack_kv_bool (&packer.pk, "ok", true);
        bm_pack_str (&packer.pk, "payload");
        for (int i = 0; i < levels; i++)
            msgpack_pack_array (&packer.pk, i + 1 < levels ? 1 : 0);
        bm_msg_t *msg = s_packed_msg (BM_CLIENT_HEADER, BM_SUBMIT, &packer);
        bm_codec_submit_t submit;
        bm_codec_error_t error;
        CHECK (msg && bm_codec_submit_decode (msg, &submit, &error) == (extra ? -1 : 0));
        CHECK (!extra || streq (error.field, "payload"));
        bm_msg_destroy (&msg);
        msgpack_pack_map (&packer.pk, 3);
        bm_pack_kv_str (&packer.pk, "jobId", "a");
        bm_pack_kv_bool (&packer.pk, "ok", true);
        bm_pack_str (&packer.pk, "result");
        for (int i = 0; i < levels; i++)
            msgpack_pack_array (&packer.pk, i + 1 < levels ? 1 : 0);
        msg = s_packed_msg (BM_WORKER_HEADER, BM_DONE, &packer);
        bm_codec_done_t done;
        CHECK (msg && bm_codec_done_decode (msg, &done, &error) == 0
               && done.result_too_deep == (extra == 1));
        bm_msg_destroy (&msg);
        bm_packer_destroy (&packer);
    }
}

//  --------------------------------------------------------------------------
//  What the protocol reads rather than refuses.

static void
test_tolerant_reads (void)
{
    bm_codec_error_t error;
    bm_msg_t *msg;
    //  LIST limit: absent or below 1 reads as 50, above 500 as 500.
    struct { const char *body; int64_t limit; } limits [] = {
        { "{}", BM_LIST_DEFAULT_LIMIT }, { "{\"limit\":0}", BM_LIST_DEFAULT_LIMIT },
        { "{\"limit\":-3}", BM_LIST_DEFAULT_LIMIT }, { "{\"limit\":7}", 7 },
        { "{\"limit\":100000}", BM_LIST_MAX_LIMIT } };
    for (size_t i = 0; i < sizeof limits / sizeof limits [0]; i++) {
        bm_codec_list_t list;
        msg = s_json_msg (BM_CLIENT_HEADER, BM_LIST, limits [i].body);
        CHECK (msg && bm_codec_list_decode (msg, &list, &error) == 0
               && list.limit == limits [i].limit && !list.state [0] && !list.bot_type [0]
               && !list.webhook [0]);
        bm_msg_destroy (&msg);
    }
    //  LIST webhook: a webhook state, else refused naming the field.
    const char *webhooks [] = { "{\"webhook\":\"Failed\"}", "{\"webhook\":\"\"}", "{\"webhook\":3}",
                                "{\"webhook\":\"failed-and-more-than-fifteen\"}" };
    for (size_t i = 0; i < sizeof webhooks / sizeof webhooks [0]; i++) {
        bm_codec_list_t list;
        msg = s_json_msg (BM_CLIENT_HEADER, BM_LIST, webhooks [i]);
        CHECK (msg && bm_codec_list_decode (msg, &list, &error) == -1 && streq (error.field, "webhook"));
        bm_msg_destroy (&msg);
    }
    //  READY: no name leaves the broker to name the worker; a name that
    //  is not a valid id is refused, naming the field.
    bm_codec_ready_t ready;
    msg = s_json_msg (BM_WORKER_HEADER, BM_READY, "{\"types\":[\"python\"],\"credit\":0}");
    CHECK (msg && bm_codec_ready_decode (msg, &ready, &error) == 0
           && ready.name [0] == 0 && ready.credit == 0 && !ready.has_pid);
    bm_msg_destroy (&msg);
    msg = s_json_msg (BM_WORKER_HEADER, BM_READY,
                      "{\"name\":\"has space\",\"types\":[\"python\"],\"credit\":0}");
    CHECK (msg && bm_codec_ready_decode (msg, &ready, &error) == -1
           && streq (error.code, "bad_request") && strstr (error.message, "name"));
    bm_msg_destroy (&msg);
    //  PROGRESS outside 0..100 is ignored.
    bm_codec_progress_t progress;
    msg = s_json_msg (BM_WORKER_HEADER, BM_PROGRESS, "{\"jobId\":\"a\",\"progress\":101}");
    CHECK (msg && bm_codec_progress_decode (msg, &progress, &error) == 0 && !progress.has_progress);
    bm_msg_destroy (&msg);
    //  DONE: a non-boolean ok reads as false; no error map reads as
    //  bot_failed; a code over 63 bytes too; the message is cut at 4095
    //  bytes on a character boundary.
    bm_codec_done_t done;
    msg = s_json_msg (BM_WORKER_HEADER, BM_DONE, "{\"jobId\":\"a\",\"ok\":1}");
    CHECK (msg && bm_codec_done_decode (msg, &done, &error) == 0 && !done.ok
           && streq (done.error.code, "bot_failed") && s_str_is (done.error.message, "the bot failed"));
    bm_msg_destroy (&msg);
    //  DONE's optional fields that do not read are ignored: the job ends.
    msg = s_json_msg (BM_WORKER_HEADER, BM_DONE, "{\"jobId\":\"a\",\"ok\":true,"
                      "\"startedAt\":\"x\",\"finishedAt\":-2,\"webhook\":{\"attempts\":1}}");
    CHECK (msg && bm_codec_done_decode (msg, &done, &error) == 0 && done.ok
           && done.started_at == 0 && done.finished_at == 0 && !done.has_webhook);
    bm_msg_destroy (&msg);
    char text [8300];
    size_t n = (size_t) snprintf (text, sizeof text, "{\"jobId\":\"a\",\"ok\":false,\"error\":"
        "{\"code\":\"%064d\",\"exitCode\":2,\"message\":\"", 0);
    //  4094 ASCII bytes then a 3-byte character: the cut falls inside it.
    memset (text + n, 'x', 4094);
    n += 4094;
    n += (size_t) snprintf (text + n, sizeof text - n, "\xe2\x82\xac" "tail\"}}");
    msg = s_json_msg (BM_WORKER_HEADER, BM_DONE, text);
    CHECK (msg && bm_codec_done_decode (msg, &done, &error) == 0 && !done.ok
           && streq (done.error.code, "bot_failed") && done.error.has_exit_code
           && done.error.exit_code == 2 && done.error.message.len == 4094);
    bm_msg_destroy (&msg);
    //  Unknown keys are ignored; nil reads as absent.
    bm_codec_submit_t submit;
    msg = s_json_msg (BM_CLIENT_HEADER, BM_SUBMIT, "{\"botType\":\"python\",\"future\":[1],"
                      "\"notify\":null,\"timeoutMs\":null,\"payload\":null}");
    CHECK (msg && bm_codec_submit_decode (msg, &submit, &error) == 0 && !submit.notify
           && !submit.has_timeout_ms && submit.payload.obj
           && submit.payload.size == 1 && submit.payload.data [0] == '\xc0');
    bm_msg_destroy (&msg);
}

//  The sbuffer + packer pair.
static void
test_packer (void)
{
    bm_packer_t packer;
    bm_packer_init (&packer);
    msgpack_pack_map (&packer.pk, 1);
    bm_pack_kv_int (&packer.pk, "n", 1);
    CHECK (!bm_packer_failed (&packer) && packer.sbuf.size == 4);
    bm_packer_write_raw (&packer, "\x01", 1);
    size_t size;
    char *data = bm_packer_detach (&packer, &size);
    CHECK (data && size == 5 && memcmp (data, "\x81\xa1n\x01\x01", 5) == 0);
    free (data);
    CHECK (packer.sbuf.size == 0 && packer.sbuf.data == NULL);
    bm_packer_reset (&packer);
    msgpack_pack_nil (&packer.pk);
    CHECK (packer.sbuf.size == 1);
    bm_packer_destroy (&packer);
    bm_packer_destroy (&packer);        //  Twice is harmless
}

void
bm_codec_test (bool verbose)
{
    s_verbose = verbose;
    if (verbose)
        printf (" * bm_codec:\n");
    test_packer ();
    test_client_round_trips ();
    test_list_and_stats_replies ();
    test_worker_round_trips ();
    test_rejections ();
    test_tolerant_reads ();
}

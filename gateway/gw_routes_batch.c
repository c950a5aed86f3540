/*  gw_routes_batch.c - POST /invoke/batch: a JSON array of /invoke bodies
    sent to the broker as SUBMIT_MANY, answered 207 with each item's
    outcome in the items' order.

    The items that pass the gateway's checks go in SUBMIT_MANY messages of
    at most GW_BATCH_MESSAGE_BYTES of jobs (one, for any body within the
    default MAX_BODY_BYTES), so that a message stays within the broker's
    MAX_FRAME_BYTES.  A message the broker does not answer (unreachable,
    too slow, connection lost) gives its items that error: the client sees
    which jobs were accepted and which were not, never a silent loss.  */
#include "gw_routes.h"
#include "gw_invoke_batch.h"

#include "bm_codec_batch.h"
#include "bm_http.h"
#include "bm_log.h"

#include <errno.h>

#define GW_BATCH_MESSAGE_BYTES  (1024 * 1024)

//  The 207 body's item texts that were written at once (an accepted item,
//  most of them), one after the other: building a jansson value for each
//  and dumping it took a third of the gateway's time in a batch.  Each
//  item's text is where `at` says (offset + 1; 0: the item has none).
typedef struct {
    char *data;
    size_t size;
    size_t alloc;
    bool failed;                        //  Out of memory: the answer is a 500
    size_t *at;                         //  One per item
    size_t *len;                        //  One per item
} s_texts_t;

//  Append bytes; false (and failed) when memory ran out.
static bool
s_texts_write (s_texts_t *self, const char *data, size_t size)
{
    if (self->failed)
        return false;
    if (self->size + size > self->alloc) {
        size_t alloc = self->alloc ? self->alloc : 64 * 1024;
        while (alloc < self->size + size)
            alloc *= 2;
        char *grown = (char *) realloc (self->data, alloc);
        if (!grown) {
            self->failed = true;
            return false;
        }
        self->data = grown;
        self->alloc = alloc;
    }
    memcpy (self->data + self->size, data, size);
    self->size += size;
    return true;
}

//  {"index", "httpStatus", "error": {"code", "message"}}: the error
//  POST /invoke would answer for this item alone, and its status.
static json_t *
s_item_error (size_t index, int status, const char *code, const char *message)
{
    return json_pack ("{s:I,s:i,s:{s:s,s:s}}", "index", (json_int_t) index, "httpStatus", status,
                      "error", "code", code, "message", message);
}

//  The items of a message the broker did not answer: the error its
//  single-job request would have had (gw_request_broker's reasons).
static json_t *
s_unanswered (gw_server_t *server, size_t index, const char *reason)
{
    if (streq (reason, "broker_connection_lost"))
        return s_item_error (index, 504, reason, "the connection to the broker dropped after the "
                             "jobs were sent: their outcome is unknown (retry with the same "
                             "idempotencyKey to be safe)");
    if (streq (reason, "broker_timeout"))
        return s_item_error (index, 504, reason, "the broker did not answer in time");
    return s_item_error (index, 503, "broker_unavailable", gw_request_unavailable_text (server));
}

//  One debug line for a job accepted with keys the gateway does not read.
static void
s_log_ignored (const char *job_id, const json_t *ignored)
{
    char *names = json_dumps (ignored, JSON_COMPACT);
    bm_debug (job_id, "accepted; unknown fields ignored: %s", names ? names : "?");
    free (names);
}

//  One item's ACCEPTED_MANY outcome as its /invoke answer would be: a
//  value, or NULL when it was written into texts as its text.
static json_t *
s_item_outcome (gw_request_t *r, gw_invoke_batch_t *batch, size_t index, bm_msg_t *item,
                bool *accepted, s_texts_t *texts)
{
    gw_server_t *server = r->server;
    *accepted = false;
    bm_codec_outcome_t outcome;
    bm_codec_error_t error;
    if (bm_codec_outcome_decode (item, &outcome, &error)) {
        bm_series_inc (server->broker_bad_replies);
        bm_error (NULL, "bad ACCEPTED_MANY item: %s", error.message);
        return s_item_error (index, 502, "broker_error", "the broker sent an unexpected answer");
    }
    if (!outcome.accepted) {
        gw_rejection_t rejection;
        gw_request_rejection (r, bm_msg_body (item), &rejection);
        return s_item_error (index, rejection.status, rejection.code, rejection.message);
    }
    *accepted = true;
    bm_series_inc (outcome.ok.duplicate ? server->duplicates : server->accepted);
    //  As POST /invoke's 202 answer: {jobId, status, botType, priority,
    //  estimatedPosition, duplicate?}; a duplicate's status is its job's now.
    const char *status = gw_routes_accepted_status (outcome.ok.state, outcome.ok.delayed,
                                                    outcome.ok.duplicate);
    json_t *ignored = gw_invoke_batch_ignored (batch, index);
    const char *said = gw_invoke_batch_warning (batch, index);
    if (said)
        bm_warn (outcome.ok.job_id, "accepted with a warning: %s", said);
    //  No worker serves its type now: the client's to know (gw_routes_invoke)
    char warned [GW_ROUTES_WARNING_MAX];
    const char *warning = gw_routes_accepted_warning (warned, sizeof warned, said, outcome.ok.unserved,
                                                      gw_invoke_batch_bot_type (batch, index));
    //  A duplicate's priority is its job's, when the broker says.
    int64_t priority = outcome.ok.duplicate && outcome.ok.has_priority
                     ? outcome.ok.priority : gw_invoke_batch_priority (batch, index);
    if (!ignored && !warning) {
        //  {"index":I,"httpStatus":202 then the 202 body with its "{"
        //  made a ","; as jansson wrote it (gw_routes_accepted_text)
        char text [600];
        int n = snprintf (text, sizeof text, "{\"index\":%zu,\"httpStatus\":202", index);
        int more = gw_routes_accepted_text (text + n, sizeof text - (size_t) n,
            outcome.ok.job_id, status, gw_invoke_batch_bot_type (batch, index),
            priority, outcome.ok.has_position,
            outcome.ok.position, outcome.ok.duplicate);
        size_t at = texts->size;
        if (more > 0) {
            text [n] = ',';
            if (s_texts_write (texts, text, (size_t) (n + more))) {
                texts->at [index] = at + 1;
                texts->len [index] = (size_t) (n + more);
            }
            return NULL;
        }
    }
    json_t *value = gw_routes_accepted_value (outcome.ok.job_id, status,
        gw_invoke_batch_bot_type (batch, index), priority, outcome.ok.has_position,
        outcome.ok.position, outcome.ok.duplicate);
    if (value) {
        //  {index, httpStatus} first, as the text written at once has them
        json_t *item = json_pack ("{s:I,s:i}", "index", (json_int_t) index, "httpStatus", 202);
        json_object_update (item, value);
        json_decref (value);
        value = item;
    }
    if (value && warning)
        json_object_set_new (value, "warning", json_string (warning));
    if (value && ignored) {
        json_object_set (value, "ignored", ignored);
        s_log_ignored (outcome.ok.job_id, ignored);
    }
    return value;
}

//  Send one SUBMIT_MANY and fill outcome[] (or texts) for its items.  A reply that
//  refuses the message itself (REJECTED, or not an ACCEPTED_MANY that
//  fits) goes to *whole instead (caller destroys).
//  *settled counts the jobs accepted, or perhaps accepted (sent, not
//  answered).  When the request has been answered as a whole, r->status
//  is set.
static void
s_send (gw_request_t *r, gw_invoke_batch_t *batch, char *body, size_t size, int64_t req,
        const size_t *indexes, size_t count, json_t **outcome, s_texts_t *texts,
        size_t *accepted, size_t *settled, bm_msg_t **whole)
{
    *whole = NULL;
    //  No answer while no job is (perhaps) accepted: the request is
    //  answered as a whole, as POST /invoke would be (503, 504).
    bool answer = *settled == 0;
    bm_msg_t *reply = gw_request_broker (r, req, BM_SUBMIT_MANY, body, size, answer);
    if (!reply) {
        if (answer)
            return;
        if (errno != ENOTCONN)
            *settled += count;          //  Sent: the broker may have taken them
        for (size_t i = 0; i < count; i++)
            outcome [indexes [i]] = s_unanswered (r->server, indexes [i], r->reason ? r->reason : "");
        return;
    }
    bm_codec_batch_t items;
    bm_codec_error_t error = { .message = "" };
    if (bm_msg_command (reply) != BM_ACCEPTED_MANY
    ||  bm_codec_batch_decode (reply, &items, &error) || items.count != count) {
        if (bm_msg_command (reply) == BM_ACCEPTED_MANY)
            bm_error (NULL, "ACCEPTED_MANY that does not fit %zu jobs: %s", count, error.message);
        *whole = reply;
        return;
    }
    bm_msg_t *item = bm_msg_new ();
    for (size_t i = 0; i < count; i++) {
        size_t index = indexes [i];
        bool ok = false;
        if (item && bm_codec_batch_next (&items, item, &error) == 1)
            outcome [index] = s_item_outcome (r, batch, index, item, &ok, texts);
        else
            outcome [index] = s_item_error (index, 502, "broker_error",
                                            "the broker sent an unexpected answer");
        *accepted += ok;
        *settled += ok;
    }
    bm_msg_destroy (&item);
    bm_msg_destroy (&reply);
}

//  A message refused as a whole after some jobs were accepted: its items
//  get the refusal, one by one.
static void
s_refuse_items (gw_request_t *r, bm_msg_t *whole, const size_t *indexes, size_t count,
                json_t **outcome)
{
    gw_rejection_t rejection = { .status = 502, .code = "broker_error",
                                 .message = "the broker sent an unexpected answer" };
    if (bm_msg_command (whole) == BM_REJECTED)
        gw_request_rejection (r, bm_msg_body (whole), &rejection);
    else
        bm_series_inc (r->server->broker_bad_replies);
    for (size_t i = 0; i < count; i++)
        outcome [indexes [i]] = s_item_error (indexes [i], rejection.status, rejection.code,
                                              rejection.message);
}

void
gw_routes_invoke_batch (gw_request_t *r)
{
    gw_server_t *server = r->server;
    //  A batch answers at once: a wait is refused rather than ignored (each
    //  job is waited for on its own, with GET /job/{id}?wait=MS).
    char wait [16];
    int has = gw_request_query (r, "wait", wait, sizeof wait, "invalid_wait");
    if (has != 0) {
        r->reason = "invalid_wait";
        if (has != -2)                  //  -2: answered already (given twice)
            gw_request_error (r, 400, "invalid_wait", "/invoke/batch takes no wait: wait for "
                              "each job with GET /job/{id}?wait=MS", NULL);
        return;
    }
    //  The text is parsed by gw_invoke_batch_new, in its arena, as
    //  gw_request_read_object parses an object (one level more: the array).
    char *body;
    size_t size;
    if (gw_request_read_json_text (r, &body, &size))
        return;
    gw_invoke_error_t error;
    gw_invoke_batch_t *batch = gw_invoke_batch_new (body, size, (size_t) server->config.max_batch,
                                                    &server->limits, &error);
    free (body);
    if (!batch) {
        r->reason = error.code;
        gw_request_error (r, error.status, error.code, error.message, NULL);
        return;
    }
    size_t count = gw_invoke_batch_size (batch);
    json_t **outcome = (json_t **) calloc (count, sizeof (json_t *));
    size_t *indexes = (size_t *) malloc (BM_MAX_BATCH * sizeof (size_t));
    s_texts_t texts = { .at = (size_t *) calloc (count, sizeof (size_t)),
                        .len = (size_t *) calloc (count, sizeof (size_t)) };
    bool answered = false;
    size_t accepted = 0, settled = 0;
    if (!outcome || !indexes || !texts.at || !texts.len) {
        gw_request_error (r, 503, "out_of_memory", "no memory for the jobs; retry later", NULL);
        answered = true;
    }
    for (size_t i = 0; !answered && i < count; i++) {
        const gw_invoke_error_t *refusal = gw_invoke_batch_error (batch, i);
        if (refusal)
            outcome [i] = s_item_error (i, refusal->status, refusal->code, refusal->message);
    }
    size_t next = 0;
    while (!answered) {
        int64_t req = gw_link_next_req (server->link);
        size_t sent = 0, message_size = 0;
        char *message = gw_invoke_batch_message (batch, &next, req, GW_BATCH_MESSAGE_BYTES,
                                                 indexes, &sent, &message_size);
        if (!message && sent == 0)
            break;                      //  Every passed item sent
        if (!message) {
            for (size_t i = 0; i < sent; i++)
                outcome [indexes [i]] = s_item_error (indexes [i], 503, "out_of_memory",
                                                      "no memory to encode the job");
            continue;
        }
        //  A refusal of the whole message answers the request as a whole
        //  while no job is (perhaps) accepted; after that, each item says
        //  its own.
        bm_msg_t *whole;
        s_send (r, batch, message, message_size, req, indexes, sent, outcome, &texts,
                &accepted, &settled, &whole);
        if (r->status)
            answered = true;            //  No answer from the broker
        else
        if (whole && settled == 0) {
            if (bm_msg_command (whole) == BM_REJECTED)
                gw_request_rejected (r, whole);
            else
                gw_request_bad_reply (r, whole);
            answered = true;
        }
        else
        if (whole)
            s_refuse_items (r, whole, indexes, sent, outcome);
        bm_msg_destroy (&whole);
    }
    if (!answered) {
        //  {"accepted":A,"rejected":R,"jobs":[...]}, as jansson's
        //  JSON_COMPACT writes it, the items' texts in the items' order
        s_texts_t body = { .data = NULL };
        char head [80];
        int n = snprintf (head, sizeof head, "{\"accepted\":%zu,\"rejected\":%zu,\"jobs\":[",
                          accepted, count - accepted);
        s_texts_write (&body, head, (size_t) n);
        for (size_t i = 0; i < count && !texts.failed; i++) {
            if (i > 0)
                s_texts_write (&body, ",", 1);
            if (!outcome [i] && texts.at [i])
                s_texts_write (&body, texts.data + texts.at [i] - 1, texts.len [i]);
            else {
                json_t *value = outcome [i] ? json_incref (outcome [i])
                              : s_item_error (i, 500, "internal", "internal error");
                char *text = bm_http_json_text (value);
                json_decref (value);
                if (!text || !s_texts_write (&body, text, strlen (text)))
                    body.failed = true;
                free (text);
            }
        }
        s_texts_write (&body, "]}", 2);
        bm_debug (NULL, "batch of %zu jobs: %zu accepted", count, accepted);
        //  Each refused item counts as a refused /invoke would.
        for (size_t i = 0; i < count; i++) {
            const char *code = json_string_value (json_object_get (
                json_object_get (outcome [i], "error"), "code"));
            if (code)
                gw_server_count_rejected (server, code);
        }
        if (body.failed || texts.failed)
            gw_request_send_json (r, 500, NULL, NULL);      //  Its fallback body
        else
            gw_request_send (r, 207, "application/json", NULL, body.data, body.size);
        free (body.data);
    }
    for (size_t i = 0; outcome && i < count; i++)
        json_decref (outcome [i]);
    free (outcome);
    free (indexes);
    free (texts.data);
    free (texts.at);
    free (texts.len);
    gw_invoke_batch_destroy (&batch);
}

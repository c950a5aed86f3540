/*  gw_record.c - broker replies (msgpack) as the gateway's JSON answers.  */
#include "gw_record.h"
#include "bm_selftest.h"
#include "bm_http.h"
#include "bm_json.h"
#include "bm_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  BullMQ's name for a job state, as its Job.getState() answers: queued
//  is waiting, running active; BullMQ has no cancelled (a cancelled job
//  carries a failedReason, as a failed one).  NULL for a state this
//  gateway does not know.
static const char *
s_bullmq_state (const char *state)
{
    static const char *names [][2] = {
        { "queued", "waiting" }, { "running", "active" }, { "delayed", "delayed" },
        { "waiting-children", "waiting-children" },
        { "completed", "completed" }, { "failed", "failed" }, { "cancelled", "failed" }
    };
    for (size_t i = 0; state && i < sizeof names / sizeof names [0]; i++)
        if (streq (state, names [i][0]))
            return names [i][1];
    return NULL;
}

json_t *
gw_record_job (const msgpack_object *job)
{
    if (!job || job->type != MSGPACK_OBJECT_MAP)
        return NULL;
    json_t *record = bm_json_from_msgpack (job, BM_JSON_MAX_DEPTH + 1);   //  record + payload
    if (!record)
        return NULL;
    //  BullMQ's names, for clients of BullMQ-based bot systems: id, data
    //  (the payload), returnvalue (the result, null until completed),
    //  attemptsMade (attempts), processedOn and finishedOn (ms since the
    //  epoch), failedReason (the error message of a failed or cancelled job),
    //  and bullmqState, the state as BullMQ names it (state keeps ours).
    json_object_set (record, "id", json_object_get (record, "jobId"));
    const char *bullmq = s_bullmq_state (json_string_value (json_object_get (record, "state")));
    json_object_set_new (record, "bullmqState", bullmq ? json_string (bullmq) : json_null ());
    json_t *payload = json_object_get (record, "payload");
    if (payload)
        json_object_set (record, "data", payload);
    json_t *result = json_object_get (record, "result");
    json_object_set_new (record, "returnvalue", result? json_incref (result): json_null ());
    json_t *attempts = json_object_get (record, "attempts");
    json_object_set_new (record, "attemptsMade", json_integer (json_is_integer (attempts)
                         ? json_integer_value (attempts) : 0));
    json_t *started = json_object_get (record, "startedAt");
    json_t *finished = json_object_get (record, "finishedAt");
    json_object_set_new (record, "processedOn", json_is_integer (started)
                         ? json_integer (json_integer_value (started)) : json_null ());
    json_object_set_new (record, "finishedOn", json_is_integer (finished)
                         ? json_integer (json_integer_value (finished)) : json_null ());
    json_t *message = json_object_get (json_object_get (record, "error"), "message");
    json_object_set_new (record, "failedReason", json_is_string (message)
                         ? json_string (json_string_value (message)) : json_null ());
    bm_http_record_times (record);
    return record;
}

json_t *
gw_record_logs (const msgpack_object *job)
{
    if (!job || job->type != MSGPACK_OBJECT_MAP)
        return NULL;
    const char *id = "", *text = "";
    size_t id_len = 0, len = 0;
    bm_obj_str (job, "jobId", &id, &id_len);
    bm_obj_str (job, "log", &text, &len);
    json_t *lines = json_array ();
    while (len > 0) {
        const char *eol = (const char *) memchr (text, '\n', len);
        size_t line = eol ? (size_t) (eol - text) : len;
        //  The broker keeps logs as UTF-8: a line that is not is left out
        //  rather than the answer lost.
        json_t *item = json_stringn (text, line);
        if (item)
            json_array_append_new (lines, item);
        text += eol ? line + 1 : line;
        len -= eol ? line + 1 : line;
    }
    json_t *logs = json_object ();
    json_object_set_new (logs, "jobId", json_stringn (id, id_len));
    json_object_set_new (logs, "count", json_integer ((json_int_t) json_array_size (lines)));
    json_object_set_new (logs, "logs", lines);
    return logs;
}

json_t *
gw_record_schedule (const msgpack_object *schedule)
{
    if (!schedule || schedule->type != MSGPACK_OBJECT_MAP)
        return NULL;
    json_t *record = bm_json_from_msgpack (schedule, BM_JSON_MAX_DEPTH + 1);
    if (record)
        bm_http_record_times (record);
    return record;
}

json_t *
gw_record_stats (const msgpack_object *reply)
{
    if (!reply || reply->type != MSGPACK_OBJECT_MAP)
        return NULL;
    json_t *stats = bm_json_from_msgpack (reply, BM_JSON_MAX_DEPTH + 1);
    if (!stats)
        return NULL;
    json_object_del (stats, "req");
    const char *key;
    json_t *value;
    json_object_foreach (json_object_get (stats, "types"), key, value) {
        json_t *running = json_object_get (value, "running");
        if (running)
            json_object_set (value, "active", running);
    }
    //  BullMQ-style totals: botQueue over every bot type, webhookQueue for
    //  the webhook deliveries; running jobs are BullMQ's "active".
    static const char *counts [] = { "waiting", "active", "completed", "failed" };
    json_int_t bot [4] = { 0 }, webhook [4] = { 0 };
    json_object_foreach (json_object_get (stats, "types"), key, value) {
        json_int_t *into = streq (key, BM_WEBHOOK_TYPE) ? webhook : bot;
        for (int i = 0; i < 4; i++)
            into [i] += json_integer_value (json_object_get (value, counts [i]));
    }
    json_t *bot_queue = json_object (), *webhook_queue = json_object ();
    for (int i = 0; i < 4; i++) {
        json_object_set_new (bot_queue, counts [i], json_integer (bot [i]));
        json_object_set_new (webhook_queue, counts [i], json_integer (webhook [i]));
    }
    json_object_set_new (stats, "botQueue", bot_queue);
    json_object_set_new (stats, "webhookQueue", webhook_queue);
    size_t index;
    json_array_foreach (json_object_get (stats, "workers"), index, value) {
        json_t *beat = json_object_get (value, "lastHeartbeat");
        char iso [40];
        if (json_is_integer (beat) && bm_http_iso_time (json_integer_value (beat), iso, sizeof iso) == 0)
            json_object_set_new (value, "lastHeartbeatAt", json_string (iso));
    }
    return stats;
}

json_t *
gw_record_list (const msgpack_object *reply)
{
    const msgpack_object *jobs = bm_obj_get (reply, "jobs");
    if (!jobs || jobs->type != MSGPACK_OBJECT_ARRAY)
        return NULL;
    json_t *array = json_array ();
    for (uint32_t i = 0; i < jobs->via.array.size; i++) {
        json_t *record = gw_record_job (&jobs->via.array.ptr [i]);
        if (record)
            json_array_append_new (array, record);
    }
    return json_pack ("{s:o}", "jobs", array);
}

//  Bot types are listed in one order everywhere: the default bots' types
//  first (java, node, python), then the others by name.
typedef struct {
    const char *ptr;
    size_t len;
} s_name_t;

#define S_NAMES_MAX 256

static int
s_name_rank (const s_name_t *name)
{
    static const char *builtin [] = { "java", "node", "python" };
    for (int i = 0; i < 3; i++)
        if (name->len == strlen (builtin [i]) && memcmp (name->ptr, builtin [i], name->len) == 0)
            return i;
    return 3;
}

static int
s_name_compare (const void *a, const void *b)
{
    const s_name_t *x = (const s_name_t *) a;
    const s_name_t *y = (const s_name_t *) b;
    int rank = s_name_rank (x) - s_name_rank (y);
    if (rank)
        return rank;
    size_t n = x->len < y->len ? x->len : y->len;
    int rc = memcmp (x->ptr, y->ptr, n);
    return rc ? rc : (x->len > y->len) - (x->len < y->len);
}

//  The names in that order, whole, as "a, b, ... and N more": N counts the
//  names past the room and `more` left out before.  Returns those shown.
static int
s_names_write (s_name_t *names, size_t count, size_t more, char *buf, size_t size)
{
    if (size == 0)
        return 0;
    buf [0] = 0;
    qsort (names, count, sizeof names [0], s_name_compare);
    size_t used = 0;
    size_t shown = 0;
    for (; shown < count; shown++) {
        //  Room is kept for what is left out, should the next not fit.
        char tail [48] = "";
        if (count - shown - 1 + more)
            snprintf (tail, sizeof tail, ", ... and %zu more", count - shown - 1 + more);
        if (used + (shown ? 2 : 0) + names [shown].len + strlen (tail) + 1 > size)
            break;
        if (shown) {
            memcpy (buf + used, ", ", 2);
            used += 2;
        }
        memcpy (buf + used, names [shown].ptr, names [shown].len);
        used += names [shown].len;
        buf [used] = 0;
    }
    if (count - shown + more)
        snprintf (buf + used, size - used, "%s... and %zu more", shown ? ", " : "", count - shown + more);
    return (int) shown;
}

int
gw_record_bot_types (const msgpack_object *reply, char *buf, size_t size)
{
    if (size == 0)
        return 0;
    buf [0] = 0;
    const msgpack_object *types = bm_obj_get (reply, "types");
    if (!types || types->type != MSGPACK_OBJECT_MAP)
        return 0;
    s_name_t names [S_NAMES_MAX];
    size_t count = 0;
    size_t more = 0;
    for (uint32_t i = 0; i < types->via.map.size; i++) {
        const msgpack_object *k = &types->via.map.ptr [i].key;
        //  Names are [a-z0-9_-]: safe to show.
        if (k->type != MSGPACK_OBJECT_STR
        ||  !bm_valid_bot_type (k->via.str.ptr, k->via.str.size)
        ||  (k->via.str.size == strlen (BM_WEBHOOK_TYPE)
             && memcmp (k->via.str.ptr, BM_WEBHOOK_TYPE, k->via.str.size) == 0))
            continue;
        if (count < S_NAMES_MAX)
            names [count++] = (s_name_t) { k->via.str.ptr, k->via.str.size };
        else
            more++;
    }
    return s_names_write (names, count, more, buf, size);
}

int
gw_record_type_list (const char *list, char *buf, size_t size)
{
    if (size == 0)
        return 0;
    buf [0] = 0;
    char *copy = strdup (list);
    if (!copy)
        return 0;
    s_name_t names [S_NAMES_MAX];
    size_t count = 0;
    size_t more = 0;
    char *save = NULL;
    for (char *name = strtok_r (copy, ",", &save); name; name = strtok_r (NULL, ",", &save)) {
        while (*name == ' ')
            name++;
        size_t n = 0;
        int end = 0;
        if (sscanf (name, "... and %zu more%n", &n, &end) == 1 && name [end] == 0)
            more += n;
        else
        if (!bm_valid_bot_type (name, strlen (name)))
            continue;                   //  Not a name: not shown
        else
        if (count < S_NAMES_MAX)
            names [count++] = (s_name_t) { name, strlen (name) };
        else
            more++;
    }
    int shown = s_names_write (names, count, more, buf, size);
    free (copy);
    return shown;
}

//  --------------------------------------------------------------------------
//  Self test

#define CHECK(cond) BM_CHECK (cond)

//  Unpacked objects point into the packed bytes: keep them until the end.
static char *s_buffers [16];
static int s_nbuffers;

static msgpack_unpacked
s_pack_json (const char *text)
{
    char *data;
    size_t size;
    char error [200];
    CHECK (bm_json_text_to_msgpack (text, strlen (text), &data, &size, error, sizeof error) == 0);
    msgpack_unpacked result;
    msgpack_unpacked_init (&result);
    size_t offset = 0;
    CHECK (msgpack_unpack_next (&result, data, size, &offset) == MSGPACK_UNPACK_SUCCESS);
    CHECK (s_nbuffers < 16);
    s_buffers [s_nbuffers++] = data;
    return result;
}

void
gw_record_test (bool verbose)
{
    if (verbose)
        printf (" * gw_record: ");
    char iso [40];
    CHECK (bm_http_iso_time (0, iso, sizeof iso) == 0 && streq (iso, "1970-01-01T00:00:00.000Z"));
    CHECK (bm_http_iso_time (1795898401123LL, iso, sizeof iso) == 0
           && streq (iso, "2026-11-28T20:40:01.123Z"));
    CHECK (bm_http_iso_time (-1, iso, sizeof iso) == 0 && streq (iso, "1969-12-31T23:59:59.999Z"));
    CHECK (bm_http_iso_time (INT64_MAX, iso, sizeof iso) == -1);
    CHECK (bm_http_iso_time (0, iso, 10) == -1);

    msgpack_unpacked job = s_pack_json (
        "{\"jobId\":\"j1\",\"state\":\"completed\",\"createdAt\":1795898401123,"
        "\"startedAt\":1795898401200,\"priority\":3,\"result\":{\"x\":1},"
        "\"webhook\":{\"state\":\"retrying\",\"nextAttemptAt\":1795898402000,\"attempts\":2},"
        "\"attemptErrors\":[{\"attempt\":1,\"code\":\"bot_failed\",\"at\":1795898401150}]}");
    json_t *record = gw_record_job (&job.data);
    CHECK (record);
    CHECK (streq (json_string_value (json_object_get (record, "createdAt")),
                  "2026-11-28T20:40:01.123Z"));
    CHECK (streq (json_string_value (json_object_get (record, "startedAt")),
                  "2026-11-28T20:40:01.200Z"));
    CHECK (json_integer_value (json_object_get (record, "priority")) == 3);
    CHECK (streq (json_string_value (json_object_get (record, "id")), "j1"));
    CHECK (streq (json_string_value (json_object_get (record, "bullmqState")), "completed"));
    CHECK (json_integer_value (json_object_get (record, "processedOn")) == 1795898401200LL);
    CHECK (json_is_null (json_object_get (record, "finishedOn")));
    CHECK (json_is_null (json_object_get (record, "failedReason")));
    CHECK (json_integer_value (json_object_get (json_object_get (record, "returnvalue"), "x")) == 1);
    CHECK (json_integer_value (json_object_get (record, "attemptsMade")) == 0);     //  No attempts
    json_t *webhook = json_object_get (record, "webhook");
    CHECK (streq (json_string_value (json_object_get (webhook, "nextAttemptAt")),
                  "2026-11-28T20:40:02.000Z"));
    CHECK (json_integer_value (json_object_get (webhook, "attempts")) == 2);
    json_t *failure = json_array_get (json_object_get (record, "attemptErrors"), 0);
    CHECK (json_object_get (record, "id") && json_object_get (record, "processedOn"));
    CHECK (streq (json_string_value (json_object_get (failure, "at")), "2026-11-28T20:40:01.150Z"));
    CHECK (json_integer_value (json_object_get (failure, "attempt")) == 1);
    json_decref (record);
    msgpack_unpacked_destroy (&job);
    //  Its log line by line, the empty last line dropped; none: no lines.
    job = s_pack_json ("{\"jobId\":\"j2\",\"log\":\"one\\n\\nthree\\n\"}");
    json_t *logs = gw_record_logs (&job.data);
    CHECK (logs && streq (json_string_value (json_object_get (logs, "jobId")), "j2")
           && json_integer_value (json_object_get (logs, "count")) == 3
           && streq (json_string_value (json_array_get (json_object_get (logs, "logs"), 1)), "")
           && streq (json_string_value (json_array_get (json_object_get (logs, "logs"), 2)), "three"));
    json_decref (logs);
    msgpack_unpacked_destroy (&job);
    job = s_pack_json ("{\"jobId\":\"j3\"}");
    logs = gw_record_logs (&job.data);
    CHECK (logs && json_integer_value (json_object_get (logs, "count")) == 0
           && json_array_size (json_object_get (logs, "logs")) == 0);
    json_decref (logs);
    msgpack_unpacked_destroy (&job);
    //  Each state by BullMQ's name; one it does not know, null.
    const char *states [][2] = {
        { "queued", "waiting" }, { "running", "active" }, { "delayed", "delayed" },
        { "failed", "failed" }, { "cancelled", "failed" }, { "paused", NULL },
        { "waiting-children", "waiting-children" }
    };
    for (size_t i = 0; i < sizeof states / sizeof states [0]; i++) {
        char text [80];
        snprintf (text, sizeof text, "{\"jobId\":\"j\",\"state\":\"%s\"}", states [i][0]);
        job = s_pack_json (text);
        record = gw_record_job (&job.data);
        json_t *name = json_object_get (record, "bullmqState");
        CHECK (states [i][1] ? streq (json_string_value (name), states [i][1]) : json_is_null (name));
        json_decref (record);
        msgpack_unpacked_destroy (&job);
    }

    msgpack_unpacked stats = s_pack_json (
        "{\"req\":4,\"types\":{\"python\":{\"waiting\":1,\"running\":2,\"limit\":5},"
        "\"webhook\":{\"running\":0},\"java\":{\"running\":0},\"node\":{\"running\":1}},"
        "\"workers\":[{\"name\":\"w\",\"lastHeartbeat\":0}],\"redis\":true}");
    json_t *json = gw_record_stats (&stats.data);
    CHECK (json && !json_object_get (json, "req"));
    json_t *python = json_object_get (json_object_get (json, "types"), "python");
    CHECK (json_integer_value (json_object_get (python, "active")) == 2);
    json_t *queue = json_object_get (json, "botQueue");
    CHECK (json_integer_value (json_object_get (queue, "waiting")) == 1);
    CHECK (json_integer_value (json_object_get (queue, "active")) == 3);
    CHECK (json_integer_value (json_object_get (queue, "failed")) == 0);
    CHECK (json_integer_value (json_object_get (json_object_get (json, "webhookQueue"), "active")) == 0);
    json_t *worker = json_array_get (json_object_get (json, "workers"), 0);
    CHECK (streq (json_string_value (json_object_get (worker, "lastHeartbeatAt")),
                  "1970-01-01T00:00:00.000Z"));
    json_decref (json);
    char types [64];
    CHECK (gw_record_bot_types (&stats.data, types, sizeof types) == 3);
    CHECK (streq (types, "java, node, python"));
    //  Whole names, and a count of those past the room.
    CHECK (gw_record_bot_types (&stats.data, types, 26) == 1 && streq (types, "java, ... and 2 more"));
    CHECK (gw_record_bot_types (&stats.data, types, 20) == 0 && streq (types, "... and 3 more"));
    CHECK (gw_record_type_list ("zeta, python, beta_2, alpha, node", types, sizeof types) == 5
           && streq (types, "node, python, alpha, beta_2, zeta"));
    CHECK (gw_record_type_list ("zeta, python, beta_2, alpha, node", types, 33) == 2
           && streq (types, "node, python, ... and 3 more"));
    CHECK (gw_record_type_list ("beta, java, ... and 7 more", types, sizeof types) == 2
           && streq (types, "java, beta, ... and 7 more"));
    CHECK (gw_record_type_list ("java, bad name!, ", types, sizeof types) == 1 && streq (types, "java"));
    CHECK (gw_record_type_list ("", types, sizeof types) == 0 && streq (types, ""));
    msgpack_unpacked_destroy (&stats);

    msgpack_unpacked list = s_pack_json ("{\"req\":1,\"jobs\":[{\"jobId\":\"a\",\"finishedAt\":1000}]}");
    json = gw_record_list (&list.data);
    CHECK (json);
    CHECK (streq (json_string_value (json_object_get (json_array_get (json_object_get (json, "jobs"), 0),
                                                      "finishedAt")), "1970-01-01T00:00:01.000Z"));
    json_decref (json);
    msgpack_unpacked_destroy (&list);
    while (s_nbuffers > 0)
        free (s_buffers [--s_nbuffers]);

    if (verbose)
        printf ("OK\n");
}

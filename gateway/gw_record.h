/*  gw_record.h - broker replies (msgpack) as the gateway's JSON answers.

    Job records (protocol.md section 3) become JSON with their timestamps
    ("createdAt", "startedAt", "finishedAt", and "nextAttemptAt" inside
    "webhook": any integer field whose name ends in "At") written as
    ISO-8601 UTC strings with milliseconds, "2026-11-28T20:40:01.123Z".
    STATS gains "active" (= running) per bot type, as BullMQ names it.
    Pure functions: no I/O, unit tested.  */
#ifndef GW_RECORD_H
#define GW_RECORD_H

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

//  A job record as JSON (caller owns the reference), or NULL if job is not
//  a map or nests too deeply.
json_t *gw_record_job (const msgpack_object *job);

//  A job record's log as BullMQ's getJobLogs answers: {"jobId", "logs":
//  [its lines, split on \n, an empty last one dropped], "count"} (caller
//  owns), or NULL if job is not a map.
json_t *gw_record_logs (const msgpack_object *job);

//  A schedule as JSON: its fields as the broker sent them, the *At times
//  ISO 8601 strings; none of the job record's BullMQ names. NULL if it is
//  not a map.
json_t *gw_record_schedule (const msgpack_object *schedule);

//  A STATS reply body as the /stats JSON (caller owns), or NULL if it is
//  not a map.  Drops "req"; adds "active" next to "running" per type and
//  "lastHeartbeatAt" (ISO) next to each worker's "lastHeartbeat" (ms).
json_t *gw_record_stats (const msgpack_object *reply);

//  A LIST reply body as {"jobs": [...]} (caller owns), or NULL.
json_t *gw_record_list (const msgpack_object *reply);

//  The bot types a STATS reply names, without the broker's own "webhook"
//  type, into buf: the default bots' types first, then the others by name
//  ("java, node, python, alpha, beta"), whole names only, ending "... and
//  N more" when not all fit in size.  Returns the count shown.
int gw_record_bot_types (const msgpack_object *reply, char *buf, size_t size);

//  A list of bot types "beta, node, ... and 3 more" (the broker's, in any
//  order) into buf in that same order and form, so that every error
//  listing the bot types shows them alike.  What is not a bot type name is
//  left out.  Returns the count shown.
int gw_record_type_list (const char *list, char *buf, size_t size);

void gw_record_test (bool verbose);

#endif

/*  gw_invoke.h - translate a POST /invoke JSON body into a BMC01 SUBMIT body.

    A pure function: bytes in, msgpack (or an HTTP error) out.  No I/O, no
    globals, no clock, so that it can be fuzzed (gw_invoke_fuzz.c) and unit
    tested.  Everything the gateway can check without the broker is checked
    here; what only the broker knows (is the bot type configured? is the
    queue full?) comes back later as a REJECTED code.

    The body (the seed's, plus optional fields):

        {"botType": "python",                  required, [a-z0-9_-]{1,32}
         "payload": {...},                     required, any JSON value
         "webhookUrl": "http://...",           optional, http(s), <= 2048
         "priority": 1,                        optional, 0..2097152 (3)
         "idempotencyKey": "abc",              optional, 1-128 printable
         "timeoutMs": 60000,                   optional, 1..86400000
         "maxAttempts": 3,                     optional, 1..100 (dispatches)
         "attempts": 3,                        optional, 1..100 (runs)
         "backoff": {"type": "exponential",    optional, type "exponential"
                     "delayMs": 2000,          or "fixed", delayMs 0..a day,
                     "jitter": false},         jitter optional: a bool
                                               or BullMQ's 0..1 fraction;
                                               or a number: BullMQ's fixed
                                               delay in ms
         "delayMs": 5000,                      optional, 0..a year; or
         "runAt": 1790000000000}               optional, epoch ms

    BullMQ's names are read too: "delay" as delayMs and "jobId" as
    idempotencyKey (given with the other name, both must be equal).  An
    optional field given as null counts as absent, and so does a webhookUrl
    of "".  An integer field may be given as a real with an integral value
    (1.0, as Python's json.dumps writes a float); 1.5 is refused.  Unknown
    keys are ignored (protocol.md: forward compatibility) and named back to
    the client (gw_invoke_ignored); duplicate keys are an error (which of
    the two was meant is not knowable).  */
#ifndef GW_INVOKE_H
#define GW_INVOKE_H

#include "bm_proto.h"
#include "bm_codec.h"

#include <jansson.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  The protocol's SUBMIT limits (bm_proto.h).
#define GW_INVOKE_MAX_TIMEOUT_MS    BM_MAX_TIMEOUT_MS
#define GW_INVOKE_MAX_ATTEMPTS      BM_MAX_ATTEMPTS
//  The priority of a job sent without one: BullMQ-based bot systems default
//  to 3, so such a job must not run ahead of jobs sent with 1 to 3.
#define GW_INVOKE_DEFAULT_PRIORITY  BM_DEFAULT_PRIORITY
//  Containers nested in a payload: msgpack-c unpacks at most 32, and a
//  payload travels inside a STATUS reply two levels deep ({job: {payload:
//  ...}}).  Found by the fuzzer.
#define GW_INVOKE_MAX_DEPTH         BM_MAX_NESTING
//  Nesting of the whole body accepted by the parser.  Above the payload's
//  limit so that a payload 31..63 deep gets the precise invalid_payload
//  message, far below what a civetweb thread's ~100 KB stack holds.
#define GW_INVOKE_MAX_TEXT_DEPTH    64
//  Unknown keys named in an answer's "ignored" list, at most.
#define GW_INVOKE_MAX_IGNORED       32

//  Why a body was refused: the HTTP status, a stable code for clients and a
//  message naming the field (never internal details).
typedef struct {
    int status;                 //  400 or 413 (503: no memory)
    const char *code;           //  "invalid_json", "invalid_bot_type", ...
    char message [256];         //  For humans; names the field
    //  Set ("" when none) by a translation or check that passed: what the
    //  caller is told beside its 202 (a webhookUrl the webhook manager
    //  would refuse under the gateway's settings).
    char warning [320];
} gw_invoke_error_t;

//  What a translation checks beyond the body itself.
typedef struct {
    size_t max_payload;         //  Largest encoded payload (MAX_PAYLOAD_BYTES)
    //  The webhook manager's rule for private targets, read from the same
    //  settings: a webhookUrl whose host needs no lookup (an IP address,
    //  localhost) and that the manager would refuse gets a warning.
    bool allow_private;         //  WEBHOOK_ALLOW_PRIVATE
    const char *allowed_hosts;  //  WEBHOOK_ALLOWED_HOSTS, or NULL
} gw_invoke_limits_t;

//  Translate body[0..size) into a SUBMIT body carrying "req" = req, under
//  limits.  On success returns 0 and sets *out / *out_size (a
//  malloc'ed msgpack map; caller frees *out) and, when bot_type is not NULL,
//  copies the bot type into bot_type[33], and when priority is not NULL,
//  sets it to the job's priority, and when ignored is not NULL, sets it to
//  gw_invoke_ignored's list (NULL when none; caller decrefs).  On failure
//  returns -1 and fills *error; *out is left NULL.
int gw_invoke_translate (const char *body, size_t size, int64_t req, const gw_invoke_limits_t *limits,
                         char **out, size_t *out_size, char *bot_type, int64_t *priority,
                         json_t **ignored, gw_invoke_error_t *error);

//  Parse JSON text for the translations: nesting beyond
//  GW_INVOKE_MAX_TEXT_DEPTH + extra_depth is refused before parsing (a
//  batch's array is one level more).  The value (caller decrefs), or NULL
//  with *error (400 invalid_json).
json_t *gw_invoke_parse (const char *body, size_t size, int extra_depth,
                         gw_invoke_error_t *error);

//  Translate one parsed body (any JSON value: not an object is
//  invalid_body) into a SUBMIT body appended to packer, with "req" = req
//  when has_req (a batch's items carry none).  scratch: a packer the
//  payload is encoded in on its own first (emptied here, its memory kept
//  for the next call: a batch's items share one), or NULL for one of its
//  own.  bot_type, priority and ignored as in gw_invoke_translate.  0, or
//  -1 with *error (packer then holds part of an item: the caller drops it).
int gw_invoke_translate_value (const json_t *body, bool has_req, int64_t req,
                               const gw_invoke_limits_t *limits,
                               bm_packer_t *packer, bm_packer_t *scratch, char *bot_type,
                               int64_t *priority, json_t **ignored, gw_invoke_error_t *error);

//  The top-level keys of body the translation does not read (BullMQ's
//  removeOnComplete, ...), in body order, at most GW_INVOKE_MAX_IGNORED:
//  a JSON array of strings (caller decrefs), or NULL when there is none.
json_t *gw_invoke_ignored (const json_t *body);

//  The fields a POST /schedules body shares with POST /invoke (botType,
//  payload, webhookUrl, priority), checked with the same codes (webhookUrl
//  under limits' rule for private targets) and
//  messages (missing_field, invalid_bot_type, invalid_payload,
//  invalid_webhook_url, invalid_priority).  The schedule's own fields are
//  the broker's to check.  0, or -1 with *error.  On success, the shared
//  fields are rewritten as the broker reads them: an integral real
//  priority (1.0) as an integer, a webhookUrl of "" removed.
int gw_invoke_check_schedule (json_t *body, const gw_invoke_limits_t *limits,
                              gw_invoke_error_t *error);

//  Self test.
void gw_invoke_test (bool verbose);

#endif

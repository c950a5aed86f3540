/*  bm_record.h - a job's record in Redis, as bytes (docs/redis.md).

    A job's hash holds the fields "state" (its state word, as text),
    "r" (what it was submitted with, its payload included: one msgpack map
    written once), "x" (what its runs did: attempts, times, worker, result,
    error; one msgpack map rewritten at each state change), "w" (its
    webhook delivery state, msgpack) and "wt"; a job submitted with
    dependencyResults also one "dr:<index>" per dependency result kept
    (the result's msgpack bytes), written once, when it is kept, so that a
    fan-in of n results writes each once, not the n kept so far at each
    dependency's end.  The keys inside "r" and "x" are one or two letters;
    numbers are msgpack integers; a value that is absent, zero or the
    default is left out.  Records whose "x" map holds the results (key
    "dr", an earlier broker's) still read; the next write of the record
    moves them to their fields.

    Records of the earlier layout (one hash field per job field: "jobId",
    "botType", "payload", "startedAt", ...) still read: bm_record_read takes
    either, and a hash holding both (a record begun by an older broker and
    ended by this one) reads with the newer fields winning.

    This class packs and parses; it sends nothing (bm_jobstore.c does).
    Self-test: bm_record_test (CTest broker.unit.record).  */
#ifndef BM_RECORD_H
#define BM_RECORD_H

#include "bm_job.h"
#include "bm_proto.h"

#include <hiredis/hiredis.h>

//  The hash fields.
#define BM_RECORD_STATE     "state"
#define BM_RECORD_SUBMIT    "r"
#define BM_RECORD_RUN       "x"
#define BM_RECORD_WEBHOOK   "w"
#define BM_RECORD_WEBHOOK_AT "wt"
//  A kept dependency result's field: this, then the dependency's index in
//  dependsOn, in decimal ("dr:0", "dr:17").
#define BM_RECORD_DEP_RESULT "dr:"

//  What a record says beyond the job's own fields.
typedef struct {
    char type [BM_MAX_BOT_TYPE_LEN + 1];    //  Its bot type ("" if none)
    bool has_run_attempts;                  //  runAttempts was written
    bool has_backoff;                       //  backoff was written
    bool held;                              //  Queued, held for the worker
                                            //  that ran it (recovered as
                                            //  running by the broker before)
    bool run_counted;                       //  lastWorker's run was counted:
                                            //  its DONE is not the job's
    bool dep_ignore, dep_results;           //  dependsOn's options
} bm_record_meta_t;

//  Pack the "r" map: bot type, order, limits, times, payload, webhook
//  URL, idempotency key, parent; runAttempts and backoff only when they
//  differ from its type's defaults (job->service).
void bm_record_pack_submit (msgpack_packer *pk, const bm_job_t *job);
//  Pack the "x" map: attempts, progress, times, worker, result, error,
//  deliveries (all, and those before the current outcome), due time,
//  attempt errors, whether it is held and whether lastWorker's run was
//  counted, and the failed DONE last taken (hashed) (an empty map when
//  none).  The dependencies' results kept are not in it: each has its
//  field (BM_RECORD_DEP_RESULT).
void bm_record_pack_run (msgpack_packer *pk, const bm_job_t *job);
//  The field name of the kept result of dependency index into buf (at
//  least 24 bytes); returns its length.
size_t bm_record_dep_result_field (char *buf, size_t size, size_t index);
//  True if the "x" map has anything to say (a job just submitted has not).
bool bm_record_has_run (const bm_job_t *job);
//  Read a record (an HGETALL reply of either layout) into job, whose id is
//  id when the record does not name it.  Kept results read from their
//  fields are marked saved; those of an "x" map's "dr" are not (the next
//  write gives them their fields, as it rewrites "x" without them).  Returns 0, or -1 if the reply is
//  not a record or a field is damaged (job then holds part of it).
int bm_record_read (bm_job_t *job, const char *id, const redisReply *reply, bm_record_meta_t *meta);

//  Self test.
void bm_record_test (bool verbose);

#endif

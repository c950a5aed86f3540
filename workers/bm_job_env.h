/*  bm_job_env.h - the environment a bot gets, and a pooled job's frame.

    Built once from the worker's own environment, minus the BOT_* keys the
    worker sets itself and minus botmesh's own secrets (REDIS_*,
    WEBHOOK_SECRET, MOCK_WEBHOOK_SECRET, API_KEYS, ADMIN_API_KEYS,
    BOTMESH_API_KEY, CURVE_*) and the names and prefixes of BOT_ENV_DENY:
    no bot gets those, in any mode.  The settings of a bot type (the
    worker's per-type names of env.example: BOT_<TYPE>_CMD,
    BOT_<TYPE>_MEMORY_MB, MAX_<TYPE>_BOTS, ...) go to that type's bots
    only.  A spawned bot gets that plus its job's BOT_JOB_ID,
    BOT_TYPE, BOT_ATTEMPT, BOT_TIMEOUT_MS, BOT_DEADLINE, BOT_PROGRESS_FD=3
    and BOT_WORKER; a pool or fork process gets it plus BOT_TYPE,
    BOT_WORKER, BOT_MODE and BOT_PROGRESS_FD, and each job's own variables
    come in its job frame {job, env, payload} (docs/bots.md).  A sandboxed
    type's environment is cut down (bm_sandbox_env): not the worker's
    credentials.  */
#ifndef BM_JOB_ENV_H
#define BM_JOB_ENV_H

#include "bm_worker.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _bm_job_env_t bm_job_env_t;

//  The base environment: environ minus the job keys and the withheld
//  variables (copied).
bm_job_env_t *bm_job_env_new (void);
void bm_job_env_destroy (bm_job_env_t **self_p);

//  How many variables of the worker's environment bots do not get.
size_t bm_job_env_withheld (bm_job_env_t *self);

//  How many more the bots of type do not get: the settings of other bot
//  types (BOT_<TYPE>_*, MAX_<TYPE>_BOTS, ... for another TYPE).
size_t bm_job_env_other_types (bm_job_env_t *self, const char *type);

//  Whether bots never get entry ("NAME=VALUE"): one of botmesh's secrets,
//  or a name or prefix ("NAME*") of deny (BOT_ENV_DENY's comma-separated
//  list, may be NULL).
bool bm_job_env_is_withheld (const char *entry, const char *deny);

//  Remove what bots never get (botmesh's secrets, BOT_ENV_DENY's names)
//  from our own environment too, so that a bot cannot read it in
//  /proc/<worker>/environ: unset it, and overwrite its bytes with zeros
//  in the environment block the kernel gave us at exec (what that file
//  shows; unsetenv does not touch it).  Call it once, after the
//  configuration is read and bm_job_env_new has taken its copy: nothing
//  may read those variables afterwards, or keep their values borrowed
//  (copy what is still needed).  Returns how many entries of the block
//  were overwritten, or -1 if the block cannot be found (no /proc: they
//  are still unset); *removed_p gets how many variables were unset.
int bm_job_env_scrub (size_t *removed_p);

//  Check BOT_ENV_DENY's value: 0, or -1 with the problem in error.
int bm_job_env_deny_check (const char *deny, char *error, size_t error_size);

//  The environment of a spawned bot for a job (caller frees it with
//  bm_bot_argv_free).
char **bm_job_env_bot (bm_job_env_t *self, const char *job_id, const bm_worker_type_t *type,
                       int64_t attempt, int64_t limit_ms, int64_t deadline, const char *worker);

//  The environment of the pool or fork processes of a type (caller frees
//  it with bm_bot_argv_free), or NULL if out of memory.
char **bm_job_env_pool (bm_job_env_t *self, const bm_worker_type_t *type, const char *worker,
                        bool fork);

//  The job frame of a pooled job, one line of JSON without the newline
//  (caller frees), or NULL if the payload cannot be written as JSON.
char *bm_job_env_frame (bm_job_env_t *self, const char *job_id, const bm_worker_type_t *type,
                        int64_t attempt, int64_t limit_ms, int64_t deadline, const char *worker,
                        const json_t *payload);

//  Self-test; built only into bm_worker_selftest (BM_SELFTEST).
void bm_job_env_test (bool verbose);

#endif
